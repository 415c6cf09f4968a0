//! The stale-read proof in other languages: pods on the Python (`azure-cosmos`) or JavaScript
//! (`@azure/cosmos`) SDK, each with its own tokenbroker sidecar, against the HTTP emulator.
//!
//! Why these parts: the application code is the SDK's own, unchanged but for the endpoint it is
//! given (`polyglot/{python,js}/pods.*`: pair `i` writes through pod `i % N` and reads right
//! after through pod `(i + 1) % N`); the account is the Rust SDK's in-memory emulator served
//! over HTTP (`cosmos-http-emulator`), two regions with delayed replication, pods reading in
//! West; each pod's sidecar is the real proxy (`tokenbroker_sidecar`), and they share one real
//! broker. Three phases, fresh pods and sidecars each: without the sidecars (the baseline),
//! through them, and through them with the broker killed half way (read from the script's
//! progress lines, not after a guessed delay).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cosmos_http_emulator::{Emulator, Options};
use serde::Serialize;
use serde_json::{Value, json};
use test_kit::{KillableBroker, memory_store};
use tokenbroker_sidecar::{Sidecar, SidecarMetrics, SidecarSettings};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::report::PhaseCounts;

/// The pinned SDK versions (polyglot/python/requirements.txt, polyglot/js/package.json).
pub const PYTHON_SDK: &str = "4.17.1";
/// The pinned JavaScript SDK version.
pub const JS_SDK: &str = "4.9.3";
const INSTALL: &str = "run scripts/install-test-deps (or scripts/install-polyglot-deps)";

/// Which SDK the pods run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sdk {
    /// `azure-cosmos` from PyPI.
    Python,
    /// `@azure/cosmos` from npm.
    JavaScript,
}

/// Why the proof could not run.
#[derive(Debug, thiserror::Error)]
pub enum PolyglotError {
    /// The SDK is not installed at its pinned version.
    #[error("{0}")]
    Missing(String),
    /// The emulator, a sidecar or the script could not start or answered nonsense.
    #[error("{0}")]
    Run(String),
}

fn run_error(e: impl std::fmt::Display) -> PolyglotError {
    PolyglotError::Run(e.to_string())
}

/// The repository's root (the demo runs from a checkout).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Sdk {
    /// The command that runs the pods script, after checking the SDK is installed.
    fn command(self) -> Result<Command, PolyglotError> {
        match self {
            Sdk::Python => {
                let python = repo().join("target/polyglot/venv/bin/python");
                let version = std::process::Command::new(&python)
                    .args(["-c", "import azure.cosmos; print(azure.cosmos.__version__)"])
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
                if version.as_deref() != Some(PYTHON_SDK) {
                    return Err(PolyglotError::Missing(format!(
                        "azure-cosmos {PYTHON_SDK} is not installed in {} (found {version:?}): {INSTALL}",
                        python.display()
                    )));
                }
                let mut command = Command::new(python);
                command
                    .arg("pods.py")
                    .current_dir(repo().join("polyglot/python"));
                Ok(command)
            }
            Sdk::JavaScript => {
                let dir = repo().join("polyglot/js");
                let manifest = dir.join("node_modules/@azure/cosmos/package.json");
                let version = std::fs::read_to_string(&manifest)
                    .ok()
                    .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                    .and_then(|v| v["version"].as_str().map(str::to_owned));
                if version.as_deref() != Some(JS_SDK) {
                    return Err(PolyglotError::Missing(format!(
                        "@azure/cosmos {JS_SDK} is not installed in {} (found {version:?}): {INSTALL}",
                        dir.display()
                    )));
                }
                let mut command = Command::new("node");
                command.arg("pods.js").current_dir(dir);
                Ok(command)
            }
        }
    }
}

