//! The pair's write paths: PutToken (the primary first, the fallback when the primary cannot
//! serve) and DiscardToken (both instances, each through the copy queue).
//!
//! Why failover only on a transient error: an instance that answered with an error (a script
//! error, WRONGTYPE, a bug) would answer the fallback alike, and taking it for down would move
//! every put to the fallback; such a call fails with INTERNAL, logged with the key's hash.

use session_token::SessionToken;

use super::copy_queue::{CopyOp, CopyTtl};
use super::error::{InstanceError, Role};
use super::keys::log_hash;
use super::metrics::PairEvent;
use super::ops::InstanceOps;
use super::options::ReadMode;
use super::pair::Pair;
use super::put::merge_on;
use super::script::MergeReply;
use crate::storage::discard::Discarded;
use crate::storage::{PutParams, StoreError, StoreKey};

impl<I: InstanceOps> Pair<I> {
    /// PutToken: merged on the primary and copied to the fallback through the queue; on the
    /// fallback, synchronously, when the primary fails with a transient error.
    pub(super) async fn put(
        &self,
        key: &StoreKey,
        token: &SessionToken,
        params: PutParams,
    ) -> Result<SessionToken, StoreError> {
        let redis_key = self.keys.redis_key(key);
        let primary_error = match put_on(&*self.shared.primary, &redis_key, token, params).await {
            Ok(Ok(stored)) => {
                self.enqueue(
                    Role::Fallback,
                    redis_key,
                    CopyOp::Merge {
                        token: stored.clone(),
                        ttl: CopyTtl::Fixed(params.ttl),
                    },
                );
                return Ok(stored);
            }
            Ok(Err(refused)) => return Err(refused),
            // The primary answered: the same put would fail on the fallback too.
            Err(e) if !e.is_transient() => return Err(internal(&redis_key, &e)),
            Err(e) => e,
        };
        let Some(fallback) = &self.shared.fallback else {
            return Err(StoreError::Unavailable(primary_error.to_string()));
        };
        match put_on(&**fallback, &redis_key, token, params).await {
            Ok(result) => {
                if result.is_ok() {
                    self.shared.count(PairEvent::FallbackWrite);
                    tracing::debug!(error = %primary_error, "put written to the fallback");
                    if self.read_mode == ReadMode::Primary {
                        self.primary_missed_a_write().await;
                    }
                }
                result
            }
            Err(e) if !e.is_transient() => Err(internal(&redis_key, &e)),
            Err(fallback_error) => Err(StoreError::Unavailable(format!(
                "{primary_error}; {fallback_error}"
            ))),
        }
    }

    /// DiscardToken on both instances; UNAVAILABLE when one could not apply it (what the other
    /// did stands; a discard is idempotent).
    pub(super) async fn discard(
        &self,
        key: &StoreKey,
        failed: &SessionToken,
    ) -> Result<Discarded, StoreError> {
        let redis_key = self.keys.redis_key(key);
        let (primary, fallback) = tokio::join!(
            self.discard_on_role(Role::Primary, &redis_key, failed),
            self.discard_on_role(Role::Fallback, &redis_key, failed)
        );
        let Some(primary) = primary else {
            return Err(StoreError::Unavailable("no primary instance".into()));
        };
        let (primary, fallback) = match (primary, fallback) {
            (Ok(p), None) => (p, Discarded::default()),
            (Ok(p), Some(Ok(f))) => (p, f),
            (Err(e), None | Some(Ok(_))) | (Ok(_), Some(Err(e))) => {
                return Err(StoreError::Unavailable(format!(
                    "discard not applied everywhere: {e}"
                )));
            }
            (Err(p), Some(Err(f))) => return Err(StoreError::Unavailable(format!("{p}; {f}"))),
        };
        let mut removed = primary.removed;
        removed.extend(fallback.removed);
        removed.sort();
        removed.dedup();
        let remaining = match (primary.remaining, fallback.remaining) {
            (Some(p), Some(f)) => Some(p.merge(&f).unwrap_or(p)),
            (p, f) => p.or(f),
        };
        Ok(Discarded { removed, remaining })
    }
}

/// A put on one instance: the store's answer, or the instance's error.
async fn put_on<I: InstanceOps>(
    instance: &I,
    key: &str,
    token: &SessionToken,
    params: PutParams,
) -> Result<Result<SessionToken, StoreError>, InstanceError> {
    let reply = merge_on(instance, key, token, params.ttl, params.max_segments).await?;
    Ok(match reply {
        MergeReply::Merged {
            token,
            replaced_corrupt,
        } => {
            if replaced_corrupt {
                tracing::warn!(
                    redis = instance.name(),
                    "unparsable stored token overwritten"
                );
            }
            Ok(token)
        }
        MergeReply::Conflict(e) => Err(StoreError::Conflict(e)),
        MergeReply::TooManySegments(segments) => Err(StoreError::TooManySegments {
            segments,
            limit: params.max_segments,
        }),
        MergeReply::BadInput => Err(internal(
            key,
            &InstanceError::Command(
                instance.name(),
                "the merge script could not parse the token (a broker/script mismatch)".into(),
            ),
        )),
    })
}

/// A store error no retry fixes, logged with the key's hash (never the key).
fn internal(redis_key: &str, error: &InstanceError) -> StoreError {
    tracing::error!(key_hash = %log_hash(redis_key), %error, "Redis refused a command: failing the call, the instance stays up");
    StoreError::Internal(error.to_string())
}
