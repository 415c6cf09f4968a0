//! What the domain counts, recorded through the handles of the `metrics` facade
//! (<https://docs.rs/metrics>): `Counter`, `Gauge` and `Histogram`, registered with a recorder
//! that is passed in.
//!
//! Why a recorder passed in, never the global one: one process may run several brokers (the
//! integration tests run three replicas side by side, each scraped on its own `/metrics`), and
//! a global recorder would mix their counts. The server builds one recorder per broker and
//! registers the broker's handles with it when it builds the broker ([`BrokerMetrics`]), and the
//! store's when it starts serving the store ([`TokenStore::register_metrics`]: stores are built
//! before the server that serves them, and tests keep handles on theirs). Until then, and for a
//! broker with no metrics endpoint, every handle is a no-op.
//!
//! Why the names live here and the exporter does not: the domain knows what it counts and each
//! name is documented in docs/observability.md (a test checks the scrape against it); how the
//! values are published (the Prometheus text format today) is the server's choice, so this crate
//! depends on the facade only. Labels are bounded by construction: instance roles, breaker
//! states, fixed names; never a scope or a key.
//!
//! [`TokenStore::register_metrics`]: crate::TokenStore::register_metrics

use ::metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};

/// Latency bucket upper bounds, in seconds, shared by every latency histogram (the server
/// configures its exporter with them; docs/observability.md lists them).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Registers handles with one recorder, describing each metric name (the `# HELP` text) as it
/// goes. Labels are static pairs, so no caller data can become one.
pub struct Registrar<'a> {
    recorder: &'a dyn Recorder,
}

impl<'a> Registrar<'a> {
    /// Registers with `recorder`.
    pub fn new(recorder: &'a dyn Recorder) -> Self {
        Self { recorder }
    }

    fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        Key::from_parts(
            name,
            labels
                .iter()
                .map(|(k, v)| Label::from_static_parts(k, v))
                .collect::<Vec<_>>(),
        )
    }

    /// A counter, described by `help`.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Counter {
        self.recorder
            .describe_counter(name.into(), None, help.into());
        self.recorder
            .register_counter(&Self::key(name, labels), &METADATA)
    }

    /// A gauge, described by `help`.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Gauge {
        self.recorder.describe_gauge(name.into(), None, help.into());
        self.recorder
            .register_gauge(&Self::key(name, labels), &METADATA)
    }

    /// A histogram (of latencies in seconds, over the exporter's buckets), described by `help`.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Histogram {
        self.recorder
            .describe_histogram(name.into(), None, help.into());
        self.recorder
            .register_histogram(&Self::key(name, labels), &METADATA)
    }
}

/// The broker's own metric (the store's are registered by the store).
#[derive(Clone)]
pub struct BrokerMetrics {
    pub(crate) degraded_gets: Counter,
}

impl Default for BrokerMetrics {
    /// No-op handles: nothing is recorded.
    fn default() -> Self {
        Self {
            degraded_gets: Counter::noop(),
        }
    }
}

impl BrokerMetrics {
    /// The broker's handles, registered with `recorder`.
    pub fn register(recorder: &dyn Recorder) -> Self {
        Self {
            degraded_gets: Registrar::new(recorder).counter(
                "tokenbroker_degraded_gets_total",
                "GetToken answers flagged degraded (store partly or wholly unavailable).",
                &[],
            ),
        }
    }
}
