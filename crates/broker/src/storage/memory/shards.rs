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
    /// No record of the shard expires before this second, so the sweeper skips the shard until
    /// then (with keys written steadily under a 1 h TTL, a shard's oldest key expires every few
    /// seconds: most passes skip most shards). Lowered by every write, recomputed by each full
    /// pass; 0 means "look".
    next_expiry: u32,
}

impl Shard {
    /// A record of this shard was written with this expiry.
    pub(super) fn expires_at(&mut self, expires: u32) {
        self.next_expiry = self.next_expiry.min(expires);
    }
}

/// What the sweeper learned so far in one pass over one shard.
#[derive(Default)]
pub(super) struct Pass {
    /// The next table slot to look at.
    from: usize,
    /// The table's slot count when the pass started.
    buckets: usize,
    /// The earliest expiry among the records kept so far.
    earliest: Option<u32>,
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
            .hash_one((key.scope.as_bytes(), key.name.as_bytes()));
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

    /// Removes the expired records of `shard` among the next `SWEEP_CHUNK` slots of `pass`; at
    /// the end of the table, shrinks it and compacts the arena if they are mostly empty. Returns
    /// whether the pass is over (at once when nothing in the shard can have expired yet), and
    /// how many records were removed. Slot indices stay valid between chunks unless a put grew
    /// the table meanwhile: then some records were looked at twice or not at all, and the shard
    /// is looked at again on the next pass.
    pub(super) fn sweep_chunk(&self, shard: usize, pass: &mut Pass) -> (bool, usize) {
        let now = self.now();
        let mut guard = self.lock(shard);
        let shard = &mut *guard;
        if pass.from == 0 {
            if now < shard.next_expiry {
                return (true, 0);
            }
            pass.buckets = shard.table.num_buckets();
            // Writes during the pass lower it again; the records kept are accounted below.
            shard.next_expiry = u32::MAX;
        }
        let Shard { table, arena, .. } = shard;
        let end = pass
            .from
            .saturating_add(SWEEP_CHUNK)
            .min(table.num_buckets());
        let mut removed = 0;
        for index in pass.from..end {
            if let Ok(entry) = table.get_bucket_entry(index) {
                let expires = arena.view(*entry.get()).expires();
                if now >= expires {
                    arena.forget(entry.remove().0);
                    removed += 1;
                } else {
                    pass.earliest = Some(pass.earliest.map_or(expires, |e| e.min(expires)));
                }
            }
        }
        pass.from = end;
        let done = end >= table.num_buckets();
        if done {
            let earliest = match pass.earliest {
                _ if table.num_buckets() != pass.buckets => 0,
                Some(e) => e,
                None => u32::MAX,
            };
            shard.expires_at(earliest);
            shrink_if_sparse(&mut shard.table, &shard.arena);
            if let Err(e) = shard.arena.compact_if_sparse(&mut shard.table) {
                tracing::warn!(error = %e, "in-memory store: cannot compact a shard");
            }
        }
        drop(guard);
        self.release(removed);
        (done, removed)
    }

    /// Removes every expired record of one (locked) shard: the room-making path of a put that
    /// found the store full.
    pub(super) fn purge(&self, shard: &mut Shard) {
        let now = self.now();
        let Shard { table, arena, .. } = shard;
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
