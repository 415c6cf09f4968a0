//! The production store: a primary Redis, and an optional fallback Redis.
//!
//! Why this shape:
//! - **Writes** are durable on the primary before the reply; the stored result is then copied
//!   to the fallback asynchronously through a bounded queue (full queue: the copy is dropped and
//!   counted; the caller never waits). If the primary fails, the put goes to the fallback,
//!   synchronously, so an acknowledged put is always on at least one instance. With both down,
//!   puts fail fast with UNAVAILABLE (the breakers skip dead instances).
//! - **Reads**, in the default `merge` mode, ask both instances at once and merge the answers:
//!   a token written to the fallback during a primary outage wins even after the primary comes
//!   back empty or behind, whichever broker replica took the write, with no coordination. When
//!   the fallback knows more than the primary, the merged token is written back to the primary
//!   (read repair). The `primary` mode reads one instance: the primary, the fallback only when
//!   the primary fails, and both (merging, repairing) during a recovery window of one token TTL
//!   after the primary missed writes, which is when it can be behind. Replicas learn of a missed
//!   write through a marker key on the fallback, polled by the health checks, so in that mode
//!   another replica may read a stale primary for up to one health interval.
//! - A read that cannot consult both instances is flagged `degraded`; with both down it is a
//!   degraded miss (the broker never fails a GetToken because of Redis).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use session_token::SessionToken;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::breaker::BREAKER_STATES;
use super::discard::discard_on;
use super::instance::{
    InstanceError, RedisInstance, Role, spawn_get_batchers, spawn_health_checks,
};
use super::keys::KeyLayout;
use super::options::{ReadMode, RedisOptions};
use super::put::merge_on;
use super::script::MergeReply;
use crate::metrics::Sample;
use crate::storage::discard::Discarded;
use crate::storage::{Lookup, PutParams, StoreError, StoreKey, TokenStore};

/// Counters of the pair, for metrics and tests.
#[derive(Debug, Default)]
pub struct DualStats {
    /// Copies to the fallback (or repairs to the primary) waiting or in flight.
    pub copies_pending: AtomicU64,
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

struct Copy {
    target: Role,
    key: String,
    op: CopyOp,
}

/// What a queued copy does to its target.
enum CopyOp {
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
enum CopyTtl {
    /// The put's own TTL (copies to the fallback).
    Fixed(Duration),
    /// The fallback key's remaining TTL, read when the repair is applied, so a repair never
    /// extends a token's life (repairs to the primary).
    RemainingOnFallback,
}

struct Shared {
    primary: Arc<RedisInstance>,
    fallback: Option<Arc<RedisInstance>>,
    stats: DualStats,
    drained: Notify,
    /// Unix milliseconds until which `primary` read mode merges both instances.
    merge_reads_until: AtomicU64,
    marker_key: String,
}

impl Shared {
    fn instance(&self, role: Role) -> Option<&Arc<RedisInstance>> {
        match role {
            Role::Primary => Some(&self.primary),
            Role::Fallback => self.fallback.as_ref(),
        }
    }

