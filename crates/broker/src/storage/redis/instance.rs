//! One Redis instance: connections, deadlines, circuit breaker, health pings and counters.
//!
//! Why connections are held, not checked out per call: deadpool-redis creates the connections
//! (with the connect timeout, up to `pool_size`), but checking one out per call costs a PING
//! each time (deadpool's recycle check) and limits concurrency to the pool size. Each redis
//! connection is multiplexed, so the instance keeps `pool_size` of them checked out in slots,
//! and each call clones a handle and pipelines on it. A slot whose connection broke is emptied
//! and refilled from the pool by the next call.
//!
//! Why a span per call here: this is where a request turns into Redis commands, so a trace shows
//! which instance answered, how long it took and why it failed. The spans are at DEBUG level and
//! carry only the command name, the instance role and an error class (never a key, a token or a
//! URL); without a trace exporter, nothing enables them and they cost a relaxed load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::{Connection, Manager, Pool, Runtime};
use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::{AsyncConnectionConfig, Value};
use redis::{ConnectionInfo, IntoConnectionInfo};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tracing::{Instrument, Span};

use super::breaker::{Admit, Breaker};
use super::options::{RedisOptions, RedisUrl};
use super::script::{
    BadReply, COMPARE_AND_SET_SCRIPT, MERGE_SCRIPT, MergeReply, PUT_IF_UNCHANGED_SCRIPT, decode,
};
use super::tls;
use crate::metrics::Histogram;

/// Which instance of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    Fallback,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Fallback => "fallback",
        }
    }
}

