//! The Redis store's metrics (docs/observability.md lists each one).
//!
//! Why apart from the store: it is one long list of counters with their help texts, read only
//! at scrape time; the store's logic reads better without it.

use std::sync::atomic::{AtomicU64, Ordering};

use super::dual::RedisStore;
use crate::metrics::Sample;
use breaker::STATES as BREAKER_STATES;

impl RedisStore {
    /// The pair's and its instances' metrics, read at scrape time.
    pub(super) fn pair_samples(&self) -> Vec<Sample> {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let st = &self.shared.stats;
        let mut out = vec![
            Sample::gauge(
                "tokenbroker_fallback_queue_depth",
                "Copies to the fallback and read repairs waiting or in flight.",
                load(&st.copies_pending) as f64,
            ),
            Sample::counter(
                "tokenbroker_fallback_copies_dropped_total",
                "Copies dropped because the queue was full.",
                load(&st.copies_dropped),
            ),
            Sample::counter(
                "tokenbroker_fallback_copies_failed_total",
                "Copies that failed (instance down, timeout or merge conflict).",
                load(&st.copies_failed),
            ),
            Sample::counter(
                "tokenbroker_fallback_copies_total",
                "Copies applied.",
                load(&st.copies_done),
            ),
            Sample::counter(
                "tokenbroker_fallback_writes_total",
                "PutTokens written to the fallback because the primary failed.",
                load(&st.fallback_writes),
            ),
            Sample::counter(
                "tokenbroker_store_degraded_reads_total",
                "Reads that could not consult every Redis instance.",
                load(&st.degraded_reads),
            ),
            Sample::counter(
                "tokenbroker_read_repairs_total",
                "Merged tokens written back to a primary that was behind.",
                load(&st.read_repairs),
            ),
        ];
        for i in std::iter::once(&self.shared.primary).chain(self.shared.fallback.as_ref()) {
            let s = &i.stats;
            let name = i.name();
            out.extend([
                Sample::gauge(
                    "tokenbroker_redis_up",
                    "1 when the instance answers its health checks.",
                    f64::from(u8::from(i.is_up())),
                )
                .label("instance", name),
                Sample::gauge(
                    "tokenbroker_redis_breaker_open",
                    "1 when the instance's circuit breaker is open or half-open.",
                    f64::from(u8::from(i.breaker_open())),
                )
                .label("instance", name),
                Sample::counter(
                    "tokenbroker_redis_calls_total",
                    "Redis calls made.",
                    load(&s.calls),
                )
                .label("instance", name),
                Sample::counter(
                    "tokenbroker_redis_errors_total",
                    "Redis calls that failed (timeouts included).",
                    load(&s.errors),
                )
                .label("instance", name),
                Sample::counter(
                    "tokenbroker_redis_timeouts_total",
                    "Redis calls that timed out.",
                    load(&s.timeouts),
                )
                .label("instance", name),
                Sample::counter(
                    "tokenbroker_redis_skipped_total",
                    "Calls not made because the breaker was open.",
                    load(&s.skipped),
                )
                .label("instance", name),
                Sample::counter(
                    "tokenbroker_redis_cas_conflicts_total",
                    "Puts, copies and repairs that lost a compare-and-set to a concurrent writer and merged again.",
                    load(&s.cas_conflicts),
                )
                .label("instance", name),
                Sample::histogram(
                    "tokenbroker_redis_call_duration_seconds",
                    "Latency of the Redis calls made (connecting included; skipped calls excluded).",
                    &s.latency,
                )
                .label("instance", name),
            ]);
            let state = i.breaker_state();
            out.extend(BREAKER_STATES.iter().map(|st| {
                Sample::gauge(
                    "tokenbroker_redis_breaker_state",
                    "1 for the circuit breaker's current state (closed, open or half_open), 0 for the others.",
                    f64::from(u8::from(*st == state)),
                )
                .label("instance", name)
                .label("state", *st)
            }));
        }
        out
    }
}
