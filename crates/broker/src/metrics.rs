//! Metric samples that stores and the broker expose, independent of any exporter, and the
//! latency histogram they record into.
//!
//! Why plain samples: the server decides how to publish them (a Prometheus scrape endpoint
//! today); the domain only counts. Labels are bounded by construction: instance roles and fixed
//! names, never a scope or a key.
//!
//! Why a hand-rolled histogram: recording sits on every request and every Redis call, so it is
//! a few relaxed atomic adds into a fixed array, with no lock and no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency bucket upper bounds, in seconds, shared by every latency histogram.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A latency histogram over [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    count: AtomicU64,
    sum_micros: AtomicU64,
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
}

impl Histogram {
    /// Records one latency: the first bucket whose bound is at least `elapsed`, or +Inf past
    /// 1 s. The sum is kept in whole microseconds (saturating).
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Latencies recorded so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// A point-in-time copy, with cumulative bucket counts as Prometheus wants them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = self
            .buckets
            .iter()
            .map(|b| {
                cumulative += b.load(Ordering::Relaxed);
                cumulative
            })
            .collect();
        HistogramSnapshot {
            // The +Inf bucket is the count; reading it from the buckets keeps the two consistent
            // even when a record lands between the loads.
            count: cumulative,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            cumulative: buckets,
        }
    }
}

/// A histogram's values at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Latencies recorded (equal to the +Inf bucket).
    pub count: u64,
    /// Sum of the recorded latencies, in seconds (microsecond resolution).
    pub sum_seconds: f64,
    /// Cumulative counts for each bound of [`LATENCY_BUCKETS`], then +Inf.
    pub cumulative: Vec<u64>,
}

/// Counter, gauge or histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic total since start (Prometheus `counter`).
    Counter,
    /// A current value that goes up and down (Prometheus `gauge`).
    Gauge,
    /// A latency distribution over [`LATENCY_BUCKETS`] (Prometheus `histogram`).
    Histogram,
}

/// One metric value with its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name, with the `tokenbroker_` prefix (`tokenbroker_degraded_gets_total`).
    pub name: &'static str,
    /// One-line description, published as the Prometheus `# HELP` text.
    pub help: &'static str,
    /// How the value is published.
    pub kind: Kind,
    /// Label names and values, in the order added; values are bounded (instance roles, fixed
    /// names), never a scope or a key.
    pub labels: Vec<(&'static str, String)>,
    /// The value of a counter or gauge; a histogram's count.
    pub value: f64,
    /// Set for histograms only.
    pub histogram: Option<HistogramSnapshot>,
}

impl Sample {
    /// A counter sample with no labels.
    pub fn counter(name: &'static str, help: &'static str, value: u64) -> Self {
        Self {
            name,
            help,
            kind: Kind::Counter,
            labels: Vec::new(),
            value: value as f64,
            histogram: None,
        }
    }

    /// A gauge sample with no labels.
    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Self {
        Self {
            name,
            help,
            kind: Kind::Gauge,
            labels: Vec::new(),
            value,
            histogram: None,
        }
    }

    /// A histogram sample with no labels, from a snapshot of `histogram` taken now.
    pub fn histogram(name: &'static str, help: &'static str, histogram: &Histogram) -> Self {
        let snapshot = histogram.snapshot();
        Self {
            name,
            help,
            kind: Kind::Histogram,
            labels: Vec::new(),
            value: snapshot.count as f64,
            histogram: Some(snapshot),
        }
    }

    /// Adds a label (builder style).
    pub fn label(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.labels.push((key, value.into()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50)); // first bucket
        h.observe(Duration::from_millis(3)); // le=0.005
        h.observe(Duration::from_secs(2)); // +Inf only
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(s.cumulative[0], 1);
        assert_eq!(s.cumulative[4], 1, "le=0.0025 excludes 3ms");
        assert_eq!(s.cumulative[5], 2, "le=0.005 includes 3ms");
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len() - 1], 2);
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len()], 3);
        assert!((s.sum_seconds - 2.00305).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