/// Why a call to an instance failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstanceError {
    #[error("redis {0} skipped: circuit breaker open")]
    BreakerOpen(&'static str),
    #[error("redis {0} timed out after {1:?}")]
    Timeout(&'static str, Duration),
    #[error("redis {0}: {1}")]
    Redis(&'static str, String),
    #[error("redis {0}: {1}")]
    Reply(&'static str, BadReply),
    /// A compare-and-set lost to concurrent writers every time it was tried.
    #[error("redis {0}: the key kept changing under {1} compare-and-set attempts")]
    Contended(&'static str, usize),
}

impl InstanceError {
    /// A low-cardinality class, for the `error.type` span attribute.
    pub fn class(&self) -> &'static str {
        match self {
            InstanceError::BreakerOpen(_) => "breaker_open",
            InstanceError::Timeout(..) => "timeout",
            InstanceError::Redis(..) => "redis",
            InstanceError::Reply(..) => "bad_reply",
            InstanceError::Contended(..) => "contended",
        }
    }
}

/// Counters of one instance, for metrics and tests.
#[derive(Debug, Default)]
pub struct InstanceStats {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub skipped: AtomicU64,
    /// Puts that lost a compare-and-set to a concurrent writer and merged again.
    pub cas_conflicts: AtomicU64,
    /// Latency of the calls made (not of the skipped ones).
    pub latency: Histogram,
}

pub struct RedisInstance {
    role: Role,
    url: RedisUrl,
    pool: Pool,
    /// A client certificate is configured (for the explanation of a refused TLS connection).
    client_certificate: bool,
    slots: Vec<Mutex<Option<Connection>>>,
    next_slot: AtomicUsize,
    breaker: Breaker,
    operation_timeout: Duration,
    connect_timeout: Duration,
    up: watch::Sender<bool>,
    /// Redis `run_id` seen by the last ping: a change means the server restarted (and, without
    /// persistence, lost its keys).
    run_id: std::sync::Mutex<Option<String>>,
    restarted: AtomicBool,
    /// Pending reads for the batchers; `None` until [`spawn_get_batchers`] runs.
    batches: Option<mpsc::Sender<PendingGet>>,
    batch_queue: Option<Arc<Mutex<mpsc::Receiver<PendingGet>>>>,
    pub stats: InstanceStats,
}

type PendingGet = (
    String,
    oneshot::Sender<Result<Option<String>, InstanceError>>,
);

/// Most reads in one MGET.
const MAX_BATCH: usize = 256;

impl RedisInstance {
    pub fn new(role: Role, url: RedisUrl, options: &RedisOptions) -> Result<Self, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.operation_timeout));
        let connection_info = connection_info(role, &url, options)?;
        let manager = Manager::new_with_config(connection_info, config)
            .map_err(|e| format!("redis {}: {url}: {e}", role.as_str()))?;
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(options.connect_timeout))
            .wait_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| format!("redis {}: {e}", role.as_str()))?;
        let (batch_tx, batch_rx) = mpsc::channel(MAX_BATCH * 16);
        Ok(Self {
            role,
            url,
            pool,
            client_certificate: options.client_cert_file.is_some(),
            slots: (0..options.pool_size).map(|_| Mutex::new(None)).collect(),
            next_slot: AtomicUsize::new(0),
            breaker: Breaker::new(options.breaker_failures, options.breaker_open_for),
            operation_timeout: options.operation_timeout,
            connect_timeout: options.connect_timeout,
            up: watch::Sender::new(false),
            run_id: std::sync::Mutex::new(None),
            restarted: AtomicBool::new(false),
            batches: Some(batch_tx),
            batch_queue: Some(Arc::new(Mutex::new(batch_rx))),
            stats: InstanceStats::default(),
        })
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn name(&self) -> &'static str {
        self.role.as_str()
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// Up/down as last observed; pushed on change.
    pub fn up(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// `closed`, `open` or `half_open`.
    pub fn breaker_state(&self) -> &'static str {
        self.breaker.state_name()
    }

    /// True once after each detected restart of the server.
    pub fn take_restarted(&self) -> bool {
        self.restarted.swap(false, Ordering::AcqRel)
    }

    fn mark(&self, up: bool, reason: &str) {
        let changed = self.up.send_if_modified(|v| {
            let changed = *v != up;
            *v = up;
            changed
        });
        if changed && up {
            tracing::info!(redis = self.name(), url = %self.url, "redis instance up");
        } else if changed {
            tracing::warn!(redis = self.name(), url = %self.url, reason, "redis instance DOWN");
        }
    }

    fn pick_slot(&self) -> usize {
        self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len()
    }

    /// A connection handle from slot `index`, connecting the slot if it is empty.
    async fn connection(&self, index: usize) -> Result<MultiplexedConnection, InstanceError> {
        let mut slot = self.slots[index].lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(MultiplexedConnection::clone(conn));
        }
        let mut conn = match tokio::time::timeout(self.connect_timeout, self.pool.get()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(InstanceError::Redis(self.name(), e.to_string())),
            Err(_) => return Err(InstanceError::Timeout(self.name(), self.connect_timeout)),
        };
        // Pre-load the merge script so the first EVALSHA does not miss.
        let load = MERGE_SCRIPT.load_async(&mut *conn);
        match tokio::time::timeout(self.operation_timeout, load).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(self.first_command_failed(e)),
            Err(_) => return Err(InstanceError::Timeout(self.name(), self.operation_timeout)),
        }
        let handle = MultiplexedConnection::clone(&conn);
        *slot = Some(conn);
        Ok(handle)
    }

    /// The first command on a new connection failed: over TLS, see
    /// [`tls::closed_after_handshake`].
    fn first_command_failed(&self, e: redis::RedisError) -> InstanceError {
        let mut message = e.to_string();
        if let Some(why) = tls::closed_after_handshake(&e, &self.url, self.client_certificate) {
            message.push_str(why);
        }
        InstanceError::Redis(self.name(), message)
    }

    /// Empties one slot: its connection failed a call. The next call on it reconnects.
    async fn invalidate(&self, index: usize) {
        if let Some(conn) = self.slots[index].lock().await.take() {
            drop(Connection::take(conn));
        }
    }

    /// Empties every slot (their connections are broken or suspect); the next calls reconnect.
    async fn reset_slots(&self) {
        for slot in &self.slots {
            if let Some(conn) = slot.lock().await.take() {
                drop(Connection::take(conn));
            }
        }
    }

    /// The client span of one Redis command, named after it (`EVALSHA`, `MGET`...).
    fn span(&self, op: &'static str) -> Span {
        tracing::debug_span!(
            "redis",
            otel.name = op,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system = "redis",
            db.system.name = "redis",
            db.operation.name = op,
            tokenbroker.redis.instance = self.name(),
            error.type = tracing::field::Empty,
        )
    }

    /// Runs `work` in the span of command `op` and records a failure on it.
    async fn traced<T>(
        &self,
        op: &'static str,
        work: impl std::future::Future<Output = Result<T, InstanceError>>,
    ) -> Result<T, InstanceError> {
        let span = self.span(op);
        let result = work.instrument(span.clone()).await;
        if let Err(e) = &result {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", e.class());
        }
        result
    }

    /// Runs command `op` under the breaker and the operation deadline, in its span, and books
    /// the outcome.
    async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, InstanceError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, InstanceError>>,
    {
        self.traced(op, self.call_untraced(f)).await
    }

    /// [`Self::call`] without a span (for the read batchers, whose requesters hold the spans).
    async fn call_untraced<T, F, Fut>(&self, f: F) -> Result<T, InstanceError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, InstanceError>>,
    {
        if self.breaker.admit() == Admit::No {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return Err(InstanceError::BreakerOpen(self.name()));
        }
        let started = Instant::now();
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let index = self.pick_slot();
        let result = match tokio::time::timeout(self.operation_timeout, async {
            let conn = self.connection(index).await?;
            f(conn).await
        })
        .await
        {
            Ok(result) => result,
            Err(_) => Err(InstanceError::Timeout(self.name(), self.operation_timeout)),
        };
        self.stats.latency.observe(started.elapsed());
        match &result {
            Ok(_) => {
                if self.breaker.success() {
                    tracing::info!(redis = self.name(), "circuit breaker closed");
                }
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                if matches!(e, InstanceError::Timeout(..)) {
                    self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                if matches!(e, InstanceError::Timeout(..) | InstanceError::Redis(..)) {
                    self.invalidate(index).await;
                }
                if self.breaker.failure() {
                    tracing::warn!(redis = self.name(), error = %e, "circuit breaker OPEN: skipping this instance");
                    self.mark(false, "circuit breaker opened");
                    self.reset_slots().await;
                }
            }
        }
        result
    }

    fn redis_error(&self, e: redis::RedisError) -> InstanceError {
        InstanceError::Redis(self.name(), e.to_string())
    }

    /// Runs the merge script on `key`.
    pub async fn merge(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
        max_segments: usize,
    ) -> Result<MergeReply, InstanceError> {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.call("EVALSHA", |mut conn| async move {
            let reply: Value = MERGE_SCRIPT
                .key(key)
                .arg(token)
                .arg(ttl_ms)
                .arg(max_segments)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            decode(&reply).map_err(|e| InstanceError::Reply(self.name(), e))
        })
        .await
    }

    /// Stores `new` with a TTL of `ttl` only if `key` still holds `expected`; true when it did.
    pub async fn put_if_unchanged(
        &self,
        key: &str,
        expected: &str,
        new: &str,
        ttl: Duration,
    ) -> Result<bool, InstanceError> {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.call("EVALSHA", |mut conn| async move {
            let stored: i64 = PUT_IF_UNCHANGED_SCRIPT
                .key(key)
                .arg(expected)
                .arg(new)
                .arg(ttl_ms)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            Ok(stored == 1)
        })
        .await
    }

    /// Stores `value` with a TTL only if `key` does not exist (`SET NX PX`); true when it did.
    pub async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, InstanceError> {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.call("SET", |mut conn| async move {
            let reply: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            Ok(reply.is_some())
        })
        .await
    }

    /// Sets the TTL of `key`; false when the key does not exist (any more).
    pub async fn pexpire(&self, key: &str, ttl: Duration) -> Result<bool, InstanceError> {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.call("PEXPIRE", |mut conn| async move {
            let set: i64 = redis::cmd("PEXPIRE")
                .arg(key)
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            Ok(set == 1)
        })
        .await
    }

    /// A put lost a compare-and-set to a concurrent writer (counted for the metrics).
    pub(crate) fn note_cas_conflict(&self) {
        self.stats.cas_conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// Replaces the value of `key` with `new` (deleting it when `None`), keeping its TTL, only
    /// if it still holds `expected`; true when it did. One atomic step (a three-line script).
    pub async fn compare_and_set(
        &self,
        key: &str,
        expected: &str,
        new: Option<&str>,
    ) -> Result<bool, InstanceError> {
        self.call("EVALSHA", |mut conn| async move {
            let swapped: i64 = COMPARE_AND_SET_SCRIPT
                .key(key)
                .arg(expected)
                .arg(new.unwrap_or(""))
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            Ok(swapped == 1)
        })
        .await
    }

    /// Reads a raw stored value. Concurrent reads are batched into one MGET (see
    /// [`spawn_get_batchers`]) when batchers run; otherwise this is a one-key MGET. Either way
    /// the caller's span `MGET` covers the wait for the batch.
    pub async fn get(&self, key: &str) -> Result<Option<String>, InstanceError> {
        let Some(batches) = &self.batches else {
            return self
                .mget(vec![key.to_owned()])
                .await
                .map(|mut v| v.pop().flatten());
        };
        let (reply, answer) = oneshot::channel();
        let wait = async {
            batches
                .send((key.to_owned(), reply))
                .await
                .map_err(|_| InstanceError::Redis(self.name(), "read batcher stopped".into()))?;
            answer
                .await
                .map_err(|_| InstanceError::Redis(self.name(), "read batcher stopped".into()))?
        };
        let deadline = async {
            match tokio::time::timeout(self.operation_timeout, wait).await {
                Ok(result) => result,
                Err(_) => Err(InstanceError::Timeout(self.name(), self.operation_timeout)),
            }
        };
        self.traced("MGET", deadline).await
    }

    /// Reads several keys in one command.
    pub async fn mget(&self, keys: Vec<String>) -> Result<Vec<Option<String>>, InstanceError> {
        self.traced("MGET", self.mget_untraced(keys)).await
    }

    async fn mget_untraced(&self, keys: Vec<String>) -> Result<Vec<Option<String>>, InstanceError> {
        self.call_untraced(|mut conn| async move {
            let mut cmd = redis::cmd("MGET");
            for key in &keys {
                cmd.arg(key);
            }
            cmd.query_async::<Vec<Option<String>>>(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))
        })
        .await
    }

    /// The remaining time to live of a key; `None` when it has no expiry or is gone.
    pub async fn pttl(&self, key: &str) -> Result<Option<Duration>, InstanceError> {
        self.call("PTTL", |mut conn| async move {
            let pttl: i64 = redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            Ok(u64::try_from(pttl).ok().map(Duration::from_millis))
        })
        .await
    }

    /// Sets a key with a TTL (used for the primary-behind marker).
    pub async fn set_px(&self, key: &str, value: &str, ttl: Duration) -> Result<(), InstanceError> {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.call("SET", |mut conn| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl_ms)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))
        })
        .await
    }

    /// Pings the instance, bypassing the breaker: updates up/down, closes or opens the breaker,
    /// and notices restarts (a new `run_id`).
    pub async fn health_check(&self) {
        let check = async {
            let mut conn = self.connection(self.pick_slot()).await?;
            let info: String = redis::cmd("INFO")
                .arg("server")
                .query_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            Ok::<_, InstanceError>(
                info.lines()
                    .find_map(|l| l.strip_prefix("run_id:"))
                    .map(|s| s.trim().to_owned()),
            )
        };
        match tokio::time::timeout(self.operation_timeout, check).await {
            Ok(Ok(run_id)) => {
                if self.breaker.success() {
                    tracing::info!(
                        redis = self.name(),
                        "circuit breaker closed by health check"
                    );
                }
                if let Some(run_id) = run_id {
                    let mut seen = self.run_id.lock().unwrap_or_else(|p| p.into_inner());
                    if seen.as_ref().is_some_and(|old| *old != run_id) {
                        tracing::warn!(
                            redis = self.name(),
                            "redis instance restarted (new run_id): it may have lost tokens"
                        );
                        self.restarted.store(true, Ordering::Release);
                    }
                    *seen = Some(run_id);
                }
                self.mark(true, "");
            }
            Ok(Err(e)) => self.health_check_failed(&e.to_string()).await,
            Err(_) => self.health_check_failed("health check timed out").await,
        }
    }

    async fn health_check_failed(&self, reason: &str) {
        if self.breaker.trip() {
            tracing::warn!(
                redis = self.name(),
                reason,
                "circuit breaker OPEN: skipping this instance"
            );
        }
        self.reset_slots().await;
        self.mark(false, reason);
    }
}

