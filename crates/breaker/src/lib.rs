//! One circuit breaker for tokenbroker: the client keeps one per broker endpoint, the store one
//! per Redis instance.
//!
//! Why one implementation: both guard a remote that may die, with the same vocabulary (closed,
//! open, half-open; admit, success, failure, trip) and the same metrics names. After
//! `failure_threshold` consecutive failures the breaker opens and calls skip the remote at once
//! instead of each waiting for a deadline. After `open_for`, one call is admitted as the probe
//! (half-open): its success closes the breaker, its failure opens it again. A probe that never
//! reports (its caller gave up) does not wedge the breaker: after another `open_for` the next
//! call is admitted as a new probe. Time is passed in, so tests need no clock.

#![warn(missing_docs)]

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// When a remote is taken out of rotation, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// How long an open breaker skips the remote before one probe call.
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

/// The breaker's state names, as the metrics label them.
pub const STATES: [&str; 3] = ["closed", "open", "half_open"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; others are refused until it reports or `until` passes.
    HalfOpen {
        until: Instant,
    },
}

/// What the breaker decided about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The breaker is closed: make the call, then report its outcome.
    Yes,
    /// Yes, as the one probe of a half-open breaker.
    Probe,
    /// The breaker is open, or half-open with a probe in flight: skip the remote.
    No,
}

/// A circuit breaker (see the crate docs).
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl Breaker {
    /// A closed breaker. A `failure_threshold` of 0 is taken as 1.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config: BreakerConfig {
                failure_threshold: config.failure_threshold.max(1),
                ..config
            },
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value replaced whole: a poisoned lock still holds a valid one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn after_open_period(&self, now: Instant) -> Instant {
        now.checked_add(self.config.open_for).unwrap_or(now)
    }

    /// Whether a call may go to the remote at `now`.
    pub fn admit(&self, now: Instant) -> Admit {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admit::Yes,
            State::Open { until } | State::HalfOpen { until } if now >= until => {
                *state = State::HalfOpen {
                    until: self.after_open_period(now),
                };
                Admit::Probe
            }
            State::Open { .. } | State::HalfOpen { .. } => Admit::No,
        }
    }

    /// Records a success; returns true if the breaker was not closed before (it closes).
    pub fn success(&self) -> bool {
        let mut state = self.lock();
        let was_closed = matches!(*state, State::Closed { .. });
        *state = State::Closed { failures: 0 };
        !was_closed
    }

    /// Records a failure at `now`; returns true if this opened the breaker.
    pub fn failure(&self, now: Instant) -> bool {
        let mut state = self.lock();
        let open = State::Open {
            until: self.after_open_period(now),
        };
        match *state {
            State::Closed { failures } if failures + 1 >= self.config.failure_threshold => {
                *state = open;
                true
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::HalfOpen { .. } => {
                *state = open;
                true
            }
            State::Open { .. } => {
                *state = open;
                false
            }
        }
    }

    /// Opens the breaker at once (a failed health check is decisive); returns true if it was
    /// closed.
    pub fn trip(&self, now: Instant) -> bool {
        let mut state = self.lock();
        let was_closed = matches!(*state, State::Closed { .. });
        *state = State::Open {
            until: self.after_open_period(now),
        };
        was_closed
    }

    /// True unless closed.
    pub fn is_open(&self) -> bool {
        !matches!(*self.lock(), State::Closed { .. })
    }

    /// The state's name, one of [`STATES`]. An open breaker whose period has ended stays
    /// `open` until the next call probes it.
    pub fn state_name(&self) -> &'static str {
        match *self.lock() {
            State::Closed { .. } => STATES[0],
            State::Open { .. } => STATES[1],
            State::HalfOpen { .. } => STATES[2],
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
    fn opens_after_the_threshold_of_consecutive_failures() {
        let (b, t0) = (breaker(), Instant::now());
        assert!(!b.failure(t0));
        assert_eq!(
            b.admit(t0),
            Admit::Yes,
            "one failure is under the threshold"
        );
        assert!(b.failure(t0), "the second opens it");
        assert_eq!(b.admit(t0), Admit::No);
        assert_eq!(b.state_name(), "open");
    }

    #[test]
    fn a_success_resets_the_count() {
        let (b, t0) = (breaker(), Instant::now());
        b.failure(t0);
        assert!(!b.success(), "it was closed");
        b.failure(t0);
        assert_eq!(b.admit(t0), Admit::Yes);
    }

    #[test]
    fn after_the_open_period_one_probe_goes_and_its_outcome_decides() {
        let (b, t0) = (breaker(), Instant::now());
        b.failure(t0);
        b.failure(t0);
        let later = t0 + Duration::from_secs(11);
        assert_eq!(b.admit(later), Admit::Probe);
        assert_eq!(b.admit(later), Admit::No, "others wait for the probe");
        assert_eq!(b.state_name(), "half_open");
        assert!(b.success(), "a successful probe closes it");
        assert_eq!(b.admit(later), Admit::Yes);

        b.failure(later);
        b.failure(later);
        let probe_time = later + Duration::from_secs(11);
        assert_eq!(b.admit(probe_time), Admit::Probe);
        assert!(b.failure(probe_time), "a failed probe opens it again");
        assert_eq!(b.admit(probe_time + Duration::from_secs(1)), Admit::No);
    }

    #[test]
    fn a_probe_that_never_reports_does_not_wedge_the_breaker() {
        let (b, t0) = (breaker(), Instant::now());
        b.trip(t0);
        let later = t0 + Duration::from_secs(11);
        assert_eq!(b.admit(later), Admit::Probe);
        assert_eq!(b.admit(later + Duration::from_secs(5)), Admit::No);
        assert_eq!(
            b.admit(later + Duration::from_secs(11)),
            Admit::Probe,
            "a new probe once the first one's period is over"
        );
    }
}
