//! The operator command line: `serve`, and `put`/`get`/`merge`/`health` against a running
//! broker, and `decode` offline.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use session_token::SessionToken;
use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokenbroker_proto::v1::{
    DiscardTokenRequest, GetTokenRequest, MergeTokenRequest, PutTokenRequest, SERVICE_NAME,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Parser)]
#[command(
    name = "tokenbroker",
    version,
    about = "Shares Cosmos DB session tokens between pods"
)]
pub struct Cli {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: Command,
}

/// How the client commands reach the broker. Global: before or after the subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Broker address (`https://` for TLS).
    #[arg(
        long,
        global = true,
        env = "TOKENBROKER_CLI_BROKER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub broker: String,
    /// Deadline of the call.
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// PEM CA certificate to verify the broker with (TLS; default: the system's roots).
    #[arg(long, global = true, env = "TOKENBROKER_CLI_CA")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for brokers that require one (mutual TLS); with --cert-key.
    #[arg(
        long,
        global = true,
        env = "TOKENBROKER_CLI_CERT",
        requires = "cert_key"
    )]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert (`--key` is the broker key of get, put and discard).
    #[arg(
        long,
        global = true,
        env = "TOKENBROKER_CLI_CERT_KEY",
        requires = "cert"
    )]
    pub cert_key: Option<PathBuf>,
    /// Bearer token sent as `authorization: Bearer <token>` (prefer the environment variable:
    /// a flag shows in the process list).
    #[arg(
        long,
        global = true,
        env = "TOKENBROKER_CLI_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Name the broker's certificate is checked against, when not the address's host.
    #[arg(long, global = true, env = "TOKENBROKER_CLI_DOMAIN_NAME")]
    pub domain_name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker server.
    Serve {
        /// TOML configuration file (environment variables TOKENBROKER_* override it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the sidecar: an HTTP proxy between a Cosmos SDK (gateway mode) and the account that
    /// records writes' session tokens with the brokers and adds them to reads (docs/sidecar.md).
    Sidecar {
        /// TOML configuration file (environment variables TOKENBROKER_* override it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Merge a session token into the stored one; prints the stored result.
    Put {
        #[arg(long)]
        scope: String,
        #[arg(long)]
        key: String,
        /// An x-ms-session-token value.
        token: String,
    },
    /// Print the stored token (exit code 1 when none is stored).
    Get {
        #[arg(long)]
        scope: String,
        #[arg(long)]
        key: String,
        /// Only these partition key ranges (repeatable).
        #[arg(long = "range")]
        ranges: Vec<String>,
    },
    /// Remove the ranges of a token that Cosmos could not serve from the stored token; prints
    /// what remains (exit code 1 when nothing was removed).
    Discard {
        #[arg(long)]
        scope: String,
        #[arg(long)]
        key: String,
        /// Only these partition key ranges of the token (repeatable).
        #[arg(long = "range")]
        ranges: Vec<String>,
        /// The x-ms-session-token value that Cosmos could not serve.
        token: String,
    },
    /// Merge tokens on the broker without storing them.
    Merge {
        #[arg(required = true)]
        tokens: Vec<String>,
    },
    /// Print a session token as a table, offline.
    Decode { token: String },
    /// Check a broker's health (exit code 0 only when SERVING).
    Health {
        /// Health service name: "" for liveness, the broker's service name for readiness.
        #[arg(long, default_value = SERVICE_NAME)]
        service: String,
    },
}

/// Why a CLI command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("invalid broker address {0:?}: {1}")]
    Address(String, tonic::transport::Error),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, tonic::transport::Error),
    #[error("{:?}: {}", .0.code(), .0.message())]
    Rpc(#[from] tonic::Status),
    #[error("{0}")]
    Token(#[from] session_token::ParseError),
    #[error("cannot read {0}: {1}")]
    File(String, std::io::Error),
    #[error("--token: not a valid header value (printable ASCII only)")]
    BearerToken,
}

/// Adds the bearer token, if any, to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Connection = InterceptedService<Channel, Bearer>;

fn read(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::File(path.display().to_string(), e))
}

