//! Server TLS and mutual TLS, with the certificate files reloaded while serving.
//!
//! Why not tonic's `ServerTlsConfig`: it is built once, at start-up, and cert-manager (or any
//! rotation) replaces the files while the broker runs. Here the accept loop does the handshake
//! itself with `tokio-rustls`, taking the *current* rustls `ServerConfig` for each new
//! connection; a reloader polls the files and swaps in a new config when their contents change.
//! Connections already open keep their session, so a rotation fails no call. Polling (rather
//! than inotify through the `notify` crate) because Kubernetes updates a mounted Secret by
//! swapping a symlinked directory, which file watches miss or report inconsistently; reading
//! three small files every few seconds costs nothing.
//!
//! With `client_ca_file`, a client certificate signed by that CA is required (mutual TLS); the
//! verified chain reaches the service through tonic's `TlsConnectInfo`, where [`crate::auth`]
//! reads the identity.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// `server.tls.*`: TLS on the gRPC port. Off unless both files are set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain of the server (leaf first).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the server (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle: when set, clients must present a certificate signed by it (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for changes; default 10s.
    #[serde(with = "humantime_serde::option")]
    pub reload_interval: Option<Duration>,
}

/// The default of `server.tls.reload_interval`.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsSettings {
    /// True when TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }

    pub fn reload_interval(&self) -> Duration {
        self.reload_interval.unwrap_or(DEFAULT_RELOAD_INTERVAL)
    }

    /// Checks the settings and that the files load (at start-up, so a bad file stops the
    /// process with a message naming the key).
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled() {
            if self.client_ca_file.is_some() {
                return Err("server.tls.client_ca_file: needs server.tls.cert_file and \
                            server.tls.key_file (mutual TLS is TLS)"
                    .into());
            }
            return Ok(());
        }
        if self.cert_file.is_none() || self.key_file.is_none() {
            return Err(
                "server.tls.cert_file and server.tls.key_file: set both, or neither".into(),
            );
        }
        let interval = self.reload_interval();
        if interval < Duration::from_millis(10) || interval > Duration::from_secs(3600) {
            return Err("server.tls.reload_interval: must be between 10ms and 1h".into());
        }
        load(self).map(|_| ()).map_err(|e| e.to_string())
    }
}

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{key}: {path} holds no {what}")]
    Empty {
        key: &'static str,
        path: String,
        what: &'static str,
    },
    #[error("server.tls.client_ca_file: {0}")]
    ClientCa(String),
    #[error("server.tls.cert_file and server.tls.key_file: {0}")]
    Pair(rustls::Error),
}

fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        key,
        path: path.display().to_string(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            key,
            path: path.display().to_string(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// Builds the rustls configuration from the files (ALPN `h2`: gRPC is HTTP/2 only).
pub fn load(settings: &TlsSettings) -> Result<ServerConfig, TlsError> {
    let (Some(cert_file), Some(key_file)) = (&settings.cert_file, &settings.key_file) else {
        return Err(TlsError::Pair(rustls::Error::General(
            "both files are required".into(),
        )));
    };
    let chain = certificates("server.tls.cert_file", cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|source| TlsError::Read {
        key: "server.tls.key_file",
        path: key_file.display().to_string(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Pair)?;
    let builder = match &settings.client_ca_file {
        Some(ca_file) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates("server.tls.client_ca_file", ca_file)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(TlsError::Pair)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The current server configuration, replaced when the files change.
#[derive(Clone)]
pub struct TlsConfigs {
    current: Arc<RwLock<Arc<ServerConfig>>>,
    /// Counts successful reloads (tests and logs wait on it).
    reloads: watch::Sender<u64>,
}

impl TlsConfigs {
    pub fn new(initial: ServerConfig) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(initial))),
            reloads: watch::Sender::new(0),
        }
    }

    fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Number of reloads so far, pushed on change.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// Polls the files every `reload_interval` and swaps in a new configuration when their
    /// contents changed and load. A change that does not load is logged and the current
    /// configuration kept (a half-written rotation is retried at the next poll).
    pub async fn watch(self, settings: TlsSettings) {
        let mut ticker = tokio::time::interval(settings.reload_interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = fingerprint(&settings);
        loop {
            ticker.tick().await;
            let now = fingerprint(&settings);
            if now == seen {
                continue;
            }
            match load(&settings) {
                Ok(config) => {
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
                    seen = now;
                    self.reloads.send_modify(|n| *n += 1);
                    tracing::info!("TLS certificate files changed: reloaded");
                }
                Err(error) => {
                    tracing::warn!(%error, "TLS certificate files changed but do not load: keeping the current ones");
                }
            }
        }
    }
}

/// The files' contents, to notice a change (a rotation may keep sizes and times).
fn fingerprint(settings: &TlsSettings) -> Vec<Option<Vec<u8>>> {
    [
        &settings.cert_file,
        &settings.key_file,
        &settings.client_ca_file,
    ]
    .iter()
    .map(|path| path.as_ref().and_then(|p| std::fs::read(p).ok()))
    .collect()
}

/// Accepts TCP connections and completes their TLS handshakes concurrently, with the current
/// configuration; a handshake that fails or times out is logged at debug and dropped (a
/// plaintext client, a client without the required certificate).
pub fn incoming(
    listener: TcpListener,
    configs: TlsConfigs,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (ready, stream) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            };
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
            if ready.is_closed() {
                return;
            }
            let acceptor = TlsAcceptor::from(configs.current());
            let handed = ready.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = handed.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(stream)
}
