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
//!
//! This module is the store itself: start-up, the write path and the read path. Around it:
//! `pair` (the shared state), `copy_queue` (copies, repairs, ordered discards),
//! `recovery` (readiness and the `primary` mode's recovery window), `put` and `discard` (one
//! instance's compare-and-set steps), `metrics` (counters and published metrics).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use session_token::SessionToken;
use tokio::sync::{Notify, mpsc, watch};

use super::commands::spawn_get_batchers;
use super::copy_queue::{Copy, CopyOp, CopyTtl, run_copier};
use super::health::spawn_health_checks;
use super::instance::{RedisInstance, Role};
use super::keys::KeyLayout;
use super::metrics::{DualStats, PairEvent};
use super::options::{ReadMode, RedisOptions};
use super::pair::Shared;
use super::put::internal;
use super::recovery::{forward_readiness, poll_recovery_window};
use crate::storage::discard::Discarded;
use crate::storage::{Lookup, PutParams, StoreError, StoreKey, TokenStore};

/// The Redis [`TokenStore`]: a primary instance and an optional fallback, with the write, read
/// and copy rules of this module's header. Built by [`RedisStore::start`].
pub struct RedisStore {
    pub(super) shared: Arc<Shared>,
    pub(super) keys: KeyLayout,
    pub(super) read_mode: ReadMode,
    pub(super) ttl_hint: Duration,
    /// How long a discard waits for its turn in the copy queue before going direct.
    pub(super) queue_wait: Duration,
    pub(super) copies: mpsc::Sender<Copy>,
    pub(super) ready: watch::Sender<bool>,
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RedisStore {
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
            metrics: OnceLock::new(),
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

    /// The pair's counters (copies, fallback writes, degraded reads, read repairs).
    pub fn stats(&self) -> &DualStats {
        &self.shared.stats
    }

    /// The primary instance.
    pub fn primary(&self) -> &Arc<RedisInstance> {
        &self.shared.primary
    }

    /// The fallback instance; `None` when `redis.fallback_url` is unset.
    pub fn fallback(&self) -> Option<&Arc<RedisInstance>> {
        self.shared.fallback.as_ref()
    }

    /// The Redis key of a stored token.
    pub fn redis_key(&self, key: &StoreKey) -> String {
        self.keys.redis_key(key)
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
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn put(
        &self,
        key: &StoreKey,
        token: &SessionToken,
        params: PutParams,
    ) -> Result<SessionToken, StoreError> {
        let redis_key = self.keys.redis_key(key);
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
            // The primary answered: the same put would fail on the fallback too.
            Err(e) if !e.is_transient() => return Err(internal(&redis_key, &e)),
            Err(e) => e,
        };
        let Some(fallback) = &self.shared.fallback else {
            return Err(StoreError::Unavailable(primary_error.to_string()));
        };
        match self.put_on(fallback, &redis_key, token, params).await {
            Ok(result) => {
                if result.is_ok() {
                    self.shared.count(PairEvent::FallbackWrite);
                    tracing::debug!(error = %primary_error, "put written to the fallback");
                    if self.read_mode == ReadMode::Primary {
                        self.primary_missed_a_write().await;
                    }
                }
                result
            }
            Err(e) if !e.is_transient() => Err(internal(&redis_key, &e)),
            Err(fallback_error) => Err(StoreError::Unavailable(format!(
                "{primary_error}; {fallback_error}"
            ))),
        }
    }

    async fn get(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        let redis_key = self.keys.redis_key(key);
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
            self.shared.count(PairEvent::DegradedRead);
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
        let redis_key = self.keys.redis_key(key);
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

    fn register_metrics(&self, recorder: &dyn ::metrics::Recorder) {
        self.register_with(recorder);
    }

    fn components(&self) -> Vec<(String, watch::Receiver<bool>)> {
        std::iter::once(&self.shared.primary)
            .chain(self.shared.fallback.as_ref())
            .map(|i| (format!("redis/{}", i.name()), i.up()))
            .collect()
    }
}
