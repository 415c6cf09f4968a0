//! Real `redis-server` processes on free loopback ports.
//!
//! Why real processes: the fault tests kill, pause and restart Redis under a running broker, and
//! the bench measures Redis itself; a fake would show neither. They keep nothing on disk, so a
//! restart comes back empty, as a crashed cache would.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long a starting server has to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two attempts to reach a starting server: a process start has no event to await from
/// outside the process, so the port is tried again until it answers.
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// A `redis-server` on a free loopback port, started with nothing saved to disk and killed when
/// dropped.
pub struct RedisServer {
    port: u16,
    /// A configuration file, passed first (a sentinel must have one: it rewrites it).
    config_file: Option<PathBuf>,
    args: Vec<String>,
    tls: bool,
    /// The process group the process joins (a topology's, see `process_group`), rather than
    /// this process's.
    group: Option<i32>,
    child: Option<Child>,
    /// Stopped by [`Self::pause`] and not resumed since (atomic: `pause` takes `&self`).
    paused: AtomicBool,
}

impl RedisServer {
    /// Starts a plain server and returns once it answers PING.
    ///
    /// # Panics
    ///
    /// If it does not start (see [`Self::try_start_with`]).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra arguments (for example `--requirepass`, `--user`) and returns once it
    /// answers PING.
    ///
    /// # Panics
    ///
    /// If it does not start (see [`Self::try_start_with`]).
    pub fn start_with(args: &[&str]) -> Self {
        Self::try_start_with(args).unwrap_or_else(|error| panic!("{error}"))
    }

    /// [`Self::start_with`] that returns the error: `redis-server` cannot be run (not
    /// installed: `scripts/install-test-deps` installs it), exits at start (a bad argument, the
    /// port taken meanwhile), or does not answer PING within 10 seconds.
    pub fn try_start_with(args: &[&str]) -> io::Result<Self> {
        let mut server = Self {
            port: free_port(),
            config_file: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            tls: false,
            group: None,
            child: None,
            paused: AtomicBool::new(false),
        };
        server.spawn()?;
        Ok(server)
    }

    /// A server of a topology: on `port`, with `config_file` (if any) first and `args` after the
    /// kit's own (so they override them), in the process group `group`. Returns once it answers
    /// PING.
    pub(crate) fn start_node(
        port: u16,
        config_file: Option<PathBuf>,
        args: Vec<String>,
        group: i32,
    ) -> io::Result<Self> {
        let mut server = Self::launch_node(port, config_file, args, group)?;
        server.wait_answering()?;
        Ok(server)
    }

    /// [`Self::start_node`] that returns as soon as the process runs: several servers that
    /// must find each other at start (sentinels) are launched together, then waited for with
    /// [`Self::wait_ready`].
    pub(crate) fn launch_node(
        port: u16,
        config_file: Option<PathBuf>,
        args: Vec<String>,
        group: i32,
    ) -> io::Result<Self> {
        let mut server = Self {
            port,
            config_file,
            args,
            tls: false,
            group: Some(group),
            child: None,
            paused: AtomicBool::new(false),
        };
        server.launch()?;
        Ok(server)
    }

    /// Waits until a launched server answers, or fails as soon as it exits.
    pub(crate) fn wait_ready(&mut self) -> io::Result<()> {
        self.wait_answering()
    }

    /// Starts with TLS only (the plain port disabled), with the certificate and key in `dir`
    /// (`server.pem`, `server.key`, signed by `ca.pem`); returns once the TLS port accepts
    /// connections.
    ///
    /// # Panics
    ///
    /// If it does not start.
    pub fn start_tls(dir: &Path) -> Self {
        Self::start_tls_with(dir, false)
    }

    /// [`Self::start_tls`] that also requires a client certificate signed by `ca.pem`
    /// (`--tls-auth-clients yes`: Redis mutual TLS).
    ///
    /// # Panics
    ///
    /// If it does not start.
    pub fn start_mtls(dir: &Path) -> Self {
        Self::start_tls_with(dir, true)
    }

