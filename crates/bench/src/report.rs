//! Results as a table and as JSON.

use serde::Serialize;

use crate::load::RunResult;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub mode: String,
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Row {
    pub fn new(scenario: &str, mode: &str, r: &RunResult) -> Self {
        let q = |x: f64| r.latency.value_at_quantile(x);
        Self {
            scenario: scenario.into(),
            mode: mode.into(),
            ops: r.ops,
            errors: r.errors,
            first_error: r.first_error.clone(),
            seconds: r.elapsed.as_secs_f64(),
            ops_per_sec: r.throughput(),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: r.latency.max(),
        }
    }
}

pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<28} {:<16} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}\n",
        "scenario", "mode", "ops/s", "p50 us", "p90 us", "p99 us", "p99.9", "max us", "errors"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<28} {:<16} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}\n",
            r.scenario,
            r.mode,
            r.ops_per_sec,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            r.errors
        ));
    }
    out
}
