//! Child processes: the built `tokenbroker` binary, on free loopback ports (the test kit's).

use std::process::Stdio;
use std::time::{Duration, Instant};

pub use test_kit::free_port;
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};

/// Starts `tokenbroker serve` with the given environment (and no other TOKENBROKER_* variable,
/// nor `SSL_CERT_FILE`/`SSL_CERT_DIR`).
pub fn spawn_broker_binary(env: &[(&str, String)], stderr: Stdio) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenbroker"));
    cmd.arg("serve");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TOKENBROKER_")) {
        cmd.env_remove(k);
    }
    // Nor a CA bundle from the test's environment: a test that wants one sets it.
    cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    // Each broker gets its own metrics port unless the test sets one.
    cmd.env(
        "TOKENBROKER_METRICS__LISTEN",
        format!("127.0.0.1:{}", free_port()),
    );
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    cmd.spawn().unwrap()
}

/// Connects once the process listens on `port`. Start-up has no event to await from outside
/// the process, so this retries the connection, for at most 20 seconds.
pub async fn connect_when_listening(port: u16) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .timeout(Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match endpoint.connect().await {
            Ok(channel) => return channel,
            Err(e) if Instant::now() > deadline => panic!("broker never listened on {port}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}