    fn copy_finished(&self) {
        if self.stats.copies_pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_waiters();
        }
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct DualRedisStore {
    shared: Arc<Shared>,
    keys: KeyLayout,
    read_mode: ReadMode,
    ttl_hint: Duration,
    /// How long a discard waits for its turn in the copy queue before going direct.
    queue_wait: Duration,
    copies: mpsc::Sender<Copy>,
    ready: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DualRedisStore {
    /// Builds the store and starts its background tasks (health checks, copier). Does not wait
    /// for Redis: the store starts not ready and becomes ready when an instance answers.
    /// `token_ttl` sizes the recovery window of the `primary` read mode.
    pub fn start(options: &RedisOptions, token_ttl: Duration) -> Result<Self, String> {
        options.validate()?;
        // rediss:// uses rustls; the process-wide provider is ring. An error only means a
        // provider was installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let primary_url = options
            .primary_url
            .clone()
            .ok_or("redis.primary_url is not set")?;
        let primary = Arc::new(RedisInstance::new(Role::Primary, primary_url, options)?);
        let fallback = match &options.fallback_url {
            Some(url) => Some(Arc::new(RedisInstance::new(
                Role::Fallback,
                url.clone(),
                options,
            )?)),
            None => None,
        };
        let keys = KeyLayout::new(options.namespace.clone());
        let shared = Arc::new(Shared {
            primary,
            fallback,
            stats: DualStats::default(),
            drained: Notify::new(),
            merge_reads_until: AtomicU64::new(0),
            marker_key: keys.primary_behind_marker(),
        });
        let ready = watch::Sender::new(false);
        let mut tasks = Vec::new();

        let (copies, queue) = mpsc::channel(options.fallback_queue_capacity);
        tasks.push(tokio::spawn(run_copier(
            shared.clone(),
            queue,
            options.fallback_batch,
        )));

        let instances: Vec<_> = std::iter::once(shared.primary.clone())
            .chain(shared.fallback.clone())
            .collect();
        for instance in &instances {
            tasks.extend(spawn_get_batchers(instance));
        }
        for instance in &instances {
            tasks.push(tokio::spawn(forward_readiness(
                instance.up(),
                instances.clone(),
                ready.clone(),
            )));
        }
        let after_round = {
            let shared = shared.clone();
            let mode = options.read_mode;
            move || {
                if mode == ReadMode::Primary {
                    let shared = shared.clone();
                    tokio::spawn(poll_recovery_window(shared, token_ttl));
                }
            }
        };
        tasks.push(spawn_health_checks(
            instances,
            options.health_interval,
            after_round,
        ));

        Ok(Self {
            shared,
            keys,
            read_mode: options.read_mode,
            ttl_hint: token_ttl,
            queue_wait: options.operation_timeout * 4,
            copies,
            ready,
            tasks,
        })
    }

    pub fn stats(&self) -> &DualStats {
        &self.shared.stats
    }

    pub fn primary(&self) -> &Arc<RedisInstance> {
        &self.shared.primary
    }

    pub fn fallback(&self) -> Option<&Arc<RedisInstance>> {
        self.shared.fallback.as_ref()
    }

    /// The Redis key of a stored token.
    pub fn redis_key(&self, key: &StoreKey) -> String {
        self.keys.token(key)
    }

    /// Waits until every queued copy has been applied or given up.
    pub async fn flush_copies(&self) {
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

    /// Queues a copy; false when it was dropped (queue full) or has no target.
    fn enqueue(&self, target: Role, key: String, op: CopyOp) -> bool {
        if self.shared.instance(target).is_none() {
            return false;
        }
        self.shared
            .stats
            .copies_pending
            .fetch_add(1, Ordering::AcqRel);
        if self.copies.try_send(Copy { target, key, op }).is_err() {
            self.shared
                .stats
                .copies_dropped
                .fetch_add(1, Ordering::Relaxed);
            self.shared.copy_finished();
            tracing::warn!(target = target.as_str(), "copy queue full: copy dropped");
            return false;
        }
        true
    }

    /// A discard on one instance, through the copy queue so that it lands after every copy
    /// and repair queued before it; directly when the queue is full or too slow (the queued
    /// one then lands later, harmlessly: a discard is idempotent).
    async fn discard_on_role(
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
        Some(discard_on(instance, redis_key, failed).await)
    }

    fn parse_stored(&self, role: Role, raw: Option<String>) -> Option<SessionToken> {
        let raw = raw?;
        match SessionToken::parse(&raw) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(redis = role.as_str(), error = %e, "unparsable stored token ignored");
                None
            }
        }
    }

    fn merge_reads_now(&self) -> bool {
        match self.read_mode {
            ReadMode::Merge => true,
            ReadMode::Primary => {
                self.shared.merge_reads_until.load(Ordering::Acquire) > now_millis()
            }
        }
    }

    /// Starts (or extends) the window in which `primary` read mode merges both instances, here
    /// and, through the marker on the fallback, in every replica.
    async fn primary_missed_a_write(&self) {
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

    fn repair(&self, redis_key: String, token: &SessionToken) {
        self.shared
            .stats
            .read_repairs
            .fetch_add(1, Ordering::Relaxed);
        self.enqueue(
            Role::Primary,
            redis_key,
            CopyOp::Merge {
                token: token.clone(),
                ttl: CopyTtl::RemainingOnFallback,
            },
        );
    }

    async fn put_on(
        &self,
        instance: &RedisInstance,
        key: &str,
        token: &SessionToken,
        params: PutParams,
    ) -> Result<Result<SessionToken, StoreError>, InstanceError> {
        let reply = merge_on(instance, key, token, params.ttl, params.max_segments).await?;
        Ok(match reply {
            MergeReply::Merged {
                token,
                replaced_corrupt,
            } => {
                if replaced_corrupt {
                    tracing::warn!(
                        redis = instance.name(),
                        "unparsable stored token overwritten"
                    );
                }
                Ok(token)
            }
            MergeReply::Conflict(e) => Err(StoreError::Conflict(e)),
            MergeReply::TooManySegments(segments) => Err(StoreError::TooManySegments {
                segments,
                limit: params.max_segments,
            }),
        })
    }
}

impl Drop for DualRedisStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Ready while at least one instance is up.
async fn forward_readiness(
    mut up: watch::Receiver<bool>,
    instances: Vec<Arc<RedisInstance>>,
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
async fn poll_recovery_window(shared: Arc<Shared>, ttl: Duration) {
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

/// Applies queued copies, up to `batch` at a time (pipelined on the multiplexed connections).
///
/// Merges of one key in a batch are coalesced to the last one: the primary's stored token never
/// goes backwards (except by a discard, which is queued too), so its latest result covers the
/// earlier ones (and a hot key costs the fallback one merge per batch, not one per put). A
/// key's operations are applied in queue order, so a discard lands after every copy queued
/// before it.
async fn run_copier(shared: Arc<Shared>, mut queue: mpsc::Receiver<Copy>, batch: usize) {
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
                    shared.stats.copies_done.fetch_add(1, Ordering::Relaxed);
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
                        Ok(true) => {
                            shared.stats.copies_done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {
                            shared.stats.copies_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                target = target.as_str(),
                                "copy refused by the merge (conflict)"
                            );
                        }
                        Err(e) => {
                            shared.stats.copies_failed.fetch_add(1, Ordering::Relaxed);
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
async fn apply_copy(shared: &Shared, copy: Copy) -> Result<bool, InstanceError> {
    let Some(target) = shared.instance(copy.target) else {
        return Ok(false);
    };
    let (token, ttl) = match copy.op {
        CopyOp::Discard { failed, done } => {
            let result = discard_on(target, &copy.key, &failed).await;
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
    let reply = merge_on(target, &copy.key, &token, ttl, usize::MAX).await?;
    Ok(matches!(reply, MergeReply::Merged { .. }))
}

#[async_trait]
impl TokenStore for DualRedisStore {
    async fn put(
        &self,
        key: &StoreKey,
        token: &SessionToken,
        params: PutParams,
    ) -> Result<SessionToken, StoreError> {
        let redis_key = self.keys.token(key);
        let primary_error = match self
            .put_on(&self.shared.primary, &redis_key, token, params)
            .await
        {
            Ok(Ok(stored)) => {
                self.enqueue(
                    Role::Fallback,
                    redis_key,
                    CopyOp::Merge {
                        token: stored.clone(),
                        ttl: CopyTtl::Fixed(params.ttl),
                    },
                );
                return Ok(stored);
            }
            Ok(Err(refused)) => return Err(refused),
            Err(e) => e,
        };
        let Some(fallback) = &self.shared.fallback else {
            return Err(StoreError::Unavailable(primary_error.to_string()));
        };
        match self.put_on(fallback, &redis_key, token, params).await {
            Ok(result) => {
                if result.is_ok() {
                    self.shared
                        .stats
                        .fallback_writes
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %primary_error, "put written to the fallback");
                    if self.read_mode == ReadMode::Primary {
                        self.primary_missed_a_write().await;
                    }
                }
                result
            }
            Err(fallback_error) => Err(StoreError::Unavailable(format!(
                "{primary_error}; {fallback_error}"
            ))),
        }
    }

    async fn get(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        let redis_key = self.keys.token(key);
        let Some(fallback) = &self.shared.fallback else {
            let raw = self
                .shared
                .primary
                .get(&redis_key)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            return Ok(Lookup {
                token: self.parse_stored(Role::Primary, raw),
                degraded: false,
            });
        };

        let (primary, fallback_answer) = if self.merge_reads_now() {
            let (p, f) = tokio::join!(
                self.shared.primary.get(&redis_key),
                fallback.get(&redis_key)
            );
            (p, Some(f))
        } else {
            match self.shared.primary.get(&redis_key).await {
                Ok(p) => (Ok(p), None),
                Err(e) => (Err(e), Some(fallback.get(&redis_key).await)),
            }
        };

        let degraded = primary.is_err() || matches!(fallback_answer, Some(Err(_)));
        if degraded {
            self.shared
                .stats
                .degraded_reads
                .fetch_add(1, Ordering::Relaxed);
        }
        let (primary, fallback_answer) = match (primary, fallback_answer) {
            (Err(p), None) => return Err(StoreError::Unavailable(p.to_string())),
            (Err(p), Some(Err(f))) => {
                return Err(StoreError::Unavailable(format!("{p}; {f}")));
            }
            (p, f) => (p.ok(), f.and_then(Result::ok)),
        };
        // In steady state both instances hold the same bytes (the fallback is a copy): parse
        // once, nothing to merge or repair.
        if let (Some(Some(p)), Some(Some(f))) = (&primary, &fallback_answer)
            && p == f
        {
            return Ok(Lookup {
                token: self.parse_stored(Role::Primary, primary.flatten()),
                degraded,
            });
        }
        let primary_token = primary.and_then(|raw| self.parse_stored(Role::Primary, raw));
        let fallback_token = fallback_answer.and_then(|raw| self.parse_stored(Role::Fallback, raw));

        // Read repair: when the fallback knows more, write the merge back to the primary, with
        // the fallback key's remaining TTL, so a repair never extends a token's life.
        let token = match (primary_token, fallback_token) {
            (Some(p), Some(f)) => match p.merge(&f) {
                Ok(merged) => {
                    if merged != p && !degraded {
                        self.repair(redis_key, &merged);
                    }
                    Some(merged)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "primary and fallback tokens conflict: using the primary's");
                    Some(p)
                }
            },
            (None, Some(f)) => {
                if !degraded {
                    self.repair(redis_key, &f);
                }
                Some(f)
            }
            (p, None) => p,
        };
        Ok(Lookup { token, degraded })
    }

    async fn discard(
        &self,
        key: &StoreKey,
        failed: &SessionToken,
    ) -> Result<Discarded, StoreError> {
        let redis_key = self.keys.token(key);
        let (primary, fallback) = tokio::join!(
            self.discard_on_role(Role::Primary, &redis_key, failed),
            self.discard_on_role(Role::Fallback, &redis_key, failed)
        );
        let Some(primary) = primary else {
            return Err(StoreError::Unavailable("no primary instance".into()));
        };
        let (primary, fallback) = match (primary, fallback) {
            (Ok(p), None) => (p, Discarded::default()),
            (Ok(p), Some(Ok(f))) => (p, f),
            (Err(e), None | Some(Ok(_))) | (Ok(_), Some(Err(e))) => {
                return Err(StoreError::Unavailable(format!(
                    "discard not applied everywhere: {e}"
                )));
            }
            (Err(p), Some(Err(f))) => return Err(StoreError::Unavailable(format!("{p}; {f}"))),
        };
        let mut removed = primary.removed;
        removed.extend(fallback.removed);
        removed.sort();
        removed.dedup();
        let remaining = match (primary.remaining, fallback.remaining) {
            (Some(p), Some(f)) => Some(p.merge(&f).unwrap_or(p)),
            (p, f) => p.or(f),
        };
        Ok(Discarded { removed, remaining })
    }

    fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    fn describe(&self) -> String {
        let fallback = self
            .shared
            .fallback
            .as_ref()
            .map_or("none".to_owned(), |f| f.url().to_string());
        format!(
            "redis store (primary {}, fallback {}, read mode {:?})",
            self.shared.primary.url(),
            fallback,
            self.read_mode
        )
    }

    fn samples(&self) -> Vec<Sample> {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let st = &self.shared.stats;
        let mut out = vec![
            Sample::gauge(
                "tokenbroker_fallback_queue_depth",
                "Copies to the fallback and read repairs waiting or in flight.",
                load(&st.copies_pending) as f64,
            ),
            Sample::counter(
                "tokenbroker_fallback_copies_dropped_total",
                "Copies dropped because the queue was full.",
                load(&st.copies_dropped),
            ),
            Sample::counter(
                "tokenbroker_fallback_copies_failed_total",
                "Copies that failed (instance down, timeout or merge conflict).",
                load(&st.copies_failed),
            ),
            Sample::counter(
                "tokenbroker_fallback_copies_total",
                "Copies applied.",
                load(&st.copies_done),
            ),
            Sample::counter(
                "tokenbroker_fallback_writes_total",
                "PutTokens written to the fallback because the primary failed.",
                load(&st.fallback_writes),
            ),
            Sample::counter(
                "tokenbroker_store_degraded_reads_total",
                "Reads that could not consult every Redis instance.",
                load(&st.degraded_reads),
            ),
            Sample::counter(
                "tokenbroker_read_repairs_total",
                "Merged tokens written back to a primary that was behind.",
                load(&st.read_repairs),
            ),
        ];
        for i in std::iter::once(&self.shared.primary).chain(self.shared.fallback.as_ref()) {
            let s = &i.stats;
            let name = i.name();
            out.extend([
                Sample::gauge(
                    "tokenbroker_redis_up",
                    "1 when the instance answers its health checks.",
                    f64::from(u8::from(i.is_up())),
                )
                .label("instance", name),
                Sample::gauge(
                    "tokenbroker_redis_breaker_open",
                    "1 when the instance's circuit breaker is open or half-open.",
                    f64::from(u8::from(i.breaker_open())),
                )
                .label("instance", name),
                Sample::counter(
                    "tokenbroker_redis_calls_total",
                    "Redis calls made.",
                    load(&s.calls),
                )
                .label("instance", name),
                Sample::counter(
                    "tokenbroker_redis_errors_total",
                    "Redis calls that failed (timeouts included).",
                    load(&s.errors),
                )
                .label("instance", name),
                Sample::counter(
                    "tokenbroker_redis_timeouts_total",
                    "Redis calls that timed out.",
                    load(&s.timeouts),
                )
                .label("instance", name),
                Sample::counter(
                    "tokenbroker_redis_skipped_total",
                    "Calls not made because the breaker was open.",
                    load(&s.skipped),
                )
                .label("instance", name),
                Sample::counter(
                    "tokenbroker_redis_cas_conflicts_total",
                    "Puts, copies and repairs that lost a compare-and-set to a concurrent writer and merged again.",
                    load(&s.cas_conflicts),
                )
                .label("instance", name),
                Sample::histogram(
                    "tokenbroker_redis_call_duration_seconds",
                    "Latency of the Redis calls made (connecting included; skipped calls excluded).",
                    &s.latency,
                )
                .label("instance", name),
            ]);
            let state = i.breaker_state();
            out.extend(BREAKER_STATES.iter().map(|st| {
                Sample::gauge(
                    "tokenbroker_redis_breaker_state",
                    "1 for the circuit breaker's current state (closed, open or half_open), 0 for the others.",
                    f64::from(u8::from(*st == state)),
                )
                .label("instance", name)
                .label("state", *st)
            }));
        }
        out
    }

    fn components(&self) -> Vec<(String, watch::Receiver<bool>)> {
        std::iter::once(&self.shared.primary)
            .chain(self.shared.fallback.as_ref())
            .map(|i| (format!("redis/{}", i.name()), i.up()))
            .collect()
    }
}
