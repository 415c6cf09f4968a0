//! Readiness of the pair, and the recovery window of the `primary` read mode.
//!
//! Why: in `primary` read mode the broker reads one instance, which is only safe while the
//! primary has every write. After it may have missed some (this replica wrote to the fallback,
//! the primary restarted, another replica set the primary-behind marker), reads merge both
//! instances for one token TTL. Readiness: the pair can serve while either instance is up.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::ops::InstanceOps;
use super::options::ReadMode;
use super::pair::{Pair, Shared, now_millis};

impl<I: InstanceOps> Pair<I> {
    pub(super) fn merge_reads_now(&self) -> bool {
        match self.read_mode {
            ReadMode::Merge => true,
            ReadMode::Primary => {
                self.shared.merge_reads_until.load(Ordering::Acquire) > now_millis()
            }
        }
    }

    /// Starts (or extends) the window in which `primary` read mode merges both instances, here
    /// and, through the marker on the fallback, in every replica.
    pub(super) async fn primary_missed_a_write(&self) {
        let until = now_millis() + self.ttl_hint.as_millis() as u64;
        self.shared
            .merge_reads_until
            .fetch_max(until, Ordering::AcqRel);
        if let Some(fallback) = &self.shared.fallback
            && let Err(e) = fallback
                .set_px(&self.shared.marker_key, "1", self.ttl_hint)
                .await
        {
            tracing::warn!(error = %e, "cannot set the primary-behind marker");
        }
    }
}

/// Ready while at least one instance is up.
pub(super) async fn forward_readiness<I: InstanceOps>(
    mut up: watch::Receiver<bool>,
    instances: Vec<Arc<I>>,
    ready: watch::Sender<bool>,
) {
    loop {
        let any_up = instances.iter().any(|i| i.is_up());
        ready.send_if_modified(|v| {
            let changed = *v != any_up;
            *v = any_up;
            changed
        });
        if up.changed().await.is_err() {
            return;
        }
    }
}

/// In `primary` read mode, after each health round: opens the recovery window when the primary
/// restarted, or when another replica marked it behind.
pub(super) async fn poll_recovery_window<I: InstanceOps>(shared: Arc<Shared<I>>, ttl: Duration) {
    let mut behind = shared.primary.take_restarted();
    if let Some(fallback) = &shared.fallback
        && let Ok(Some(_)) = fallback.get(&shared.marker_key).await
    {
        behind = true;
    }
    if behind {
        let until = now_millis() + ttl.as_millis() as u64;
        let before = shared.merge_reads_until.fetch_max(until, Ordering::AcqRel);
        if before <= now_millis() {
            tracing::warn!("primary may be behind: reading both instances until the window ends");
        }
    }
}
