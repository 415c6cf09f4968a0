//! The Python (`azure-cosmos` 4.17.1) and JavaScript (`@azure/cosmos` 4.9.3) SDKs against the
//! emulator binary, through the scripts in `polyglot/`: a write read back, the cross-pod
//! baseline (stale reads without tokenbroker, no failures), and a read on another client while
//! replication is paused.
//!
//! Why: the sidecar's proof in these languages builds on exactly these scripts and this
//! baseline; here they run against the emulator alone. The SDKs are installed by
//! `scripts/install-test-deps`; a missing SDK fails the test, naming that script.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use common::{EmulatorProcess, call};
use serde_json::{Value, json};

const PYTHON_SDK: &str = "4.17.1";
const JS_SDK: &str = "4.9.3";
const INSTALL: &str = "run scripts/install-test-deps (or scripts/install-polyglot-deps)";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One emulator for the whole test binary; it ends with the test process (its stdin closes).
fn emulator() -> &'static EmulatorProcess {
    static EMULATOR: OnceLock<EmulatorProcess> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        EmulatorProcess::start(&["--partitions", "4", "--replication-delay", "200ms"])
    })
}

/// Tests that pause replication take turns: one resuming would spoil the other's pause.
static PAUSE: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, Debug)]
enum Sdk {
    Python,
    JavaScript,
}

impl Sdk {
    /// The command running `script` (without extension) of this SDK, after checking the SDK
    /// is installed at its pinned version.
    fn command(self, script: &str) -> Command {
        match self {
            Sdk::Python => {
                let python = repo().join("target/polyglot/venv/bin/python");
                let version = Command::new(&python)
                    .args(["-c", "import azure.cosmos; print(azure.cosmos.__version__)"])
                    .output();
                let version = version
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
                assert_eq!(
                    version.as_deref(),
                    Some(PYTHON_SDK),
                    "the Python SDK azure-cosmos {PYTHON_SDK} is not installed in {}: {INSTALL}",
                    python.display()
                );
                let mut command = Command::new(python);
                command
                    .arg(format!("{script}.py"))
                    .current_dir(repo().join("polyglot/python"));
                command
            }
            Sdk::JavaScript => {
                let dir = repo().join("polyglot/js");
                let node = Command::new("node").arg("--version").output();
                let node = node
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    .unwrap_or_default();
                let major: u32 = node
                    .trim_start_matches('v')
                    .split('.')
                    .next()
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(0);
                assert!(
                    major >= 20,
                    "Node.js 20 or later is needed, found {node:?}: {INSTALL}"
                );
                let manifest = dir.join("node_modules/@azure/cosmos/package.json");
                let version = std::fs::read_to_string(&manifest)
                    .ok()
                    .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                    .and_then(|v| v["version"].as_str().map(str::to_owned));
                assert_eq!(
                    version.as_deref(),
                    Some(JS_SDK),
                    "the JavaScript SDK @azure/cosmos {JS_SDK} is not installed in {}: {INSTALL}",
                    dir.display()
                );
                let mut command = Command::new("node");
                command.arg(format!("{script}.js")).current_dir(dir);
                command
            }
        }
    }

    /// Runs `script` with `config` and returns the JSON object it printed.
    fn run(self, script: &str, config: &Value) -> Value {
        let output = self
            .command(script)
            .arg(config.to_string())
            .output()
            .unwrap_or_else(|e| panic!("{self:?} {script}: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{self:?} {script} failed ({}):\n{stderr}\n{stdout}",
            output.status
        );
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{self:?} {script} printed no JSON ({e}): {stdout}{stderr}"))
    }
}

/// `range:version#globalLSN`, the form the emulator's tokens are normalised to.
fn is_normalised(token: &Value) -> bool {
    let Some((range, rest)) = token.as_str().and_then(|t| t.split_once(':')) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('#').collect();
    range.parse::<u32>().is_ok()
        && parts.len() == 2
        && parts.iter().all(|p| p.parse::<i64>().is_ok())
}

/// The logged requests for item `id`: (region, method, status, substatus, session token sent).
fn item_requests(id: &str) -> Vec<(String, String, u64, u64, Value)> {
    let log = call(
        "GET",
        &emulator().endpoint(),
        "/_emulator/requests/log",
        &[],
        "",
    )
    .json();
    let suffix = format!("/docs/{id}");
    log["requests"]
        .as_array()
        .expect("the request log")
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.trim_end_matches('/').ends_with(&suffix))
        })
        .map(|r| {
            (
                r["region"].as_str().unwrap_or_default().to_owned(),
                r["method"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_u64().unwrap_or_default(),
                r["substatus"].as_u64().unwrap_or_default(),
                r["request_session_token"].clone(),
            )
        })
        .collect()
}

