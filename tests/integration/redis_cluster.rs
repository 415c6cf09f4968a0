//! Redis Cluster as an instance of the store (`redis+cluster://`), beyond the behaviour suite
//! (stamped for it in `redis_store`): the wrong mode is refused with the setting named, and
//! nothing is written to a lone node.

use broker::storage::redis::{RedisStore, RedisUrl};
use broker::{PutParams, SessionToken, StoreError, StoreKey, TokenStore};

use crate::support::load::{Load, assert_none_failed};
use crate::support::redis::RedisServer;
use crate::support::stores::{TTL, redis_options};

fn params() -> PutParams {
    PutParams {
        ttl: TTL,
        max_segments: 16,
    }
}

/// A standalone URL pointed at a cluster node: every put is refused (UNAVAILABLE, naming the
/// setting), and the node never receives the key, whichever slot it has.
#[tokio::test]
async fn a_standalone_url_on_a_cluster_node_is_refused_and_writes_nothing() {
    let cluster = crate::support::cluster::shared();
    let node = cluster.masters()[0].clone();
    let fallback = RedisServer::start();
    let mut options = redis_options(&fallback, None);
    options.primary_url = Some(RedisUrl::parse(&node.url()).unwrap());
    options.namespace = crate::support::cluster::namespace();
    let store = RedisStore::start(&options, TTL).unwrap();
    let token = SessionToken::parse("0:1#5").unwrap();
    for i in 0..20 {
        let key = StoreKey::new("acct/db/coll", format!("k{i}"));
        let err = store.put(&key, &token, params()).await.unwrap_err();
        let StoreError::Unavailable(why) = &err else {
            panic!("{err:?}");
        };
        // The first says why; the breaker then skips the instance.
        if i == 0 {
            assert!(
                why.contains("redis.primary_url points at a Redis Cluster node"),
                "{why}"
            );
        }
    }
    let mut conn = redis::Client::open(node.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", options.namespace))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "written to a lone node: {keys:?}");
}

/// A cluster URL pointed at a standalone Redis: refused, naming the setting.
#[tokio::test]
async fn a_cluster_url_on_a_standalone_redis_is_refused_naming_the_setting() {
    let server = RedisServer::start();
    let mut options = redis_options(&server, None);
    options.primary_url =
        Some(RedisUrl::parse(&format!("redis+cluster://127.0.0.1:{}", server.port())).unwrap());
    let store = RedisStore::start(&options, TTL).unwrap();
    let key = StoreKey::new("acct/db/coll", "k");
    let err = store
        .put(&key, &SessionToken::parse("0:1#5").unwrap(), params())
        .await
        .unwrap_err();
    let StoreError::Unavailable(why) = &err else {
        panic!("{err:?}");
    };
    assert!(
        why.contains("redis.primary_url is a redis+cluster:// URL")
            && why.contains("not a Redis Cluster node"),
        "{why}"
    );
}

/// A master of the cluster primary is killed under load and its replica promoted: no GetToken
/// and no PutToken fails (the standalone fallback takes the puts while the slots are uncovered,
/// reads merge both), and once the cluster is `ok` again puts land on it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_killed_under_load_fails_no_call() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    // Its own cluster: the one the other tests share must not fail over under them.
    let cluster = Arc::new(test_kit::RedisCluster::start());
    let fallback = RedisServer::start();
    let mut options = redis_options(&fallback, Some(&fallback));
    options.primary_url = Some(RedisUrl::parse(&cluster.url()).unwrap());
    options.operation_timeout = std::time::Duration::from_millis(500);
    let store = Arc::new(crate::support::stores::ready_store(&options).await);

    let load = Load::start(store.clone(), 200, |_| true);
    load.more_puts(500).await;
    let promoted = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            let old = cluster.kill_master_of_slot(0);
            cluster.wait_for_failover(&old)
        })
        .await
        .unwrap()
    };
    crate::support::stores::wait_for(store.primary().up(), true).await;
    load.more_puts(500).await;
    let puts = load.puts();
    assert_none_failed(&load.stop().await);
    assert!(promoted.is_master(), "the promoted replica is a master");
    // Puts land on the cluster again, not only on the fallback.
    let before = store.stats().fallback_writes.load(Ordering::Relaxed);
    let key = StoreKey::new("acct/db/coll", "after");
    store
        .put(&key, &SessionToken::parse("0:1#1").unwrap(), params())
        .await
        .unwrap();
    assert_eq!(
        store.stats().fallback_writes.load(Ordering::Relaxed),
        before
    );
    eprintln!("failover under load: {puts} puts, {before} of them written to the fallback");
}

