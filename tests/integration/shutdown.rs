//! Graceful shutdown of the real binary: on SIGTERM readiness goes NOT_SERVING while the server
//! still answers, then the process drains and exits 0.

use std::process::Stdio;
use std::time::Duration;

use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokenbroker_proto::v1::{PutTokenRequest, SERVICE_NAME};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::process::{connect_when_listening, free_port, spawn_broker_binary};

#[tokio::test]
async fn sigterm_turns_readiness_off_then_drains_and_exits_zero() {
    let port = free_port();
    let mut child = spawn_broker_binary(
        &[
            ("TOKENBROKER_LISTEN", format!("127.0.0.1:{port}")),
            ("TOKENBROKER_SHUTDOWN__READINESS_DELAY", "1s".into()),
            ("TOKENBROKER_SHUTDOWN__DRAIN_TIMEOUT", "5s".into()),
        ],
        Stdio::null(),
    );
    let channel: Channel = connect_when_listening(port).await;
    let mut health = HealthClient::new(channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());

    // The readiness watch reports the change as it happens.
    assert_eq!(
        watch.next().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32
    );
    drop(watch);
    // Liveness is still fine, and calls are still served during the readiness delay.
    let live = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(live.into_inner().status, ServingStatus::Serving as i32);
    let mut client = TokenBrokerClient::new(channel);
    let put = client
        .put_token(PutTokenRequest {
            scope: "s".into(),
            key: "k".into(),
            session_token: "0:1#1".into(),
        })
        .await;
    assert!(
        put.is_ok(),
        "put during the readiness delay failed: {put:?}"
    );
    drop(client);
    drop(health);

    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("broker did not exit after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn invalid_configuration_stops_start_up_with_the_key_named() {
    let child = spawn_broker_binary(&[("TOKENBROKER_TOKEN__TTL", "0s".into())], Stdio::piped());
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("token.ttl"), "{stderr}");
}
