//! A master that Redis Sentinel manages as an instance of the store (`redis+sentinel://`),
//! beyond the behaviour suite (stamped for it in `redis_store`): failovers followed under load
//! without a failed call, and a URL that reaches no sentinel refused naming the setting.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use broker::storage::redis::{RedisStore, RedisUrl};
use broker::{PutParams, SessionToken, StoreError, StoreKey, TokenStore};

use crate::support::load::{Load, assert_none_failed};
use crate::support::redis::RedisServer;
use crate::support::stores::{TTL, ready_store, redis_options};

fn params() -> PutParams {
    PutParams {
        ttl: TTL,
        max_segments: 16,
    }
}

/// A store on `sentinel`'s master with a standalone fallback, ready.
async fn store_on(sentinel: &test_kit::RedisSentinel, fallback: &RedisServer) -> Arc<RedisStore> {
    let mut options = redis_options(fallback, Some(fallback));
    options.primary_url = Some(RedisUrl::parse(&sentinel.url()).unwrap());
    options.operation_timeout = Duration::from_millis(500);
    Arc::new(ready_store(&options).await)
}

/// Waits until a fresh put lands on the master at `new` (the move is noticed by the next
/// health round, within `redis.health_interval`), and checks the move was counted.
async fn until_puts_reach(store: &RedisStore, new: std::net::SocketAddr) {
    let mut on_new = redis::Client::open(format!("redis://{new}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in 0.. {
        let key = StoreKey::new("acct/db/coll", format!("after-{n}"));
        store
            .put(&key, &SessionToken::parse("0:1#1").unwrap(), params())
            .await
            .unwrap();
        let found: Option<String> = redis::cmd("GET")
            .arg(store.redis_key(&key))
            .query_async(&mut on_new)
            .await
            .unwrap();
        if found.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "puts never reached the new master {new}"
        );
        tokio::task::yield_now().await;
    }
    assert!(
        store.primary().stats.master_changes.load(Ordering::Relaxed) >= 1,
        "the move was not counted (tokenbroker_redis_master_changes_total)"
    );
}

/// `SENTINEL FAILOVER` under load: no call fails (the fallback takes the puts the old master
/// cannot), and the broker moves to the new master by itself, although the old one goes on
/// accepting writes for seconds (the sentinels demote it later): puts land on the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_under_load_fails_no_call_and_is_followed() {
    // Its own set: the shared one must not fail over under the other tests.
    let sentinel = Arc::new(test_kit::RedisSentinel::start());
    let fallback = RedisServer::start();
    let store = store_on(&sentinel, &fallback).await;
    let load = Load::start(store.clone(), 200, |_| true);
    load.more_puts(300).await;
    let old = sentinel.master_addr();
    let new = {
        let sentinel = sentinel.clone();
        tokio::task::spawn_blocking(move || sentinel.failover())
            .await
            .unwrap()
    };
    assert_ne!(old, new);
    until_puts_reach(&store, new).await;
    load.more_puts(300).await;
    assert_none_failed(&load.stop().await);
}

/// The master killed under load: no call fails while the sentinels promote the replica (about
/// 3 s: the fallback takes the puts, reads are degraded), and the broker moves to the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_under_load_fails_no_call_and_is_followed() {
    let sentinel = Arc::new(test_kit::RedisSentinel::start());
    let fallback = RedisServer::start();
    let store = store_on(&sentinel, &fallback).await;
    let load = Load::start(store.clone(), 200, |_| true);
    load.more_puts(300).await;
    let new = {
        let sentinel = sentinel.clone();
        tokio::task::spawn_blocking(move || {
            let old = sentinel.kill_master();
            sentinel.wait_for_failover(old)
        })
        .await
        .unwrap()
    };
    until_puts_reach(&store, new).await;
    load.more_puts(300).await;
    assert_none_failed(&load.stop().await);
    assert!(store.stats().fallback_writes.load(Ordering::Relaxed) > 0);
}