fn roundtrip(sdk: Sdk, id: &str, preferred_region: Option<&str>) {
    let emulator = emulator();
    let out = sdk.run(
        "roundtrip",
        &json!({
            "endpoint": emulator.endpoint(), "database": "shop", "container": "orders",
            "id": id, "preferred_region": preferred_region,
        }),
    );
    assert_eq!(out["written"]["id"], id, "{out}");
    assert_eq!(out["read"], out["written"], "the write is read back: {out}");
    assert!(is_normalised(&out["write_session_token"]), "{out}");
    assert!(is_normalised(&out["read_session_token"]), "{out}");
    // The SDK kept the write's token (it needs the owner headers for that) and sent it.
    let reads: Vec<_> = item_requests(id)
        .into_iter()
        .filter(|(_, method, ..)| method == "GET")
        .collect();
    assert!(!reads.is_empty(), "no read of {id} reached the emulator");
    assert!(
        reads.iter().all(|(.., token)| token.is_string()),
        "every read of {id} carried a session token: {reads:?}"
    );
}

#[test]
fn python_writes_an_item_and_reads_it_back_in_west_through_its_session_token() {
    roundtrip(Sdk::Python, "py-roundtrip", Some("West US"));
}

#[test]
fn javascript_writes_an_item_and_reads_it_back_with_its_session_token() {
    // JavaScript answers West's 404/1002 by retrying West without the token (a stale 404), so
    // its own read-back goes to the write region; the token is still sent.
    roundtrip(Sdk::JavaScript, "js-roundtrip", None);
}

fn baseline(sdk: Sdk, run: &str) {
    let endpoint = emulator().endpoint();
    let pairs = 60;
    let out = sdk.run(
        "pods",
        &json!({
            "endpoints": [endpoint, endpoint, endpoint], "pairs": pairs,
            "database": "shop", "container": "orders", "preferred_region": "West US", "run": run,
        }),
    );
    assert_eq!(out["failed"], 0, "no request fails: {out}");
    assert_eq!(out["pairs"], pairs, "{out}");
    assert_eq!(
        out["fresh"].as_u64().unwrap() + out["stale"].as_u64().unwrap(),
        pairs,
        "{out}"
    );
    assert!(
        out["stale"].as_u64().unwrap() > 0,
        "the baseline has stale reads: {out}"
    );
}

#[test]
fn python_pods_read_each_others_writes_stale_without_tokenbroker() {
    baseline(Sdk::Python, "py-baseline");
}

#[test]
fn javascript_pods_read_each_others_writes_stale_without_tokenbroker() {
    baseline(Sdk::JavaScript, "js-baseline");
}

/// With replication into West paused, client B (which never saw client A's write) reads the new
/// item in West: 404. Deterministic, whatever the timing.
fn paused(sdk: Sdk, run: &str) {
    let _turn = PAUSE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let endpoint = emulator().endpoint();
    let paused = call("POST", &endpoint, "/_emulator/replication/pause", &[], "");
    assert_eq!(paused.json()["paused"], json!(["West US"]));
    let out = sdk.run(
        "pods",
        &json!({
            "endpoints": [endpoint, endpoint], "pairs": 1, "database": "shop",
            "container": "orders", "preferred_region": "West US", "run": run,
        }),
    );
    let resumed = call("POST", &endpoint, "/_emulator/replication/resume", &[], "");
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    assert_eq!(
        (out["stale"].as_u64(), out["failed"].as_u64()),
        (Some(1), Some(0)),
        "{out}"
    );
    let requests = item_requests(&format!("{run}-0"));
    let reads: Vec<_> = requests.iter().filter(|r| r.1 == "GET").collect();
    assert!(
        !reads.is_empty()
            && reads.iter().all(|(region, _, status, sub, token)| (
                region.as_str(),
                *status,
                *sub,
                token
            ) == (
                "West US",
                404,
                0,
                &Value::Null
            )),
        "client B read in West without a token, and West had not got the item: {requests:?}"
    );
}

#[test]
fn python_client_b_reads_client_a_write_stale_in_west_while_replication_is_paused() {
    paused(Sdk::Python, "py-paused");
}

#[test]
fn javascript_client_b_reads_client_a_write_stale_in_west_while_replication_is_paused() {
    paused(Sdk::JavaScript, "js-paused");
}
