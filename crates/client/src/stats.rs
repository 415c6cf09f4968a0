//! Counters of what the helpers did, for a service's own metrics and for tests.
//!
//! Why counters and not a metrics crate: the client must not impose a metrics stack on the
//! services that embed it. A snapshot of plain numbers exports to any of them.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the client's counters since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// `token_for_read` calls.
    pub reads: u64,
    /// `token_for_read` calls that returned a token.
    pub reads_with_token: u64,
    /// `token_for_read` calls that returned no token because the broker failed or timed out.
    pub read_failures: u64,
    /// Broker answers flagged `degraded` (part of its store was unreachable).
    pub degraded_answers: u64,
    /// `record_write` calls.
    pub writes: u64,
    /// `record_write` calls whose token was not stored (broker error or timeout).
    pub write_failures: u64,
    /// Reads that failed on the broker's token and were made again without it
    /// (`report_unservable` calls).
    pub fallback_reads: u64,
    /// `report_unservable` calls whose DiscardToken failed (broker error or timeout).
    pub discard_failures: u64,
    /// Calls (raw or helper) that hit their deadline.
    pub deadline_exceeded: u64,
    /// Failed attempts on one endpoint, including those retried on another endpoint.
    pub attempt_failures: u64,
    /// Calls answered at once because every endpoint's breaker was open.
    pub short_circuited: u64,
    /// Discovery only: resolutions that succeeded (whether or not the endpoints changed).
    pub resolutions: u64,
    /// Discovery only: resolutions that failed or found no address; each kept the endpoints
    /// already in use.
    pub resolution_failures: u64,
    /// Not a counter: the number of endpoints in use when the snapshot was taken.
    pub endpoints: u64,
    /// Not a counter: helper calls that failed in a row, up to the last success (a broker that
    /// stays unreachable shows here, and in an error log once it reaches
    /// [`LOUD_AFTER_CONSECUTIVE_FAILURES`]).
    pub consecutive_failures: u64,
}

#[derive(Debug, Default)]
pub(crate) struct StatCounters {
    pub(crate) reads: AtomicU64,
    pub(crate) reads_with_token: AtomicU64,
    pub(crate) read_failures: AtomicU64,
    pub(crate) degraded_answers: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) write_failures: AtomicU64,
    pub(crate) fallback_reads: AtomicU64,
    pub(crate) discard_failures: AtomicU64,
    pub(crate) deadline_exceeded: AtomicU64,
    pub(crate) attempt_failures: AtomicU64,
    pub(crate) short_circuited: AtomicU64,
    pub(crate) resolutions: AtomicU64,
    pub(crate) resolution_failures: AtomicU64,
    pub(crate) consecutive_failures: AtomicU64,
}

/// After this many helper failures in a row the client logs an error (once, until a helper
/// call succeeds again): a broker that stays unreachable must not leave reads quietly without
/// tokens.
pub const LOUD_AFTER_CONSECUTIVE_FAILURES: u64 = 10;

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl StatCounters {
    /// A helper call reached the broker.
    pub(crate) fn helper_succeeded(&self) {
        let failed = self.consecutive_failures.swap(0, Ordering::Relaxed);
        if failed >= LOUD_AFTER_CONSECUTIVE_FAILURES {
            tracing::warn!(failed, "tokenbroker reachable again");
        }
    }

    /// A helper call failed; the tenth in a row logs an error.
    pub(crate) fn helper_failed(&self, error: &crate::ClientError) {
        let failed = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failed == LOUD_AFTER_CONSECUTIVE_FAILURES {
            tracing::error!(
                failed,
                %error,
                "tokenbroker: broker calls keep failing: reads run without tokens and writes are not shared until it answers again"
            );
        }
    }

    pub(crate) fn snapshot(&self) -> ClientStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClientStats {
            reads: read(&self.reads),
            reads_with_token: read(&self.reads_with_token),
            read_failures: read(&self.read_failures),
            degraded_answers: read(&self.degraded_answers),
            writes: read(&self.writes),
            write_failures: read(&self.write_failures),
            fallback_reads: read(&self.fallback_reads),
            discard_failures: read(&self.discard_failures),
            deadline_exceeded: read(&self.deadline_exceeded),
            attempt_failures: read(&self.attempt_failures),
            short_circuited: read(&self.short_circuited),
            resolutions: read(&self.resolutions),
            resolution_failures: read(&self.resolution_failures),
            endpoints: 0,
            consecutive_failures: read(&self.consecutive_failures),
        }
    }
}
