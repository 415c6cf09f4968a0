//! `redis.min_replica_acks` on a Redis Cluster primary: the put's write and its `WAIT` go to
//! the master of the key's slot together (one pipeline on that node's connection), so a put is
//! acknowledged once the replica of *that* master holds it, whatever the other masters'
//! replicas do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::storage::redis::{RedisStore, RedisUrl};
use broker::{PutParams, SessionToken, StoreError, StoreKey, TokenStore};
use test_kit::{ClusterNode, RedisCluster};

use crate::support::load::{AckedPuts, assert_none_lost};
use crate::support::redis::RedisServer;
use crate::support::stores::{TTL, ready_store, redis_options};

fn params() -> PutParams {
    PutParams {
        ttl: TTL,
        max_segments: 16,
    }
}

/// A store on `cluster` with no fallback, asking one replica's ack within `ack_timeout`; the
/// breaker never opens, so a put that is not acknowledged fails alone.
async fn acked_store(cluster: &RedisCluster, ack_timeout: Duration) -> RedisStore {
    let anchor = RedisServer::start();
    let mut options = redis_options(&anchor, None);
    options.primary_url = Some(RedisUrl::parse(&cluster.url()).unwrap());
    options.namespace = crate::support::cluster::namespace();
    options.operation_timeout = ack_timeout * 2 + Duration::from_millis(500);
    options.min_replica_acks = 1;
    options.replica_ack_timeout = ack_timeout;
    options.breaker_failures = 1_000_000;
    ready_store(&options).await
}

/// The replica that follows `master`.
fn replica_of(cluster: &RedisCluster, master: &ClusterNode) -> ClusterNode {
    cluster
        .nodes()
        .into_iter()
        .find(|node| node.follows(&master.id))
        .unwrap_or_else(|| panic!("{master} has no replica"))
}

/// A connection to a replica that answers reads of its master's slots (READONLY).
async fn replica_connection(node: &ClusterNode) -> redis::aio::MultiplexedConnection {
    let mut conn = redis::Client::open(node.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("READONLY").query_async(&mut conn).await.unwrap();
    conn
}

/// Every acknowledged put is already on the replica of its key's master when the call returns,
/// for keys on each of the three masters.
#[tokio::test]
async fn on_a_cluster_an_acknowledged_put_is_on_the_replica_of_its_keys_master() {
    let cluster = crate::support::cluster::shared();
    // A deadline far above a replica's lag on a loaded machine: every put must be acknowledged.
    let store = acked_store(cluster, Duration::from_secs(2)).await;
    let masters = cluster.masters();
    let mut replicas = Vec::new();
    for master in &masters {
        let replica = replica_of(cluster, master);
        replicas.push(replica_connection(&replica).await);
    }
    let mut per_master = vec![0; masters.len()];
    for i in 1..=60u64 {
        let key = StoreKey::new("acct/db/coll", format!("k{i}"));
        let token = SessionToken::parse(&format!("0:1#{i}")).unwrap();
        store.put(&key, &token, params()).await.unwrap();
        let slot = cluster.slot_for_key(&store.redis_key(&key));
        let owner = masters.iter().position(|m| m.serves(slot)).unwrap();
        per_master[owner] += 1;
        let held: Option<String> = redis::cmd("GET")
            .arg(store.redis_key(&key))
            .query_async(&mut replicas[owner])
            .await
            .unwrap();
        assert_eq!(held.as_deref(), Some(token.to_string().as_str()), "put {i}");
    }
    assert!(per_master.iter().all(|n| *n > 0), "{per_master:?}");
}

/// The replica of one master stopped: puts of that master's keys are not acknowledged (no
/// fallback: UNAVAILABLE, naming the setting), while puts of the other masters' keys are. A
/// `WAIT` sent to another master, to every master, or not at all fails this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_put_waits_for_the_replica_of_its_keys_master_only() {
    let cluster = crate::support::cluster::shared();
    let _only_me = cluster.exclusive_async().await;
    // A deadline far above a replica's lag on a loaded machine: the puts of the masters whose
    // replica runs must be acknowledged.
    let store = acked_store(cluster, Duration::from_secs(1)).await;
    let masters = cluster.masters();
    // Three keys on the first master, then three on the others.
    let on_first = |key: &StoreKey| masters[0].serves(cluster.slot_for_key(&store.redis_key(key)));
    let keys: Vec<StoreKey> = (0..)
        .map(|i| StoreKey::new("acct/db/coll", format!("k{i}")))
        .filter(|key| on_first(key))
        .take(3)
        .chain(
            (0..)
                .map(|i| StoreKey::new("acct/db/coll", format!("o{i}")))
                .filter(|key| !on_first(key))
                .take(3),
        )
        .collect();
    let stopped = replica_of(cluster, &masters[0]);
    cluster.pause(stopped.port);
    let mut outcomes = Vec::new();
    for key in &keys {
        let token = SessionToken::parse("0:1#5").unwrap();
        outcomes.push(store.put(key, &token, params()).await);
    }
    cluster.resume(stopped.port);
    tokio::task::spawn_blocking(|| crate::support::cluster::shared().wait_settled())
        .await
        .unwrap();
    for (key, outcome) in keys.iter().zip(&outcomes) {
        match outcome {
            Err(StoreError::Unavailable(why)) if on_first(key) => {
                assert!(why.contains("redis.min_replica_acks"), "{why}");
            }
            Ok(_) if !on_first(key) => {}
            other => panic!(
                "{} (on the stopped replica's master: {}): {other:?}",
                key.name,
                on_first(key)
            ),
        }
    }
}

