//! Redis stores built directly (no gRPC), for store-level tests.

use std::time::Duration;

use broker::TokenStore;
use broker::storage::redis::{RedisOptions, RedisStore, RedisUrl};

use super::redis::RedisServer;

/// Options for tests: short timeouts and health interval, so faults show quickly.
pub fn redis_options(primary: &RedisServer, fallback: Option<&RedisServer>) -> RedisOptions {
    RedisOptions {
        primary_url: Some(RedisUrl::parse(&primary.url()).unwrap()),
        fallback_url: fallback.map(|f| RedisUrl::parse(&f.url()).unwrap()),
        operation_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        health_interval: Duration::from_millis(100),
        breaker_open_for: Duration::from_millis(200),
        ..RedisOptions::default()
    }
}

pub const TTL: Duration = Duration::from_secs(3600);

/// Starts a store and waits until it reports ready.
pub async fn ready_store(options: &RedisOptions) -> RedisStore {
    let store = RedisStore::start(options, TTL).unwrap();
    wait_for(store.ready(), true).await;
    store
}

/// Waits (on the watch channel, no polling) until it holds `want`, for at most 20 seconds.
pub async fn wait_for(mut rx: tokio::sync::watch::Receiver<bool>, want: bool) {
    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|v| *v == want))
        .await
        .unwrap_or_else(|_| panic!("state never became {want}"))
        .unwrap();
}
