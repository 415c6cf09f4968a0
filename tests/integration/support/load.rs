//! Load on a store while a topology changes under it (a failover, a reshard): writers that put
//! and read back many keys until stopped, and every failure kept with its reason.
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
