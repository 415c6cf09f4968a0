//! A circuit breaker per Redis instance.
//!
//! Why: when an instance is dead, every call to it would wait for the operation timeout; under
//! load those waits pile up. After `failures` consecutive failures the breaker opens and calls
//! skip the instance at once. After `open_for`, one call at a time may probe it (half-open); the
//! health pinger also closes it as soon as a ping succeeds.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe call is in flight; the others are refused until it ends.
    HalfOpen,
}

/// What the breaker decided about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Yes, as the one probe of a half-open breaker.
    Probe,
    No,
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    failures: u32,
    open_for: Duration,
}

impl Breaker {
    pub fn new(failures: u32, open_for: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            failures: failures.max(1),
            open_for,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value replaced whole: a poisoned lock still holds a valid one.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_until(&self) -> Instant {
        let now = Instant::now();
        now.checked_add(self.open_for).unwrap_or(now)
    }

    pub fn admit(&self) -> Admit {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admit::Yes,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                Admit::Probe
            }
            State::Open { .. } | State::HalfOpen => Admit::No,
        }
    }

    /// Records a success; returns true if the breaker was not closed before.
    pub fn success(&self) -> bool {
        let mut state = self.lock();
        let was_closed = matches!(*state, State::Closed { .. });
        *state = State::Closed { failures: 0 };
        !was_closed
    }

    /// Records a failure; returns true if this opened the breaker.
    pub fn failure(&self) -> bool {
        let mut state = self.lock();
        let open = State::Open {
            until: self.open_until(),
        };
        match *state {
            State::Closed { failures } if failures + 1 >= self.failures => {
                *state = open;
                true
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::HalfOpen => {
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
    pub fn trip(&self) -> bool {
        let mut state = self.lock();
        let was_closed = matches!(*state, State::Closed { .. });
        *state = State::Open {
            until: self.open_until(),
        };
        was_closed
    }

    pub fn is_open(&self) -> bool {
        !matches!(*self.lock(), State::Closed { .. })
    }

    /// The state's name, for metrics: `closed`, `open` or `half_open`. An open breaker whose
    /// period has ended stays `open` until the next call probes it.
    pub fn state_name(&self) -> &'static str {
        match *self.lock() {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// Every value [`Breaker::state_name`] returns.
pub const BREAKER_STATES: [&str; 3] = ["closed", "open", "half_open"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_lets_one_probe_through() {
        let b = Breaker::new(3, Duration::ZERO);
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(!b.success(), "a closed breaker stays closed");
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(b.failure(), "third consecutive failure opens");
        assert!(b.is_open());
        // open_for elapsed (zero): exactly one probe.
        assert_eq!(b.admit(), Admit::Probe);
        assert_eq!(b.admit(), Admit::No);
        assert!(b.failure(), "a failed probe re-opens");
        assert_eq!(b.admit(), Admit::Probe);
        assert_eq!(b.state_name(), "half_open");
        assert!(b.success(), "a successful probe closes");
        assert_eq!(b.state_name(), "closed");
        assert_eq!(b.admit(), Admit::Yes);
    }

    #[test]
    fn trip_opens_at_once() {
        let b = Breaker::new(5, Duration::from_secs(3600));
        assert!(b.trip());
        assert_eq!(b.admit(), Admit::No);
        assert!(!b.trip(), "already open");
    }

    #[test]
    fn open_breaker_refuses_until_the_period_ends() {
        let b = Breaker::new(1, Duration::from_secs(3600));
        assert!(b.failure());
        assert_eq!(b.admit(), Admit::No);
        assert_eq!(b.state_name(), "open");
    }
}
