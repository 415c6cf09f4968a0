//! Redis failures through the real gRPC server: one instance down, both down and back, the
//! primary killed under load and restarted empty, a hung Redis during shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::storage::redis::RedisStore;
use broker::{SessionToken, TokenStore};
use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokenbroker_proto::v1::{GetTokenRequest, PutTokenRequest, SERVICE_NAME};
use tokio::sync::Notify;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::redis::RedisServer;
use crate::support::stores::{TTL, redis_options, wait_for};
use crate::support::{TestBroker, settings};

fn put(key: &str, token: &str) -> PutTokenRequest {
    PutTokenRequest {
        scope: "acct/db/c".into(),
        key: key.into(),
        session_token: token.into(),
    }
}

fn get(key: &str) -> GetTokenRequest {
    GetTokenRequest {
        scope: "acct/db/c".into(),
        key: key.into(),
        partition_key_range_ids: vec![],
    }
}

async fn broker_on(store: Arc<RedisStore>) -> TestBroker {
    TestBroker::start_with_store(settings(), store).await
}

/// Waits, on the health Watch stream, until `service` reports `want`.
async fn health_becomes(channel: Channel, service: &str, want: ServingStatus) {
    let mut h = HealthClient::new(channel);
    let mut stream = h
        .watch(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(r)) = stream.next().await {
            if r.status == want as i32 {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{service} never became {want:?}");
}

#[tokio::test]
async fn with_the_primary_down_no_rpc_fails_and_health_names_it() {
    let mut primary = RedisServer::start();
    let fallback = RedisServer::start();
    let store =
        Arc::new(RedisStore::start(&redis_options(&primary, Some(&fallback)), TTL).unwrap());
    wait_for(store.ready(), true).await;
    let broker = broker_on(store.clone()).await;
    let mut c = broker.client().await;
    c.put_token(put("k", "0:1#10#1=1")).await.unwrap();
    store.flush_copies().await;

    primary.kill();
    health_becomes(
        broker.channel().await,
        "redis/primary",
        ServingStatus::NotServing,
    )
    .await;
    health_becomes(
        broker.channel().await,
        "redis/fallback",
        ServingStatus::Serving,
    )
    .await;
    health_becomes(broker.channel().await, SERVICE_NAME, ServingStatus::Serving).await;

    // Puts go to the fallback; gets read it, flagged degraded.
    let stored = c
        .put_token(put("k", "0:1#20#1=2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.session_token, "0:1#20#1=2");
    let read = c.get_token(get("k")).await.unwrap().into_inner();
    assert!(read.found && read.degraded);
    assert_eq!(read.session_token, "0:1#20#1=2");
    assert!(store.stats().fallback_writes.load(Ordering::Relaxed) >= 1);

    // The primary comes back empty: the fallback's token still wins, and is repaired back.
    primary.restart();
    health_becomes(
        broker.channel().await,
        "redis/primary",
        ServingStatus::Serving,
    )
    .await;
    let read = c.get_token(get("k")).await.unwrap().into_inner();
    assert!(read.found && !read.degraded, "{read:?}");
    assert_eq!(read.session_token, "0:1#20#1=2");
    store.flush_copies().await;
    let repaired: Option<String> = redis::cmd("GET")
        .arg("tb:v1:{acct/db/c|k}")
        .query(&mut primary.connection())
        .unwrap();
    assert_eq!(repaired.as_deref(), Some("0:1#20#1=2"));
}

#[tokio::test]
async fn with_both_down_gets_are_degraded_misses_puts_unavailable_then_all_recovers() {
    let mut primary = RedisServer::start();
    let mut fallback = RedisServer::start();
    let store =
        Arc::new(RedisStore::start(&redis_options(&primary, Some(&fallback)), TTL).unwrap());
    wait_for(store.ready(), true).await;
    let broker = broker_on(store.clone()).await;
    let mut c = broker.client().await;
    c.put_token(put("k", "0:1#10")).await.unwrap();

    primary.kill();
    fallback.kill();
    health_becomes(
        broker.channel().await,
        SERVICE_NAME,
        ServingStatus::NotServing,
    )
    .await;
    assert!(store.primary().breaker_open() && store.fallback().unwrap().breaker_open());
    let skipped_before = store.primary().stats.skipped.load(Ordering::Relaxed);
    for _ in 0..20 {
        let read = c.get_token(get("k")).await.unwrap().into_inner();
        assert!(!read.found && read.degraded, "{read:?}");
        let err = c.put_token(put("k", "0:1#11")).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    }
    // The open breakers answered those calls without waiting on the dead instances.
    assert!(store.primary().stats.skipped.load(Ordering::Relaxed) > skipped_before);

    primary.restart();
    fallback.restart();
    health_becomes(
        broker.channel().await,
        "redis/primary",
        ServingStatus::Serving,
    )
    .await;
    health_becomes(
        broker.channel().await,
        "redis/fallback",
        ServingStatus::Serving,
    )
    .await;
    health_becomes(broker.channel().await, SERVICE_NAME, ServingStatus::Serving).await;
    let stored = c.put_token(put("k", "0:1#12")).await.unwrap().into_inner();
    assert_eq!(stored.session_token, "0:1#12");
    let read = c.get_token(get("k")).await.unwrap().into_inner();
    assert!(
        read.found && !read.degraded && read.session_token == "0:1#12",
        "{read:?}"
    );
}

#[tokio::test]
async fn broker_starts_with_redis_down_not_ready_until_it_answers() {
    let mut primary = RedisServer::start();
    let options = redis_options(&primary, None);
    primary.kill();
    let store = Arc::new(RedisStore::start(&options, TTL).unwrap());
    let broker = broker_on(store).await;
    let mut h = broker.health().await;
    let r = h
        .check(HealthCheckRequest {
            service: SERVICE_NAME.into(),
        })
        .await
        .unwrap();
    assert_eq!(r.into_inner().status, ServingStatus::NotServing as i32);
    let live = h
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(live.into_inner().status, ServingStatus::Serving as i32);
    primary.restart();
    health_becomes(broker.channel().await, SERVICE_NAME, ServingStatus::Serving).await;
    let mut c = broker.client().await;
    c.put_token(put("k", "0:1#1")).await.unwrap();
}

/// Kills the primary in the middle of concurrent puts and gets: no get fails, no put fails
/// (they move to the fallback), and every acknowledged put is covered by what a get returns
/// afterwards, also once the primary has restarted empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn primary_killed_under_load_loses_no_acknowledged_put() {
    const WORKERS: usize = 16;
    const OPS: usize = 120;
    const KEYS: usize = 8;
    let mut primary = RedisServer::start();
    let fallback = RedisServer::start();
    let store =
        Arc::new(RedisStore::start(&redis_options(&primary, Some(&fallback)), TTL).unwrap());
    wait_for(store.ready(), true).await;
    let broker = broker_on(store.clone()).await;
    let channel = broker.channel().await;

    let acked: Arc<Mutex<HashMap<String, Vec<SessionToken>>>> = Arc::default();
    let acked_count = Arc::new(AtomicUsize::new(0));
    let halfway = Arc::new(Notify::new());
    let failed_gets = Arc::new(AtomicUsize::new(0));
    let failed_puts = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (channel, acked, acked_count, halfway) = (
            channel.clone(),
            acked.clone(),
            acked_count.clone(),
            halfway.clone(),
        );
        let (failed_gets, failed_puts) = (failed_gets.clone(), failed_puts.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = TokenBrokerClient::new(channel);
            for op in 0..OPS {
                let key = format!("k{}", (w + op) % KEYS);
                let lsn = op * WORKERS + w + 1;
                let token = format!("0:1#{lsn}#1={lsn}#2={w},{}:2#{op}", w % 3 + 1);
                match c.put_token(put(&key, &token)).await {
                    Ok(_) => {
                        acked
                            .lock()
                            .unwrap()
                            .entry(key.clone())
                            .or_default()
                            .push(SessionToken::parse(&token).unwrap());
                        if acked_count.fetch_add(1, Ordering::SeqCst) + 1 == WORKERS * OPS / 3 {
                            halfway.notify_one();
                        }
                    }
                    Err(_) => {
                        failed_puts.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if c.get_token(get(&key)).await.is_err() {
                    failed_gets.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    halfway.notified().await;
    primary.kill();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(failed_gets.load(Ordering::SeqCst), 0, "gets failed");
    assert_eq!(failed_puts.load(Ordering::SeqCst), 0, "puts failed");
    assert!(
        store.stats().fallback_writes.load(Ordering::Relaxed) > 0,
        "the kill landed after the load"
    );

    let check = |label: &'static str| {
        let acked = acked.clone();
        let channel = channel.clone();
        async move {
            let mut c = TokenBrokerClient::new(channel);
            let snapshot = acked.lock().unwrap().clone();
            for (key, tokens) in snapshot {
                let read = c.get_token(get(&key)).await.unwrap().into_inner();
                assert!(read.found, "{label}: {key} not found");
                let stored = SessionToken::parse(&read.session_token).unwrap();
                for t in &tokens {
                    assert!(
                        t.is_covered_by(&stored),
                        "{label}: {key}: acked {t} not covered by {stored}"
                    );
                }
            }
        }
    };
    check("primary down").await;
    primary.restart();
    wait_for(store.primary().up(), true).await;
    store.flush_copies().await;
    check("primary restarted empty").await;
}

/// A call in flight when shutdown starts (held up by a hung Redis) completes before exit.
#[tokio::test]
async fn shutdown_drains_a_call_in_flight() {
    let primary = RedisServer::start();
    let mut options = redis_options(&primary, None);
    options.operation_timeout = Duration::from_secs(10);
    let store = Arc::new(RedisStore::start(&options, TTL).unwrap());
    wait_for(store.ready(), true).await;
    let mut s = settings();
    s.shutdown.drain_timeout = Duration::from_secs(15);
    let mut broker = TestBroker::start_with_store(s, store.clone()).await;
    let mut c = broker.client().await;
    c.put_token(put("k", "0:1#1")).await.unwrap();

    primary.pause();
    let calls_before = store.primary().stats.calls.load(Ordering::SeqCst);
    let in_flight = tokio::spawn(async move { c.put_token(put("k", "0:1#2")).await });
    // The call has reached the store once the instance counted it.
    while store.primary().stats.calls.load(Ordering::SeqCst) == calls_before {
        tokio::task::yield_now().await;
    }
    broker.begin_stop();
    primary.resume();
    let reply = in_flight.await.unwrap().unwrap().into_inner();
    assert_eq!(reply.session_token, "0:1#2");
    broker.stop().await;
}

/// Metrics name the instance that is down, count degraded reads and RPCs by status, and never
/// carry a scope or a key.
#[tokio::test]
async fn metrics_say_which_instance_is_down() {
    let mut primary = RedisServer::start();
    let fallback = RedisServer::start();
    let store =
        Arc::new(RedisStore::start(&redis_options(&primary, Some(&fallback)), TTL).unwrap());
    wait_for(store.ready(), true).await;
    let broker = broker_on(store.clone()).await;
    let mut c = broker.client().await;
    c.put_token(put("secret-key", "0:1#1")).await.unwrap();
    let _ = c.put_token(put("secret-key", "0:x")).await.unwrap_err();

    let before = broker.scrape().await;
    for line in [
        "tokenbroker_redis_up{instance=\"primary\"} 1",
        "tokenbroker_redis_breaker_state{instance=\"primary\",state=\"closed\"} 1",
        "tokenbroker_redis_breaker_state{instance=\"primary\",state=\"open\"} 0",
        "tokenbroker_degraded_gets_total 0",
        // The one valid PutToken ran two calls on the primary, a read (MGET) and a SET NX (the
        // key was new; the invalid put never reached Redis); the copy to the fallback is
        // asynchronous, so only the primary is certain.
        "tokenbroker_redis_call_duration_seconds_bucket{instance=\"primary\",le=\"+Inf\"} 2",
        "tokenbroker_redis_call_duration_seconds_count{instance=\"primary\"} 2",
    ] {
        assert!(before.contains(line), "missing {line:?} in\n{before}");
    }

    primary.kill();
    wait_for(store.primary().up(), false).await;
    let read = c.get_token(get("secret-key")).await.unwrap().into_inner();
    assert!(read.degraded);

    let after = broker.scrape().await;
    for line in [
        "tokenbroker_redis_up{instance=\"primary\"} 0",
        "tokenbroker_redis_up{instance=\"fallback\"} 1",
        "tokenbroker_redis_breaker_state{instance=\"primary\",state=\"open\"} 1",
        "tokenbroker_redis_breaker_state{instance=\"primary\",state=\"closed\"} 0",
        "tokenbroker_redis_breaker_state{instance=\"fallback\",state=\"closed\"} 1",
        "tokenbroker_degraded_gets_total 1",
        "tokenbroker_rpc_duration_seconds_count{method=\"PutToken\",code=\"OK\"} 1",
        "tokenbroker_rpc_duration_seconds_count{method=\"PutToken\",code=\"INVALID_ARGUMENT\"} 1",
        "tokenbroker_rpc_duration_seconds_count{method=\"GetToken\",code=\"OK\"} 1",
    ] {
        assert!(after.contains(line), "missing {line:?} in\n{after}");
    }
    assert!(
        !after.contains("secret-key") && !after.contains("acct/db"),
        "a key or scope leaked into metrics"
    );
}
