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
//! This module is the store on Redis: start-up (the instances and their Redis-only tasks:
//! health pings, read batchers) and the [`TokenStore`] interface. The rules above are the
//! pair's (`pair`, `write`, `read`, `copy_queue`, `recovery`), written over any instance
//! (`ops`) so that they are tested without Redis too (`fake`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use session_token::SessionToken;
use tokio::sync::watch;

use super::commands::spawn_get_batchers;
use super::error::Role;
use super::health::spawn_health_checks;
use super::instance::RedisInstance;
use super::keys::KeyLayout;
use super::metrics::PairStats;
use super::options::{ReadMode, RedisOptions};
use super::pair::{Pair, PairSettings};
use super::recovery::{forward_readiness, poll_recovery_window};
use crate::storage::discard::Discarded;
use crate::storage::{Lookup, PutParams, StoreError, StoreKey, TokenStore};

/// The Redis [`TokenStore`]: a primary instance and an optional fallback, with the write, read
/// and copy rules of this module's header. Built by [`RedisStore::start`].
pub struct RedisStore {
    pub(super) pair: Pair<RedisInstance>,
    ready: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
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
        let (pair, copier) = Pair::new(
            primary,
            fallback,
            PairSettings {
                keys: KeyLayout::new(options.namespace.clone()),
                read_mode: options.read_mode,
                token_ttl,
                queue_wait: options.operation_timeout * 4,
                queue_capacity: options.copy_queue_capacity,
                batch: options.copy_batch,
            },
        );
        let shared = pair.shared.clone();
        let ready = watch::Sender::new(false);
        let mut tasks = vec![tokio::spawn(copier)];

        let instances: Vec<_> = shared.instances().cloned().collect();
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

        Ok(Self { pair, ready, tasks })
    }

    /// The pair's counters (copies, fallback writes, degraded reads, read repairs).
    pub fn stats(&self) -> &PairStats {
        &self.pair.shared.stats
    }

    /// The primary instance.
    pub fn primary(&self) -> &Arc<RedisInstance> {
        &self.pair.shared.primary
    }

    /// The fallback instance; `None` when `redis.fallback_url` is unset.
    pub fn fallback(&self) -> Option<&Arc<RedisInstance>> {
        self.pair.shared.fallback.as_ref()
    }

    /// The Redis key of a stored token.
    pub fn redis_key(&self, key: &StoreKey) -> String {
        self.pair.keys.redis_key(key)
    }

    /// Waits until every queued copy has been applied or given up.
    pub async fn flush_copies(&self) {
        self.pair.flush_copies().await;
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
        self.pair.put(key, token, params).await
    }

    async fn get(&self, key: &StoreKey) -> Result<Lookup, StoreError> {
        self.pair.get(key).await
    }

    async fn discard(
        &self,
        key: &StoreKey,
        failed: &SessionToken,
    ) -> Result<Discarded, StoreError> {
        self.pair.discard(key, failed).await
    }

    fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    fn describe(&self) -> String {
        let fallback = self
            .fallback()
            .map_or("none".to_owned(), |f| f.url().to_string());
        format!(
            "redis store (primary {}, fallback {}, read mode {:?})",
            self.primary().url(),
            fallback,
            self.pair.read_mode
        )
    }

    fn register_metrics(&self, recorder: &dyn ::metrics::Recorder) {
        self.register_with(recorder);
    }

    fn components(&self) -> Vec<(String, watch::Receiver<bool>)> {
        self.pair
            .shared
            .instances()
            .map(|i| (format!("redis/{}", i.name()), i.up()))
            .collect()
    }
}
