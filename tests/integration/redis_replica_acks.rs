//! `redis.min_replica_acks`: a put is acknowledged only once that many replicas hold it (Redis
//! `WAIT` on the write's connection), on a master that Redis Sentinel manages with one replica;
//! on a Redis Cluster in [`cluster`].

mod cluster;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use broker::storage::redis::{RedisOptions, RedisStore, RedisUrl};
use broker::{PutParams, SessionToken, StoreError, StoreKey, TokenStore};
use test_kit::RedisSentinel;

use crate::support::load::{AckedPuts, assert_none_lost};
use crate::support::redis::RedisServer;
use crate::support::stores::{TTL, ready_store, redis_options, wait_for};

fn params() -> PutParams {
    PutParams {
        ttl: TTL,
        max_segments: 16,
    }
}

fn acks(sentinel: &RedisSentinel, fallback: Option<&RedisServer>, wanted: u32) -> RedisOptions {
    let anchor = RedisServer::start();
    let mut options = redis_options(fallback.unwrap_or(&anchor), fallback);
    options.primary_url = Some(RedisUrl::parse(&sentinel.url()).unwrap());
    options.namespace = crate::support::cluster::namespace();
    options.operation_timeout = Duration::from_secs(1);
    options.min_replica_acks = wanted;
    options.replica_ack_timeout = Duration::from_millis(300);
    options
}

/// The replica's port of a master and one replica.
fn replica_url(sentinel: &RedisSentinel) -> String {
    let master = sentinel.master_addr().port();
    let port = sentinel
        .data_ports()
        .iter()
        .copied()
        .find(|p| *p != master)
        .unwrap();
    format!("redis://127.0.0.1:{port}")
}

/// With one ack required, every acknowledged put is on the replica when the call returns.
#[tokio::test]
async fn an_acknowledged_put_is_on_the_replica_already() {
    let sentinel = crate::support::cluster::shared_sentinel();
    // No fallback, and a deadline far above a replica's lag even on a loaded machine: every
    // put must be acknowledged by the primary's replica, or the test fails.
    let store = ready_store(&RedisOptions {
        operation_timeout: Duration::from_secs(3),
        replica_ack_timeout: Duration::from_secs(2),
        ..acks(sentinel, None, 1)
    })
    .await;
    let mut replica = redis::Client::open(replica_url(sentinel))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for i in 1..=100u64 {
        let key = StoreKey::new("acct/db/coll", format!("k{i}"));
        let token = SessionToken::parse(&format!("0:1#{i}")).unwrap();
        store.put(&key, &token, params()).await.unwrap();
        let held: Option<String> = redis::cmd("GET")
            .arg(store.redis_key(&key))
            .query_async(&mut replica)
            .await
            .unwrap();
        assert_eq!(held.as_deref(), Some(token.to_string().as_str()), "put {i}");
    }
}

/// More acks than replicas: the master's put is not acknowledged, the fallback takes it; with
/// no fallback the put is UNAVAILABLE, saying why.
#[tokio::test]
async fn without_the_acks_in_time_the_put_fails_over() {
    let sentinel = crate::support::cluster::shared_sentinel();
    let fallback = RedisServer::start();
    let store = ready_store(&acks(sentinel, Some(&fallback), 2)).await;
    let key = StoreKey::new("acct/db/coll", "k");
    let token = SessionToken::parse("0:1#7").unwrap();
    assert_eq!(store.put(&key, &token, params()).await.unwrap(), token);
    assert_eq!(store.stats().fallback_writes.load(Ordering::Relaxed), 1);

    let alone = RedisStore::start(&acks(sentinel, None, 2), TTL).unwrap();
    wait_for(alone.ready(), true).await;
    let err = alone.put(&key, &token, params()).await.unwrap_err();
    let StoreError::Unavailable(why) = &err else {
        panic!("{err:?}");
    };
    assert!(why.contains("redis.min_replica_acks"), "{why}");
}

/// The master is killed while puts go on, and its replica promoted: every put that was
/// acknowledged is still there (Redis's asynchronous replication alone would lose the last
/// ones). The promoted master has no replica until the killed node comes back as one: no put
/// is acknowledged meanwhile (UNAVAILABLE, no fallback here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_puts_survive_a_killed_master() {
    let sentinel = Arc::new(RedisSentinel::start());
    let store = Arc::new(ready_store(&acks(&sentinel, None, 1)).await);
    let writers = AckedPuts::start(store.clone(), 8);
    // Some puts first, acknowledged by the replica.
    writers.more(200).await;
    let killed = {
        let sentinel = sentinel.clone();
        tokio::task::spawn_blocking(move || {
            let old = sentinel.kill_master();
            let new = sentinel.wait_for_failover(old);
            sentinel.restart(old);
            new
        })
        .await
        .unwrap()
    };
    // Puts go on until the store has found the new master and written there.
    let probe = StoreKey::new("acct/db/coll", "probe");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store
        .put(&probe, &SessionToken::parse("0:1#1").unwrap(), params())
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never wrote to {killed}"
        );
        tokio::task::yield_now().await;
    }
    let acked = writers.stop().await;
    assert!(acked.len() > 100, "only {} puts acknowledged", acked.len());
    assert_none_lost(&store, &acked).await;
}
