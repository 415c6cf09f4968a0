//! DiscardToken on the Redis pair: a discarded segment does not come back through the copy
//! queue, merge-on-read or read repair; the TTL is kept; an instance that cannot be reached
//! makes the discard UNAVAILABLE rather than quietly half-done.

use std::time::Duration;

use broker::{PutParams, SessionToken, StoreError, StoreKey, TokenStore};
use redis::Commands;

use crate::support::redis::RedisServer;
use crate::support::stores::{TTL, ready_store, redis_options};

fn t(s: &str) -> SessionToken {
    SessionToken::parse(s).unwrap()
}

fn params(ttl: Duration) -> PutParams {
    PutParams {
        ttl,
        max_segments: 16,
    }
}

const BAD: &str = "0:9#999999";

/// Puts a token with a condemned range and discards it at once, while the put's copy to the
/// fallback may still be queued: the copy must not bring the range back, on either instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discard_is_not_undone_by_a_queued_copy_or_merge_on_read() {
    let primary = RedisServer::start();
    let fallback = RedisServer::start();
    let store = ready_store(&redis_options(&primary, Some(&fallback))).await;
    let keys: Vec<StoreKey> = (0..100)
        .map(|i| StoreKey::new("acct/db/c", format!("k{i}")))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let token = t(&format!("{BAD},1:1#{i}"));
        store.put(key, &token, params(TTL)).await.unwrap();
        let discarded = store.discard(key, &t(BAD)).await.unwrap();
        let removed: Vec<&str> = discarded.removed.iter().map(|r| r.as_str()).collect();
        assert_eq!(removed, ["0"], "{key:?}");
    }
    store.flush_copies().await;
    for (i, key) in keys.iter().enumerate() {
        let want = t(&format!("1:1#{i}"));
        assert_eq!(store.get(key).await.unwrap().token, Some(want.clone()));
        for server in [&primary, &fallback] {
            let raw: Option<String> = server.connection().get(store.redis_key(key)).unwrap();
            assert_eq!(
                raw,
                Some(want.to_string()),
                "{key:?} on port {}",
                server.port()
            );
        }
    }
    // Reads may have queued repairs: still nothing comes back.
    store.flush_copies().await;
    for key in &keys {
        let token = store.get(key).await.unwrap().token.unwrap();
        assert!(token.get("0").is_none(), "{key:?}: {token}");
    }
}

#[tokio::test]
async fn a_discard_keeps_the_ttl_and_deletes_a_key_left_empty() {
    let primary = RedisServer::start();
    let fallback = RedisServer::start();
    let store = ready_store(&redis_options(&primary, Some(&fallback))).await;
    let key = StoreKey::new("acct/db/c", "ttl");
    let ttl = Duration::from_secs(600);
    store
        .put(&key, &t(&format!("{BAD},1:1#1")), params(ttl))
        .await
        .unwrap();
    store.flush_copies().await;
    store.discard(&key, &t(BAD)).await.unwrap();
    store.flush_copies().await;
    for server in [&primary, &fallback] {
        let pttl: i64 = server.connection().pttl(store.redis_key(&key)).unwrap();
        assert!(pttl > 590_000 && pttl <= 600_000, "pttl {pttl}");
    }
    store.discard(&key, &t("1:1#1")).await.unwrap();
    store.flush_copies().await;
    for server in [&primary, &fallback] {
        let exists: bool = server.connection().exists(store.redis_key(&key)).unwrap();
        assert!(!exists, "key left on port {}", server.port());
    }
}

/// With the fallback down, the discard cannot reach every instance: UNAVAILABLE, the primary
/// healed; once the fallback is back, a repeated discard heals it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_fallback_down_a_discard_is_unavailable_and_can_be_repeated() {
    let primary = RedisServer::start();
    let fallback = RedisServer::start();
    let store = ready_store(&redis_options(&primary, Some(&fallback))).await;
    let key = StoreKey::new("acct/db/c", "down");
    store
        .put(&key, &t(&format!("{BAD},1:1#1")), params(TTL))
        .await
        .unwrap();
    store.flush_copies().await;
    fallback.pause();
    let result = store.discard(&key, &t(BAD)).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    let raw: Option<String> = primary.connection().get(store.redis_key(&key)).unwrap();
    assert_eq!(raw.as_deref(), Some("1:1#1"), "the primary is healed");
    fallback.resume();
    store.flush_copies().await;
    let again = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(done) = store.discard(&key, &t(BAD)).await {
                return done;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the discard never went through once the fallback was back");
    assert_eq!(again.remaining, Some(t("1:1#1")));
    assert_eq!(store.get(&key).await.unwrap().token, Some(t("1:1#1")));
}
