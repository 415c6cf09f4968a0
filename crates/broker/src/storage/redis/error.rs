//! Which instance of the pair, why a call to it failed, and which failures count against it.
//!
//! Why apart from the instance: the classification is a rule of its own (typed errors end to
//! end): only failures that say the instance cannot serve now (I/O, timeouts, refused or
//! dropped connections, LOADING, BUSY, MASTERDOWN, READONLY, cluster down, refused credentials)
//! feed its breaker and fail a put over; an error the command itself caused fails that call
//! with INTERNAL and leaves the instance up.

use std::time::Duration;

use super::script::BadReply;

/// Which instance of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `redis.primary_url`: takes every put first; read first in the `primary` read mode.
    Primary,
    /// `redis.fallback_url`: receives asynchronous copies, and puts while the primary fails.
    Fallback,
}

impl Role {
    /// `primary` or `fallback`: the name used in logs, span attributes and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Fallback => "fallback",
        }
    }
}

/// Why a call to an instance failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstanceError {
    /// The instance's circuit breaker is open, so the call was not sent. Holds the instance
    /// role. Counts as transient (the put fails over).
    #[error("redis {0} skipped: circuit breaker open")]
    BreakerOpen(&'static str),
    /// No answer within `redis.operation_timeout` (connection included). Holds the instance
    /// role and the deadline. Counts against the instance.
    #[error("redis {0} timed out after {1:?}")]
    Timeout(&'static str, Duration),
    /// The instance could not serve: I/O, a refused or dropped connection, or a server state
    /// that passes (LOADING, BUSY, MASTERDOWN, READONLY, CLUSTERDOWN, TRYAGAIN), or refused
    /// credentials. Counts against the instance (breaker, failover).
    #[error("redis {0}: {1}")]
    Redis(&'static str, String),
    /// The instance answered, with an error the command itself caused (a script error,
    /// WRONGTYPE, a bug): it is up, and another instance would answer alike. Fails the call
    /// with INTERNAL; never counts against the instance.
    #[error("redis {0} refused the command: {1}")]
    Command(&'static str, String),
    /// The instance answered with a reply the broker does not understand (a script/broker
    /// version mismatch, or a bug). Holds the instance role and the reply. Not transient.
    #[error("redis {0}: {1}")]
    Reply(&'static str, BadReply),
    /// A compare-and-set lost to concurrent writers every time it was tried.
    #[error("redis {0}: the key kept changing under {1} compare-and-set attempts")]
    Contended(&'static str, usize),
}

impl InstanceError {
    /// A low-cardinality class, for the `error.type` span attribute.
    pub fn class(&self) -> &'static str {
        match self {
            InstanceError::BreakerOpen(_) => "breaker_open",
            InstanceError::Timeout(..) => "timeout",
            InstanceError::Redis(..) => "redis",
            InstanceError::Command(..) => "command",
            InstanceError::Reply(..) => "bad_reply",
            InstanceError::Contended(..) => "contended",
        }
    }

    /// True when the instance could not serve (see each variant): the breaker counts it, and a
    /// put fails over to the other instance. False when the instance answered and the command
    /// itself was refused or misunderstood: the same call would fail anywhere.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            InstanceError::BreakerOpen(_) | InstanceError::Timeout(..) | InstanceError::Redis(..)
        )
    }
}

/// Whether a Redis error says the instance cannot serve now (transient) rather than that the
/// command was wrong: I/O, refused or dropped connections, timeouts, the server states that
/// pass, and authentication (the instance is unusable until the credentials are fixed).
pub(super) fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
        || matches!(
            e.code(),
            Some("LOADING" | "BUSY" | "MASTERDOWN" | "READONLY" | "CLUSTERDOWN" | "TRYAGAIN")
                | Some("NOAUTH" | "WRONGPASS" | "NOPERM")
        )
}
