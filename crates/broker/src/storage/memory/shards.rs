//! The sharded table behind the in-memory store: where a key lives, its expiry clock, the
//! global key count, and sweeping in bounded chunks.
//!
//! Why shards of `hashbrown::HashTable`: a put's read-merge-write must be atomic per key, so each
//! shard is one short-held mutex; many shards keep both contention and the work any one lock
//! covers small (a table grows by rehashing under its lock, and a shard of about a thousand
//! keys rehashes in microseconds). `HashTable` stores just a record's offset in the shard's
//! [`Arena`] (4 bytes and hashbrown's control byte a slot) with no key/value split: comparing
//! keys, checking expiry and rehashing read the record. Its bucket-index API lets the sweeper
//! walk a table a few hundred slots per lock acquisition and resume where it left.
//!
//! Why a global count for `max_keys`: a per-shard bound refuses a key when one shard is full
//! while the others are nearly empty (with many shards, far below the configured limit).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hashbrown::DefaultHashBuilder;

use super::arena::{Arena, Table};
use crate::storage::StoreKey;

/// Table slots examined per lock acquisition by the sweeper.
pub(super) const SWEEP_CHUNK: usize = 512;
/// A table is shrunk when it is less than a quarter full and has at least this many slots.
const SHRINK_ABOVE: usize = 64;

/// Seconds since the store started: the unit of expiry (a `u32` lasts 136 years).
pub(super) struct Clock(Instant);

impl Clock {
    fn now(&self) -> u32 {
        u32::try_from(self.0.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// The first second at which a record written now with `ttl` is expired: rounded up, so a
    /// key lives at least its TTL and less than a second more.
    fn expiry(&self, ttl: Duration) -> u32 {
        let at = self.0.elapsed().saturating_add(ttl);
        let secs = at.as_secs() + u64::from(at.subsec_nanos() > 0);
        u32::try_from(secs).unwrap_or(u32::MAX)
    }
}

/// One shard: a table of record offsets, and the arena holding the records.
#[derive(Default)]
pub(super) struct Shard {
    pub(super) table: Table,
    pub(super) arena: Arena,
}

/// A shard on a cache line of its own, so that locking one does not slow its neighbours.
#[repr(align(64))]
#[derive(Default)]
struct Padded(Mutex<Shard>);

/// Where a key lives: its shard, and the 32 bits of hash its record keeps.
#[derive(Clone, Copy)]
pub(super) struct Place {
    pub(super) shard: usize,
    pub(super) tag: u32,
}

/// The hash a table sees for a record: its tag spread over 64 bits (hashbrown takes the bucket
/// from the low bits and a 7-bit filter from the top ones).
pub(super) fn table_hash(tag: u32) -> u64 {
    u64::from(tag).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The hasher a table needs when it grows or shrinks: the tag kept in each record.
pub(super) fn rehash(arena: &Arena) -> impl Fn(&u32) -> u64 + '_ {
    |at| table_hash(arena.view(*at).tag())
}

pub(super) struct Shards {
    shards: Box<[Padded]>,
    hasher: DefaultHashBuilder,
    pub(super) clock: Clock,
    live: AtomicUsize,
    pub(super) max_keys: usize,
}

impl Shards {
    /// About a thousand keys per shard at `max_keys`, between 16 and 4,096 shards.
    pub(super) fn new(max_keys: usize) -> Self {
        let shards = (max_keys / 1024).next_power_of_two().clamp(16, 4096);
        Self {
            shards: (0..shards).map(|_| Padded::default()).collect(),
            hasher: DefaultHashBuilder::default(),
            clock: Clock(Instant::now()),
            live: AtomicUsize::new(0),
            max_keys,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.shards.len()
    }

    pub(super) fn place(&self, key: &StoreKey) -> Place {
        let h = self
            .hasher
            .hash_one((key.scope.as_bytes(), key.key.as_bytes()));
        // Bits 32.. pick the shard, bits ..32 are the tag: independent of each other.
        Place {
            shard: ((h >> 32) as usize) & (self.shards.len() - 1),
            tag: h as u32,
        }
    }

    pub(super) fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        let padded = &self.shards[shard % self.shards.len()];
        // A panic while holding the lock cannot leave a record half-written (records are
        // replaced whole or byte-for-byte in place), so a poisoned shard is consistent.
        match padded.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(super) fn now(&self) -> u32 {
        self.clock.now()
    }

    pub(super) fn expiry(&self, ttl: Duration) -> u32 {
        self.clock.expiry(ttl)
    }

    /// Keys stored, expired ones not yet swept included.
    pub(super) fn count(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Takes a place for one more key; false when `max_keys` are stored.
    pub(super) fn reserve(&self) -> bool {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_keys).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back the places of `n` removed keys.
    pub(super) fn release(&self, n: usize) {
        if n > 0 {
            self.live.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Removes the expired records of `shard` among its slots `from..from + SWEEP_CHUNK`; at
    /// the end of the table, shrinks it and compacts the arena if they are mostly empty.
    /// Returns where the next chunk starts, or `None` when the shard is done, and how many
    /// records were removed. Slot indices stay valid between chunks unless a put grew the table
    /// meanwhile: then some records are looked at twice or not at all in this pass, and the
    /// next pass catches them.
    pub(super) fn sweep_chunk(&self, shard: usize, from: usize) -> (Option<usize>, usize) {
        let now = self.now();
        let mut guard = self.lock(shard);
        let Shard { table, arena } = &mut *guard;
        let end = from.saturating_add(SWEEP_CHUNK).min(table.num_buckets());
        let mut removed = 0;
        for index in from..end {
            if let Ok(entry) = table.get_bucket_entry(index)
                && arena.view(*entry.get()).is_expired(now)
            {
                arena.forget(entry.remove().0);
                removed += 1;
            }
        }
        let next = if end < table.num_buckets() {
            Some(end)
        } else {
            shrink_if_sparse(table, arena);
            if let Err(e) = arena.compact_if_sparse(table) {
                tracing::warn!(error = %e, "in-memory store: cannot compact a shard");
            }
            None
        };
        drop(guard);
        self.release(removed);
        (next, removed)
    }

    /// Removes every expired record of one (locked) shard: the room-making path of a put that
    /// found the store full.
    pub(super) fn purge(&self, shard: &mut Shard) {
        let now = self.now();
        let Shard { table, arena } = shard;
        let expired: Vec<u32> = table
            .extract_if(|at| arena.view(*at).is_expired(now))
            .collect();
        for at in &expired {
            arena.forget(*at);
        }
        self.release(expired.len());
    }
}

/// Shrinks a table less than a quarter full to twice its length (hysteresis: a table that
/// refills does not regrow at once), giving an emptied one's memory back entirely.
fn shrink_if_sparse(table: &mut Table, arena: &Arena) {
    let capacity = table.capacity();
    if capacity >= SHRINK_ABOVE && table.len() < capacity / 4 {
        table.shrink_to(table.len() * 2, rehash(arena));
    }
}