/// A sentinel URL that reaches a plain Redis: refused, naming the setting.
#[tokio::test]
async fn a_sentinel_url_on_a_plain_redis_is_refused_naming_the_setting() {
    let server = RedisServer::start();
    let mut options = redis_options(&server, None);
    options.primary_url = Some(
        RedisUrl::parse(&format!(
            "redis+sentinel://127.0.0.1:{}/mymaster",
            server.port()
        ))
        .unwrap(),
    );
    let store = RedisStore::start(&options, TTL).unwrap();
    let err = store
        .put(
            &StoreKey::new("acct/db/coll", "k"),
            &SessionToken::parse("0:1#5").unwrap(),
            params(),
        )
        .await
        .unwrap_err();
    let StoreError::Unavailable(why) = &err else {
        panic!("{err:?}");
    };
    assert!(
        why.contains("redis.primary_url is a redis+sentinel:// URL"),
        "{why}"
    );
}

/// The `+...` rules named in `doc` between `after` and `until` (line breaks read as spaces).
fn rules_between(doc: &str, after: &str, until: &str) -> Vec<String> {
    let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let (_, rest) = doc
        .split_once(after)
        .unwrap_or_else(|| panic!("docs/redis.md says {after:?}"));
    let (text, _) = rest
        .split_once(until)
        .unwrap_or_else(|| panic!("... then {until:?}"));
    let rules: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c| c == '`' || c == '(' || c == ')')
                .to_owned()
        })
        .filter(|w| w.starts_with('+'))
        .collect();
    assert!(!rules.is_empty(), "no rule in {text:?}");
    rules
}

/// A Sentinel set whose servers and sentinels require a password of their default user, and
/// whose broker user has exactly the rules docs/redis.md names for the data nodes and for the
/// sentinels: puts (acknowledged by the replica, so `WAIT` too), reads and discards go through,
/// and `ACL LOG` stays empty on the master, the replica and every sentinel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_acl_rules_serve_a_sentinel_set() {
    use crate::redis_tls::acl::{PASSWORD, USER, documented_rules};

    let doc = include_str!("../../docs/redis.md");
    let mut data_user = vec!["--user".to_owned(), USER.to_owned()];
    data_user.extend(documented_rules());
    data_user.extend(rules_between(doc, "the data nodes need ", " beyond"));
    let mut sentinel_user = ["--user", USER, "reset", "on"].map(str::to_owned).to_vec();
    sentinel_user.push(format!(">{PASSWORD}"));
    sentinel_user.extend(rules_between(
        doc,
        "serve both) with ",
        " (and nothing else",
    ));
    let admin = "admin-password".to_owned();
    let sentinel = test_kit::RedisSentinel::start_with(test_kit::SentinelOptions {
        password: Some(admin.clone()),
        sentinel_password: Some(admin.clone()),
        extra_args: data_user,
        sentinel_extra_args: sentinel_user,
        ..Default::default()
    });
    let url = sentinel
        .url()
        .replacen("://", &format!("://{USER}:{PASSWORD}@"), 1);
    let anchor = RedisServer::start();
    let mut options = redis_options(&anchor, None);
    options.primary_url = Some(RedisUrl::parse(&url).unwrap());
    options.operation_timeout = Duration::from_secs(2);
    options.min_replica_acks = 1;
    options.replica_ack_timeout = Duration::from_secs(1);
    let store = ready_store(&options).await;
    for i in 0..30 {
        let key = StoreKey::new("acct/db/coll", format!("k{i}"));
        let token = SessionToken::parse(&format!("0:1#{}", i + 1)).unwrap();
        store.put(&key, &token, params()).await.unwrap();
        store.put(&key, &token, params()).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap().token, Some(token.clone()));
        store.discard(&key, &token).await.unwrap();
    }
    let data = sentinel
        .data_ports()
        .iter()
        .map(|port| format!("redis://:{admin}@127.0.0.1:{port}"));
    for url in data.chain(sentinel.sentinel_urls()) {
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
