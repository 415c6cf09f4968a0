//! The connection to the Cosmos account: one keep-alive pool over HTTP/1.1, HTTPS with rustls.
//!
//! Why hyper-util's pooled client with hyper-rustls: the sidecar forwards every request of the
//! application, so connections must be reused (a TLS handshake per request would cost more than
//! the whole 300 µs budget), bodies must stream, and the TLS stack is the project's (rustls with
//! ring; certificates from the system's roots, which is what the SDKs trust, plus a CA the
//! operator names for emulators and intercepting proxies). HTTP/1.1 only: it is what the SDKs
//! speak to the gateway.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Errors of a body, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request or response body: streamed from the other side, or buffered.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;
/// The upstream client.
pub type Upstream = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// A body of bytes already in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body streamed from `incoming`.
pub fn stream(incoming: hyper::body::Incoming) -> Body {
    incoming.map_err(BoxError::from).boxed_unsync()
}

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The configured CA file holds no usable certificate.
    #[error("sidecar.upstream_ca: {0}")]
    Ca(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The client: the system's roots, plus the certificates of `extra_ca_pem` if given.
pub fn client(extra_ca_pem: Option<&[u8]>) -> Result<Upstream, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "a system root certificate could not be loaded");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(pem) = extra_ca_pem {
        let mut count = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| UpstreamError::Ca(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| UpstreamError::Ca(e.to_string()))?;
            count += 1;
        }
        if count == 0 {
            return Err(UpstreamError::Ca("no PEM certificate in the file".into()));
        }
    } else if added == 0 {
        tracing::warn!("no system root certificates: https upstreams will fail to verify");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Nagle off: a request's head and body are separate writes, and with Nagle on the body
    // waits for the ACK of the head (delayed by up to 40 ms on Linux): measured here, 200
    // write-then-read pairs through the sidecar took 12.7 s with it on.
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    // Without a bound, a region that does not answer SYNs holds a request for the OS's
    // minutes; the SDKs' own connect timeouts are of this order.
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}
