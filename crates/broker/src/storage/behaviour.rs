//! The behaviour every [`TokenStore`] must show, as a suite of async checks.
//!
//! Why in the library (behind the `behaviour-suite` feature): the in-memory store is tested here,
//! and the integration tests run the very same checks against Redis-backed stores, so "the same
//! guarantees on every store" is checked, not assumed. Test code: it panics on failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_token::SessionToken;

use super::discard::Discarded;
use super::{PutParams, StoreError, StoreKey, TokenStore};

fn t(s: &str) -> SessionToken {
    SessionToken::parse(s).unwrap()
}

fn params() -> PutParams {
    PutParams {
        ttl: Duration::from_secs(3600),
        max_segments: 8,
    }
}

/// Unique keys per check, so checks can share one store.
fn key(check: &str) -> StoreKey {
    StoreKey::new(format!("suite/{check}"), "k")
}

/// A put returns the stored token in canonical form (ranges and regions ordered, leading zeros
/// dropped), a get returns the same, not degraded; an unknown key reads as `None`.
pub async fn put_then_get_returns_canonical_token(store: &dyn TokenStore) {
    let k = key("put_then_get");
    assert_eq!(store.get(&k).await.unwrap().token, None);
    let stored = store
        .put(&k, &t("3:1#9#2=1#1=4,0:007"), params())
        .await
        .unwrap();
    assert_eq!(stored.to_string(), "0:7,3:1#9#1=4#2=1");
    let lookup = store.get(&k).await.unwrap();
    assert_eq!(lookup.token, Some(stored));
    assert!(!lookup.degraded);
}

/// Older, newer and stale puts in turn: the stored token only moves forward, by the SDK merge
/// rules (a higher version wins wholesale, shared regions take the maximum LSN).
pub async fn stored_token_never_goes_backwards(store: &dyn TokenStore) {
    let k = key("backwards");
    store
        .put(&k, &t("0:1#100#1=50#2=7"), params())
        .await
        .unwrap();
    let after_older = store
        .put(&k, &t("0:1#90#1=60#2=3"), params())
        .await
        .unwrap();
    assert_eq!(after_older.to_string(), "0:1#100#1=60#2=7");
    // A higher version wins wholesale, its smaller global LSN included; shared regions take max.
    let after_newer = store
        .put(&k, &t("0:2#40#1=10#3=1"), params())
        .await
        .unwrap();
    assert_eq!(after_newer.to_string(), "0:2#40#1=60#3=1");
    let after_stale = store
        .put(&k, &t("0:1#999#1=999#2=999"), params())
        .await
        .unwrap();
    assert_eq!(after_stale.to_string(), "0:2#40#1=999#3=1");
    assert_eq!(store.get(&k).await.unwrap().token, Some(after_stale));
}

/// Versions and LSNs near `i64::MAX` and above 2^53 survive a merge exactly (no trip through a
/// double, as a Lua number or a JSON parser would take).
pub async fn lsns_above_2_pow_53_keep_every_digit(store: &dyn TokenStore) {
    let k = key("big_lsns");
    let a = format!("0:{}#{}#1={}", i64::MAX - 1, (1i64 << 53) + 1, i64::MAX);
    let b = format!("0:{}#{}#1={}", i64::MAX - 1, (1i64 << 53) + 2, i64::MAX - 1);
    store.put(&k, &t(&a), params()).await.unwrap();
    let stored = store.put(&k, &t(&b), params()).await.unwrap();
    let expected = format!("0:{}#{}#1={}", i64::MAX - 1, (1i64 << 53) + 2, i64::MAX);
    assert_eq!(stored.to_string(), expected);
}

