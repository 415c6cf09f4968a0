//! What the integration tests share: a plain HTTP/1.1 call for the admin routes and raw Cosmos
//! requests, the emulator binary started with its ready line read, and the emulator key.
//!
//! Why a hand-written HTTP call: the tests need a status, headers and a body from a loopback
//! server, nothing an HTTP client crate would add to the build.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// The well-known key of Microsoft's Cosmos DB emulator; this emulator checks no key.
pub const EMULATOR_KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";

/// A response: status, headers (names lowercase), body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// One HTTP/1.1 request to `endpoint` (`http://127.0.0.1:PORT/`) for `path_and_query`, with
/// `headers` and `body`. Blocking: async tests call it through `spawn_blocking`.
pub fn call(
    method: &str,
    endpoint: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(authority).expect("connect to the emulator");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut request = format!(
        "{method} {path_and_query} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read the response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The emulator binary, started with `--exit-on-stdin-close`: it stops when this handle is
/// dropped (killed) or the test process ends in any way (its stdin pipe closes).
pub struct EmulatorProcess {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    /// The ready line, parsed.
    pub ready: serde_json::Value,
}

impl EmulatorProcess {
    /// Starts the binary with `args` and waits for its ready line.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cosmos-http-emulator"))
            .args(args)
            .arg("--exit-on-stdin-close")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cosmos-http-emulator");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("the emulator's stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the ready line");
        let ready = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the ready line is not JSON ({e}): {line:?}"));
        Self {
            child,
            stdin,
            ready,
        }
    }

    /// The regions' (name, endpoint) pairs from the ready line.
    pub fn regions(&self) -> Vec<(String, String)> {
        self.ready["regions"]
            .as_array()
            .expect("regions in the ready line")
            .iter()
            .map(|region| {
                (
                    region["name"].as_str().expect("a name").to_owned(),
                    region["endpoint"].as_str().expect("an endpoint").to_owned(),
                )
            })
            .collect()
    }

    /// The write region's endpoint.
    pub fn endpoint(&self) -> String {
        self.regions()[0].1.clone()
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
