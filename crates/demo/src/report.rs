//! The figures, as a table for people and one JSON object for machines, and the verdict.
//!
//! Why a verdict in the demo itself: a demo whose baseline shows no stale reads proves nothing,
//! so the binary says so and exits non-zero rather than printing reassuring zeros.

use serde::Serialize;

/// Counts of one phase (or part of one).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PhaseCounts {
    pub pairs: usize,
    /// Reads that returned an older version of the document just written (or none).
    pub stale: usize,
    /// Writes or reads that failed: must stay zero whatever the broker does.
    pub failed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BrokerPhase {
    #[serde(flatten)]
    pub counts: PhaseCounts,
    /// Broker calls that failed or timed out (the operation went ahead without the broker).
    pub broker_failures: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KilledPhase {
    pub killed_after_pairs: usize,
    pub before_kill: PhaseCounts,
    pub after_kill: PhaseCounts,
    pub broker_failures: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub pairs_per_phase: usize,
    pub pods: usize,
    pub partitions: u32,
    pub replication_delay_ms: u128,
    /// Whether the pods ran with the SDK's per-partition circuit breaker on.
    pub sdk_partition_circuit_breaker: bool,
    pub without_broker: PhaseCounts,
    pub with_broker: BrokerPhase,
    pub broker_killed: KilledPhase,
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

impl Report {
    /// The claims of the demo; the first that does not hold, if any.
    pub fn verdict(&self) -> Result<(), String> {
        let killed = &self.broker_killed;
        let failed = self.without_broker.failed
            + self.with_broker.counts.failed
            + killed.before_kill.failed
            + killed.after_kill.failed;
        if self.without_broker.stale == 0 {
            return Err("no stale read without the broker: the baseline proves nothing".into());
        }
        if self.with_broker.counts.stale != 0 {
            return Err(format!(
                "{} stale reads with the broker",
                self.with_broker.counts.stale
            ));
        }
        if killed.before_kill.stale != 0 {
            return Err(format!(
                "{} stale reads before the broker was killed",
                killed.before_kill.stale
            ));
        }
        // With the SDK's per-partition circuit breaker on, pods that read with broker tokens keep
        // reading from the write region after the kill: no fallback to show, and none required.
        if killed.after_kill.stale == 0 && !self.sdk_partition_circuit_breaker {
            return Err("no stale read after the broker was killed: was it killed?".into());
        }
        if failed != 0 {
            return Err(format!("{failed} requests failed"));
        }
        Ok(())
    }

    /// A small table.
    pub fn table(&self) -> String {
        let killed = &self.broker_killed;
        let killed_total = PhaseCounts {
            pairs: killed.before_kill.pairs + killed.after_kill.pairs,
            stale: killed.before_kill.stale + killed.after_kill.stale,
            failed: killed.before_kill.failed + killed.after_kill.failed,
            first_failure: None,
        };
        let rows = [
            ("without broker", &self.without_broker),
            ("with broker", &self.with_broker.counts),
            ("broker killed half way", &killed_total),
            ("  before the kill", &killed.before_kill),
            ("  after the kill", &killed.after_kill),
        ];
        let mut out = format!(
            "{} pods round-robin, 2 regions (reads prefer the one {} ms behind), {} partitions\n\n",
            self.pods, self.replication_delay_ms, self.partitions
        );
        out.push_str(&format!(
            "{:<24} {:>6} {:>6} {:>8} {:>7}\n",
            "phase", "pairs", "stale", "stale %", "failed"
        ));
        for (name, counts) in rows {
            out.push_str(&format!(
                "{:<24} {:>6} {:>6} {:>7.1}% {:>7}\n",
                name,
                counts.pairs,
                counts.stale,
                percent(counts.stale, counts.pairs),
                counts.failed
            ));
        }
        out.push_str(&format!(
            "\nbroker calls that failed (operation went ahead without a token): {} with broker, {} \
             in the kill phase\n",
            self.with_broker.broker_failures, killed.broker_failures
        ));
        out
    }
}
