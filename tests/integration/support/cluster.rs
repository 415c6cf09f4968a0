//! The Redis Cluster and the Sentinel set the tests of this binary share: each started once, on
//! first use (six redis-server processes and `redis-cli --cluster create` take a few seconds),
//! and a fresh key namespace for each test, so that tests running at once never see each
//! other's keys. Tests that fail a topology over start their own.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use test_kit::{RedisCluster, RedisSentinel};

static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
static SENTINEL: OnceLock<RedisSentinel> = OnceLock::new();
static NAMESPACES: AtomicUsize = AtomicUsize::new(0);

/// The shared cluster (3 masters, a replica each), started by the first caller.
pub fn shared() -> &'static RedisCluster {
    CLUSTER.get_or_init(RedisCluster::start)
}

/// The shared Sentinel set (a master, a replica, three sentinels), started by the first caller.
pub fn shared_sentinel() -> &'static RedisSentinel {
    SENTINEL.get_or_init(RedisSentinel::start)
}

/// A key namespace no other test of this binary uses.
pub fn namespace() -> String {
    format!("tbc{}", NAMESPACES.fetch_add(1, Ordering::Relaxed))
}
