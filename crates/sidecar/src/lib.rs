//! `tokenbroker sidecar`: read-your-writes across pods for any Cosmos DB SDK, with no code.
//!
//! Why a proxy: every Cosmos SDK can talk to the account's HTTP gateway (Python, JavaScript and
//! Go only do; .NET and Java in Gateway connection mode), and the master-key signature covers
//! the verb, the resource type, the resource link and the date, never `x-ms-session-token`
//! (Entra ID tokens are bearer tokens). So a proxy next to the application can add or record
//! session tokens without breaking authentication, and the application changes nothing but the
//! endpoint it is given. Direct mode (.NET and Java over TCP) and Gateway 2.0 bypass any HTTP
//! proxy and cannot be brokered this way.
//!
//! What it does, request by request (see [`handlers`](crate) for the why of each step):
//! - `GET /` (the account): regional endpoints rewritten to the sidecar's own listeners, one
//!   per region ([`account`]), so the application keeps its multi-region routing and the
//!   sidecar sees every request;
//! - container reads: the container's `_rid` learned, for one scope per container generation
//!   (`<account host>/<database>/<container>/<_rid>`, as every language builds it);
//! - item writes: the response's token recorded with PutToken before the application sees it;
//! - item reads with a partition key: the broker's token for the target range merged into the
//!   application's own ([`read_token`]); a token the upstream cannot serve is retried in the
//!   write region, then without the broker's token, and discarded: the application never sees
//!   a failure the broker caused;
//! - everything else: forwarded untouched, bodies streamed, connections kept alive.
//!
//! The broker is reached through [`tokenbroker_client`] (deadline, breaker, balancing,
//! discovery): a broker in trouble costs a request at most `sidecar.broker_deadline` and never
//! its result.

#![warn(missing_docs)]

pub mod account;
mod handlers;
pub mod learned;
pub mod metrics;
pub mod policy;
mod proxy;
mod read;
pub mod read_token;
pub mod route;
pub mod settings;
mod tls;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;

use tokenbroker_client::{ClientConfig, ClientTls, TokenBrokerClient};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use metrics::SidecarMetrics;
pub use settings::SidecarSettings;

use crate::learned::Learned;
use crate::proxy::Shared;

