//! Client settings, with defaults meant for a broker next to the service (same cluster).
//!
//! Why these defaults: the broker answers from memory or one Redis round trip, in well under a
//! millisecond on a healthy cluster. A deadline of 100 ms is generous for that and still small
//! next to a Cosmos read, so a broker in trouble costs the caller little before it gives up.

use std::time::Duration;

use crate::breaker::BreakerConfig;
use crate::discovery::Discovery;

/// How to reach the brokers and how long to wait for them.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Broker URLs, for example `http://10.0.0.11:50051`. Calls are balanced over all of them.
    /// Empty when the brokers are discovered instead.
    pub endpoints: Vec<String>,
    /// A name to resolve into the broker endpoints, again and again (for example a headless
    /// Service), instead of a fixed list. Set either this or [`ClientConfig::endpoints`].
    pub discovery: Option<Discovery>,
    /// The whole budget of one call, retries included. Also sent as the gRPC deadline.
    pub deadline: Duration,
    /// The budget for opening a connection to one endpoint.
    pub connect_timeout: Duration,
    /// How many attempts one call may make when an attempt fails with a transport error
    /// (connection refused or reset, `UNAVAILABLE`, `CANCELLED`), within the same deadline: on
    /// other endpoints first, then on one already tried (with a single endpoint, the same one).
    pub max_attempts: usize,
    /// When to stop sending calls to a failing endpoint, and for how long.
    pub breaker: BreakerConfig,
}

impl ClientConfig {
    /// The default deadline of a call.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(100);

    /// Defaults for the given endpoints.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            discovery: None,
            deadline: Self::DEFAULT_DEADLINE,
            connect_timeout: Self::DEFAULT_DEADLINE,
            max_attempts: 2,
            breaker: BreakerConfig::default(),
        }
    }

    /// Defaults, with the brokers found by resolving the host of `target`
    /// (`scheme://host:port`, for example
    /// `http://tokenbroker-headless.my-namespace.svc.cluster.local:50051`): one endpoint per
    /// address, re-resolved every [`Discovery::DEFAULT_INTERVAL`]. See [`Discovery`] to change
    /// the interval or the resolver.
    pub fn discover(target: impl Into<String>) -> Self {
        Self::discover_with(Discovery::new(target))
    }

    /// Defaults, with the brokers found as `discovery` says.
    pub fn discover_with(discovery: Discovery) -> Self {
        Self {
            discovery: Some(discovery),
            ..Self::new(Vec::<String>::new())
        }
    }

    /// Sets [`ClientConfig::deadline`].
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets [`ClientConfig::connect_timeout`]. A call never waits longer than its deadline
    /// whatever this is; past the deadline the connection attempt goes on for the next call.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`ClientConfig::breaker`].
    pub fn with_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// Sets [`ClientConfig::max_attempts`] (at least 1).
    pub fn with_max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
}
