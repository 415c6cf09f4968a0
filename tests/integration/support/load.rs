//! Load on a store while a topology changes under it (a failover, a reshard): writers that put
//! and read back many keys until stopped, and every failure kept with its reason; and writers
//! that keep every acknowledged put, to read them all back afterwards.
//!
//! Why one helper: the fault tests of every topology ask the same question (did any call fail
//! while the topology changed?), so they run the same load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use broker::storage::redis::RedisStore;
use broker::{Lookup, PutParams, SessionToken, StoreKey, TokenStore};

use super::stores::TTL;

/// Eight writers, each putting a token of its own range and reading the key back.
pub struct Load {
    stop: Arc<AtomicBool>,
    puts: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the writers on `keys` keys; a read counts as failed when it errs or when `read_ok`
    /// says so.
    pub fn start(store: Arc<RedisStore>, keys: u64, read_ok: fn(&Lookup) -> bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let puts = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let params = PutParams {
            ttl: TTL,
            max_segments: 16,
        };
        let workers = (0..8u64)
            .map(|w| {
                let (store, stop, puts, failures) =
                    (store.clone(), stop.clone(), puts.clone(), failures.clone());
                tokio::spawn(async move {
                    let mut lsn = 1u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key =
                            StoreKey::new("acct/db/coll", format!("k{}", (w * 131 + lsn) % keys));
                        lsn += 1;
                        let token = SessionToken::parse(&format!("{w}:1#{lsn}")).unwrap();
                        match store.put(&key, &token, params).await {
                            Ok(_) => {
                                puts.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => failures.lock().unwrap().push(format!("put: {e}")),
                        }
                        match store.get(&key).await {
                            Ok(read) if read_ok(&read) => {}
                            other => failures.lock().unwrap().push(format!("get: {other:?}")),
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            puts,
            failures,
            workers,
        }
    }

    /// Puts acknowledged so far.
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }

    /// Waits until `more` puts beyond those acknowledged now are.
    pub async fn more_puts(&self, more: u64) {
        let target = self.puts() + more;
        while self.puts() < target {
            tokio::task::yield_now().await;
        }
    }

    /// Stops the writers; the failures seen, each with its reason.
    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        std::mem::take(&mut *self.failures.lock().unwrap())
    }
}

/// Fails with the first failures when there are any.
pub fn assert_none_failed(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// Writers that put a fresh key each time and keep every put that was acknowledged: for the
/// tests of what an acknowledged put survives (a failed put is retried by nobody, so only the
/// acknowledged ones must be found afterwards).
pub struct AckedPuts {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<Vec<(StoreKey, SessionToken)>>>,
}

impl AckedPuts {
    /// Starts `writers` writers, each on keys of its own (`w<n>-<i>`).
    pub fn start(store: Arc<RedisStore>, writers: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let params = PutParams {
            ttl: TTL,
            max_segments: 16,
        };
        let workers = (0..writers)
            .map(|w| {
                let (store, stop, count) = (store.clone(), stop.clone(), acked.clone());
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let key = StoreKey::new("acct/db/coll", format!("w{w}-{i}"));
                        let token = SessionToken::parse(&format!("0:1#{i}")).unwrap();
                        if store.put(&key, &token, params).await.is_ok() {
                            acked.push((key, token));
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    acked
                })
            })
            .collect();
        Self {
            stop,
            acked,
            workers,
        }
    }

    /// Puts acknowledged so far.
    pub fn count(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` puts beyond those acknowledged now are (for at most 30 s).
    pub async fn more(&self, more: u64) {
        let target = self.count() + more;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.count() < target {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {more} more puts acknowledged in 30 s",
                more + self.count() - target
            );
            tokio::task::yield_now().await;
        }
    }

    /// Stops the writers; every acknowledged put.
    pub async fn stop(self) -> Vec<(StoreKey, SessionToken)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        for w in self.workers {
            acked.extend(w.await.unwrap());
        }
        acked
    }
}

/// Fails unless a read of `store` finds every put of `acked` (its token or a later one).
pub async fn assert_none_lost(store: &RedisStore, acked: &[(StoreKey, SessionToken)]) {
    let mut lost = Vec::new();
    for (key, token) in acked {
        let read = store.get(key).await.unwrap();
        if !read.token.is_some_and(|t| token.is_covered_by(&t)) {
            lost.push(key.name.clone());
        }
    }
    eprintln!("{} acknowledged puts, {} lost", acked.len(), lost.len());
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged puts lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}
