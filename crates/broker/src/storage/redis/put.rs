//! PutToken (and the copies and repairs between the two instances) on one Redis instance:
//! read, merge in the broker, commit only if the value is unchanged; and the store's result of
//! a put on one instance (`put_on`).
//!
//! Why not the merge script on every put: a Lua merge parses and formats both tokens inside
//! Redis, about 30 µs of Redis CPU per put (measured with `INFO commandstats`), and one Redis
//! primary serves the whole fleet. Here the merge runs in the broker (`session_token`, exact
//! 64-bit) and Redis does a batched read and a compare-and-set of a few microseconds
//! (`put_if_unchanged.lua`, or `SET NX` for a new key, or `PEXPIRE` when the merge changes
//! nothing). A put that loses the race to another put reads again and merges again, so no
//! update is lost across broker replicas; after [`CAS_ATTEMPTS`] losses on a hot key it falls
//! back to the merge script, which is one atomic step whatever the contention. The stored
//! value's layout is unchanged (the canonical token), so brokers of the previous version, which
//! use the merge script only, run beside these safely.

use std::time::Duration;

use session_token::SessionToken;

use super::dual::RedisStore;
use super::instance::{InstanceError, RedisInstance};
use super::keys::log_hash;
use super::script::MergeReply;
use crate::storage::{PutParams, StoreError};

/// Compare-and-set rounds before a put falls back to the merge script.
pub(crate) const CAS_ATTEMPTS: usize = 3;

/// Merges `token` into the value of `key` on `instance` and refreshes its TTL, atomically with
/// respect to every other writer; the same replies as the merge script.
pub(crate) async fn merge_on(
    instance: &RedisInstance,
    key: &str,
    token: &SessionToken,
    ttl: Duration,
    max_segments: usize,
) -> Result<MergeReply, InstanceError> {
    for _ in 0..CAS_ATTEMPTS {
        let raw = instance.get(key).await?;
        let stored = raw.as_deref().map(SessionToken::parse);
        let merged = match &stored {
            Some(Ok(stored)) => match stored.merge(token) {
                Ok(merged) => merged,
                Err(conflict) => return Ok(MergeReply::Conflict(conflict)),
            },
            // Nothing stored, or a value that does not parse (written by something else):
            // the token replaces it, as the merge script does.
            Some(Err(_)) | None => token.clone(),
        };
        if merged.len() > max_segments {
            return Ok(MergeReply::TooManySegments(merged.len()));
        }
        let text = merged.to_string();
        let stored_ok = matches!(stored, Some(Ok(_)));
        let committed = match raw.as_deref() {
            // The stored token already covers this one: refresh the TTL only (it fails if the
            // key expired since the read, and the put is then made again).
            Some(current) if current == text => instance.pexpire(key, ttl).await?,
            Some(current) => instance.put_if_unchanged(key, current, &text, ttl).await?,
            None => instance.set_if_absent(key, &text, ttl).await?,
        };
        if committed {
            return Ok(MergeReply::Merged {
                token: merged,
                replaced_corrupt: raw.is_some() && !stored_ok,
            });
        }
        instance.note_cas_conflict();
    }
    instance
        .merge(key, &token.to_string(), ttl, max_segments)
        .await
}

impl RedisStore {
    /// A put on one instance, its reply mapped to the store's result (the outer error: the
    /// instance could not be asked or refused the commands).
    pub(super) async fn put_on(
        &self,
        instance: &RedisInstance,
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
}

/// A store error no retry fixes, logged with the key's hash (never the key).
pub(super) fn internal(redis_key: &str, error: &InstanceError) -> StoreError {
    tracing::error!(key_hash = %log_hash(redis_key), %error, "Redis refused a command: failing the call, the instance stays up");
    StoreError::Internal(error.to_string())
}
