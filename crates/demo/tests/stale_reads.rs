//! The proof, as a test: over 1,000 write-then-read-on-another-pod pairs per phase, on
//! the real SDK and its in-memory emulator, stale reads without the broker, none with it, and no
//! failed request when the broker is killed half way (stale reads come back).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use stale_reads::scenario::{self, ScenarioConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_removes_cross_pod_stale_reads_and_its_death_fails_nothing() {
    let config = ScenarioConfig::default();
    assert!(config.pairs >= 1_000);

    let report = scenario::run(config).await.unwrap();

    let killed = &report.broker_killed;
    assert!(
        report.without_broker.stale > 0,
        "baseline proves nothing: {report:?}"
    );
    assert_eq!(report.with_broker.counts.stale, 0, "{report:?}");
    assert_eq!(report.with_broker.broker_failures, 0, "{report:?}");
    assert_eq!(killed.before_kill.stale, 0, "{report:?}");
    assert!(
        killed.after_kill.stale > 0,
        "no fallback after the kill: {report:?}"
    );
    assert!(
        killed.broker_failures > 0,
        "the kill went unnoticed: {report:?}"
    );
    for counts in [
        &report.without_broker,
        &report.with_broker.counts,
        &killed.before_kill,
        &killed.after_kill,
    ] {
        assert_eq!(counts.failed, 0, "a request failed: {report:?}");
    }
    assert_eq!(report.verdict(), Ok(()));
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["with_broker"]["stale"], 0);
}
