//! The pair's read path: GetToken from one or both instances, merged, with read repair.
//!
//! Why merge and repair: in the default `merge` mode both instances are read at once, so a
//! token written to the fallback during a primary outage wins even after the primary comes back
//! empty or behind, whichever broker replica took the write. When the fallback knows more, the
//! merge is written back to the primary through the copy queue, with the fallback key's
//! remaining TTL, so a repair never extends a token's life. A read that could not consult every
//! instance it meant to is `degraded`; with every instance down it fails, and the broker
//! answers a degraded miss.

use session_token::SessionToken;

use super::error::Role;
use super::metrics::PairEvent;
use super::ops::InstanceOps;
use super::pair::Pair;
use crate::storage::{Lookup, StoreError, StoreKey};

impl<I: InstanceOps> Pair<I> {
    /// GetToken (see the module header).
    pub(super) async fn get(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        let redis_key = self.keys.redis_key(key);
        let Some(fallback) = &self.shared.fallback else {
            let raw = self
                .shared
                .primary
                .get(&redis_key)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            return Ok(Lookup {
                token: parse_stored(Role::Primary, raw),
                degraded: false,
            });
        };

        let (primary, fallback_answer) = if self.merge_reads_now() {
            let (p, f) = tokio::join!(
                self.shared.primary.get(&redis_key),
                fallback.get(&redis_key)
            );
            (p, Some(f))
        } else {
            match self.shared.primary.get(&redis_key).await {
                Ok(p) => (Ok(p), None),
                Err(e) => (Err(e), Some(fallback.get(&redis_key).await)),
            }
        };

        let degraded = primary.is_err() || matches!(fallback_answer, Some(Err(_)));
        if degraded {
            self.shared.count(PairEvent::DegradedRead);
        }
        let (primary, fallback_answer) = match (primary, fallback_answer) {
            (Err(p), None) => return Err(StoreError::Unavailable(p.to_string())),
            (Err(p), Some(Err(f))) => {
                return Err(StoreError::Unavailable(format!("{p}; {f}")));
            }
            (p, f) => (p.ok(), f.and_then(Result::ok)),
        };
        // In steady state both instances hold the same bytes (the fallback is a copy): parse
        // once, nothing to merge or repair.
        if let (Some(Some(p)), Some(Some(f))) = (&primary, &fallback_answer)
            && p == f
        {
            return Ok(Lookup {
                token: parse_stored(Role::Primary, primary.flatten()),
                degraded,
            });
        }
        let primary_token = primary.and_then(|raw| parse_stored(Role::Primary, raw));
        let fallback_token = fallback_answer.and_then(|raw| parse_stored(Role::Fallback, raw));

        let token = match (primary_token, fallback_token) {
            (Some(p), Some(f)) => match p.merge(&f) {
                Ok(merged) => {
                    if merged != p && !degraded {
                        self.repair(redis_key, &merged);
                    }
                    Some(merged)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "primary and fallback tokens conflict: using the primary's");
                    Some(p)
                }
            },
            (None, Some(f)) => {
                if !degraded {
                    self.repair(redis_key, &f);
                }
                Some(f)
            }
            (p, None) => p,
        };
        Ok(Lookup { token, degraded })
    }
}

/// A stored value as a token; `None` (logged) when it does not parse: the next put overwrites
/// it.
fn parse_stored(role: Role, raw: Option<String>) -> Option<SessionToken> {
    let raw = raw?;
    match SessionToken::parse(&raw) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(redis = role.as_str(), error = %e, "unparsable stored token ignored");
            None
        }
    }
}
