//! Where tokens live: one async trait, implemented by the in-memory store (single instance, the
//! embedded default) and the Redis stores.
//!
//! Why one trait: the broker's guarantees (atomic merge, never backwards, TTL refresh) are
//! stated once and checked by one behaviour suite against every implementation.

#[cfg(feature = "behaviour-suite")]
pub mod behaviour;
pub mod discard;
pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use session_token::{MergeError, SessionToken};
use tokio::sync::watch;

/// The identity of a stored token: the container (`scope`) and what callers coordinate on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreKey {
    /// The container the token belongs to (a container generation, as the clients build it).
    pub scope: String,
    /// What callers coordinate on within the scope (a document id, a session), chosen by the
    /// client: the request's `key` field.
    pub name: String,
}

impl StoreKey {
    /// A key from its two parts, taken as they are (validation is the broker's, in [`Limits`]).
    ///
    /// [`Limits`]: crate::Limits
    pub fn new(scope: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            scope: scope.into(),
            name: name.into(),
        }
    }
}

/// How a put is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutParams {
    /// Time to live of the stored token, refreshed by every put.
    pub ttl: Duration,
    /// Most ranges the stored token may hold after the merge.
    pub max_segments: usize,
}

/// The answer of a read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lookup {
    /// The stored token, `None` when nothing is stored under the key or it expired.
    pub token: Option<SessionToken>,
    /// True when part of the store could not be consulted, so the token may be behind.
    pub degraded: bool,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The new token cannot be merged with the stored one; the stored token is unchanged.
    #[error("cannot merge with the stored token: {0}")]
    Conflict(#[from] MergeError),
    /// The merged token would hold more ranges than allowed; the stored token is unchanged.
    #[error("the merged token would have {segments} segments, more than the limit of {limit}")]
    TooManySegments {
        /// Ranges the merged token would hold.
        segments: usize,
        /// The most ranges allowed ([`PutParams::max_segments`]).
        limit: usize,
    },
    /// The store holds as many keys as it may (the in-memory store's `max_keys`, checked after the
    /// shard's expired keys were purged); the put of a new key is refused, puts to stored keys
    /// go on.
    #[error("the store is full ({limit} keys)")]
    Full {
        /// The most keys the store may hold.
        limit: usize,
    },
    /// The store could not be reached or did not answer in time.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with an error the request caused there (a script error, a value of
    /// the wrong type, a bug): retrying elsewhere would fail alike. INTERNAL at the edge.
    #[error("store error: {0}")]
    Internal(String),
}

/// A store of session tokens keyed by [`StoreKey`]: the in-memory store, or the Redis stores
/// (one instance, or a primary and a fallback). Every implementation must pass the behaviour
/// suite (`storage::behaviour`, feature `behaviour-suite`).
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Merges `token` into the token stored under `key`, as one atomic step, refreshes its TTL,
    /// and returns the stored result. On error the stored token is unchanged.
    async fn put(
        &self,
        key: &StoreKey,
        token: &SessionToken,
        params: PutParams,
    ) -> Result<SessionToken, StoreError>;

    /// Reads the token stored under `key`.
    async fn get(&self, key: &StoreKey) -> Result<Lookup, StoreError>;

    /// Removes from the token stored under `key` every range of `failed` whose stored segment
    /// is at least as far ahead ([`discard::apply`]), as one atomic step per instance, leaving
    /// the TTL as it is (deleting the key when nothing remains). A store of several instances
    /// applies it to each, and fails with [`StoreError::Unavailable`] when one it has could not
    /// be reached (what it did on the others stands; the caller may repeat it: it is
    /// idempotent).
    async fn discard(
        &self,
        key: &StoreKey,
        failed: &SessionToken,
    ) -> Result<discard::Discarded, StoreError>;

    /// Whether the store can serve requests now; changes are pushed to the receiver. Drives the
    /// readiness health check.
    fn ready(&self) -> watch::Receiver<bool>;

    /// A one-line description for the start-up log.
    fn describe(&self) -> String;

    /// Health of the store's parts (for example `redis/primary`), each up or down, for health
    /// checks and logs. Empty for a store with no parts that can fail apart.
    fn components(&self) -> Vec<(String, watch::Receiver<bool>)> {
        Vec::new()
    }

    /// Registers the store's metrics with `recorder`, the one of the server that serves the
    /// store, and records into them from then on (see [`crate::metrics`] for why this happens
    /// when serving starts, not at construction). Counters start from what the store counted
    /// before. A store publishes to one recorder: later calls are ignored. Default: the store has
    /// no metrics of its own.
    fn register_metrics(&self, recorder: &dyn ::metrics::Recorder) {
        let _ = recorder;
    }
}
