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
use tonic::transport::{Channel, Endpoint};
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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Target {
    /// Broker address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub broker: String,
    /// Deadline of the call.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker server.
    Serve {
        /// TOML configuration file (environment variables TOKENBROKER_* override it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Merge a session token into the stored one; prints the stored result.
    Put {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        scope: String,
        #[arg(long)]
        key: String,
        /// An x-ms-session-token value.
        token: String,
    },
    /// Print the stored token (exit code 1 when none is stored).
    Get {
        #[command(flatten)]
        target: Target,
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
        #[command(flatten)]
        target: Target,
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
        #[command(flatten)]
        target: Target,
        #[arg(required = true)]
        tokens: Vec<String>,
    },
    /// Print a session token as a table, offline.
    Decode { token: String },
    /// Check a broker's health (exit code 0 only when SERVING).
    Health {
        #[command(flatten)]
        target: Target,
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
}

async fn channel(target: &Target) -> Result<Channel, CliError> {
    let endpoint = Endpoint::from_shared(target.broker.clone())
        .map_err(|e| CliError::Address(target.broker.clone(), e))?
        .connect_timeout(target.timeout)
        .timeout(target.timeout);
    endpoint
        .connect()
        .await
        .map_err(|e| CliError::Connect(target.broker.clone(), e))
}

/// Runs a client command; returns the process exit code.
pub async fn run_client(command: Command) -> Result<i32, CliError> {
    match command {
        Command::Serve { .. } => Ok(2),
        Command::Decode { token } => {
            let token = SessionToken::parse(&token)?;
            print!("{}", crate::decode::table(&token));
            Ok(0)
        }
        Command::Put {
            target,
            scope,
            key,
            token,
        } => {
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
        Command::Get {
            target,
            scope,
            key,
            ranges,
        } => {
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
            target,
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
        Command::Merge { target, tokens } => {
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
        Command::Health { target, service } => {
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
