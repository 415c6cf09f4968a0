//! One Redis instance: connections, deadlines, circuit breaker, spans and counters (its
//! commands are in `commands`, its health pings in `health`, its metrics in `metrics`, what its
//! errors mean in `error`).
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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use deadpool_redis::{Manager, Pool, Runtime};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tracing::{Instrument, Span};

use super::connection::{RedisConnection, check_standalone_mode, cluster_client, sentinel_client};
use super::dial::{Dialer, SentinelDialer};
use super::error::{InstanceError, Role, transient};
use super::metrics::{InstanceEvent, InstanceMetrics, InstanceStats};
use super::options::{RedisOptions, RedisUrl, connection_info};
use super::script::MERGE_SCRIPT;
use super::tls;
use breaker::{Admit, Breaker, BreakerConfig};

/// One Redis server of the pair: its connections, circuit breaker, health state and counters.
/// Created by the store; public for tests and metrics.
pub struct RedisInstance {
    pub(super) role: Role,
    pub(super) url: RedisUrl,
    /// How connections are opened: a pool of standalone connections, or a cluster client.
    pub(super) dialer: Dialer,
    /// A client certificate is configured (for the explanation of a refused TLS connection).
    pub(super) client_certificate: bool,
    pub(super) slots: Vec<Mutex<Option<MultiplexedConnection>>>,
    pub(super) next_slot: AtomicUsize,
    pub(super) breaker: Breaker,
    pub(super) operation_timeout: Duration,
    /// `redis.min_replica_acks` and `redis.replica_ack_timeout`, when acks are required.
    pub(super) replica_acks: Option<(u32, Duration)>,
    pub(super) connect_timeout: Duration,
    pub(super) up: watch::Sender<bool>,
    /// Redis `run_id` seen by the last ping: a change means the server restarted (and, without
    /// persistence, lost its keys).
    pub(super) run_id: std::sync::Mutex<Option<String>>,
    pub(super) restarted: AtomicBool,
    /// A cluster's nodes that were not ok at the last health check (logged when it changes).
    pub(super) nodes_not_ok: std::sync::Mutex<Vec<String>>,
    /// Pending reads, taken by the batchers (`commands::spawn_get_batchers`, started with the
    /// store).
    pub(super) batches: mpsc::Sender<PendingGet>,
    pub(super) batch_queue: Arc<Mutex<mpsc::Receiver<PendingGet>>>,
    /// The instance's counters.
    pub stats: InstanceStats,
    /// The published metrics, once the serving server registered them (`metrics`).
    pub(super) metrics: OnceLock<InstanceMetrics>,
}

pub(super) type PendingGet = (
    String,
    oneshot::Sender<Result<Option<String>, InstanceError>>,
);

/// Most reads in one MGET.
pub(super) const MAX_BATCH: usize = 256;

