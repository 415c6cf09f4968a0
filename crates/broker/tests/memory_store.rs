//! The store behaviour suite against the in-memory store, one test per check; then what only
//! the in-memory store does: its global key bound and its expiry sweeper.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::storage::behaviour;
use broker::storage::memory::MemoryStore;
use broker::{PutParams, SessionToken, StoreError, StoreKey, TokenStore};

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

fn params(ttl: Duration) -> PutParams {
    PutParams {
        ttl,
        max_segments: 4,
    }
}

fn token() -> SessionToken {
    SessionToken::parse("0:1#123456#0=123456#1=123450,1:1#654321#0=654321#1=654320").unwrap()
}

#[tokio::test]
async fn a_full_store_refuses_new_keys_but_updates_existing_ones() {
    let store = MemoryStore::new(2);
    let hour = params(Duration::from_secs(3600));
    for k in ["a", "b"] {
        store
            .put(&StoreKey::new("s", k), &token(), hour)
            .await
            .unwrap();
    }
    // The bound is the store's, not a shard's: the third key is refused, whichever shard.
    for i in 0..100 {
        let refused = store
            .put(&StoreKey::new("s", format!("k{i}")), &token(), hour)
            .await;
        assert_eq!(refused, Err(StoreError::Full { limit: 2 }), "k{i}");
    }
    store
        .put(&StoreKey::new("s", "a"), &token(), hour)
        .await
        .unwrap();
    assert_eq!(store.len(), 2);
}

/// Polls `done` every 10 ms for at most 10 s. Expiry and the sweeper's passes are clock events
/// with nothing to await; this returns as soon as `done` holds.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[tokio::test]
async fn expired_keys_make_room_for_new_ones() {
    let store = MemoryStore::with_sweep_interval(2, Duration::from_millis(20));
    for k in ["a", "b"] {
        store
            .put(
                &StoreKey::new("s", k),
                &token(),
                params(Duration::from_secs(1)),
            )
            .await
            .unwrap();
    }
    let c = StoreKey::new("s", "c");
    let hour = params(Duration::from_secs(3600));
    assert_eq!(
        store.put(&c, &token(), hour).await,
        Err(StoreError::Full { limit: 2 })
    );
    assert!(eventually(|| store.is_empty()).await, "never swept");
    store.put(&c, &token(), hour).await.unwrap();
    assert_eq!(store.len(), 1);
}

/// The sweeper removes expired keys that no request ever touches again, and only those.
#[tokio::test]
async fn the_sweeper_removes_expired_keys_nobody_reads() {
    let store = MemoryStore::with_sweep_interval(100_000, Duration::from_millis(20));
    let short = params(Duration::from_millis(1));
    for i in 0..5_000 {
        let key = StoreKey::new("acct/db/orders", format!("gone-{i}"));
        store.put(&key, &token(), short).await.unwrap();
    }
    let kept: Vec<StoreKey> = (0..10)
        .map(|i| StoreKey::new("acct/db/orders", format!("kept-{i}")))
        .collect();
    for key in &kept {
        store
            .put(key, &token(), params(Duration::from_secs(3600)))
            .await
            .unwrap();
    }
    assert!(
        eventually(|| store.len() == kept.len()).await,
        "{} keys left",
        store.len()
    );
    for key in &kept {
        assert_eq!(store.get(key).await.unwrap().token, Some(token()));
    }
}

/// Resident memory of this process, in bytes (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn shaped_token(i: u64) -> SessionToken {
    SessionToken::parse(&format!(
        "0:1#{a}#0={a}#1={a},1:1#{b}#0={b}#1={b}",
        a = 100_000 + i,
        b = 900_000 - i
    ))
    .unwrap()
}

/// Puts keys `0..n` from two runtime threads, as a server does.
async fn put_keys(store: &Arc<MemoryStore>, n: u64, ttl: Duration) {
    let loaders: Vec<_> = (0..2u64)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (t..n).step_by(2) {
                    let key = StoreKey::new("account1/db/orders-1", format!("u-{i:08}"));
                    store
                        .put(&key, &shaped_token(i), params(ttl))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for loader in loaders {
        loader.await.unwrap();
    }
}

/// Keys that expire and are never touched again give their memory back to the OS: resident
/// memory falls by most of what loading them added, with no put after the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_keys_give_their_memory_back() {
    let Some(before) = resident_bytes() else {
        return; // not Linux: nothing to read
    };
    const KEYS: u64 = 64_000;
    let store = Arc::new(MemoryStore::with_sweep_interval(
        KEYS as usize,
        Duration::from_millis(20),
    ));
    // Loaded with a long TTL, so that every key is there when memory is read however slow the
    // machine; then each is put again with a 1 s TTL (same size: its record is rewritten in
    // place), and nothing more.
    put_keys(&store, KEYS, Duration::from_secs(3600)).await;
    let loaded = resident_bytes().unwrap();
    assert_eq!(store.len(), KEYS as usize);
    let growth = loaded.saturating_sub(before);
    assert!(growth > 4 << 20, "{KEYS} keys added only {growth} bytes");
    put_keys(&store, KEYS, Duration::from_secs(1)).await;
    assert!(
        eventually(|| store.is_empty()).await,
        "{} keys never swept",
        store.len()
    );
    let after = resident_bytes().unwrap();
    let given_back = loaded.saturating_sub(after);
    assert!(
        given_back >= growth / 2,
        "resident memory {before} -> {loaded} -> {after} bytes: {given_back} of {growth} given back"
    );
}
