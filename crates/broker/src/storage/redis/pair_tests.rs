//! The pair's rules on in-memory instances (`fake`), with failures and holds injected: failover
//! only on transient errors, copies coalesced and dropped when the queue is full, repairs with
//! the fallback's remaining TTL, the `primary` read mode's recovery window, discards ordered
//! after queued copies.
//!
//! Why here and not only on real Redis: these rules turn on timing (a copy still queued, a
//! call in flight) and on errors a real server cannot be made to give on cue (WRONGTYPE on one
//! instance only); the real-Redis fault tests (`tests/integration/redis_faults.rs`) stay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use session_token::SessionToken;

use super::error::InstanceError;
use super::fake::FakeInstance;
use super::keys::KeyLayout;
use super::options::ReadMode;
use super::pair::{Pair, PairSettings};
use crate::storage::{PutParams, StoreError, StoreKey};

const TTL: Duration = Duration::from_secs(60);
const PARAMS: PutParams = PutParams {
    ttl: TTL,
    max_segments: 64,
};

struct Fixture {
    pair: Pair<FakeInstance>,
    primary: Arc<FakeInstance>,
    fallback: Arc<FakeInstance>,
    copier: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.copier.abort();
    }
}

fn pair(read_mode: ReadMode, queue_capacity: usize) -> Fixture {
    let primary = Arc::new(FakeInstance::new("primary"));
    let fallback = Arc::new(FakeInstance::new("fallback"));
    let (pair, copier) = Pair::new(
        primary.clone(),
        Some(fallback.clone()),
        PairSettings {
            keys: KeyLayout::new("tb"),
            read_mode,
            token_ttl: TTL,
            queue_wait: Duration::from_secs(5),
            queue_capacity,
            batch: 64,
        },
    );
    Fixture {
        pair,
        primary,
        fallback,
        copier: tokio::spawn(copier),
    }
}

fn store_key() -> StoreKey {
    StoreKey::new("acct/db/coll", "doc-1")
}

fn token(lsn: u64) -> SessionToken {
    SessionToken::parse(&format!("0:1#{lsn}#0={lsn}")).unwrap()
}

impl Fixture {
    fn redis_key(&self) -> String {
        self.pair.keys.redis_key(&store_key())
    }

    fn stored(&self, instance: &FakeInstance) -> Option<SessionToken> {
        instance
            .value(&self.redis_key())
            .map(|v| SessionToken::parse(&v).unwrap())
    }
}