/// A master is killed while eight writers put, and its replica promoted: every acknowledged put
/// is still there. Its replica is stopped and cut off just before the kill, so that the last
/// puts made on that master never reach the replica that takes over: acknowledged without
/// `WAIT`, they would be lost; with it they are refused. The promoted master has no replica until the killed one
/// comes back as its replica: its keys' puts are refused meanwhile (no fallback here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_cluster_acknowledged_puts_survive_a_killed_master() {
    // Its own cluster: the shared one must not fail over under the other tests.
    let cluster = Arc::new(RedisCluster::start());
    let store = Arc::new(acked_store(&cluster, Duration::from_millis(100)).await);
    let writers = AckedPuts::start(store.clone(), 8);
    writers.more(300).await;
    let victim = cluster.master_of_slot(0);
    let replica = replica_of(&cluster, &victim).port;
    // The replica stopped, and its link cut by the master (the stopped process would read what
    // its socket still received): what the victim takes from now on, no replica has.
    cluster.pause(replica);
    let mut on_victim = redis::Client::open(victim.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let cut: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query_async(&mut on_victim)
        .await
        .unwrap();
    assert_eq!(cut, 1);
    // Puts go on meanwhile: those on the victim's keys wait for the stopped replica.
    writers.more(24).await;
    let killed = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            let old = cluster.kill_master_of_slot(0);
            cluster.resume(replica);
            let new = cluster.wait_for_failover(&old);
            cluster.restart(old.port);
            new
        })
        .await
        .unwrap()
    };
    assert_eq!(killed.port, replica, "the stopped replica took over");
    // Puts go on until one on the promoted master's keys is acknowledged again.
    let probe = (0..)
        .map(|i| StoreKey::new("acct/db/coll", format!("probe-{i}")))
        .find(|key| killed.serves(cluster.slot_for_key(&store.redis_key(key))))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store
        .put(&probe, &SessionToken::parse("0:1#1").unwrap(), params())
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "never acknowledged on {killed}");
        tokio::task::yield_now().await;
    }
    let acked = writers.stop().await;
    assert!(acked.len() > 300, "only {} puts acknowledged", acked.len());
    assert_none_lost(&store, &acked).await;
}
