//! The store behaviour suite against the in-memory store, one test per check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use broker::storage::behaviour;
use broker::storage::memory::MemoryStore;
use broker::{StoreError, StoreKey, TokenStore};

fn store() -> MemoryStore {
    MemoryStore::new(100_000)
}

macro_rules! suite {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            behaviour::$check(&store()).await;
        }
    )*};
}

suite!(
    put_then_get_returns_canonical_token,
    stored_token_never_goes_backwards,
    lsns_above_2_pow_53_keep_every_digit,
    conflicting_put_leaves_stored_token_unchanged,
    segment_limit_applies_to_the_merged_token,
    keys_and_scopes_do_not_collide,
    ttl_expires_and_every_put_refreshes_it,
    discard_removes_segments_at_or_ahead_of_the_failed_token,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discards_racing_with_puts_lose_no_put() {
    behaviour::discards_racing_with_puts_lose_no_put(Arc::new(store())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_lose_nothing() {
    behaviour::concurrent_puts_lose_nothing(Arc::new(store()), 64, 50).await;
}

#[tokio::test]
async fn a_full_store_refuses_new_keys_but_updates_existing_ones() {
    let store = MemoryStore::new(1);
    let token = broker::SessionToken::parse("0:1#1").unwrap();
    let params = broker::PutParams {
        ttl: std::time::Duration::from_secs(60),
        max_segments: 4,
    };
    store
        .put(&StoreKey::new("s", "a"), &token, params)
        .await
        .unwrap();
    // One key per shard at most: the next new key in that shard is refused, eventually.
    let mut refused = None;
    for i in 0..1000 {
        if let Err(e) = store
            .put(&StoreKey::new("s", format!("k{i}")), &token, params)
            .await
        {
            refused = Some(e);
            break;
        }
    }
    assert_eq!(refused, Some(StoreError::Full { limit: 1 }));
    store
        .put(&StoreKey::new("s", "a"), &token, params)
        .await
        .unwrap();
}