async fn channel(target: &Target) -> Result<Connection, CliError> {
    let mut endpoint = Endpoint::from_shared(target.broker.clone())
        .map_err(|e| CliError::Address(target.broker.clone(), e))?
        .connect_timeout(target.timeout)
        .timeout(target.timeout);
    let tls = target.ca.is_some() || target.cert.is_some() || target.broker.starts_with("https://");
    if tls {
        let mut config = ClientTlsConfig::new();
        config = match &target.ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => config.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&target.cert, &target.cert_key) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(name) = &target.domain_name {
            config = config.domain_name(name.clone());
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| CliError::Address(target.broker.clone(), e))?;
    }
    let bearer = match &target.token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse::<MetadataValue<Ascii>>()
                .map_err(|_| CliError::BearerToken)?,
        ),
        None => None,
    };
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| CliError::Connect(target.broker.clone(), e))?;
    Ok(InterceptedService::new(channel, Bearer(bearer)))
}

/// Runs a client command; returns the process exit code.
pub async fn run_client(target: Target, command: Command) -> Result<i32, CliError> {
    match command {
        Command::Serve { .. } | Command::Sidecar { .. } => Ok(2),
        Command::Decode { token } => {
            let token = SessionToken::parse(&token)?;
            print!("{}", crate::decode::table(&token));
            Ok(0)
        }
        Command::Put { scope, key, token } => {
            let mut client = TokenBrokerClient::new(channel(&target).await?);
            let r = client
                .put_token(PutTokenRequest {
                    scope,
                    key,
                    session_token: token,
                })
                .await?
                .into_inner();
            println!("{}", r.session_token);
            Ok(0)
        }
        Command::Get { scope, key, ranges } => {
            let mut client = TokenBrokerClient::new(channel(&target).await?);
            let r = client
                .get_token(GetTokenRequest {
                    scope,
                    key,
                    partition_key_range_ids: ranges,
                })
                .await?
                .into_inner();
            if r.degraded {
                eprintln!(
                    "warning: degraded answer (the broker could not consult its whole store)"
                );
            }
            if r.found {
                println!("{}", r.session_token);
                Ok(0)
            } else {
                eprintln!("not found");
                Ok(1)
            }
        }
        Command::Discard {
            scope,
            key,
            ranges,
            token,
        } => {
            let mut client = TokenBrokerClient::new(channel(&target).await?);
            let r = client
                .discard_token(DiscardTokenRequest {
                    scope,
                    key,
                    session_token: token,
                    partition_key_range_ids: ranges,
                })
                .await?
                .into_inner();
            if r.discarded_partition_key_range_ids.is_empty() {
                eprintln!("nothing discarded (no stored segment at or ahead of the token)");
            } else {
                eprintln!(
                    "discarded ranges: {}",
                    r.discarded_partition_key_range_ids.join(",")
                );
            }
            println!("{}", r.session_token);
            Ok(if r.discarded_partition_key_range_ids.is_empty() {
                1
            } else {
                0
            })
        }
        Command::Merge { tokens } => {
            let mut client = TokenBrokerClient::new(channel(&target).await?);
            let r = client
                .merge_token(MergeTokenRequest {
                    session_tokens: tokens,
                })
                .await?
                .into_inner();
            println!("{}", r.session_token);
            Ok(0)
        }
        Command::Health { service } => {
            let mut client = HealthClient::new(channel(&target).await?);
            let r = client
                .check(HealthCheckRequest { service })
                .await?
                .into_inner();
            let status = ServingStatus::try_from(r.status).unwrap_or(ServingStatus::Unknown);
            println!("{}", status.as_str_name());
            Ok(if status == ServingStatus::Serving {
                0
            } else {
                1
            })
        }
    }
}
