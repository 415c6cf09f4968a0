//! The embedded in-memory store: the default when no Redis is configured.
//!
//! Why it exists: a broker you can run with no dependencies, for development, tests and
//! single-replica deployments. It is not durable and not shared between broker replicas, and the
//! server says so at start-up.
//!
//! How it keeps its guarantees in little memory (docs/operations.md has the measured figures):
//! - keys are spread over shards (`shards`), each behind a short-held mutex, so a put's
//!   read-merge-write is atomic per key without serialising unrelated keys;
//! - a key is one compact record (`record`): expiry, hash tag, scope, key and canonical token
//!   text packed in the shard's memory map (`arena`); the table holds where it starts;
//! - expired keys are invisible at once (every read checks the expiry) and removed by a
//!   background sweeper (`sweeper`) in small chunks, which shrinks tables and compacts arenas
//!   that emptied, so the memory of keys nobody writes again goes back to the OS without
//!   waiting for a request to meet them;
//! - `max_keys` bounds the keys stored (expired ones count until swept): a new key past it is
//!   refused with [`StoreError::Full`], after the shard's expired keys were purged.

mod arena;
mod record;
mod shards;
mod sweeper;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use session_token::SessionToken;
use tokio::sync::watch;

use self::record::Encoded;
use self::shards::{Place, Shard, Shards, rehash, table_hash};
use super::discard::{self, Discarded};
use super::{Lookup, PutParams, StoreError, StoreKey, TokenStore};

/// How often the sweeper passes over every shard by default.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A sharded in-memory token store.
pub struct MemoryStore {
    shards: Arc<Shards>,
    ready: watch::Sender<bool>,
    /// Dropping the store stops its sweeper.
    _sweeper: Option<sweeper::SweeperHandle>,
}

impl MemoryStore {
    /// A store holding at most `max_keys` tokens, swept every [`DEFAULT_SWEEP_INTERVAL`].
    pub fn new(max_keys: usize) -> Self {
        Self::with_sweep_interval(max_keys, DEFAULT_SWEEP_INTERVAL)
    }

    /// A store holding at most `max_keys` tokens whose sweeper passes every `interval`.
    pub fn with_sweep_interval(max_keys: usize, interval: Duration) -> Self {
        let shards = Arc::new(Shards::new(max_keys.max(1)));
        Self {
            _sweeper: sweeper::start(shards.clone(), interval),
            shards,
            ready: watch::Sender::new(true),
        }
    }

    /// Keys stored, counting expired keys the sweeper has not removed yet.
    pub fn len(&self) -> usize {
        self.shards.count()
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn within_segment_limit(token: &SessionToken, params: PutParams) -> Result<(), StoreError> {
    if token.len() > params.max_segments {
        return Err(StoreError::TooManySegments {
            segments: token.len(),
            limit: params.max_segments,
        });
    }
    Ok(())
}

/// The bucket index of `key` in a locked shard, and where its record starts.
fn find(shard: &Shard, place: Place, key: &StoreKey) -> Option<(usize, u32)> {
    let index = shard.table.find_bucket_index(table_hash(place.tag), |at| {
        let record = shard.arena.view(*at);
        record.tag() == place.tag && record.is_for(key)
    })?;
    Some((index, *shard.table.get_bucket(index)?))
}

impl MemoryStore {
    /// Removes the record at bucket `index` of a locked shard.
    fn remove(&self, shard: &mut Shard, index: usize) {
        if let Ok(entry) = shard.table.get_bucket_entry(index) {
            let (at, _) = entry.remove();
            shard.arena.forget(at);
            self.shards.release(1);
        }
    }

    /// Writes a new record for the key at bucket `index` of a locked shard.
    fn rewrite(
        shard: &mut Shard,
        index: usize,
        at: u32,
        record: &Encoded<'_>,
    ) -> Result<(), StoreError> {
        let Shard { table, arena, .. } = &mut *shard;
        let moved = arena.replace(table, at, record)?;
        if let Some(slot) = table.get_bucket_mut(index) {
            *slot = moved;
        }
        shard.expires_at(record.expires());
        Ok(())
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn put(
        &self,
        key: &StoreKey,
        token: &SessionToken,
        params: PutParams,
    ) -> Result<SessionToken, StoreError> {
        let place = self.shards.place(key);
        let now = self.shards.now();
        let expires = self.shards.expiry(params.ttl);
        let mut guard = self.shards.lock(place.shard);
        let shard = &mut *guard;
        if let Some((index, at)) = find(shard, place, key) {
            let stored = shard.arena.view(at);
            // An expired record is replaced as if absent: its token does not come back.
            let merged = if stored.is_expired(now) {
                token.clone()
            } else {
                stored.token()?.merge(token)?
            };
            within_segment_limit(&merged, params)?;
            let text = merged.to_string();
            Self::rewrite(
                shard,
                index,
                at,
                &Encoded::new(key, &text, expires, place.tag)?,
            )?;
            return Ok(merged);
        }
        within_segment_limit(token, params)?;
        let text = token.to_string();
        let record = Encoded::new(key, &text, expires, place.tag)?;
        if !self.shards.reserve() {
            self.shards.purge(shard);
            if !self.shards.reserve() {
                return Err(StoreError::Full {
                    limit: self.shards.max_keys,
                });
            }
        }
        let Shard { table, arena, .. } = &mut *shard;
        let at = match arena.append(table, &record) {
            Ok(at) => at,
            Err(e) => {
                self.shards.release(1);
                return Err(e);
            }
        };
        table.insert_unique(table_hash(place.tag), at, rehash(arena));
        shard.expires_at(expires);
        Ok(token.clone())
    }

    async fn get(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        let place = self.shards.place(key);
        let now = self.shards.now();
        let mut guard = self.shards.lock(place.shard);
        let token = match find(&guard, place, key) {
            // Met by a request before the sweeper came by: removed now.
            Some((index, at)) if guard.arena.view(at).is_expired(now) => {
                self.remove(&mut guard, index);
                None
            }
            Some((_, at)) => Some(guard.arena.view(at).token()?),
            None => None,
        };
        Ok(Lookup {
            token,
            degraded: false,
        })
    }

    async fn discard(
        &self,
        key: &StoreKey,
        failed: &SessionToken,
    ) -> Result<Discarded, StoreError> {
        let place = self.shards.place(key);
        let now = self.shards.now();
        let mut guard = self.shards.lock(place.shard);
        let Some((index, at)) = find(&guard, place, key) else {
            return Ok(Discarded::default());
        };
        let stored = guard.arena.view(at);
        if stored.is_expired(now) {
            self.remove(&mut guard, index);
            return Ok(Discarded::default());
        }
        let (expires, tag) = (stored.expires(), stored.tag());
        let discarded = discard::apply(&stored.token()?, failed);
        match &discarded.remaining {
            // The TTL stays as it is.
            Some(remaining) => {
                let text = remaining.to_string();
                Self::rewrite(
                    &mut guard,
                    index,
                    at,
                    &Encoded::new(key, &text, expires, tag)?,
                )?;
            }
            None => self.remove(&mut guard, index),
        }
        Ok(discarded)
    }

    fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    fn describe(&self) -> String {
        format!(
            "in-memory store (single instance, NOT durable, not shared between replicas; at most {} keys)",
            self.shards.max_keys
        )
    }
}
