//! A per-endpoint circuit breaker: after a few consecutive failures, stop calling that endpoint
//! for a while, then let one probe call through.
//!
//! Why: a dead broker replica would otherwise cost every call that lands on it a connection
//! attempt or a whole deadline. With the breaker open, calls go to the other endpoints at once,
//! and when every endpoint is open the helpers answer "no token" without waiting at all.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// When an endpoint is taken out of rotation, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failed calls (transport errors, timeouts) that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker keeps the endpoint out of rotation before one probe call.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            open_for: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    /// While set and in the future, the endpoint is out of rotation.
    open_until: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    state: Mutex<BreakerState>,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(BreakerState::default()),
        }
    }

    /// Whether a call may go to this endpoint now. Once an open period has passed, the first
    /// caller gets through as the probe and the endpoint stays closed to others until the probe
    /// reports (or another open period passes).
    pub(crate) fn try_acquire(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.open_until {
            Some(until) if now < until => false,
            Some(_) => {
                state.open_until = Some(now + self.config.open_for);
                true
            }
            None => true,
        }
    }

    pub(crate) fn record_success(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.consecutive_failures = 0;
        state.open_until = None;
    }

    pub(crate) fn record_failure(&self, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if state.consecutive_failures >= self.config.failure_threshold {
            state.open_until = Some(now + self.config.open_for);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(10),
        })
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let b = breaker();
        let t0 = Instant::now();
        b.record_failure(t0);
        assert!(b.try_acquire(t0), "one failure is under the threshold");
        b.record_failure(t0);
        assert!(!b.try_acquire(t0), "two consecutive failures open it");
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = breaker();
        let t0 = Instant::now();
        b.record_failure(t0);
        b.record_success();
        b.record_failure(t0);
        assert!(b.try_acquire(t0));
    }

    #[test]
    fn after_the_open_period_one_probe_goes_through() {
        let b = breaker();
        let t0 = Instant::now();
        b.record_failure(t0);
        b.record_failure(t0);
        let later = t0 + Duration::from_secs(11);
        assert!(b.try_acquire(later), "the probe");
        assert!(!b.try_acquire(later), "others wait for the probe");
        b.record_success();
        assert!(b.try_acquire(later), "a successful probe closes it");
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = breaker();
        let t0 = Instant::now();
        b.record_failure(t0);
        b.record_failure(t0);
        let later = t0 + Duration::from_secs(11);
        assert!(b.try_acquire(later));
        b.record_failure(later);
        assert!(!b.try_acquire(later + Duration::from_secs(1)));
    }
}
