//! The `cosmos-http-emulator` binary as other languages' tests use it: its one JSON ready line,
//! the account behind it, and how it stops.
//!
//! Why: the Python, JavaScript and sidecar tests know the emulator only through this process
//! interface.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{EmulatorProcess, call};

/// Waits for the process to exit, for at most `limit`.
fn wait_exit(process: &mut EmulatorProcess, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = process.child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the emulator did not exit in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_ready_line_names_each_region_and_its_endpoint_and_sigterm_stops_it() {
    let mut emulator = EmulatorProcess::start(&["--regions", "3", "--replication-delay", "50ms"]);
    let regions = emulator.regions();
    let names: Vec<&str> = regions.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["East US", "West US", "North Europe"]);
    let keys: Vec<&String> = emulator.ready["regions"][0]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys.len(), 2, "name and endpoint only: {}", emulator.ready);
    for (_, endpoint) in &regions {
        let port = endpoint
            .strip_prefix("http://127.0.0.1:")
            .and_then(|rest| rest.strip_suffix('/'))
            .and_then(|port| port.parse::<u16>().ok());
        assert!(port.is_some_and(|p| p != 0), "{endpoint}");
    }

    // The account, asked of a read region, lists the endpoints of the ready line.
    let account = call("GET", &regions[1].1, "/", &[], "").json();
    let readable: Vec<(String, String)> = account["readableLocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_owned(),
                l["databaseAccountEndpoint"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(readable, regions);
    let container = call("GET", &regions[2].1, "/dbs/shop/colls/orders", &[], "");
    assert_eq!(
        container.status, 200,
        "the default database and container exist"
    );

    let pid = emulator.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = wait_exit(&mut emulator, Duration::from_secs(10));
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
}

#[test]
fn it_stops_when_its_stdin_closes_if_asked() {
    let mut emulator = EmulatorProcess::start(&["--database", "db1", "--container", "c1"]);
    let container = call("GET", &emulator.endpoint(), "/dbs/db1/colls/c1", &[], "");
    assert_eq!(container.status, 200, "{}", container.body);
    assert!(
        emulator.child.try_wait().unwrap().is_none(),
        "still serving"
    );
    drop(emulator.stdin.take());
    let status = wait_exit(&mut emulator, Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[test]
fn impossible_options_fail_with_the_reason() {
    let output = Command::new(env!("CARGO_BIN_EXE_cosmos-http-emulator"))
        .args(["--regions", "9"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no ready line");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("regions must be 1 to 8, not 9"), "{stderr}");
}
