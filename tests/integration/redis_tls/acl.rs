//! The broker under the smallest Redis user of docs/redis.md, on a primary and a fallback:
//! everything it does to Redis goes through without one ACL denial.
//!
//! Why the rule is read from the page: the page is what operators copy; a rule that drifted
//! from what the broker sends would fail here, not in their cluster. Why `ACL LOG`: a denied
//! command the broker tolerates (a copy that fails and is only counted, a health check) would
//! not fail any call, but Redis logs every denial; the test also provokes one at the end, to
//! show that the log it found empty does record this user's denials.

use broker::storage::redis::{ReadMode, RedisStore, RedisUrl};
use broker::{PutParams, SessionToken, StoreKey, TokenStore};
use redis::{Commands, IntoConnectionInfo, Value};

use crate::support::redis::RedisServer;
use crate::support::stores::{TTL, ready_store, redis_options, wait_for};

pub(crate) const USER: &str = "tokenbroker";
pub(crate) const PASSWORD: &str = "acl-test-password";

/// The rules of the `ACL SETUSER tokenbroker ...` line of docs/redis.md, with the test's
/// password in place of the placeholder.
pub(crate) fn documented_rules() -> Vec<String> {
    let doc = include_str!("../../../docs/redis.md");
    let prefix = format!("ACL SETUSER {USER} ");
    let lines: Vec<&str> = doc.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(lines.len(), 1, "one ACL SETUSER line in docs/redis.md");
    let rules: Vec<String> = lines[0][prefix.len()..]
        .split_whitespace()
        .map(|rule| match rule.strip_prefix('>') {
            Some(_) => format!(">{PASSWORD}"),
            None => rule.to_owned(),
        })
        .collect();
    assert!(rules.iter().any(|r| r.starts_with('>')), "{rules:?}");
    rules
}

/// A redis-server whose user `tokenbroker` has exactly the documented rule, from boot (so a
/// restart keeps it); the `default` user stays unrestricted for the test's own look.
fn start(rules: &[String]) -> RedisServer {
    let mut args = vec!["--user", USER];
    args.extend(rules.iter().map(String::as_str));
    RedisServer::start_with(&args)
}

fn url(server: &RedisServer) -> RedisUrl {
    RedisUrl::parse(&format!(
        "redis://{USER}:{PASSWORD}@127.0.0.1:{}",
        server.port()
    ))
    .unwrap()
}

/// The entries of `ACL LOG` (each a flat list of field names and values).
fn acl_log(server: &RedisServer) -> Vec<String> {
    let entries: Vec<Value> = redis::cmd("ACL")
        .arg("LOG")
        .query(&mut server.connection())
        .unwrap();
    entries.iter().map(|e| format!("{e:?}")).collect()
}

fn assert_no_denial(server: &RedisServer, when: &str) {
    let log = acl_log(server);
    assert!(log.is_empty(), "ACL LOG {when}: {log:#?}");
}

/// Connections of the broker's user: the broker really ran as it.
fn broker_connections(server: &RedisServer) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut server.connection())
        .unwrap();
    list.lines()
        .filter(|l| l.contains(&format!(" user={USER} ")))
        .count()
}

fn t(s: &str) -> SessionToken {
    SessionToken::parse(s).unwrap()
}

const PARAMS: PutParams = PutParams {
    ttl: TTL,
    max_segments: 16,
};

