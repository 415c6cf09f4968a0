//! Real brokers for the client tests, each on its own Tokio runtime so that a test can kill one
//! outright (every socket closed at once), plus endpoints that are dead or hung.

// Each test binary uses part of the support code.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker::TokenStore;
use broker::storage::memory::MemoryStore;
use tokenbroker_server::config::Settings;
use tokenbroker_server::server;

pub const SCOPE: &str = "acct/db/items";
/// Generous: these tests run in debug builds on a shared machine; only the hung-endpoint test
/// relies on the deadline firing.
pub const TEST_DEADLINE: Duration = Duration::from_secs(5);

/// Fails the test instead of hanging if a call ignores its deadline.
pub async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("a client call outlived its deadline by far")
}

/// A one-range token whose LSNs are `lsn`.
pub fn token(lsn: u64) -> String {
    format!("0:1#{lsn}#1={lsn}")
}

pub fn memory_store() -> Arc<dyn TokenStore> {
    Arc::new(MemoryStore::new(100_000))
}

/// A real tokenbroker server on a loopback port, serving `store`.
pub struct Broker {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Broker {
    pub fn start(store: Arc<dyn TokenStore>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut settings = Settings {
            listen: addr.to_string(),
            ..Settings::default()
        };
        settings.shutdown.readiness_delay = Duration::ZERO;
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            server::serve(settings, store, listener, std::future::pending())
                .await
                .unwrap();
        });
        Self {
            addr,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the server: its runtime stops and every connection is closed, like a crashed pod.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A URL where nothing listens (connections are refused).
pub fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A socket that accepts connections (the kernel completes the handshake) and never answers:
/// a hung broker. Keep it alive for as long as the endpoint should hang.
pub struct HungEndpoint {
    _listener: std::net::TcpListener,
    pub url: String,
}

impl HungEndpoint {
    pub fn new() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Self {
            _listener: listener,
            url,
        }
    }
}
