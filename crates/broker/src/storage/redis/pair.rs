//! The pair: a primary instance and an optional fallback, the state they share with the
//! background tasks (the copier, the health checks, the recovery window), and the pair's
//! settings.
//!
//! Why generic over the instance ([`InstanceOps`]): the pair's rules — the write path (`write`),
//! the read path and its repairs (`read`), the copy queue (`copy_queue`) and the recovery window
//! (`recovery`) — are tested on in-memory instances with failures injected at will (`fake`), as
//! well as on real Redis servers. [`super::RedisStore`] is this pair on two
//! [`super::RedisInstance`]s, with the Redis-only tasks (health pings, read batchers).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc};

use super::copy_queue::{Copy, run_copier};
use super::error::Role;
use super::keys::KeyLayout;
use super::metrics::{PairMetrics, PairStats};
use super::ops::InstanceOps;
use super::options::ReadMode;

/// The state the pair and its background tasks share.
pub(super) struct Shared<I> {
    pub(super) primary: Arc<I>,
    pub(super) fallback: Option<Arc<I>>,
    pub(super) stats: PairStats,
    /// The published metrics, once the serving server registered them (`metrics`).
    pub(super) metrics: OnceLock<PairMetrics>,
    pub(super) drained: Notify,
    /// Unix milliseconds until which `primary` read mode merges both instances.
    pub(super) merge_reads_until: AtomicU64,
    pub(super) marker_key: String,
}

impl<I> Shared<I> {
    pub(super) fn instance(&self, role: Role) -> Option<&Arc<I>> {
        match role {
            Role::Primary => Some(&self.primary),
            Role::Fallback => self.fallback.as_ref(),
        }
    }

    /// Both instances, the primary first.
    pub(super) fn instances(&self) -> impl Iterator<Item = &Arc<I>> {
        std::iter::once(&self.primary).chain(self.fallback.as_ref())
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

/// The pair's settings (from `redis.*`, see `RedisOptions`).
#[derive(Debug, Clone)]
pub(super) struct PairSettings {
    pub(super) keys: KeyLayout,
    pub(super) read_mode: ReadMode,
    /// The token TTL: the length of the `primary` read mode's recovery window.
    pub(super) token_ttl: Duration,
    /// How long a discard waits for its turn in the copy queue before going direct.
    pub(super) queue_wait: Duration,
    /// `redis.copy_queue_capacity`.
    pub(super) queue_capacity: usize,
    /// `redis.copy_batch`.
    pub(super) batch: usize,
}

/// A primary and an optional fallback with the write, read and copy rules of `super::store`'s
/// header.
pub(super) struct Pair<I> {
    pub(super) shared: Arc<Shared<I>>,
    pub(super) keys: KeyLayout,
    pub(super) read_mode: ReadMode,
    pub(super) ttl_hint: Duration,
    pub(super) queue_wait: Duration,
    pub(super) copies: mpsc::Sender<Copy>,
}

impl<I: InstanceOps> Pair<I> {
    /// The pair, and its copier: the task that applies the copy queue, to be spawned (and
    /// aborted with the store).
    pub(super) fn new(
        primary: Arc<I>,
        fallback: Option<Arc<I>>,
        settings: PairSettings,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let shared = Arc::new(Shared {
            primary,
            fallback,
            stats: PairStats::default(),
            metrics: OnceLock::new(),
            drained: Notify::new(),
            merge_reads_until: AtomicU64::new(0),
            marker_key: settings.keys.primary_behind_marker(),
        });
        let (copies, queue) = mpsc::channel(settings.queue_capacity.max(1));
        let copier = run_copier(shared.clone(), queue, settings.batch.max(1));
        let pair = Self {
            shared,
            keys: settings.keys,
            read_mode: settings.read_mode,
            ttl_hint: settings.token_ttl,
            queue_wait: settings.queue_wait,
            copies,
        };
        (pair, copier)
    }

    /// Waits until every queued copy has been applied or given up.
    pub(super) async fn flush_copies(&self) {
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.shared.stats.copies_pending.load(Ordering::Acquire) == 0 {
                return;
            }
            drained.await;
        }
    }
}

pub(super) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