fn stored(server: &RedisServer, store: &RedisStore, key: &StoreKey) -> Option<String> {
    server.connection().get(store.redis_key(key)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_acl_rule_is_all_the_broker_needs() {
    let rules = documented_rules();
    let mut primary = start(&rules);
    let fallback = start(&rules);
    let mut options = redis_options(&primary, Some(&fallback));
    options.primary_url = Some(url(&primary));
    options.fallback_url = Some(url(&fallback));
    // `primary` mode: on top of what `merge` mode does, the primary-behind marker (SET, and its
    // reads at every health round) and the recovery window's merged reads and repairs.
    options.read_mode = ReadMode::Primary;
    let store = ready_store(&options).await;
    wait_for(store.primary().up(), true).await;
    wait_for(store.fallback().unwrap().up(), true).await;
    assert!(broker_connections(&primary) > 0 && broker_connections(&fallback) > 0);

    // PutToken, its copy to the fallback, GetToken.
    let k1 = StoreKey::new("acct/db/c", "k1");
    store.put(&k1, &t("0:1#10"), PARAMS).await.unwrap();
    store.flush_copies().await;
    assert_eq!(stored(&fallback, &store, &k1).as_deref(), Some("0:1#10"));
    assert_eq!(store.get(&k1).await.unwrap().token, Some(t("0:1#10")));
    // The same token again: the script only refreshes the TTL (PEXPIRE), on both.
    store.put(&k1, &t("0:1#10"), PARAMS).await.unwrap();
    store.flush_copies().await;

    // The primary dies: the put goes to the fallback, which gets the primary-behind marker.
    // (Its ACL LOG dies with it: checked first.)
    assert_no_denial(&primary, "on the primary before it was killed");
    primary.kill();
    wait_for(store.primary().up(), false).await;
    store.put(&k1, &t("0:1#20"), PARAMS).await.unwrap();
    assert_eq!(store.stats().fallback_writes.load(ORDER), 1);
    let marker: Option<String> = fallback
        .connection()
        .get("tb:v1:meta:primary-behind")
        .unwrap();
    assert_eq!(marker.as_deref(), Some("1"));

    // It comes back empty: reads merge both and repair the primary, with the fallback's TTL.
    primary.restart();
    wait_for(store.primary().up(), true).await;
    assert_eq!(store.get(&k1).await.unwrap().token, Some(t("0:1#20")));
    store.flush_copies().await;
    assert!(store.stats().read_repairs.load(ORDER) >= 1);
    assert_eq!(stored(&primary, &store, &k1).as_deref(), Some("0:1#20"));
    let pttl: i64 = primary.connection().pttl(store.redis_key(&k1)).unwrap();
    assert!(pttl > 0 && pttl <= TTL.as_millis() as i64, "{pttl}");

    // DiscardToken: one range removed (compare-and-set keeps the TTL), then a key left empty
    // (deleted), on both instances.
    let k2 = StoreKey::new("acct/db/c", "k2");
    store.put(&k2, &t("0:5#50,1:1#1"), PARAMS).await.unwrap();
    store.flush_copies().await;
    let discarded = store.discard(&k2, &t("0:5#50")).await.unwrap();
    assert_eq!(discarded.remaining, Some(t("1:1#1")));
    let discarded = store.discard(&k2, &t("1:1#1")).await.unwrap();
    assert_eq!(discarded.remaining, None);
    store.flush_copies().await;
    for server in [&primary, &fallback] {
        assert_eq!(stored(server, &store, &k2), None);
    }

    // The scripts flushed (as after a restart that kept the data): NOSCRIPT, load, retry.
    for server in [&primary, &fallback] {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query(&mut server.connection())
            .unwrap();
    }
    let k3 = StoreKey::new("acct/db/c", "k3");
    store.put(&k3, &t("2:1#3"), PARAMS).await.unwrap();
    store.flush_copies().await;
    assert_eq!(stored(&fallback, &store, &k3).as_deref(), Some("2:1#3"));

    // Nothing failed, and Redis denied nothing. Health checks ran throughout (every 100 ms).
    assert_eq!(store.stats().copies_failed.load(ORDER), 0);
    assert_eq!(store.stats().copies_dropped.load(ORDER), 0);
    assert!(broker_connections(&primary) > 0);
    assert_no_denial(&primary, "on the primary");
    assert_no_denial(&fallback, "on the fallback");

    // The log would have shown a denial: the same user outside its rule is refused and logged.
    let info = url(&fallback).expose().into_connection_info().unwrap();
    let quiet = info.redis_settings().clone().set_skip_set_lib_name();
    let mut as_broker = redis::Client::open(info.set_redis_settings(quiet))
        .unwrap()
        .get_connection()
        .unwrap();
    let outside: redis::RedisResult<Option<String>> = as_broker.get("other:key");
    assert!(outside.is_err(), "a key outside tb:* was readable");
    let flush: redis::RedisResult<()> = redis::cmd("FLUSHALL").query(&mut as_broker);
    assert!(flush.is_err(), "FLUSHALL was allowed");
    let log = acl_log(&fallback);
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(log.iter().any(|e| e.contains("other:key")), "{log:#?}");
    assert!(log.iter().any(|e| e.contains("flushall")), "{log:#?}");
}

const ORDER: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;