/// The proof's shape.
#[derive(Debug, Clone)]
pub struct PolyglotConfig {
    /// Write-then-read pairs per phase.
    pub pairs: usize,
    /// Pods, each its own SDK client (and, through the broker, its own sidecar).
    pub pods: usize,
    /// Delay before a write in East US is visible in West US.
    pub replication_delay: Duration,
    /// Physical partitions of the container.
    pub partitions: u32,
    /// The sidecars' `sidecar.broker_deadline`. Longer than the 100 ms default: on a loaded
    /// machine (CI) a broker call that times out is a read without the broker's token, which
    /// may be stale, and the proof is about freshness, not the deadline.
    pub broker_deadline: Duration,
}

impl Default for PolyglotConfig {
    fn default() -> Self {
        Self {
            pairs: 1_000,
            pods: 3,
            replication_delay: Duration::from_millis(200),
            partitions: 4,
            broker_deadline: Duration::from_secs(1),
        }
    }
}

/// The broker killed half way through a phase.
#[derive(Debug, Clone, Serialize)]
pub struct KilledRun {
    /// Pairs done when the broker was killed.
    pub killed_after_pairs: usize,
    /// The pairs before the kill.
    pub before_kill: PhaseCounts,
    /// The pairs after it.
    pub after_kill: PhaseCounts,
}

/// One SDK's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PolyglotReport {
    /// The SDK.
    pub sdk: Sdk,
    /// Pods per phase.
    pub pods: usize,
    /// Straight to the account: the baseline.
    pub without_sidecar: PhaseCounts,
    /// Through each pod's sidecar.
    pub with_sidecar: PhaseCounts,
    /// Through the sidecars, the broker killed half way.
    pub broker_killed: KilledRun,
}

/// What a pods script printed last.
struct ScriptResult {
    outcomes: String,
    errors: Vec<String>,
}

fn counts(outcomes: &str, errors: &[String]) -> PhaseCounts {
    PhaseCounts {
        pairs: outcomes.len(),
        stale: outcomes.matches('s').count(),
        failed: outcomes.matches('x').count(),
        first_failure: errors.first().cloned(),
    }
}