/// A put that does not merge (different regions at one version, simple against vector) fails
/// with [`StoreError::Conflict`] and changes nothing, not even its other ranges.
pub async fn conflicting_put_leaves_stored_token_unchanged(store: &dyn TokenStore) {
    let k = key("conflict");
    let stored = store
        .put(&k, &t("0:1#100#1=5,1:7"), params())
        .await
        .unwrap();
    let region_mismatch = store.put(&k, &t("0:1#200#2=5,2:1#1"), params()).await;
    assert!(
        matches!(region_mismatch, Err(StoreError::Conflict(_))),
        "{region_mismatch:?}"
    );
    let kind_mismatch = store.put(&k, &t("1:1#8"), params()).await;
    assert!(
        matches!(kind_mismatch, Err(StoreError::Conflict(_))),
        "{kind_mismatch:?}"
    );
    assert_eq!(store.get(&k).await.unwrap().token, Some(stored));
}

/// `max_segments` bounds the token after the merge: a put that would exceed it fails with
/// [`StoreError::TooManySegments`] and changes nothing; one that merges within it succeeds.
pub async fn segment_limit_applies_to_the_merged_token(store: &dyn TokenStore) {
    let k = key("segments");
    let limit = PutParams {
        max_segments: 3,
        ..params()
    };
    let stored = store.put(&k, &t("0:1#1,1:1#1"), limit).await.unwrap();
    let over = store.put(&k, &t("2:1#1,3:1#1"), limit).await;
    assert_eq!(
        over,
        Err(StoreError::TooManySegments {
            segments: 4,
            limit: 3
        })
    );
    assert_eq!(store.get(&k).await.unwrap().token, Some(stored));
    let within = store.put(&k, &t("1:1#5,2:1#1"), limit).await.unwrap();
    assert_eq!(within.to_string(), "0:1#1,1:1#5,2:1#1");
}

/// (scope, key) pairs that would collide under naive joining (`|`, `:`, `{`/`}`, percent
/// escapes) are stored apart.
pub async fn keys_and_scopes_do_not_collide(store: &dyn TokenStore) {
    let pairs = [
        ("suite/iso|a", "b"),
        ("suite/iso", "a|b"),
        ("suite/iso{a", "}b"),
        ("suite/iso%7Ca", "b"),
        ("suite/iso", "a:b"),
        ("suite/iso:a", "b"),
    ];
    for (i, (scope, k)) in pairs.iter().enumerate() {
        let token = t(&format!("0:1#{}", i + 1));
        store
            .put(&StoreKey::new(*scope, *k), &token, params())
            .await
            .unwrap();
    }
    for (i, (scope, k)) in pairs.iter().enumerate() {
        let got = store.get(&StoreKey::new(*scope, *k)).await.unwrap().token;
        assert_eq!(got, Some(t(&format!("0:1#{}", i + 1))), "{scope:?} / {k:?}");
    }
}

/// Polls until `key` is gone, for at most `within`. Expiry is a clock event with nothing to
/// await, so this polls; it returns as soon as the key is gone.
async fn gone_within(store: &dyn TokenStore, k: &StoreKey, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if store.get(k).await.unwrap().token.is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Every put sets the key's TTL to its own (longer or shorter); an expired key is gone within
/// 5 s and does not come back through a later merge. Takes about a second.
pub async fn ttl_expires_and_every_put_refreshes_it(store: &dyn TokenStore) {
    let k = key("ttl");
    let short = PutParams {
        ttl: Duration::from_millis(300),
        ..params()
    };
    let started = Instant::now();
    store.put(&k, &t("0:1#1"), short).await.unwrap();
    // Refresh with a long TTL: the key must outlive the short one.
    store.put(&k, &t("0:1#2"), params()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600).saturating_sub(started.elapsed())).await;
    assert_eq!(store.get(&k).await.unwrap().token, Some(t("0:1#2")));
    // Shorten it again: now it must expire.
    store.put(&k, &t("0:1#3"), short).await.unwrap();
    assert!(
        gone_within(store, &k, Duration::from_secs(5)).await,
        "key did not expire"
    );
    // An expired token does not come back through a merge.
    let fresh = store.put(&k, &t("0:1#1"), params()).await.unwrap();
    assert_eq!(fresh, t("0:1#1"));
}

