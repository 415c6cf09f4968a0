//! The in-memory store's own read latency while its sweeper removes a million expiring keys,
//! in this process: no gRPC, no broker, no generator between the clock and the store.
//!
//! Why beside the gRPC rows of `memory`: on a shared two-core machine the RPC p99 moves by
//! milliseconds from one window to the next with whatever else runs, which hides (or invents)
//! what the sweeper itself does to a request. Here one thread times each `MemoryStore::get`
//! alone, about 20,000 a second, so a read held up behind a sweeper's lock shows in p99.9 and
//! max directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::storage::memory::MemoryStore;
use broker::{PutParams, SessionToken, StoreKey, TokenStore};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Store-level read latency, in nanoseconds.
#[derive(Debug, Clone, Serialize)]
pub struct StoreRow {
    pub window: String,
    pub gets: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

fn row(window: &str, h: &Histogram<u64>) -> StoreRow {
    StoreRow {
        window: window.into(),
        gets: h.len(),
        p50_ns: h.value_at_quantile(0.5),
        p99_ns: h.value_at_quantile(0.99),
        p999_ns: h.value_at_quantile(0.999),
        max_ns: h.max(),
    }
}

const TTL: Duration = Duration::from_secs(30);
const PROBES: u64 = 10_000;

fn key(scope: &str, i: u64) -> StoreKey {
    StoreKey::new(scope, format!("u-{i:08}"))
}

/// Times gets of the probe keys from one thread for `window`, about 20,000 a second.
async fn time_gets(store: Arc<MemoryStore>, window: Duration) -> Result<Histogram<u64>, String> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut h =
            Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).map_err(|e| e.to_string())?;
        let probes: Vec<StoreKey> = (0..PROBES).map(|i| key("probe", i)).collect();
        let end = Instant::now() + window;
        let mut i = 0usize;
        while Instant::now() < end {
            let probe = &probes[i % probes.len()];
            let t0 = Instant::now();
            let found = runtime
                .block_on(store.get(probe))
                .map_err(|e| e.to_string())?;
            let _ = h.record(t0.elapsed().as_nanos().max(1) as u64);
            if found.token.is_none() {
                return Err(format!("probe {i} not found"));
            }
            i += 1;
            if i.is_multiple_of(10) {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        Ok(h)
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn put_range(
    store: &Arc<MemoryStore>,
    scope: &'static str,
    n: u64,
    token: fn(u64) -> String,
    ttl: Duration,
) -> Result<(), String> {
    let params = PutParams {
        ttl,
        max_segments: 256,
    };
    let tasks: Vec<_> = (0..2u64)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (t..n).step_by(2) {
                    let parsed = SessionToken::parse(&token(i)).map_err(|e| e.to_string())?;
                    store
                        .put(&key(scope, i), &parsed, params)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Loads `keys` keys expiring after 30 s, then times reads of live probe keys for 5 s before
/// they expire and over the whole time they do and are swept.
pub async fn run(keys: u64, token: fn(u64) -> String) -> Result<Vec<StoreRow>, String> {
    let store = Arc::new(MemoryStore::new(keys as usize + PROBES as usize));
    let start = Instant::now();
    put_range(&store, "expiring", keys, token, TTL).await?;
    let loaded = start.elapsed();
    put_range(&store, "probe", PROBES, token, Duration::from_secs(3600)).await?;
    let quiet_window = Duration::from_secs(5);
    if start.elapsed() + quiet_window + Duration::from_secs(1) > TTL {
        return Err(format!(
            "in-process: loading {keys} keys took {:.0}s, too long for the 30 s TTL",
            loaded.as_secs_f64()
        ));
    }
    let quiet = time_gets(store.clone(), quiet_window).await?;
    tokio::time::sleep_until((start + TTL).into()).await;
    // From the first expiry to past the last one and the sweeper's next pass.
    let sweeping = time_gets(store.clone(), loaded + Duration::from_secs(3)).await?;
    if store.len() > PROBES as usize {
        return Err(format!("in-process: {} keys left unswept", store.len()));
    }
    Ok(vec![
        row("keys live, no expiry", &quiet),
        row("while keys expire and are swept", &sweeping),
    ])
}
