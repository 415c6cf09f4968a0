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
