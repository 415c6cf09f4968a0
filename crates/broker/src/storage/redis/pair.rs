//! The state a primary/fallback pair shares between the store and its background tasks (the
//! copier, the health checks, the recovery window).
//!
//! Why a module of its own: the store's write path, copy queue, read path and recovery window
//! (`dual`, `copy_queue`, `recovery`) all hold it; keeping it apart keeps each of them to one job.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::instance::{RedisInstance, Role};
use super::metrics::{DualStats, PairMetrics};

/// The state the store and its background tasks share.
pub(super) struct Shared {
    pub(super) primary: Arc<RedisInstance>,
    pub(super) fallback: Option<Arc<RedisInstance>>,
    pub(super) stats: DualStats,
    /// The published metrics, once the serving server registered them (`metrics`).
    pub(super) metrics: OnceLock<PairMetrics>,
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

    pub(super) fn copy_queued(&self) {
        let before = self.stats.copies_pending.fetch_add(1, Ordering::AcqRel);
        self.queue_depth_is(before + 1);
    }

    pub(super) fn copy_finished(&self) {
        let before = self.stats.copies_pending.fetch_sub(1, Ordering::AcqRel);
        self.queue_depth_is(before.saturating_sub(1));
        if before == 1 {
            self.drained.notify_waiters();
        }
    }
}

pub(super) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
