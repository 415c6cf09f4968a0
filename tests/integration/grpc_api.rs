//! The three RPCs, health and reflection, end to end through a real server.

use std::sync::Arc;

use session_token::SessionToken;
use tokenbroker_proto::v1::{GetTokenRequest, MergeTokenRequest, PutTokenRequest, SERVICE_NAME};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::{TestBroker, settings};

fn put(scope: &str, key: &str, token: &str) -> PutTokenRequest {
    PutTokenRequest {
        scope: scope.into(),
        key: key.into(),
        session_token: token.into(),
    }
}

fn get(scope: &str, key: &str, ranges: &[&str]) -> GetTokenRequest {
    GetTokenRequest {
        scope: scope.into(),
        key: key.into(),
        partition_key_range_ids: ranges.iter().map(|r| r.to_string()).collect(),
    }
}

#[tokio::test]
async fn put_merges_and_get_returns_the_stored_token() {
    let broker = TestBroker::start(settings()).await;
    let mut c = broker.client().await;

    let first = c
        .put_token(put("acct/db/orders", "user-1", "3:1#100#1=20,0:2#5#1=1"))
        .await
        .unwrap();
    assert_eq!(first.into_inner().session_token, "0:2#5#1=1,3:1#100#1=20");
    // An older global LSN does not go backwards; a newer region LSN advances.
    let second = c
        .put_token(put("acct/db/orders", "user-1", "3:1#90#1=30"))
        .await
        .unwrap();
    assert_eq!(second.into_inner().session_token, "0:2#5#1=1,3:1#100#1=30");

    let all = c
        .get_token(get("acct/db/orders", "user-1", &[]))
        .await
        .unwrap()
        .into_inner();
    assert!(all.found && !all.degraded);
    assert_eq!(all.session_token, "0:2#5#1=1,3:1#100#1=30");

    let one = c
        .get_token(get("acct/db/orders", "user-1", &["3", "99"]))
        .await
        .unwrap()
        .into_inner();
    assert!(one.found);
    assert_eq!(one.session_token, "3:1#100#1=30");

    let absent_range = c
        .get_token(get("acct/db/orders", "user-1", &["99"]))
        .await
        .unwrap()
        .into_inner();
    assert!(!absent_range.found && absent_range.session_token.is_empty());

    // Same key in another scope (container) is another token.
    let other_scope = c
        .get_token(get("acct/db/invoices", "user-1", &[]))
        .await
        .unwrap()
        .into_inner();
    assert!(!other_scope.found && !other_scope.degraded);
    broker.stop().await;
}

#[tokio::test]
async fn merge_token_merges_without_storing() {
    let broker = TestBroker::start(settings()).await;
    let mut c = broker.client().await;
    let merged = c
        .merge_token(MergeTokenRequest {
            session_tokens: vec!["0:1#5#1=3".into(), "0:2#3#1=1,1:7".into(), "1:9".into()],
        })
        .await
        .unwrap()
        .into_inner();
    // Version 2 wins wholesale (global 3 < 5 kept), region 1 takes the max.
    assert_eq!(merged.session_token, "0:2#3#1=3,1:9");
    let conflict = c
        .merge_token(MergeTokenRequest {
            session_tokens: vec!["0:1#5#1=3".into(), "0:1#6#2=3".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::FailedPrecondition);
    assert!(
        conflict.message().contains("range 0"),
        "{}",
        conflict.message()
    );
    broker.stop().await;
}

#[tokio::test]
async fn conflicting_and_oversized_puts_leave_the_stored_token_unchanged() {
    let mut s = settings();
    s.limits.max_segments = 3;
    let broker = TestBroker::start(s).await;
    let mut c = broker.client().await;
    c.put_token(put("s", "k", "0:1#10#1=5,1:4")).await.unwrap();

    let region_mismatch = c.put_token(put("s", "k", "0:1#11#2=5")).await.unwrap_err();
    assert_eq!(region_mismatch.code(), Code::FailedPrecondition);
    let kind_mismatch = c.put_token(put("s", "k", "1:1#4")).await.unwrap_err();
    assert_eq!(kind_mismatch.code(), Code::FailedPrecondition);
    assert!(
        kind_mismatch
            .message()
            .contains("simple token and a vector token")
    );
    let too_many = c.put_token(put("s", "k", "2:1#1,3:1#1")).await.unwrap_err();
    assert_eq!(too_many.code(), Code::ResourceExhausted);
    assert!(
        too_many.message().contains("4 segments"),
        "{}",
        too_many.message()
    );

    let stored = c.get_token(get("s", "k", &[])).await.unwrap().into_inner();
    assert_eq!(stored.session_token, "0:1#10#1=5,1:4");
    broker.stop().await;
}

/// Many concurrent callers on one key, over several connections: every acknowledged put is in
/// the final token, and every reply covers the token that was put.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_to_one_key_lose_no_update() {
    const CALLERS: usize = 64;
    const PUTS: usize = 20;
    let mut s = settings();
    s.limits.max_segments = CALLERS + 1;
    let broker = TestBroker::start(s).await;
    let channels = Arc::new(vec![
        broker.channel().await,
        broker.channel().await,
        broker.channel().await,
        broker.channel().await,
    ]);
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let channels = channels.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = tokenbroker_proto::v1::token_broker_client::TokenBrokerClient::new(
                channels[caller % channels.len()].clone(),
            );
            let mut acked = Vec::new();
            for p in 0..PUTS {
                let lsn = p * CALLERS + caller + 1;
                let token = format!(
                    "0:1#{lsn}#1={lsn}#2={},{}:1#{p}",
                    caller * 7 % 13,
                    caller + 1
                );
                let reply = c
                    .put_token(put("hot", "key", &token))
                    .await
                    .unwrap()
                    .into_inner();
                let token = SessionToken::parse(&token).unwrap();
                let stored = SessionToken::parse(&reply.session_token).unwrap();
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
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let expected = SessionToken::merge_all(&all).unwrap().unwrap();
    let mut c = broker.client().await;
    let stored = c
        .get_token(get("hot", "key", &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.session_token, expected.to_string());
    assert_eq!(expected.len(), CALLERS + 1);
    broker.stop().await;
}

#[tokio::test]
async fn health_reports_liveness_and_readiness_by_name() {
    let broker = TestBroker::start(settings()).await;
    let mut h = broker.health().await;
    for service in ["", SERVICE_NAME] {
        let r = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            ServingStatus::Serving as i32,
            "service {service:?}"
        );
    }
    let unknown = h
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    broker.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_broker_and_health_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let broker = TestBroker::start(settings()).await;
    let mut r = ServerReflectionClient::new(broker.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = r
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&SERVICE_NAME.to_string()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    drop(responses);
    broker.stop().await;
}