    fn start_tls_with(dir: &Path, client_certificates: bool) -> Self {
        let port = free_port();
        let file = |name: &str| dir.join(name).display().to_string();
        let mut server = Self {
            port,
            config_file: None,
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
            group: None,
            child: None,
            paused: AtomicBool::new(false),
        };
        server.spawn().unwrap_or_else(|error| panic!("{error}"));
        server
    }

    fn spawn(&mut self) -> io::Result<()> {
        self.launch()?;
        self.wait_answering()
    }

    /// Starts the process, without waiting for it to answer.
    fn launch(&mut self) -> io::Result<()> {
        let plain_port = if self.tls { 0 } else { self.port };
        let mut command = Command::new("redis-server");
        if let Some(config_file) = &self.config_file {
            // redis-server reads a configuration file only as its first argument.
            command.arg(config_file);
        }
        if let Some(group) = self.group {
            command.process_group(group);
        }
        let child = command
            .args(["--port", &plain_port.to_string(), "--bind", "127.0.0.1"])
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
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!(
                        "cannot run redis-server (scripts/install-test-deps installs it): {error}"
                    ),
                )
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the server answers, or fails as soon as it exits.
    fn wait_answering(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.answers() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "redis-server on port {} exited at start ({status}): a bad argument, or the \
                     port taken meanwhile",
                    self.port
                )));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "redis-server on port {} did not answer within {START_TIMEOUT:?}",
                        self.port
                    ),
                ));
            }
            std::thread::sleep(RETRY_EVERY);
        }
    }

    /// A plain server answers PING (any reply counts: with `--requirepass` it is `-NOAUTH`,
    /// which still shows it serves); a TLS-only one accepts the connection, which is all that
    /// can be seen without a TLS client.
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 64];
        stream.write_all(b"PING\r\n").is_ok() && stream.read(&mut reply).is_ok_and(|n| n > 0)
    }

    /// The port it listens on (the TLS port for a TLS server); the same after a restart.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain client, for looking at what the broker stored.
    ///
    /// # Panics
    ///
    /// Never in practice: the URL is always valid.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a redis:// URL on 127.0.0.1 is valid")
    }

    /// A connection of [`Self::client`].
    ///
    /// # Panics
    ///
    /// If the server cannot be reached (killed, paused, or TLS-only).
    pub fn connection(&self) -> redis::Connection {
        self.client()
            .get_connection()
            .expect("cannot connect to the test redis-server")
    }

    /// Whether the kit's process runs (it was started and not killed since).
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether it runs and answers: running and not paused.
    pub(crate) fn is_serving(&self) -> bool {
        self.is_running() && !self.paused.load(Ordering::Relaxed)
    }

    /// SIGKILL, and waits for the process to end: its data is gone and the port is free.
    pub fn kill(&mut self) {
        self.paused.store(false, Ordering::Relaxed);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it if it runs, then starts it again on the same port with the same arguments,
    /// empty; returns once it answers.
    ///
    /// # Panics
    ///
    /// If it does not start again.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().unwrap_or_else(|error| panic!("{error}"));
    }

    /// SIGSTOP: connections stay open but nothing answers (a hung server) until
    /// [`Self::resume`]. A paused server can still be killed, restarted or dropped.
    ///
    /// # Panics
    ///
    /// If it is not running, or the signal cannot be sent.
    pub fn pause(&self) {
        self.signal("-STOP");
        self.paused.store(true, Ordering::Relaxed);
    }

    /// SIGCONT: a paused server answers again, with everything it held.
    ///
    /// # Panics
    ///
    /// If it is not running, or the signal cannot be sent.
    pub fn resume(&self) {
        self.signal("-CONT");
        self.paused.store(false, Ordering::Relaxed);
    }

    /// Sends `signal` with kill(1): the standard library sends only SIGKILL, and this workspace
    /// forbids the unsafe code a direct kill(2) would take.
    fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .expect("the test redis-server is not running")
            .id()
            .to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("cannot run kill(1)");
        assert!(status.success(), "kill {signal} {pid} failed: {status}");
    }
}

impl Drop for RedisServer {
    /// Kills the server (SIGKILL ends a paused process too).
    fn drop(&mut self) {
        self.kill();
    }
}
