//! The three operations, independent of transport: validate, then store or merge.
//!
//! Why the degradation rule lives here: "a store outage never fails a read" is a product rule,
//! not a transport detail. A read the store cannot answer is a miss flagged `degraded`, so the
//! caller's Cosmos read goes ahead with the database's normal session semantics.

use std::sync::Arc;
use std::time::Duration;

use session_token::{MergeError, SessionToken};

use crate::limits::{InvalidArgument, Limits};
use crate::metrics::BrokerMetrics;
use crate::storage::discard::Discarded;
use crate::storage::{PutParams, StoreError, StoreKey, TokenStore};

/// Settings of the broker's operations.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Time to live of a stored token, refreshed by every put.
    pub ttl: Duration,
}

/// Why an operation failed. The server maps each variant to one gRPC status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// Bad input (INVALID_ARGUMENT).
    #[error(transparent)]
    InvalidArgument(#[from] InvalidArgument),
    /// Tokens that cannot be merged (FAILED_PRECONDITION): the given token with the stored one
    /// (PutToken), or the given tokens with each other (MergeToken); nothing was changed.
    #[error("the tokens cannot be merged: {0}")]
    Conflict(MergeError),
    /// A size bound of the store would be exceeded (RESOURCE_EXHAUSTED); nothing was changed.
    #[error("{0}")]
    ResourceExhausted(String),
    /// No store could record the put (UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
    /// The store failed the request in a way no retry fixes (INTERNAL); nothing was changed.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(conflict) => Self::Conflict(conflict),
            StoreError::TooManySegments { .. } | StoreError::Full { .. } => {
                Self::ResourceExhausted(e.to_string())
            }
            StoreError::Unavailable(_) => Self::Unavailable(e.to_string()),
            StoreError::Internal(_) => Self::Internal(e.to_string()),
        }
    }
}

/// The answer of a GetToken.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetResult {
    /// The stored token, restricted to the requested ranges when some were named; `None` when
    /// nothing is stored under the key (or none of the requested ranges), or when the store could
    /// not be read.
    pub token: Option<SessionToken>,
    /// True when part or all of the store could not be consulted, so the token may be behind
    /// or missing. Counted in `tokenbroker_degraded_gets_total`.
    pub degraded: bool,
}

/// Validates requests and applies them to a store.
#[derive(Clone)]
pub struct Broker {
    store: Arc<dyn TokenStore>,
    limits: Limits,
    options: BrokerSettings,
    metrics: BrokerMetrics,
}

impl Broker {
    /// A broker over `store`. `limits` are taken as given (check them with
    /// [`Limits::validate`] first); `options.ttl` applies to every put. Records no metrics
    /// until given handles ([`Broker::with_metrics`]).
    pub fn new(store: Arc<dyn TokenStore>, limits: Limits, options: BrokerSettings) -> Self {
        Self {
            store,
            limits,
            options,
            metrics: BrokerMetrics::default(),
        }
    }

    /// The broker, recording into `metrics` (registered with the serving server's recorder).
    pub fn with_metrics(self, metrics: BrokerMetrics) -> Self {
        Self { metrics, ..self }
    }

    /// The store the broker reads and writes, for health checks and start-up logs.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    /// The request size limits the broker enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Merges `token` into the stored token and returns the stored result.
    pub async fn put(
        &self,
        scope: &str,
        key: &str,
        token: &str,
    ) -> Result<SessionToken, BrokerError> {
        self.limits.scope(scope)?;
        self.limits.key(key)?;
        let token = self.limits.parse_token("session_token", token)?;
        let params = PutParams {
            ttl: self.options.ttl,
            max_segments: self.limits.max_segments,
        };
        let key = StoreKey::new(scope, key);
        Ok(self.store.put(&key, &token, params).await?)
    }

    /// Reads the stored token, restricted to `ranges` when not empty. Never fails because of the
    /// store: an unavailable store gives a degraded miss.
    pub async fn get(
        &self,
        scope: &str,
        key: &str,
        ranges: &[String],
    ) -> Result<GetResult, BrokerError> {
        self.limits.scope(scope)?;
        self.limits.key(key)?;
        self.limits.range_ids("partition_key_range_ids", ranges)?;
        let lookup = match self.store.get(&StoreKey::new(scope, key)).await {
            Ok(lookup) => lookup,
            Err(e) => {
                self.metrics.degraded_gets.increment(1);
                tracing::debug!(error = %e, "GetToken degraded: store unavailable, answering not found");
                return Ok(GetResult {
                    token: None,
                    degraded: true,
                });
            }
        };
        if lookup.degraded {
            self.metrics.degraded_gets.increment(1);
        }
        let token = match (lookup.token, ranges.is_empty()) {
            (Some(t), false) => t.filter(ranges),
            (t, _) => t,
        };
        Ok(GetResult {
            token,
            degraded: lookup.degraded,
        })
    }

    /// Removes from the token stored under (`scope`, `key`) the ranges of `failed` (all of them,
    /// or only `ranges` when not empty) whose stored segment is at least as far ahead as the
    /// failed one: the token a read carried and Cosmos could not serve. See
    /// [`crate::storage::discard`] for the rule; every store instance applies it atomically.
    ///
    /// Errors: `InvalidArgument` for a bad field, or a range in `ranges` that `failed` does not
    /// name; `Unavailable` when a store instance could not be reached.
    pub async fn discard(
        &self,
        scope: &str,
        key: &str,
        failed: &str,
        ranges: &[String],
    ) -> Result<Discarded, BrokerError> {
        self.limits.scope(scope)?;
        self.limits.key(key)?;
        let failed = self.limits.parse_token("session_token", failed)?;
        let field = "partition_key_range_ids";
        self.limits.range_ids(field, ranges)?;
        let failed = if ranges.is_empty() {
            failed
        } else {
            if let Some((i, missing)) = ranges
                .iter()
                .enumerate()
                .find(|(_, r)| failed.get(r).is_none())
            {
                return Err(InvalidArgument {
                    field: format!("{field}[{i}]"),
                    reason: format!("range {missing:?} is not in session_token"),
                }
                .into());
            }
            failed.filter(ranges).ok_or_else(|| InvalidArgument {
                field: field.into(),
                reason: "names no range of session_token".into(),
            })?
        };
        Ok(self
            .store
            .discard(&StoreKey::new(scope, key), &failed)
            .await?)
    }

    /// Merges tokens without storing anything.
    pub fn merge(&self, tokens: &[String]) -> Result<SessionToken, BrokerError> {
        let field = "session_tokens";
        if tokens.is_empty() {
            return Err(InvalidArgument {
                field: field.into(),
                reason: "needs at least one token".into(),
            }
            .into());
        }
        if tokens.len() > self.limits.max_merge_tokens {
            return Err(InvalidArgument {
                field: field.into(),
                reason: format!(
                    "has {} tokens, more than the limit of {}",
                    tokens.len(),
                    self.limits.max_merge_tokens
                ),
            }
            .into());
        }
        let parsed = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| self.limits.parse_token(&format!("{field}[{i}]"), t))
            .collect::<Result<Vec<_>, _>>()?;
        let merged = SessionToken::merge_all(&parsed)
            .map_err(BrokerError::Conflict)?
            .ok_or_else(|| InvalidArgument {
                field: field.into(),
                reason: "needs at least one token".into(),
            })?;
        if merged.len() > self.limits.max_segments {
            return Err(BrokerError::ResourceExhausted(format!(
                "the merged token would have {} segments, more than the limit of {}",
                merged.len(),
                self.limits.max_segments
            )));
        }
        Ok(merged)
    }
}