impl RedisInstance {
    /// Sets up the connection pool and breaker; connects nothing yet (connections open on first
    /// use, the instance starts down until a health ping answers). Errors: the URL or the TLS
    /// settings cannot make a connection config, or the pool cannot be built.
    pub fn new(role: Role, url: RedisUrl, options: &RedisOptions) -> Result<Self, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.operation_timeout));
        let dialer = if url.is_cluster() {
            Dialer::Cluster(
                Box::new(cluster_client(role, &url, options)?),
                Mutex::new(None),
                Mutex::new(None),
            )
        } else if url.is_sentinel() {
            Dialer::Sentinel(Box::new(SentinelDialer {
                client: Mutex::new(sentinel_client(role, &url, options)?),
                config: config.clone(),
                master: std::sync::Mutex::new(None),
            }))
        } else {
            let connection_info = connection_info(role, &url, options)?;
            let manager = Manager::new_with_config(connection_info, config)
                .map_err(|e| format!("redis {}: {url}: {e}", role.as_str()))?;
            Dialer::Standalone(
                Pool::builder(manager)
                    .max_size(options.pool_size)
                    .runtime(Runtime::Tokio1)
                    .create_timeout(Some(options.connect_timeout))
                    .wait_timeout(Some(options.connect_timeout))
                    .build()
                    .map_err(|e| format!("redis {}: {e}", role.as_str()))?,
            )
        };
        let (batch_tx, batch_rx) = mpsc::channel(MAX_BATCH * 16);
        Ok(Self {
            role,
            url,
            dialer,
            client_certificate: options.client_cert_file.is_some(),
            slots: (0..options.pool_size).map(|_| Mutex::new(None)).collect(),
            next_slot: AtomicUsize::new(0),
            breaker: Breaker::new(BreakerConfig {
                failure_threshold: options.breaker_failures,
                open_for: options.breaker_open_for,
            }),
            operation_timeout: options.operation_timeout,
            // The primary's: a put on the fallback (the primary failed) is acknowledged once the
            // fallback, the second copy, has it.
            replica_acks: (role == Role::Primary && options.min_replica_acks > 0)
                .then_some((options.min_replica_acks, options.replica_ack_timeout)),
            connect_timeout: options.connect_timeout,
            up: watch::Sender::new(false),
            run_id: std::sync::Mutex::new(None),
            nodes_not_ok: std::sync::Mutex::new(Vec::new()),
            restarted: AtomicBool::new(false),
            batches: batch_tx,
            batch_queue: Arc::new(Mutex::new(batch_rx)),
            stats: InstanceStats::default(),
            metrics: OnceLock::new(),
        })
    }

    /// Which instance of the pair this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The role's name, `primary` or `fallback`.
    pub fn name(&self) -> &'static str {
        self.role.as_str()
    }

    /// The instance's URL (its Display form hides the password).
    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// Up/down as last observed; pushed on change.
    pub fn up(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Up or down as last observed by a health ping or a call.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// True unless the instance's breaker is closed (open or half-open).
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

    pub(super) fn mark(&self, up: bool, reason: &str) {
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
        self.publish_health();
    }

    pub(super) fn pick_slot(&self) -> usize {
        self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len()
    }

    /// A connection handle from slot `index`, connecting the slot if it is empty (a cluster
    /// instance has one connection, whatever the index).
    pub(super) async fn connection(&self, index: usize) -> Result<RedisConnection, InstanceError> {
        if let Dialer::Cluster(client, held, _) = &self.dialer {
            return self.cluster_connection(client, held).await;
        }
        let mut slot = self.slots[index].lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(RedisConnection::Single(conn.clone()));
        }
        let mut conn = Box::pin(self.open()).await?;
        // Refuse a cluster node or a Sentinel behind a standalone URL, and pre-load the merge
        // script so the first EVALSHA does not miss.
        let prepare = async {
            let info: String = redis::cmd("INFO")
                .arg("server")
                .query_async(&mut conn)
                .await?;
            MERGE_SCRIPT.load_async(&mut conn).await?;
            Ok::<_, redis::RedisError>(info)
        };
        match tokio::time::timeout(self.operation_timeout, prepare).await {
            Ok(Ok(info)) => {
                if let Err(wrong_mode) = check_standalone_mode(self.role, &info) {
                    tracing::error!(redis = self.name(), "{wrong_mode}");
                    return Err(InstanceError::Redis(self.name(), wrong_mode));
                }
            }
            Ok(Err(e)) => return Err(self.first_command_failed(e)),
            Err(_) => return Err(InstanceError::Timeout(self.name(), self.operation_timeout)),
        }
        let handle = RedisConnection::Single(conn.clone());
        *slot = Some(conn);
        Ok(handle)
    }

    /// The first command on a new connection failed: over TLS, see
    /// [`tls::closed_after_handshake`].
    pub(super) fn first_command_failed(&self, e: redis::RedisError) -> InstanceError {
        let mut message = e.to_string();
        if let Some(why) = tls::closed_after_handshake(&e, &self.url, self.client_certificate) {
            message.push_str(why);
        }
        InstanceError::Redis(self.name(), message)
    }

    /// Empties one slot: its connection failed a call. The next call on it reconnects. (A
    /// cluster connection reconnects to its nodes by itself; it is dropped only by
    /// [`Self::reset_slots`].)
    pub(super) async fn invalidate(&self, index: usize) {
        if matches!(self.dialer, Dialer::Cluster(..)) {
            return;
        }
        self.slots[index].lock().await.take();
    }

    /// Empties every slot (their connections are broken or suspect); the next calls reconnect.
    pub(super) async fn reset_slots(&self) {
        if let Dialer::Cluster(_, held, writes) = &self.dialer {
            held.lock().await.take();
            writes.lock().await.take();
        }
        for slot in &self.slots {
            slot.lock().await.take();
        }
    }

    /// The client span of one Redis command, named after it (`EVALSHA`, `MGET`...).
    pub(super) fn span(&self, op: &'static str) -> Span {
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
    pub(super) async fn traced<T>(
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
    pub(super) async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, InstanceError>
    where
        F: FnOnce(RedisConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, InstanceError>>,
    {
        self.traced(op, self.call_untraced(f)).await
    }

    /// [`Self::call`] without a span (for the read batchers, whose requesters hold the spans).
    pub(super) async fn call_untraced<T, F, Fut>(&self, f: F) -> Result<T, InstanceError>
    where
        F: FnOnce(RedisConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, InstanceError>>,
    {
        match self.breaker.admit(Instant::now()) {
            Admit::No => {
                self.count(InstanceEvent::Skipped);
                return Err(InstanceError::BreakerOpen(self.name()));
            }
            Admit::Probe => self.publish_health(),
            Admit::Yes => {}
        }
        let started = Instant::now();
        self.count(InstanceEvent::Call);
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
        self.observe_latency(started.elapsed());
        match &result {
            Ok(_) => {
                if self.breaker.success() {
                    tracing::info!(redis = self.name(), "circuit breaker closed");
                    self.publish_health();
                }
            }
            Err(e) if !e.is_transient() => {
                // The instance answered: it stays up, and the breaker is not fed.
                self.count(InstanceEvent::Error);
            }
            Err(e) => {
                self.count(InstanceEvent::Error);
                if matches!(e, InstanceError::Timeout(..)) {
                    self.count(InstanceEvent::Timeout);
                }
                if matches!(e, InstanceError::Timeout(..) | InstanceError::Redis(..)) {
                    self.invalidate(index).await;
                }
                if self.breaker.failure(Instant::now()) {
                    tracing::warn!(redis = self.name(), error = %e, "circuit breaker OPEN: skipping this instance");
                    self.mark(false, "circuit breaker opened");
                    self.reset_slots().await;
                }
            }
        }
        result
    }

    /// A Redis error, classified (see [`transient`]).
    pub(super) fn redis_error(&self, e: redis::RedisError) -> InstanceError {
        if transient(&e) {
            InstanceError::Redis(self.name(), e.to_string())
        } else {
            InstanceError::Command(self.name(), e.to_string())
        }
    }
}
