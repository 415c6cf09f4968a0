//! Real `redis-server` processes on free loopback ports, which tests kill, pause and restart.
//! They keep nothing on disk, so a restart comes back empty, as a crashed cache would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::free_port;

pub struct RedisServer {
    port: u16,
    args: Vec<String>,
    tls: bool,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra arguments (for example `--requirepass`).
    pub fn start_with(args: &[&str]) -> Self {
        let mut server = Self {
            port: free_port(),
            args: args.iter().map(|a| a.to_string()).collect(),
            tls: false,
            child: None,
        };
        server.spawn();
        server
    }

    /// Starts with TLS only (the plain port disabled), with the certificate and key in `dir`
    /// (`server.pem`, `server.key`), as written by [`write_test_certificates`].
    pub fn start_tls(dir: &std::path::Path) -> Self {
        Self::start_tls_with(dir, false)
    }

    /// [`Self::start_tls`] that also requires a client certificate signed by `ca.pem`
    /// (`--tls-auth-clients yes`: Redis mutual TLS).
    pub fn start_mtls(dir: &std::path::Path) -> Self {
        Self::start_tls_with(dir, true)
    }

    fn start_tls_with(dir: &std::path::Path, client_certificates: bool) -> Self {
        let port = free_port();
        let file = |name: &str| dir.join(name).display().to_string();
        let mut server = Self {
            port,
            args: vec![
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                file("server.pem"),
                "--tls-key-file".into(),
                file("server.key"),
                "--tls-ca-cert-file".into(),
                file("ca.pem"),
                "--tls-auth-clients".into(),
                if client_certificates { "yes" } else { "no" }.into(),
            ],
            tls: true,
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let plain_port = if self.tls {
            "0".to_string()
        } else {
            self.port.to_string()
        };
        let child = Command::new("redis-server")
            .args(["--port", &plain_port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args([
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                "--dir",
                "/tmp",
            ])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/install-test-deps)");
        self.child = Some(child);
        self.wait_listening();
    }

    /// Waits until the server accepts connections (a process start has no event to await).
    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                if self.tls {
                    return;
                }
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| n > 0) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain client for looking at what the broker stored.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    pub fn connection(&self) -> redis::Connection {
        self.client().get_connection().unwrap()
    }

    /// SIGKILL: the data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGSTOP: connections stay open but nothing answers (a hung server).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.child.as_ref().map(|c| {
                Command::new("kill")
                    .args(["-CONT", &c.id().to_string()])
                    .status()
            });
        }
        self.kill();
    }
}

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