/// Many concurrent callers put into one key: nothing is lost. Each caller adds its own range and
/// advances a shared one, so a lost update shows as a missing range or a lower LSN.
pub async fn concurrent_puts_lose_nothing(store: Arc<dyn TokenStore>, callers: usize, puts: usize) {
    let k = key("concurrent");
    let many = PutParams {
        max_segments: callers + 1,
        ..params()
    };
    let mut tasks = Vec::new();
    for c in 0..callers {
        let store = store.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for p in 0..puts {
                let lsn = (p * callers + c + 1) as i64;
                let token = t(&format!("0:1#{lsn}#1={lsn},{}:1#{p}", c + 1));
                let stored = store.put(&k, &token, many).await.unwrap();
                assert!(
                    token.is_covered_by(&stored),
                    "{token} not covered by {stored}"
                );
                acked.push(token);
            }
            acked
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let expected = SessionToken::merge_all(&all).unwrap().unwrap();
    assert_eq!(store.get(&k).await.unwrap().token, Some(expected));
}

/// DiscardToken: a stored segment at or ahead of the failed one goes, one behind it stays,
/// ranges the failed token does not name are untouched, and a key left empty is gone.
pub async fn discard_removes_segments_at_or_ahead_of_the_failed_token(store: &dyn TokenStore) {
    let k = key("discard");
    assert_eq!(
        store.discard(&k, &t("0:1#5")).await.unwrap(),
        Discarded::default(),
        "nothing stored, nothing discarded"
    );
    store
        .put(&k, &t("0:1#100#1=5,1:1#7,2:1#9"), params())
        .await
        .unwrap();
    let discarded = store.discard(&k, &t("0:1#100#1=5,1:1#8")).await.unwrap();
    let removed: Vec<&str> = discarded.removed.iter().map(|r| r.as_str()).collect();
    assert_eq!(removed, ["0"]);
    assert_eq!(discarded.remaining, Some(t("1:1#7,2:1#9")));
    assert_eq!(store.get(&k).await.unwrap().token, Some(t("1:1#7,2:1#9")));
    // A failed token ahead of every stored segment changes nothing: they are behind it.
    let unchanged = store.discard(&k, &t("1:1#8,2:2#1")).await.unwrap();
    assert!(unchanged.removed.is_empty(), "{unchanged:?}");
    // Discarding what remains deletes the key; a put starts afresh.
    let all = store.discard(&k, &t("1:1#7,2:1#1")).await.unwrap();
    assert_eq!(all.remaining, None);
    assert_eq!(store.get(&k).await.unwrap().token, None);
    let fresh = store.put(&k, &t("0:1#3#1=1"), params()).await.unwrap();
    assert_eq!(
        fresh,
        t("0:1#3#1=1"),
        "a discarded segment does not come back"
    );
}

/// Discards racing with puts: no put of another range is lost, and a discard that follows the
/// last put of the condemned segment leaves it gone.
pub async fn discards_racing_with_puts_lose_no_put(store: Arc<dyn TokenStore>) {
    let k = key("discard_race");
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            let k = k.clone();
            tokio::spawn(async move {
                for p in 0..40i64 {
                    let lsn = p * 8 + w + 1;
                    store
                        .put(&k, &t(&format!("1:1#{lsn}")), params())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let discarder = {
        let store = store.clone();
        let k = k.clone();
        tokio::spawn(async move {
            for _ in 0..40 {
                store.put(&k, &t("0:9#999999"), params()).await.unwrap();
                store.discard(&k, &t("0:9#999999")).await.unwrap();
            }
        })
    };
    for task in writers {
        task.await.unwrap();
    }
    discarder.await.unwrap();
    assert_eq!(store.get(&k).await.unwrap().token, Some(t("1:1#320")));
}
