//! Several broker replicas sharing one Redis pair: no lost update across replicas, and
//! read-your-writes through any replica.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::storage::redis::{ReadMode, RedisOptions, RedisStore};
use broker::{PutParams, SessionToken, StoreKey, TokenStore};
use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokenbroker_proto::v1::{GetTokenRequest, PutTokenRequest, SERVICE_NAME};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::process::{connect_when_listening, free_port, spawn_broker_binary};
use crate::support::redis::RedisServer;
use crate::support::stores::{TTL, redis_options, wait_for};

/// Starts the broker binary with extra environment and waits until it is ready.
async fn ready_binary(extra: &[(&str, String)]) -> (tokio::process::Child, Channel) {
    let port = free_port();
    let mut env = vec![
        ("TOKENBROKER_LISTEN", format!("127.0.0.1:{port}")),
        ("TOKENBROKER_SHUTDOWN__READINESS_DELAY", "0s".into()),
        ("TOKENBROKER_LOG__LEVEL", "warn".into()),
    ];
    env.extend(extra.iter().cloned());
    let child = spawn_broker_binary(&env, Stdio::null());
    let channel = connect_when_listening(port).await;
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(r)) = watch.next().await {
            if r.status == ServingStatus::Serving as i32 {
                return;
            }
        }
        panic!("replica never ready");
    })
    .await
    .unwrap();
    (child, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_broker_processes_lose_no_update_and_read_each_others_writes() {
    let primary = RedisServer::start();
    let fallback = RedisServer::start();
    three_replicas_lose_no_update(&[
        ("TOKENBROKER_REDIS__PRIMARY_URL", primary.url()),
        ("TOKENBROKER_REDIS__FALLBACK_URL", fallback.url()),
    ])
    .await;
}

/// The same on a Redis Cluster primary (the binary's shared 3+3 cluster, a namespace of its own)
/// with a standalone fallback: every compare-and-set runs on the key's master.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_broker_processes_on_a_cluster_lose_no_update() {
    let fallback = RedisServer::start();
    three_replicas_lose_no_update(&[
        (
            "TOKENBROKER_REDIS__PRIMARY_URL",
            crate::support::cluster::shared().url(),
        ),
        ("TOKENBROKER_REDIS__FALLBACK_URL", fallback.url()),
        (
            "TOKENBROKER_REDIS__NAMESPACE",
            crate::support::cluster::namespace(),
        ),
    ])
    .await;
}

/// Three broker processes with `env`, 24 writers through all three, read-your-writes through
/// another replica after each acknowledgement, and every acknowledged token in the final read.
async fn three_replicas_lose_no_update(env: &[(&str, String)]) {
    const WRITERS: usize = 24;
    const PUTS: usize = 40;
    const KEYS: usize = 3;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(ready_binary(env).await);
    }
    let channels: Arc<Vec<Channel>> = Arc::new(replicas.iter().map(|(_, c)| c.clone()).collect());
    let acked: Arc<Mutex<Vec<Vec<SessionToken>>>> = Arc::new(Mutex::new(vec![Vec::new(); KEYS]));

    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (channels, acked) = (channels.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for p in 0..PUTS {
                let key = (w + p) % KEYS;
                let via = (w + p) % 3;
                let lsn = p * WRITERS + w + 1;
                // One version and region set for every writer: a consistent topology.
                let token = format!(
                    "0:5#{lsn}#1={lsn}#2={},{}:5#{p}",
                    (w * 31 + p) % 97,
                    w % 4 + 1
                );
                let mut writer = TokenBrokerClient::new(channels[via].clone());
                let reply = writer
                    .put_token(PutTokenRequest {
                        scope: "s".into(),
                        key: format!("k{key}"),
                        session_token: token.clone(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let token = SessionToken::parse(&token).unwrap();
                assert!(token.is_covered_by(&SessionToken::parse(&reply.session_token).unwrap()));
                acked.lock().unwrap()[key].push(token.clone());
                // Read-your-writes through another replica, right after the acknowledgement.
                let mut reader = TokenBrokerClient::new(channels[(via + 1 + p % 2) % 3].clone());
                let read = reader
                    .get_token(GetTokenRequest {
                        scope: "s".into(),
                        key: format!("k{key}"),
                        partition_key_range_ids: vec![],
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert!(read.found && !read.degraded, "{read:?}");
                let seen = SessionToken::parse(&read.session_token).unwrap();
                assert!(
                    token.is_covered_by(&seen),
                    "replica read {seen} does not cover {token}"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let snapshot = acked.lock().unwrap().clone();
    for (key, tokens) in snapshot.iter().enumerate() {
        let expected = SessionToken::merge_all(tokens).unwrap().unwrap();
        for channel in channels.iter() {
            let mut c = TokenBrokerClient::new(channel.clone());
            let read = c
                .get_token(GetTokenRequest {
                    scope: "s".into(),
                    key: format!("k{key}"),
                    partition_key_range_ids: vec![],
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(read.session_token, expected.to_string(), "key k{key}");
        }
    }
    for (mut child, _) in replicas {
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
}

/// In `primary` read mode a replica that wrote to the fallback during a primary outage tells
/// the others (marker on the fallback); after the primary restarts empty, another replica's
/// read still returns the token.
#[tokio::test]
async fn primary_read_mode_recovers_writes_made_during_an_outage_by_another_replica() {
    let mut primary = RedisServer::start();
    let fallback = RedisServer::start();
    let options = RedisOptions {
        read_mode: ReadMode::Primary,
        ..redis_options(&primary, Some(&fallback))
    };
    let a = RedisStore::start(&options, TTL).unwrap();
    let b = RedisStore::start(&options, TTL).unwrap();
    wait_for(a.ready(), true).await;
    wait_for(b.ready(), true).await;
    let key = StoreKey::new("s", "k");
    let params = PutParams {
        ttl: TTL,
        max_segments: 8,
    };

    primary.kill();
    wait_for(a.primary().up(), false).await;
    let token = SessionToken::parse("0:1#42").unwrap();
    a.put(&key, &token, params).await.unwrap();
    assert_eq!(
        a.stats()
            .fallback_writes
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    primary.restart();
    wait_for(b.primary().up(), true).await;
    // B learns of the outage at its next health round; poll for that (no event crosses
    // replicas), for at most 10 seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let read = b.get(&key).await.unwrap();
        if read.token.as_ref() == Some(&token) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica B never saw the outage write: {read:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `rediss://`: the broker talks TLS to a Redis that has no plain port at all, verifying the
/// server certificate against the CA named by SSL_CERT_FILE.
#[tokio::test]
async fn rediss_urls_connect_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    crate::support::redis::write_test_certificates(dir.path());
    let redis = RedisServer::start_tls(dir.path());
    let (mut child, channel) = ready_binary(&[
        (
            "TOKENBROKER_REDIS__PRIMARY_URL",
            format!("rediss://localhost:{}", redis.port()),
        ),
        (
            "SSL_CERT_FILE",
            dir.path().join("ca.pem").display().to_string(),
        ),
    ])
    .await;
    let mut c = TokenBrokerClient::new(channel);
    let put = c
        .put_token(PutTokenRequest {
            scope: "s".into(),
            key: "k".into(),
            session_token: "0:1#7".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(put.session_token, "0:1#7");
    let read = c
        .get_token(GetTokenRequest {
            scope: "s".into(),
            key: "k".into(),
            partition_key_range_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(read.found && read.session_token == "0:1#7");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
