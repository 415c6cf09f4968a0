//! HTTPS on both sides of the sidecar, with certificates generated in the test: an upstream
//! verified with `sidecar.upstream_ca` (and refused without it), and the application-facing
//! listeners serving HTTPS with `sidecar.tls_cert`, region listeners included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cosmos_http_emulator::{Emulator, Options};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use test_kit::{KillableBroker, memory_store};
use tokenbroker_sidecar::{Sidecar, SidecarMetrics, SidecarSettings};

/// A CA and a server certificate for localhost and 127.0.0.1, written to `dir`:
/// (ca.pem, server.pem, server.key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, issuer.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An HTTPS server on loopback answering every request 200 with the path as its body.
async fn https_echo(cert: &Path, key: &Path) -> u16 {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service =
                    service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                        let path = request.uri().path().to_owned();
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(path))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

/// GET `url` with a client that trusts `ca` (and nothing else); (status, body).
async fn get(url: &str, ca: &Path) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(
            http::Request::get(url)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
    )
    .await
    .expect("in time")
    .expect("an answer");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn sidecar(settings: SidecarSettings) -> String {
    let sidecar = Sidecar::bind(&settings, SidecarMetrics::noop())
        .await
        .expect("the sidecar");
    sidecar.serve_in_background()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_verified_with_the_configured_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let port = https_echo(&cert, &key).await;
    let broker = KillableBroker::start(memory_store());
    let base = SidecarSettings {
        listen: "127.0.0.1:0".into(),
        upstream: format!("https://localhost:{port}/"),
        brokers: broker.url(),
        ..SidecarSettings::default()
    };
    let trusted = sidecar(SidecarSettings {
        upstream_ca: Some(ca.clone()),
        ..base.clone()
    })
    .await;
    let (status, body) = get(&format!("{trusted}dbs/shop/colls/orders/pkranges"), &ca).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "/dbs/shop/colls/orders/pkranges")
    );

    let untrusted = sidecar(base).await;
    let (status, body) = get(&format!("{untrusted}dbs/shop/colls/orders/pkranges"), &ca).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains(&format!("https://localhost:{port}/")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_facing_listeners_serve_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let emulator = Emulator::start(Options::default()).await.unwrap();
    let broker = KillableBroker::start(memory_store());
    let url = sidecar(SidecarSettings {
        listen: "127.0.0.1:0".into(),
        upstream: emulator.endpoint().into(),
        brokers: broker.url(),
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..SidecarSettings::default()
    })
    .await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let (status, body) = get(&url, &ca).await;
    assert_eq!(status, 200, "{body}");
    let account: serde_json::Value = serde_json::from_str(&body).unwrap();
    let west = account["readableLocations"][1]["databaseAccountEndpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        west.starts_with("https://127.0.0.1:") && west != url,
        "{west}"
    );
    let (status, body) = get(&format!("{west}dbs/shop/colls/orders"), &ca).await;
    assert_eq!(status, 200, "the West listener serves HTTPS too: {body}");
    emulator.shutdown().await;
}
