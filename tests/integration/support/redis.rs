//! Real `redis-server` processes (the test kit's [`RedisServer`]: free loopback ports, killed,
//! paused and restarted empty), and the certificates its TLS variants serve.

pub use test_kit::RedisServer;

/// Writes test certificates into `dir`, made with rcgen (no openssl binary needed):
/// - `ca.pem`: a test CA;
/// - `server.pem`, `server.key`: a server certificate for `localhost` and `127.0.0.1`, signed by
///   that CA;
/// - `client.pem`, `client.key`: a client certificate signed by that CA (for Redis mutual TLS);
/// - `other-ca.pem`: an unrelated CA, which verifies neither of them.
pub fn write_test_certificates(dir: &std::path::Path) {
    use super::certs::TestCa;
    let ca = TestCa::new("tokenbroker test CA");
    ca.write(dir, "ca.pem");
    TestCa::new("an unrelated CA").write(dir, "other-ca.pem");
    ca.server().write(dir, "server");
    ca.client_dns("tokenbroker.test").write(dir, "client");
}
