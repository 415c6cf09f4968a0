//! What the sidecar counts, through handles of the `metrics` facade registered with a recorder
//! that is passed in (the server's Prometheus recorder for `tokenbroker sidecar`; none in tests
//! that do not scrape).
//!
//! Why these: the sidecar must never fail or slow the application, so when the broker is away it
//! degrades quietly on the request path, and these counters (with the broker client's own logs)
//! are how an operator sees it: reads that carried no broker token, puts that failed, fallback
//! reads. Labels are fixed names (operations, results); never a scope, a key or a URL. Every
//! name is in docs/observability.md.

use broker::metrics::Registrar;
use metrics::{Counter, Recorder};

/// The sidecar's counters. Cheap to clone.
#[derive(Clone)]
pub struct SidecarMetrics {
    requests: [Counter; 12],
    /// Reads sent with a token from the broker.
    pub broker_tokens_added: Counter,
    /// Brokered reads that went ahead without a broker token: the broker had none for the
    /// target, could not be reached in time, or the application's token already covered it.
    pub reads_without_broker_token: Counter,
    /// Reads a lagging region could not serve with the broker's token, repeated in the write
    /// region.
    pub write_region_replays: Counter,
    /// Reads the upstream could not serve with the broker's token, repeated without it.
    pub fallback_reads: Counter,
    /// Write responses whose token the broker acknowledged.
    pub puts_recorded: Counter,
    /// Write responses whose token could not be recorded (broker error or deadline).
    pub puts_failed: Counter,
    /// Brokered operations forwarded without the broker because the container's generation or
    /// the key was not known yet.
    pub unscoped: Counter,
    /// Requests the upstream did not answer (the application got a 502).
    pub upstream_errors: Counter,
}

const REQUESTS: &str = "tokenbroker_sidecar_requests_total";
const OPERATIONS: [&str; 12] = [
    "account",
    "container",
    "read",
    "query",
    "read_feed",
    "create",
    "upsert",
    "replace",
    "patch",
    "delete",
    "batch",
    "other",
];

impl SidecarMetrics {
    /// Handles registered with `recorder`.
    pub fn register(recorder: &dyn Recorder) -> Self {
        let r = Registrar::new(recorder);
        let requests = OPERATIONS.map(|operation| {
            r.counter(
                REQUESTS,
                "Requests the sidecar forwarded, by operation.",
                &[("operation", operation)],
            )
        });
        Self {
            requests,
            broker_tokens_added: r.counter(
                "tokenbroker_sidecar_broker_tokens_added_total",
                "Reads sent with the broker's token merged in.",
                &[],
            ),
            reads_without_broker_token: r.counter(
                "tokenbroker_sidecar_reads_without_broker_token_total",
                "Brokered reads sent with the application's token only.",
                &[],
            ),
            write_region_replays: r.counter(
                "tokenbroker_sidecar_write_region_replays_total",
                "Reads repeated in the write region after a lagging region answered 404/1002.",
                &[],
            ),
            fallback_reads: r.counter(
                "tokenbroker_sidecar_fallback_reads_total",
                "Reads repeated without the broker's token, which the upstream could not serve.",
                &[],
            ),
            puts_recorded: r.counter(
                "tokenbroker_sidecar_puts_total",
                "Write responses whose session token was recorded with PutToken, by result.",
                &[("result", "ok")],
            ),
            puts_failed: r.counter(
                "tokenbroker_sidecar_puts_total",
                "Write responses whose session token was recorded with PutToken, by result.",
                &[("result", "failed")],
            ),
            unscoped: r.counter(
                "tokenbroker_sidecar_unscoped_total",
                "Brokered operations forwarded without the broker: container generation or key unknown.",
                &[],
            ),
            upstream_errors: r.counter(
                "tokenbroker_sidecar_upstream_errors_total",
                "Requests the upstream did not answer (answered 502).",
                &[],
            ),
        }
    }

    /// No-op handles.
    pub fn noop() -> Self {
        Self::register(&metrics::NoopRecorder)
    }

    fn request(&self, operation: &str) {
        let index = OPERATIONS
            .iter()
            .position(|o| *o == operation)
            .unwrap_or(OPERATIONS.len() - 1);
        if let Some(counter) = self.requests.get(index) {
            counter.increment(1);
        }
    }

    /// Counts a request by its route.
    pub fn count(&self, route: &crate::route::Route) {
        self.request(route.operation());
    }
}