/// How to reach `url`: its address and credentials, TCP_NODELAY, the TLS files for a
/// `rediss://` URL, and no `CLIENT SETINFO` on connect.
fn connection_info(
    role: Role,
    url: &RedisUrl,
    options: &RedisOptions,
) -> Result<ConnectionInfo, String> {
    let context = |e: &dyn std::fmt::Display| format!("redis {}: {url}: {e}", role.as_str());
    let mut info = url
        .expose()
        .into_connection_info()
        .map_err(|e| context(&e))?;
    if url.is_tls()
        && let Some(certificates) = tls::load(options).map_err(|e| context(&e))?
    {
        // Parsed already by `tls::load`, so this cannot fail on the files' contents; its error
        // is not printed in full all the same, as it could quote the key file.
        info = redis::Client::build_with_tls(info, certificates)
            .map_err(|e| context(&format!("the TLS files were refused ({:?})", e.kind())))?
            .get_connection_info()
            .clone();
    }
    // redis-rs leaves Nagle's algorithm on by default; with many commands multiplexed on
    // one connection it holds each small write back until the previous one is acknowledged.
    //
    // redis-rs also labels each connection with `CLIENT SETINFO` (its library name and
    // version). The broker does not send it: a Redis user restricted to what the broker needs
    // (docs/redis.md) would be denied it on Redis 7.2+ (an ACL LOG entry per connection), and
    // allowing it needs a rule that Redis 7.0 refuses (the subcommand is unknown there). The
    // connection's ACL user already names the broker in `CLIENT LIST`.
    let redis_settings = info.redis_settings().clone().set_skip_set_lib_name();
    Ok(info
        .set_redis_settings(redis_settings)
        .set_tcp_settings(TcpSettings::default().set_nodelay(true)))
}

