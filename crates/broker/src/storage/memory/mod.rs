//! The embedded in-memory store: the default when no Redis is configured.
//!
//! Why it exists: a broker you can run with no dependencies, for development, tests and
//! single-replica deployments. It is not durable and not shared between broker replicas, and the
//! server says so at start-up. Keys are spread over shards, each behind a short-held mutex, so
//! a put's read-merge-write is atomic per key without serialising unrelated keys. Expired
//! entries are purged lazily on access and in amortised sweeps, so no background task is needed.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use session_token::SessionToken;
use tokio::sync::watch;

use super::discard::{self, Discarded};
use super::{Lookup, PutParams, StoreError, StoreKey, TokenStore};

const SHARDS: usize = 64;
/// A shard sweeps its expired entries once every this many puts into it.
const SWEEP_EVERY: u32 = 1024;

struct Entry {
    token: SessionToken,
    expires_at: Instant,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<StoreKey, Entry>,
    puts_since_sweep: u32,
}

/// A sharded in-memory token store.
pub struct MemoryStore {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    max_keys_per_shard: usize,
    max_keys: usize,
    ready: watch::Sender<bool>,
}

impl MemoryStore {
    /// A store holding at most about `max_keys` tokens (the bound is enforced per shard).
    pub fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            max_keys_per_shard: max_keys.div_ceil(SHARDS).max(1),
            max_keys,
            ready: watch::Sender::new(true),
        }
    }

    fn shard(&self, key: &StoreKey) -> std::sync::MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        // A panic while holding the lock cannot leave an entry half-written (entries are
        // replaced whole), so a poisoned shard is still consistent: keep serving it.
        match self.shards[index].lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
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
        let now = Instant::now();
        let mut shard = self.shard(key);
        shard.puts_since_sweep += 1;
        if shard.puts_since_sweep >= SWEEP_EVERY {
            shard.puts_since_sweep = 0;
            shard.entries.retain(|_, e| e.expires_at > now);
        }
        let stored = shard
            .entries
            .get(key)
            .filter(|e| e.expires_at > now)
            .map(|e| &e.token);
        let merged = match stored {
            Some(stored) => stored.merge(token)?,
            None => token.clone(),
        };
        if merged.len() > params.max_segments {
            return Err(StoreError::TooManySegments {
                segments: merged.len(),
                limit: params.max_segments,
            });
        }
        if stored.is_none() && !shard.entries.contains_key(key) {
            if shard.entries.len() >= self.max_keys_per_shard {
                shard.entries.retain(|_, e| e.expires_at > now);
            }
            if shard.entries.len() >= self.max_keys_per_shard {
                return Err(StoreError::Full {
                    limit: self.max_keys,
                });
            }
        }
        let expires_at = now
            .checked_add(params.ttl)
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
        shard.entries.insert(
            key.clone(),
            Entry {
                token: merged.clone(),
                expires_at,
            },
        );
        Ok(merged)
    }

    async fn get(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        let token = match shard.entries.get(key) {
            Some(e) if e.expires_at > now => Some(e.token.clone()),
            Some(_) => {
                shard.entries.remove(key);
                None
            }
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
        let now = Instant::now();
        let mut shard = self.shard(key);
        let Some(entry) = shard.entries.get_mut(key).filter(|e| e.expires_at > now) else {
            return Ok(Discarded::default());
        };
        let discarded = discard::apply(&entry.token, failed);
        match &discarded.remaining {
            Some(remaining) => entry.token = remaining.clone(),
            None => {
                shard.entries.remove(key);
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
            self.max_keys
        )
    }
}
