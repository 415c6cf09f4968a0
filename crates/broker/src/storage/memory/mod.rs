//! The embedded in-memory store: the default when no Redis is configured.
//!
//! Why it exists: a broker you can run with no dependencies, for development, tests and
//! single-replica deployments. It is not durable and not shared between broker replicas, and the
//! server says so at start-up.
//!
//! How it keeps its guarantees in little memory (docs/operations.md has the measured figures):
//! - keys are spread over shards ([`shards`]), each behind a short-held mutex, so a put's
//!   read-merge-write is atomic per key without serialising unrelated keys;
//! - a key is one compact record ([`record`]): scope, key and canonical token text packed in
//!   the shard's memory map ([`arena`]), its position, expiry and hash tag in a 16-byte slot;
//! - expired keys are invisible at once (every read checks the expiry) and removed by a
//!   background sweeper ([`sweeper`]) in small chunks, which shrinks tables and compacts arenas
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

use self::record::{Encoded, Slot};
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

/// The bucket index and slot of `key` in a locked shard.
fn find(shard: &Shard, place: Place, key: &StoreKey) -> Option<(usize, Slot)> {
    let index = shard.table.find_bucket_index(table_hash(place.tag), |s| {
        s.tag == place.tag && shard.arena.view(s).is_for(key)
    })?;
    Some((index, *shard.table.get_bucket(index)?))
}

/// Removes the slot at `index` of a locked shard; its record's bytes are dead.
fn remove(shard: &mut Shard, index: usize) -> bool {
    match shard.table.get_bucket_entry(index) {
        Ok(entry) => {
            let (slot, _) = entry.remove();
            shard.arena.forget(&slot);
            true
        }
        Err(_) => false,
    }
}

impl MemoryStore {
    /// Removes an expired slot met by a request (the sweeper would, a little later).
    fn remove_expired(&self, shard: &mut Shard, index: usize) {
        if remove(shard, index) {
            self.shards.release(1);
        }
    }

    /// Writes `token` as the record of the existing slot at `index`, with a new expiry.
    fn rewrite(
        shard: &mut Shard,
        index: usize,
        slot: Slot,
        key: &StoreKey,
        token: &str,
        expires: u32,
    ) -> Result<(), StoreError> {
        let record = Encoded::new(key, token)?;
        let Shard { table, arena } = shard;
        let (at, len) = arena.replace_token(table, &slot, &record, token)?;
        if let Some(s) = table.get_bucket_mut(index) {
            *s = Slot {
                at,
                len,
                expires,
                ..slot
            };
        }
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
        if let Some((index, slot)) = find(shard, place, key) {
            // An expired record is replaced as if absent: its token does not come back.
            let merged = if slot.is_expired(now) {
                token.clone()
            } else {
                shard.arena.view(&slot).token()?.merge(token)?
            };
            within_segment_limit(&merged, params)?;
            Self::rewrite(shard, index, slot, key, &merged.to_string(), expires)?;
            return Ok(merged);
        }
        within_segment_limit(token, params)?;
        let text = token.to_string();
        let record = Encoded::new(key, &text)?;
        if !self.shards.reserve() {
            self.shards.purge(shard);
            if !self.shards.reserve() {
                return Err(StoreError::Full {
                    limit: self.shards.max_keys,
                });
            }
        }
        let (at, len) = match shard.arena.append(&mut shard.table, &record) {
            Ok(position) => position,
            Err(e) => {
                self.shards.release(1);
                return Err(e);
            }
        };
        let slot = Slot {
            at,
            len,
            expires,
            tag: place.tag,
        };
        shard
            .table
            .insert_unique(table_hash(place.tag), slot, rehash);
        Ok(token.clone())
    }

    async fn get(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        let place = self.shards.place(key);
        let now = self.shards.now();
        let mut guard = self.shards.lock(place.shard);
        let token = match find(&guard, place, key) {
            Some((index, slot)) if slot.is_expired(now) => {
                self.remove_expired(&mut guard, index);
                None
            }
            Some((_, slot)) => Some(guard.arena.view(&slot).token()?),
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
        let Some((index, slot)) = find(&guard, place, key) else {
            return Ok(Discarded::default());
        };
        if slot.is_expired(now) {
            self.remove_expired(&mut guard, index);
            return Ok(Discarded::default());
        }
        let discarded = discard::apply(&guard.arena.view(&slot).token()?, failed);
        match &discarded.remaining {
            // The TTL stays as it is.
            Some(remaining) => Self::rewrite(
                &mut guard,
                index,
                slot,
                key,
                &remaining.to_string(),
                slot.expires,
            )?,
            None => {
                if remove(&mut guard, index) {
                    self.shards.release(1);
                }
            }
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
