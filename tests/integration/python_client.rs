//! The Python client example (`examples/python`), generated from the proto at run time by
//! grpcio-tools, run against a real broker; what it printed is checked against what the broker
//! stores. Python with grpcio and grpcio-tools is required (`scripts/install-test-deps`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use tokenbroker_proto::v1::GetTokenRequest;
use tokio::process::Command;

use crate::support::process::free_port;
use crate::support::{TestBroker, settings};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The interpreter to run the example with: `$TOKENBROKER_PYTHON` if set, otherwise the first of
/// `python3` and `/usr/bin/python3` (Debian's packages install grpcio for the latter, which a
/// `python3` earlier on PATH may not see) that imports grpc and grpc_tools.
async fn python_with_grpc() -> String {
    let candidates: Vec<String> = match std::env::var("TOKENBROKER_PYTHON") {
        Ok(p) if !p.is_empty() => vec![p],
        _ => vec!["python3".into(), "/usr/bin/python3".into()],
    };
    let mut tried = Vec::new();
    for python in &candidates {
        let probe = Command::new(python)
            .args(["-c", "import grpc, grpc_tools"])
            .output()
            .await;
        match probe {
            Ok(o) if o.status.success() => return python.clone(),
            Ok(o) => tried.push(format!(
                "{python}: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
            Err(e) => tried.push(format!("{python}: {e}")),
        }
    }
    panic!(
        "no Python with grpcio and grpcio-tools: run scripts/install-test-deps (Debian: \
         python3-grpcio python3-grpc-tools), or set TOKENBROKER_PYTHON to an interpreter that \
         has them. Tried: {}",
        tried.join("; ")
    );
}

async fn run_example(python: &str, broker: &str, extra: &[&str]) -> Output {
    let script = workspace_root().join("examples/python/example.py");
    let run = Command::new(python)
        .arg(&script)
        .args(["--broker", broker])
        .args(extra)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("TOKENBROKER_PROTO_DIR")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("example.py did not finish within 60 s")
        .expect("could not start example.py")
}

/// The `name: value` lines the example prints last.
fn printed_values(stdout: &str) -> HashMap<&str, &str> {
    stdout
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| !k.contains(' '))
        .collect()
}

#[tokio::test]
async fn python_example_round_trips_through_a_real_broker() {
    let python = python_with_grpc().await;
    let broker = TestBroker::start(settings()).await;

    let out = run_example(&python, &broker.addr.to_string(), &[]).await;
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "example.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    // The dead-broker checks ran: refused and silent targets, each failing into None.
    for name in ["refused", "silent"] {
        assert!(
            stdout.contains(&format!("ok   {name} broker: token_for_read: None")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("ok   {name} broker: record_write: None")),
            "{stdout}"
        );
    }

    // What the Python client says is stored is what the broker holds, asked from Rust.
    let v = printed_values(&stdout);
    let (scope, key, stored) = (v["scope"], v["key"], v["stored_token"]);
    assert_eq!(stored, "0:2#5#1=1,3:1#100#1=30");
    let mut client = broker.client().await;
    let held = client
        .get_token(GetTokenRequest {
            scope: scope.into(),
            key: key.into(),
            partition_key_range_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(held.found && !held.degraded, "{held:?}");
    assert_eq!(held.session_token, stored);

    // The token recorded by the never-fail helper reached the broker too.
    let helper = client
        .get_token(GetTokenRequest {
            scope: scope.into(),
            key: v["helper_key"].into(),
            partition_key_range_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(helper.found, "{helper:?}");
    assert_eq!(helper.session_token, v["helper_token"]);
    assert_eq!(helper.session_token, "0:1#7#1=7");

    // The fallback contract: the example's unservable token was discarded from the broker.
    assert!(
        stdout.contains("ok   read_with_fallback: one read more"),
        "{stdout}"
    );
    let discarded = client
        .get_token(GetTokenRequest {
            scope: scope.into(),
            key: v["fallback_key"].into(),
            partition_key_range_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!discarded.found, "{discarded:?}");
    broker.stop().await;
}

#[tokio::test]
async fn python_example_exits_non_zero_without_a_broker() {
    let python = python_with_grpc().await;
    let dead = format!("127.0.0.1:{}", free_port());
    let out = run_example(&python, &dead, &["--timeout", "1"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("FAIL: broker call failed: UNAVAILABLE"),
        "{stderr}"
    );
}

/// The example over TLS with a bearer token, against a broker whose policy allows only that
/// token on the example's scope.
#[tokio::test]
async fn python_example_talks_tls_with_a_bearer_token() {
    use sha2::{Digest, Sha256};

    let python = python_with_grpc().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::support::certs::TestCa::new("python test CA");
    let (cert, key) = ca.server().write(dir.path(), "server");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let policy = dir.path().join("policy.toml");
    let hash: String = Sha256::digest(b"python-secret")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        &policy,
        format!(
            "[[allow]]\nbearer_token_sha256 = \"{hash}\"\nscopes = [\"acct/db/orders\"]\naccess = [\"read\", \"write\"]\n"
        ),
    )
    .unwrap();
    let mut s = settings();
    s.server.tls.cert_file = Some(cert);
    s.server.tls.key_file = Some(key);
    s.auth.policy_file = Some(policy);
    let broker = TestBroker::start(s).await;
    let target = broker.addr.to_string();
    let ca_arg = ca_file.display().to_string();
    let tls = ["--ca", ca_arg.as_str(), "--tls-name", "localhost"];

    let mut with_token = tls.to_vec();
    with_token.extend(["--token", "python-secret"]);
    let out = run_example(&python, &target, &with_token).await;
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("tls True, token True"), "{stdout}");
    assert!(stdout.contains("all checks passed"), "{stdout}");

    // The same without the token: the broker refuses the first call.
    let out = run_example(&python, &target, &tls).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("UNAUTHENTICATED"), "{stderr}");
    broker.stop().await;
}

/// A Python client with a static list of three brokers (`ipv4:a,b,c`, round_robin; the
/// client sets the `:authority` the list cannot be) through a rolling restart of the three:
/// each in turn gets SIGTERM, drains, exits and starts again on its port. No call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_address_python_client_rides_a_rolling_restart_with_no_failed_call() {
    use std::process::Stdio;

    use tokio::io::{AsyncBufReadExt, BufReader};

    use crate::support::process::{connect_when_listening, spawn_broker_binary};

    let python = python_with_grpc().await;
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let metrics: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let metrics_of = |port: u16| metrics[ports.iter().position(|p| *p == port).unwrap()];
    let env = |port: u16| {
        vec![
            ("TOKENBROKER_LISTEN", format!("127.0.0.1:{port}")),
            (
                "TOKENBROKER_METRICS__LISTEN",
                format!("127.0.0.1:{}", metrics_of(port)),
            ),
            ("TOKENBROKER_SHUTDOWN__READINESS_DELAY", "300ms".to_string()),
            ("TOKENBROKER_SHUTDOWN__DRAIN_TIMEOUT", "5s".to_string()),
        ]
    };
    let start = |port: u16| spawn_broker_binary(&env(port), Stdio::null());
    let mut brokers: Vec<_> = ports.iter().map(|p| start(*p)).collect();
    for port in &ports {
        connect_when_listening(*port).await;
    }
    let target = format!(
        "ipv4:{}",
        ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut load = Command::new(&python)
        .arg(workspace_root().join("examples/python/load.py"))
        .args(["--target", &target])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(load.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    // Wait until calls flow (the first progress line), then restart each broker in turn.
    let mut progress = async |printed: &mut Vec<String>| {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("load.py printed nothing for 30 s")
                .unwrap()
                .expect("load.py ended early");
            let done = line.starts_with("progress");
            printed.push(line);
            if done {
                return;
            }
        }
    };
    progress(&mut printed).await;
    for (i, port) in ports.iter().enumerate() {
        let pid = brokers[i].id().unwrap();
        let term = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let exited = tokio::time::timeout(Duration::from_secs(20), brokers[i].wait())
            .await
            .expect("the broker did not exit after SIGTERM")
            .unwrap();
        assert!(exited.success(), "broker {i} exited with {exited}");
        brokers[i] = start(*port);
        connect_when_listening(*port).await;
        // As a rolling update waits for the new pod before the next: the client reconnects
        // (after its own backoff) and the restarted broker serves calls again.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while served_ok(metrics_of(*port)).await == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the client never came back to broker {i}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        progress(&mut printed).await;
    }
    drop(load.stdin.take());
    while let Some(line) = lines.next_line().await.unwrap() {
        printed.push(line);
    }
    let status = load.wait().await.unwrap();
    let output = printed.join("\n");
    assert!(status.success(), "{output}");
    let calls: u64 = output
        .lines()
        .find_map(|l| l.strip_prefix("calls: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{output}"));
    assert!(calls >= 700, "{output}");
    assert!(output.contains("failures: 0"), "{output}");
}

/// Calls a broker process answered OK, from its `/metrics` (0 while it does not answer).
async fn served_ok(metrics_port: u16) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", metrics_port)).await else {
        return 0;
    };
    let mut body = String::new();
    if s.write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
        .await
        .is_err()
        || s.read_to_string(&mut body).await.is_err()
    {
        return 0;
    }
    body.lines()
        .filter(|l| {
            l.starts_with("tokenbroker_rpc_duration_seconds_count") && l.contains("code=\"OK\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