/// Starts the read batchers of `instance`, one per connection: each takes every read queued
/// while its previous MGET was in flight and sends them as one MGET. Under load, batches grow by
/// themselves (fewer commands and syscalls per read); when idle, a read goes out at once.
pub fn spawn_get_batchers(instance: &Arc<RedisInstance>) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(queue) = instance.batch_queue.clone() else {
        return Vec::new();
    };
    (0..instance.slots.len())
        .map(|_| {
            let (instance, queue) = (instance.clone(), queue.clone());
            tokio::spawn(async move {
                let mut pending: Vec<PendingGet> = Vec::with_capacity(MAX_BATCH);
                loop {
                    pending.clear();
                    if queue.lock().await.recv_many(&mut pending, MAX_BATCH).await == 0 {
                        return;
                    }
                    let keys = pending.iter().map(|(k, _)| k.clone()).collect();
                    match instance.mget_untraced(keys).await {
                        Ok(values) => {
                            for ((_, reply), value) in pending.drain(..).zip(values) {
                                let _ = reply.send(Ok(value));
                            }
                        }
                        Err(e) => {
                            for (_, reply) in pending.drain(..) {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

/// Pings every instance every `interval` until the returned task is aborted.
pub fn spawn_health_checks(
    instances: Vec<Arc<RedisInstance>>,
    interval: Duration,
    after_each_round: impl Fn() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let checks = instances.iter().map(|i| i.health_check());
            futures_util::future::join_all(checks).await;
            after_each_round();
        }
    })
}
