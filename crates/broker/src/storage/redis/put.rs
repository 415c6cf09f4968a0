//! PutToken (and the copies and repairs between the two instances) on one Redis instance:
//! read, merge in the broker, commit only if the value is unchanged.
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

use super::error::InstanceError;
use super::ops::InstanceOps;
use super::script::MergeReply;

/// Compare-and-set rounds before a put falls back to the merge script.
pub(crate) const CAS_ATTEMPTS: usize = 3;

/// Merges `token` into the value of `key` on `instance` and refreshes its TTL, atomically with
/// respect to every other writer; the same replies as the merge script.
pub(crate) async fn merge_on<I: InstanceOps>(
    instance: &I,
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