/// Makes a request's span (first argument) the child of the trace its headers name
/// (`traceparent`, `tracestate`); see [`Sidecar::with_span_parent`].
pub type SpanParent = Arc<dyn Fn(&tracing::Span, &http::HeaderMap) + Send + Sync>;

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// A setting makes no sense (the message names it).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file named by a setting could not be read.
    #[error("{setting}: cannot read {path}: {source}")]
    File {
        /// The setting.
        setting: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The application-facing address could not be bound.
    #[error("sidecar.listen: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The upstream client could not be built.
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    /// The application-facing TLS could not be set up.
    #[error("sidecar.tls_cert / sidecar.tls_key: {0}")]
    Tls(String),
    /// The broker client could not be built.
    #[error("sidecar.brokers: {0}")]
    Broker(#[from] tokenbroker_client::ClientError),
}

fn read_file(
    setting: &'static str,
    path: Option<&std::path::Path>,
) -> Result<Option<Vec<u8>>, SidecarError> {
    path.map(|p| {
        std::fs::read(p).map_err(|source| SidecarError::File {
            setting,
            path: p.display().to_string(),
            source,
        })
    })
    .transpose()
}

/// The broker client the settings describe.
fn broker_client(settings: &SidecarSettings) -> Result<TokenBrokerClient, SidecarError> {
    let urls = settings.broker_urls();
    let mut config = if settings.discover {
        ClientConfig::discover(urls.first().cloned().unwrap_or_default())
    } else {
        ClientConfig::new(urls)
    };
    config = config.with_deadline(settings.broker_deadline);
    let ca = read_file("sidecar.broker_ca", settings.broker_ca.as_deref())?;
    let cert = read_file("sidecar.broker_cert", settings.broker_cert.as_deref())?;
    let key = read_file("sidecar.broker_key", settings.broker_key.as_deref())?;
    let tls_wanted = ca.is_some()
        || cert.is_some()
        || settings.broker_domain_name.is_some()
        || settings.brokers.contains("https://");
    if tls_wanted {
        let mut tls = ClientTls {
            ca_pem: ca,
            ..ClientTls::default()
        };
        if let (Some(cert), Some(key)) = (cert, key) {
            tls = tls.with_identity(cert, key);
        }
        if let Some(name) = &settings.broker_domain_name {
            tls = tls.with_domain_name(name.clone());
        }
        config = config.with_tls(tls);
    }
    if let Some(token) = &settings.broker_token {
        config = config.with_bearer_token(token.clone());
    }
    Ok(TokenBrokerClient::new(config)?)
}

/// A bound sidecar, ready to serve.
pub struct Sidecar {
    shared: Arc<Shared>,
    listener: TcpListener,
    listeners: mpsc::UnboundedReceiver<(TcpListener, String)>,
    stop: watch::Sender<bool>,
}

impl Sidecar {
    /// Validates `settings`, builds the upstream and broker clients, and binds the
    /// application-facing listener.
    pub async fn bind(
        settings: &SidecarSettings,
        metrics: SidecarMetrics,
    ) -> Result<Self, SidecarError> {
        settings.validate().map_err(SidecarError::Config)?;
        let upstream_uri = settings.upstream_uri().map_err(SidecarError::Config)?;
        let account_endpoint = account::normalize(&settings.upstream)
            .ok_or_else(|| SidecarError::Config("sidecar.upstream: not a URL".into()))?;
        let extra_ca = read_file("sidecar.upstream_ca", settings.upstream_ca.as_deref())?;
        let upstream = upstream::client(extra_ca.as_deref())?;
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key).map_err(SidecarError::Tls)?),
            _ => None,
        };
        let broker = broker_client(settings)?;
        let policy = settings.parsed_policy().map_err(SidecarError::Config)?;
        let session_header = http::HeaderName::from_bytes(settings.session_header.as_bytes())
            .map_err(|e| SidecarError::Config(format!("sidecar.session_header: {e}")))?;
        let addr = settings.listen_addr().map_err(SidecarError::Config)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SidecarError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| SidecarError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let (stop, stopped) = watch::channel(false);
        let (new_listeners, listeners) = mpsc::unbounded_channel();
        // Lowercased, as the Rust client's `url::Url::host_str` gives it: the same scopes.
        let host = upstream_uri.host().unwrap_or_default().to_ascii_lowercase();
        let shared = Arc::new(Shared::new(
            upstream,
            broker,
            Learned::new(host),
            policy,
            session_header,
            settings.max_replay_body_bytes,
            metrics,
            account_endpoint,
            bound,
            tls,
            stopped,
            new_listeners,
        ));
        Ok(Self {
            shared,
            listener,
            listeners,
            stop,
        })
    }

    /// The URL the application's SDK is given (`http://127.0.0.1:8081/`).
    pub fn local_url(&self) -> &str {
        &self.shared.main_url
    }

    /// Makes each request's span (`sidecar.request`) a child of the application's trace, with
    /// `parent` reading the request's headers. Why a hook: the trace-context propagator
    /// belongs to the process's telemetry (the server's), not to this crate.
    pub fn with_span_parent(self, parent: SpanParent) -> Self {
        let _ = self.shared.span_parent.set(parent);
        self
    }

    /// The broker client (its [`tokenbroker_client::ClientStats`] tell how the broker fared).
    pub fn broker(&self) -> &TokenBrokerClient {
        &self.shared.broker
    }

    /// Serves on the current Tokio runtime until that runtime ends (tests, demos, benches);
    /// returns the application-facing URL.
    pub fn serve_in_background(self) -> String {
        let url = self.local_url().to_owned();
        tokio::spawn(self.serve(std::future::pending()));
        url
    }

    /// Serves until `shutdown` completes, then stops accepting and waits for the requests in
    /// flight.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let account = self.shared.account_endpoint.clone();
        let accept = tokio::spawn(Arc::clone(&self.shared).accept(self.listener, account));
        let shared = Arc::clone(&self.shared);
        let mut listeners = self.listeners;
        tokio::spawn(async move {
            while let Some((listener, endpoint)) = listeners.recv().await {
                tokio::spawn(Arc::clone(&shared).accept(listener, endpoint));
            }
        });
        shutdown.await;
        let _ = self.stop.send(true);
        let _ = accept.await;
        self.shared.drain().await;
    }
}