#[tokio::test]
async fn a_put_is_copied_to_the_fallback() {
    let f = pair(ReadMode::Merge, 16);
    f.pair.put(&store_key(), &token(5), PARAMS).await.unwrap();
    f.pair.flush_copies().await;
    assert_eq!(f.stored(&f.fallback), Some(token(5)));
    assert_eq!(f.pair.shared.stats.copies_done.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_transient_primary_error_fails_the_put_over_to_the_fallback() {
    let f = pair(ReadMode::Merge, 16);
    f.primary.fail_with(Some(f.primary.down_error()));
    let stored = f.pair.put(&store_key(), &token(7), PARAMS).await.unwrap();
    assert_eq!(stored, token(7));
    assert_eq!(f.stored(&f.fallback), Some(token(7)));
    assert_eq!(
        f.pair.shared.stats.fallback_writes.load(Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn a_command_error_fails_the_put_with_internal_and_writes_nowhere_else() {
    let f = pair(ReadMode::Merge, 16);
    f.primary.fail_with(Some(InstanceError::Command(
        "primary",
        "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
    )));
    let err = f
        .pair
        .put(&store_key(), &token(7), PARAMS)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    assert_eq!(f.fallback.reads.load(Ordering::Relaxed), 0);
    assert_eq!(f.stored(&f.fallback), None);
    assert_eq!(
        f.pair.shared.stats.fallback_writes.load(Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn both_instances_down_is_unavailable() {
    let f = pair(ReadMode::Merge, 16);
    f.primary.fail_with(Some(f.primary.down_error()));
    f.fallback.fail_with(Some(f.fallback.down_error()));
    let err = f
        .pair
        .put(&store_key(), &token(7), PARAMS)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = f.pair.get(&store_key()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn copies_of_one_key_queued_behind_a_slow_fallback_are_coalesced() {
    let f = pair(ReadMode::Merge, 16);
    f.fallback.hold();
    f.pair.put(&store_key(), &token(1), PARAMS).await.unwrap();
    // The copier took the first copy and waits on the fallback; the next three queue up.
    f.fallback.held(1).await;
    for lsn in 2..=4 {
        f.pair.put(&store_key(), &token(lsn), PARAMS).await.unwrap();
    }
    f.fallback.release();
    f.pair.flush_copies().await;
    assert_eq!(f.stored(&f.fallback), Some(token(4)));
    // One merge for the first copy, one for the three coalesced: each begins with a read.
    assert_eq!(f.fallback.reads.load(Ordering::Relaxed), 2);
    assert_eq!(f.pair.shared.stats.copies_done.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn a_full_queue_drops_the_copy_and_never_fails_the_put() {
    let f = pair(ReadMode::Merge, 1);
    f.fallback.hold();
    f.pair.put(&store_key(), &token(1), PARAMS).await.unwrap();
    f.fallback.held(1).await;
    // One copy fits in the queue behind the held one; the next is dropped.
    f.pair.put(&store_key(), &token(2), PARAMS).await.unwrap();
    f.pair.put(&store_key(), &token(3), PARAMS).await.unwrap();
    assert_eq!(
        f.pair.shared.stats.copies_dropped.load(Ordering::Relaxed),
        1
    );
    assert_eq!(f.stored(&f.primary), Some(token(3)));
    f.fallback.release();
    f.pair.flush_copies().await;
    assert_eq!(f.stored(&f.fallback), Some(token(2)));
}

#[tokio::test]
async fn a_read_repair_takes_the_fallback_keys_remaining_ttl() {
    let f = pair(ReadMode::Merge, 16);
    let key = f.redis_key();
    f.primary.insert(&key, &token(1).to_string(), TTL);
    f.fallback
        .insert(&key, &token(9).to_string(), Duration::from_secs(5));
    let read = f.pair.get(&store_key()).await.unwrap();
    assert_eq!(read.token, Some(token(9)));
    assert!(!read.degraded);
    f.pair.flush_copies().await;
    assert_eq!(f.stored(&f.primary), Some(token(9)));
    let ttl = f.primary.ttl(&key).unwrap();
    assert!(
        ttl <= Duration::from_secs(5),
        "repair extended the TTL: {ttl:?}"
    );
    assert_eq!(f.pair.shared.stats.read_repairs.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_read_that_misses_an_instance_is_degraded_and_repairs_nothing() {
    let f = pair(ReadMode::Merge, 16);
    let key = f.redis_key();
    f.fallback.insert(&key, &token(9).to_string(), TTL);
    f.primary.fail_with(Some(f.primary.down_error()));
    let read = f.pair.get(&store_key()).await.unwrap();
    assert_eq!(read.token, Some(token(9)));
    assert!(read.degraded);
    f.primary.fail_with(None);
    f.pair.flush_copies().await;
    assert_eq!(f.stored(&f.primary), None);
    assert_eq!(
        f.pair.shared.stats.degraded_reads.load(Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn primary_read_mode_reads_both_only_after_the_primary_missed_a_write() {
    let f = pair(ReadMode::Primary, 16);
    let key = f.redis_key();
    f.fallback.insert(&key, &token(9).to_string(), TTL);
    // No write was missed: the primary alone answers, the fallback is not read.
    assert_eq!(f.pair.get(&store_key()).await.unwrap().token, None);
    assert_eq!(f.fallback.reads.load(Ordering::Relaxed), 0);

    f.primary.fail_with(Some(f.primary.down_error()));
    f.pair.put(&store_key(), &token(10), PARAMS).await.unwrap();
    f.primary.fail_with(None);
    // The window is open: both are read and the fallback's token wins, and is repaired.
    let read = f.pair.get(&store_key()).await.unwrap();
    assert_eq!(read.token, Some(token(10)));
    f.pair.flush_copies().await;
    assert_eq!(f.stored(&f.primary), Some(token(10)));
    // Other replicas learn of it through the marker on the fallback.
    assert!(f.fallback.value(&f.pair.shared.marker_key).is_some());
}

#[tokio::test]
async fn a_restarted_primary_opens_the_recovery_window() {
    let f = pair(ReadMode::Primary, 16);
    f.pair.put(&store_key(), &token(3), PARAMS).await.unwrap();
    f.pair.flush_copies().await;
    f.primary.restart();
    super::recovery::poll_recovery_window(f.pair.shared.clone(), TTL).await;
    assert_eq!(
        f.pair.get(&store_key()).await.unwrap().token,
        Some(token(3))
    );
}

#[tokio::test]
async fn a_discard_lands_after_the_copies_queued_before_it() {
    let f = pair(ReadMode::Merge, 16);
    f.fallback.hold();
    f.pair.put(&store_key(), &token(1), PARAMS).await.unwrap();
    f.fallback.held(1).await;
    f.pair.put(&store_key(), &token(5), PARAMS).await.unwrap();
    let discard = {
        let f = &f;
        async move { f.pair.discard(&store_key(), &token(5)).await }
    };
    let release = async {
        // The discard is queued behind the copy of token 5 (and applied to the primary).
        f.fallback.held(1).await;
        tokio::task::yield_now().await;
        f.fallback.release();
    };
    let (discarded, ()) = tokio::join!(discard, release);
    let discarded = discarded.unwrap();
    assert_eq!(discarded.remaining, None);
    f.pair.flush_copies().await;
    assert_eq!(f.stored(&f.primary), None);
    assert_eq!(
        f.stored(&f.fallback),
        None,
        "a queued copy brought the segment back"
    );
}