/// Runs the pods script on `endpoints`; `at_half` runs once half of the pairs are done.
async fn pods(
    sdk: Sdk,
    endpoints: &[String],
    config: &PolyglotConfig,
    run: &str,
    mut at_half: Option<&mut (dyn FnMut() + Send)>,
) -> Result<ScriptResult, PolyglotError> {
    let script_config = json!({
        "endpoints": endpoints,
        "pairs": config.pairs,
        "database": "shop",
        "container": "orders",
        "preferred_region": "West US",
        "run": run,
        "progress": at_half.is_some(),
    });
    let mut child = sdk
        .command()?
        .arg(script_config.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| run_error(format!("{sdk:?} pods: {e}")))?;
    let stdout = child.stdout.take().ok_or_else(|| run_error("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut last = None;
    while let Some(line) = lines.next_line().await.map_err(run_error)? {
        let value: Value = serde_json::from_str(&line)
            .map_err(|e| run_error(format!("{sdk:?} pods printed {line:?}: {e}")))?;
        if let Some(done) = value.get("progress").and_then(Value::as_u64) {
            if done as usize == config.pairs / 2
                && let Some(kill) = at_half.as_mut()
            {
                kill();
            }
            continue;
        }
        last = Some(value);
    }
    let output = child.wait_with_output().await.map_err(run_error)?;
    let Some(last) = last.filter(|_| output.status.success()) else {
        return Err(run_error(format!(
            "{sdk:?} pods failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    };
    Ok(ScriptResult {
        outcomes: last["outcomes"].as_str().unwrap_or_default().to_owned(),
        errors: last["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// One sidecar per pod, all on `broker`; they serve until the runtime ends.
async fn sidecars(
    upstream: &str,
    broker: &str,
    n: usize,
    config: &PolyglotConfig,
) -> Result<Vec<String>, PolyglotError> {
    let mut urls = Vec::with_capacity(n);
    for _ in 0..n {
        let settings = SidecarSettings {
            listen: "127.0.0.1:0".into(),
            upstream: upstream.into(),
            brokers: broker.into(),
            broker_deadline: config.broker_deadline,
            ..SidecarSettings::default()
        };
        let sidecar = Sidecar::bind(&settings, SidecarMetrics::noop())
            .await
            .map_err(run_error)?;
        urls.push(sidecar.serve_in_background());
    }
    Ok(urls)
}

/// Runs the three phases for `sdk`.
pub async fn run(sdk: Sdk, config: &PolyglotConfig) -> Result<PolyglotReport, PolyglotError> {
    let emulator = Emulator::start(Options {
        regions: 2,
        replication_delay: config.replication_delay,
        partitions: config.partitions,
        ..Options::default()
    })
    .await
    .map_err(run_error)?;
    let upstream = emulator.endpoint().to_owned();
    let tag = format!("{}-{}", std::process::id(), config.pairs);

    let direct = vec![upstream.clone(); config.pods];
    let without = pods(sdk, &direct, config, &format!("without-{tag}"), None).await?;

    let broker = KillableBroker::start(memory_store());
    let through = sidecars(&upstream, &broker.url(), config.pods, config).await?;
    let with = pods(sdk, &through, config, &format!("with-{tag}"), None).await?;

    let mut doomed = KillableBroker::start(memory_store());
    let through = sidecars(&upstream, &doomed.url(), config.pods, config).await?;
    let mut kill = || doomed.kill();
    let killed = pods(
        sdk,
        &through,
        config,
        &format!("killed-{tag}"),
        Some(&mut kill),
    )
    .await?;
    let half = config.pairs / 2;
    let (before, after) = killed.outcomes.split_at(half.min(killed.outcomes.len()));
    emulator.shutdown().await;
    Ok(PolyglotReport {
        sdk,
        pods: config.pods,
        without_sidecar: counts(&without.outcomes, &without.errors),
        with_sidecar: counts(&with.outcomes, &with.errors),
        broker_killed: KilledRun {
            killed_after_pairs: half,
            before_kill: counts(before, &killed.errors),
            after_kill: counts(after, &killed.errors),
        },
    })
}

impl PolyglotReport {
    /// The claim: stale reads without the sidecar, none through it, no failed request in any
    /// phase, and stale reads back once the broker is gone.
    pub fn verdict(&self) -> Result<(), String> {
        let phases = [
            ("without the sidecar", &self.without_sidecar),
            ("through the sidecars", &self.with_sidecar),
            ("before the kill", &self.broker_killed.before_kill),
            ("after the kill", &self.broker_killed.after_kill),
        ];
        for (name, phase) in phases {
            if phase.failed > 0 {
                return Err(format!(
                    "{} failed requests {name}: {:?}",
                    phase.failed, phase.first_failure
                ));
            }
        }
        if self.without_sidecar.stale == 0 {
            return Err("no stale read without the sidecar: the baseline proves nothing".into());
        }
        if self.with_sidecar.stale > 0 || self.broker_killed.before_kill.stale > 0 {
            return Err(format!(
                "stale reads through the sidecars: {} and {} before the kill",
                self.with_sidecar.stale, self.broker_killed.before_kill.stale
            ));
        }
        if self.broker_killed.after_kill.stale == 0 {
            return Err("no stale read after the broker was killed: the kill did not take".into());
        }
        Ok(())
    }

    /// The figures as a table.
    pub fn table(&self) -> String {
        let row = |name: &str, c: &PhaseCounts| {
            format!(
                "| {name:<34} | {:>5} | {:>5} | {:>6} |\n",
                c.pairs, c.stale, c.failed
            )
        };
        let mut out = format!(
            "{:?} SDK, {} pods, reads in West US\n\n",
            self.sdk, self.pods
        );
        out.push_str("| phase                              | pairs | stale | failed |\n");
        out.push_str("|------------------------------------|-------|-------|--------|\n");
        out.push_str(&row("without the sidecar", &self.without_sidecar));
        out.push_str(&row("through the sidecars", &self.with_sidecar));
        out.push_str(&row(
            "broker up (first half)",
            &self.broker_killed.before_kill,
        ));
        out.push_str(&row(
            "broker killed (second half)",
            &self.broker_killed.after_kill,
        ));
        out
    }
}