/// Slots move between masters (`redis-cli --cluster reshard`, keys migrated: ASK, then MOVED)
/// under load, with no fallback to hide a failure: no call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reshard_under_load_fails_no_call() {
    use std::sync::Arc;

    // Its own cluster: the one the other tests share must not change under them.
    let cluster = Arc::new(test_kit::RedisCluster::start());
    let anchor = RedisServer::start();
    let mut options = redis_options(&anchor, None);
    options.primary_url = Some(RedisUrl::parse(&cluster.url()).unwrap());
    options.operation_timeout = std::time::Duration::from_millis(500);
    let store = Arc::new(crate::support::stores::ready_store(&options).await);

    // Many keys, so that the moved slots hold some; no fallback, so a read is never degraded.
    let load = Load::start(store, 2000, |read| read.token.is_some() && !read.degraded);
    load.more_puts(2000).await;
    let moved = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            let masters = cluster.masters();
            cluster.reshard(masters[0].port, masters[1].port, 200)
        })
        .await
        .unwrap()
    };
    load.more_puts(500).await;
    assert_none_failed(&load.stop().await);
    assert_eq!(moved.len(), 200);
}

/// The smallest Redis user of docs/redis.md, with the additions its cluster section names,
/// serves a cluster: puts, reads, discards and the health checks run without one ACL denial on
/// any node.
#[tokio::test]
async fn the_documented_acl_rule_serves_a_cluster() {
    use crate::redis_tls::acl::{PASSWORD, USER, documented_rules};

    let doc = include_str!("../../docs/redis.md");
    let (_, after) = doc
        .split_once("a cluster needs ")
        .expect("docs/redis.md names what a cluster needs");
    let additions: Vec<String> = after
        .split_once(" beyond")
        .expect("... beyond the rule below")
        .0
        .split_whitespace()
        .map(|r| r.trim_matches('`').to_owned())
        .collect();
    assert!(
        additions.iter().all(|r| r.starts_with('+')),
        "{additions:?}"
    );
    let mut rules = documented_rules();
    rules.extend(additions);
    let mut extra_args = vec!["--user".to_owned(), USER.to_owned()];
    extra_args.extend(rules);
    let cluster = test_kit::RedisCluster::start_with(test_kit::ClusterOptions {
        extra_args,
        ..Default::default()
    });
    let seeds: Vec<String> = cluster
        .ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let anchor = RedisServer::start();
    let mut options = redis_options(&anchor, None);
    options.primary_url = Some(
        RedisUrl::parse(&format!(
            "redis+cluster://{USER}:{PASSWORD}@{}",
            seeds.join(",")
        ))
        .unwrap(),
    );
    let store = crate::support::stores::ready_store(&options).await;
    for i in 0..50 {
        let key = StoreKey::new("acct/db/coll", format!("k{i}"));
        let token = SessionToken::parse(&format!("0:1#{}", i + 1)).unwrap();
        store.put(&key, &token, params()).await.unwrap();
        store.put(&key, &token, params()).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap().token, Some(token.clone()));
        store.discard(&key, &token).await.unwrap();
    }
    for url in cluster.node_urls() {
        let mut conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let log: Vec<redis::Value> = redis::cmd("ACL")
            .arg("LOG")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(log.is_empty(), "{url}: {log:?}");
    }
}
