//! DiscardToken on one Redis instance: read, apply the rule in Rust, compare-and-set.
//!
//! Why compare-and-set rather than a script that parses tokens: the rule
//! ([`crate::storage::discard`]) is written once, in Rust, and a discard is rare (one per read
//! that failed on an unservable token), so its extra round trip costs nothing that matters.
//! The swap is atomic (`compare_and_set.lua`): if a put changed the value in between, the
//! discard reads again and re-applies the rule to the new value, so a concurrent put is never
//! lost and a condemned segment never survives a race with one.

use session_token::SessionToken;

use super::error::InstanceError;
use super::ops::InstanceOps;
use crate::storage::discard::{self, Discarded};

/// Compare-and-set attempts before giving up on a key that keeps changing.
pub(crate) const MAX_ATTEMPTS: usize = 16;

/// Applies a discard of `failed` to the value of `key` on `instance`.
pub(crate) async fn discard_on<I: InstanceOps>(
    instance: &I,
    key: &str,
    failed: &SessionToken,
) -> Result<Discarded, InstanceError> {
    for _ in 0..MAX_ATTEMPTS {
        let Some(raw) = instance.get(key).await? else {
            return Ok(Discarded::default());
        };
        let stored = match SessionToken::parse(&raw) {
            Ok(stored) => stored,
            Err(error) => {
                // The next put overwrites it (see merge.lua); nothing here is worth keeping.
                tracing::warn!(redis = instance.name(), %error, "unparsable stored token: left for the next put to overwrite");
                return Ok(Discarded::default());
            }
        };
        let discarded = discard::apply(&stored, failed);
        if discarded.removed.is_empty() {
            return Ok(discarded);
        }
        let new = discarded.remaining.as_ref().map(ToString::to_string);
        if instance.compare_and_set(key, &raw, new.as_deref()).await? {
            return Ok(discarded);
        }
    }
    Err(InstanceError::Contended(instance.name(), MAX_ATTEMPTS))
}
