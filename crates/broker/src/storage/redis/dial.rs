//! How an instance opens its connections, for each topology: deadpool for a standalone Redis
//! (used only to dial: the connections are then held in the instance's slots), redis-rs's
//! cluster client for `redis+cluster://`, and redis-rs's Sentinel client for
//! `redis+sentinel://` (the master it names, checked with ROLE, recorded so that a move is
//! noticed and every connection to the old master dropped).
//!
//! Why apart from the instance (`instance`): the instance's job is the call (breaker, deadline,
//! span, counters); which server a connection reaches is this module's.

use deadpool_redis::{Connection, Pool};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use tokio::sync::Mutex;

use super::connection::{RedisConnection, cluster_connect_error, sentinel_error, setting};
use super::error::InstanceError;
use super::instance::RedisInstance;
use super::metrics::InstanceEvent;

/// How an instance opens its connections.
pub(super) enum Dialer {
    /// `redis://`: deadpool opens up to `pool_size` multiplexed connections, held in `slots`.
    Standalone(Pool),
    /// `redis+cluster://`: one cluster connection (it holds a multiplexed connection per node),
    /// and with `redis.min_replica_acks` a second one for the writes that `WAIT`
    /// (`replica_ack`), so that no read waits behind a `WAIT`.
    Cluster(
        Box<ClusterClient>,
        Mutex<Option<ClusterConnection>>,
        Mutex<Option<ClusterConnection>>,
    ),
    /// `redis+sentinel://`: connections to the master the sentinels name, held in `slots`; the
    /// master's address as last resolved, which the health checks compare (`health`).
    Sentinel(Box<SentinelDialer>),
}

/// What a Sentinel-managed instance opens its connections with.
pub(super) struct SentinelDialer {
    pub(super) client: Mutex<SentinelClient>,
    pub(super) config: AsyncConnectionConfig,
    pub(super) master: std::sync::Mutex<Option<String>>,
}

impl RedisInstance {
    /// A new connection to the standalone server, or to the master the sentinels name now.
    pub(super) async fn open(&self) -> Result<MultiplexedConnection, InstanceError> {
        let opening = async {
            match &self.dialer {
                Dialer::Standalone(pool) => pool
                    .get()
                    .await
                    .map(Connection::take)
                    .map_err(|e| InstanceError::Redis(self.name(), e.to_string())),
                Dialer::Sentinel(sentinel) => {
                    // Boxed: redis-rs's sentinel lookup is a deep future, and every call's
                    // future would otherwise carry its layout.
                    let client = Box::pin(self.sentinel_master()).await?;
                    client
                        .get_multiplexed_async_connection_with_config(&sentinel.config)
                        .await
                        .map_err(|e| self.redis_error(e))
                }
                Dialer::Cluster(..) => Err(InstanceError::Redis(
                    self.name(),
                    "a cluster instance has no standalone connection".into(),
                )),
            }
        };
        match tokio::time::timeout(self.connect_timeout, opening).await {
            Ok(result) => result,
            Err(_) => Err(InstanceError::Timeout(self.name(), self.connect_timeout)),
        }
    }

    /// The sentinels' current master (checked with ROLE by redis-rs), recorded; a move from
    /// the master recorded before empties every slot, so no call goes on writing to a demoted
    /// master. `None` for other instances.
    pub(super) async fn sentinel_master(&self) -> Result<redis::Client, InstanceError> {
        let Dialer::Sentinel(sentinel) = &self.dialer else {
            return Err(InstanceError::Redis(
                self.name(),
                "not a sentinel instance".into(),
            ));
        };
        let resolved = sentinel
            .client
            .lock()
            .await
            .async_get_client()
            .await
            .map_err(|e| InstanceError::Redis(self.name(), sentinel_error(self.role, &e)))?;
        let address = resolved.get_connection_info().addr().to_string();
        let before = sentinel
            .master
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(address.clone());
        if let Some(before) = before
            && before != address
        {
            tracing::warn!(redis = self.name(), from = %before, to = %address, "sentinel: the master moved; reconnecting");
            self.count(InstanceEvent::MasterChange);
            self.reset_slots().await;
        }
        Ok(resolved)
    }

    /// The cluster connection, opened from the seeds if there is none.
    pub(super) async fn cluster_connection(
        &self,
        client: &ClusterClient,
        held: &Mutex<Option<ClusterConnection>>,
    ) -> Result<RedisConnection, InstanceError> {
        let mut held = held.lock().await;
        if let Some(conn) = held.as_ref() {
            return Ok(RedisConnection::Cluster(conn.clone()));
        }
        let conn =
            match tokio::time::timeout(self.connect_timeout, client.get_async_connection()).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    let why = cluster_connect_error(self.role, &e);
                    if why.contains(setting(self.role)) {
                        tracing::error!(redis = self.name(), "{why}");
                    }
                    return Err(InstanceError::Redis(self.name(), why));
                }
                Err(_) => return Err(InstanceError::Timeout(self.name(), self.connect_timeout)),
            };
        *held = Some(conn.clone());
        Ok(RedisConnection::Cluster(conn))
    }
}
