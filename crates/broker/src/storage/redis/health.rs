//! Health of one instance: a ping per interval that drives up/down, the breaker and restart
//! detection, whatever the traffic.
//!
//! Why pings and not only call outcomes: readiness must turn to SERVING when an instance comes
//! back even if no request is routed to it (its breaker is open), a restarted Redis (a new
//! `run_id`) must be noticed to open the `primary` read mode's recovery window, and a master
//! that Sentinel replaced must be left even while it still accepts writes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::cluster_nodes;
use super::connection::RedisConnection;
use super::dial::Dialer;
use super::error::InstanceError;
use super::instance::RedisInstance;
use super::metrics::SLOT_STATES;

impl RedisInstance {
    /// Pings the instance, bypassing the breaker: updates up/down, closes or opens the breaker,
    /// and notices restarts (a new `run_id`).
    pub async fn health_check(&self) {
        let check = async {
            if matches!(self.dialer, Dialer::Sentinel(_)) {
                // Ask the sentinels each round: after a failover the old master may accept
                // writes for seconds more (until the sentinels demote it), so waiting for an
                // error to reconnect would lose the puts made there meanwhile.
                Box::pin(self.sentinel_master()).await?;
            }
            let mut conn = self.connection(self.pick_slot()).await?;
            if let (Dialer::Cluster(client, _, writes), Some(_)) = (&self.dialer, self.replica_acks)
            {
                // The writes that WAIT have a cluster connection of their own (`replica_ack`):
                // opened here, off the calls' path, and ready before the instance is.
                self.cluster_connection(client, writes).await?;
            }
            if let RedisConnection::Cluster(cluster) = &mut conn {
                // One master's view: while a master is down and not yet replaced, its slots are
                // uncovered and every node says `fail`; the fallback takes the puts meanwhile.
                // A master's, not any node's: a hung replica must not take the instance down
                // (found by the test that stops a replica).
                let master = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
                let info = cluster
                    .route_command(redis::cmd("CLUSTER").arg("INFO").clone(), master)
                    .await
                    .map_err(|e| self.redis_error(e))?;
                let info: String = redis::from_redis_value(info)
                    .map_err(|e| InstanceError::Redis(self.name(), e.to_string()))?;
                let field = |name: &str| {
                    info.lines()
                        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                let slots = SLOT_STATES.map(|state| field(&format!("cluster_slots_{state}")));
                self.publish_cluster(slots, field("cluster_size"));
                self.check_cluster_nodes(cluster).await;
                if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                    return Err(InstanceError::Redis(
                        self.name(),
                        format!(
                            "cluster_state is not ok: slots ok {}, pfail {}, fail {} (a master \
                             down, a failover in progress?)",
                            slots[0], slots[1], slots[2]
                        ),
                    ));
                }
                // Restarts are a node's affair: a cluster's masters have replicas.
                return Ok(None);
            }
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

    /// Publishes the cluster's nodes by role and state, as a master sees them, and logs the
    /// nodes that are not ok when that set changes. A failure here changes nothing else: the
    /// instance's health is `CLUSTER INFO`'s.
    async fn check_cluster_nodes(&self, cluster: &mut redis::cluster_async::ClusterConnection) {
        let master = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
        let reply = cluster
            .route_command(redis::cmd("CLUSTER").arg("NODES").clone(), master)
            .await
            .ok()
            .and_then(|v| redis::from_redis_value::<String>(v).ok());
        let Some(reply) = reply else {
            tracing::debug!(
                redis = self.name(),
                "CLUSTER NODES failed: node counts not updated"
            );
            return;
        };
        let nodes = cluster_nodes::parse(&reply);
        self.publish_cluster_nodes(nodes.counts);
        let mut seen = self.nodes_not_ok.lock().unwrap_or_else(|p| p.into_inner());
        if *seen != nodes.not_ok {
            if nodes.not_ok.is_empty() {
                tracing::info!(redis = self.name(), "every cluster node is ok again");
            } else {
                tracing::warn!(
                    redis = self.name(),
                    nodes = ?nodes.not_ok,
                    "cluster nodes not ok (a master down, a failover in progress?)"
                );
            }
            *seen = nodes.not_ok;
        }
    }

    async fn health_check_failed(&self, reason: &str) {
        if self.breaker.trip(std::time::Instant::now()) {
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
