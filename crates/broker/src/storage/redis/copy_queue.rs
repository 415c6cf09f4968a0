//! The queue of asynchronous work between the two instances: copies of stored tokens to the
//! fallback, read repairs to the primary, and discards ordered after them.
//!
//! Why a queue: a put is acknowledged once durable on the primary; copying it to the fallback
//! must not make the caller wait, and must not pile up without bound when the fallback is slow
//! (a full queue drops the copy and counts it). A discard goes through the same queue so that
//! it lands after every copy queued before it for its key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use session_token::SessionToken;
use tokio::sync::{mpsc, oneshot};

use super::discard::discard_on;
use super::error::{InstanceError, Role};
use super::metrics::PairEvent;
use super::ops::InstanceOps;
use super::pair::{Pair, Shared};
use super::put::merge_on;
use super::script::MergeReply;
use crate::storage::discard::Discarded;

pub(super) struct Copy {
    pub(super) target: Role,
    pub(super) key: String,
    pub(super) op: CopyOp,
}

/// What a queued copy does to its target.
pub(super) enum CopyOp {
    /// Merges a token in (a copy to the fallback, or a read repair to the primary).
    Merge { token: SessionToken, ttl: CopyTtl },
    /// Applies a DiscardToken after every copy queued before it (a copy of the condemned
    /// segment still in the queue must not bring it back), answering on `done`.
    Discard {
        failed: SessionToken,
        done: oneshot::Sender<Result<Discarded, InstanceError>>,
    },
}

/// The TTL a copy is written with.
#[derive(Debug, Clone, Copy)]
pub(super) enum CopyTtl {
    /// The put's own TTL (copies to the fallback).
    Fixed(Duration),
    /// The fallback key's remaining TTL, read when the repair is applied, so a repair never
    /// extends a token's life (repairs to the primary).
    RemainingOnFallback,
}

impl<I: InstanceOps> Pair<I> {
    /// Queues a copy; false when it was dropped (queue full) or has no target.
    pub(super) fn enqueue(&self, target: Role, key: String, op: CopyOp) -> bool {
        if self.shared.instance(target).is_none() {
            return false;
        }
        self.shared.copy_queued();
        if self.copies.try_send(Copy { target, key, op }).is_err() {
            self.shared.count(PairEvent::CopyDropped);
            self.shared.copy_finished();
            tracing::warn!(target = target.as_str(), "copy queue full: copy dropped");
            return false;
        }
        true
    }

    /// A discard on one instance, through the copy queue so that it lands after every copy
    /// and repair queued before it; directly when the queue is full or too slow (the queued
    /// one then lands later, harmlessly: a discard is idempotent).
    pub(super) async fn discard_on_role(
        &self,
        role: Role,
        redis_key: &str,
        failed: &SessionToken,
    ) -> Option<Result<Discarded, InstanceError>> {
        let instance = self.shared.instance(role)?;
        let (done, answer) = oneshot::channel();
        let queued = self.enqueue(
            role,
            redis_key.to_owned(),
            CopyOp::Discard {
                failed: failed.clone(),
                done,
            },
        );
        if queued && let Ok(Ok(result)) = tokio::time::timeout(self.queue_wait, answer).await {
            return Some(result);
        }
        Some(discard_on(&**instance, redis_key, failed).await)
    }

    pub(super) fn repair(&self, redis_key: String, token: &SessionToken) {
        self.shared.count(PairEvent::ReadRepair);
        self.enqueue(
            Role::Primary,
            redis_key,
            CopyOp::Merge {
                token: token.clone(),
                ttl: CopyTtl::RemainingOnFallback,
            },
        );
    }
}

/// Applies queued copies, up to `batch` at a time (pipelined on the multiplexed connections).
///
/// Merges of one key in a batch are coalesced to the last one: the primary's stored token never
/// goes backwards (except by a discard, which is queued too), so its latest result covers the
/// earlier ones (and a hot key costs the fallback one merge per batch, not one per put). A
/// key's operations are applied in queue order, so a discard lands after every copy queued
/// before it.
pub(super) async fn run_copier<I: InstanceOps>(
    shared: Arc<Shared<I>>,
    mut queue: mpsc::Receiver<Copy>,
    batch: usize,
) {
    let mut buffer = Vec::with_capacity(batch);
    loop {
        buffer.clear();
        if queue.recv_many(&mut buffer, batch).await == 0 {
            return;
        }
        let mut by_key: HashMap<(Role, String), Vec<Copy>> = HashMap::with_capacity(buffer.len());
        for copy in buffer.drain(..) {
            let ops = by_key.entry((copy.target, copy.key.clone())).or_default();
            if matches!(copy.op, CopyOp::Merge { .. }) {
                let before = ops.len();
                ops.retain(|earlier| !matches!(earlier.op, CopyOp::Merge { .. }));
                for _ in ops.len()..before {
                    shared.count(PairEvent::CopyDone);
                    shared.copy_finished();
                }
            }
            ops.push(copy);
        }
        let jobs = by_key.into_values().map(|ops| {
            let shared = shared.clone();
            async move {
                for copy in ops {
                    let target = copy.target;
                    match apply_copy(&shared, copy).await {
                        Ok(true) => shared.count(PairEvent::CopyDone),
                        Ok(false) => {
                            shared.count(PairEvent::CopyFailed);
                            tracing::warn!(
                                target = target.as_str(),
                                "copy refused by the merge (conflict)"
                            );
                        }
                        Err(e) => {
                            shared.count(PairEvent::CopyFailed);
                            tracing::debug!(error = %e, "copy failed");
                        }
                    }
                    shared.copy_finished();
                }
            }
        });
        futures_util::future::join_all(jobs).await;
    }
}

/// Applies one copy; Ok(false) when the target's merge refused it.
async fn apply_copy<I: InstanceOps>(shared: &Shared<I>, copy: Copy) -> Result<bool, InstanceError> {
    let Some(target) = shared.instance(copy.target) else {
        return Ok(false);
    };
    let (token, ttl) = match copy.op {
        CopyOp::Discard { failed, done } => {
            let result = discard_on(&**target, &copy.key, &failed).await;
            let applied = result.is_ok();
            // The caller may have stopped waiting (it then went direct): nothing to do.
            let _ = done.send(result);
            return Ok(applied);
        }
        CopyOp::Merge { token, ttl } => (token, ttl),
    };
    let ttl = match ttl {
        CopyTtl::Fixed(ttl) => ttl,
        CopyTtl::RemainingOnFallback => {
            let Some(fallback) = shared.fallback.as_ref() else {
                return Ok(false);
            };
            match fallback.pttl(&copy.key).await? {
                Some(remaining) => remaining,
                // Gone (expired) or no expiry: nothing worth repairing.
                None => return Ok(true),
            }
        }
    };
    let reply = merge_on(&**target, &copy.key, &token, ttl, usize::MAX).await?;
    Ok(matches!(reply, MergeReply::Merged { .. }))
}
