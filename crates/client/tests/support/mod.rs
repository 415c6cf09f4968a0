//! What the client tests share: the scope, deadlines, tokens, and endpoints that are dead or
//! hung. The live brokers are the test kit's (`test_kit::KillableBroker`), which a test can kill
//! outright.

// Each test binary uses part of the support code.
#![allow(dead_code)]

use std::time::Duration;

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

/// A URL where nothing listens (connections are refused).
pub fn dead_endpoint() -> String {
    format!("http://127.0.0.1:{}", test_kit::free_port())
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
