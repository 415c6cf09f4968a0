//! The state a primary/fallback pair shares between the store and its background tasks (the
//! copier, the health checks, the recovery window), and its counters.
//!
//! Why a module of its own: the store's write path, copy queue, read path and recovery window
//! (`dual`, `copy_queue`, `recovery`) all hold it; keeping it apart keeps each of them to one job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::instance::{RedisInstance, Role};

/// Counters of the pair, for metrics and tests.
#[derive(Debug, Default)]
pub struct DualStats {
    /// Copies to the fallback (or repairs to the primary) waiting or in flight.
    pub copies_pending: AtomicU64,
    /// Copies applied, or superseded in the queue by a later copy of the same key.
    pub copies_done: AtomicU64,
    /// Copies dropped because the queue was full.
    pub copies_dropped: AtomicU64,
    /// Copies that reached the instance but failed (down, timeout, conflict).
    pub copies_failed: AtomicU64,
    /// Puts written to the fallback because the primary failed.
    pub fallback_writes: AtomicU64,
    /// Reads answered without consulting every instance.
    pub degraded_reads: AtomicU64,
    /// Merged tokens written back to a primary that was behind.
    pub read_repairs: AtomicU64,
}

/// The state the store and its background tasks share.
pub(super) struct Shared {
    pub(super) primary: Arc<RedisInstance>,
    pub(super) fallback: Option<Arc<RedisInstance>>,
    pub(super) stats: DualStats,
    pub(super) drained: Notify,
    /// Unix milliseconds until which `primary` read mode merges both instances.
    pub(super) merge_reads_until: AtomicU64,
    pub(super) marker_key: String,
}

impl Shared {
    pub(super) fn instance(&self, role: Role) -> Option<&Arc<RedisInstance>> {
        match role {
            Role::Primary => Some(&self.primary),
            Role::Fallback => self.fallback.as_ref(),
        }
    }

    pub(super) fn copy_finished(&self) {
        if self.stats.copies_pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_waiters();
        }
    }
}

pub(super) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
