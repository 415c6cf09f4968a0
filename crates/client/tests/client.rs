//! The client against real brokers on loopback: balancing, deadlines, breakers, and a broker
//! killed mid-run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{HungEndpoint, SCOPE, TEST_DEADLINE, bounded, dead_endpoint, token};
use test_kit::{KillableBroker, memory_store};
use tokenbroker_client::{BreakerConfig, ClientConfig, ClientError, TokenBrokerClient};

#[tokio::test]
async fn round_robin_spreads_calls_over_every_endpoint() {
    // Two brokers with separate stores: where a key landed shows which broker served the call.
    let a = KillableBroker::start(memory_store());
    let b = KillableBroker::start(memory_store());
    let client =
        TokenBrokerClient::new(ClientConfig::new([a.url(), b.url()]).with_deadline(TEST_DEADLINE))
            .unwrap();
    for i in 0..10 {
        assert!(bounded(client.record_write(SCOPE, &format!("k{i}"), &token(i))).await);
    }
    let mut per_broker = Vec::new();
    for broker in [&a, &b] {
        let direct = TokenBrokerClient::new(ClientConfig::new([broker.url()])).unwrap();
        let mut found = 0;
        for i in 0..10 {
            let reply = bounded(direct.get_token(SCOPE, &format!("k{i}"), &[]))
                .await
                .unwrap();
            found += usize::from(reply.session_token.is_some());
        }
        per_broker.push(found);
    }
    assert_eq!(
        per_broker,
        vec![5, 5],
        "sequential calls alternate between the two brokers"
    );
}

#[tokio::test]
async fn hung_endpoint_gives_no_token_at_the_deadline_and_counts_it() {
    let hung = HungEndpoint::new();
    let client = TokenBrokerClient::new(
        ClientConfig::new([hung.url.clone()])
            .with_deadline(Duration::from_millis(200))
            // Longer than the deadline, so that the deadline is what ends each call.
            .with_connect_timeout(Duration::from_secs(60)),
    )
    .unwrap();

    assert_eq!(bounded(client.token_for_read(SCOPE, "k", &[])).await, None);
    assert!(!bounded(client.record_write(SCOPE, "k", &token(1))).await);
    let raw = bounded(client.get_token(SCOPE, "k", &[])).await;

    assert!(
        matches!(raw, Err(ClientError::DeadlineExceeded { .. })),
        "{raw:?}"
    );
    let stats = client.stats();
    assert_eq!(stats.read_failures, 1);
    assert_eq!(stats.write_failures, 1);
    assert_eq!(stats.deadline_exceeded, 3);
}

#[tokio::test]
async fn a_dead_endpoint_costs_a_retry_then_its_breaker_takes_it_out() {
    let live = KillableBroker::start(memory_store());
    let client = TokenBrokerClient::new(
        ClientConfig::new([dead_endpoint(), live.url()])
            .with_deadline(TEST_DEADLINE)
            .with_breaker(BreakerConfig {
                failure_threshold: 2,
                open_for: Duration::from_secs(600),
            }),
    )
    .unwrap();

    for i in 0..20 {
        let key = format!("k{i}");
        assert!(
            bounded(client.record_write(SCOPE, &key, &token(i))).await,
            "write {i}"
        );
        assert_eq!(
            bounded(client.token_for_read(SCOPE, &key, &[])).await,
            Some(token(i))
        );
    }
    let stats = client.stats();
    assert_eq!(stats.write_failures + stats.read_failures, 0);
    assert_eq!(
        stats.attempt_failures, 2,
        "the dead endpoint is tried until its breaker opens, then skipped"
    );
}

#[tokio::test]
async fn with_every_breaker_open_calls_fail_fast_without_a_token() {
    let client = TokenBrokerClient::new(
        ClientConfig::new([dead_endpoint()])
            .with_deadline(TEST_DEADLINE)
            .with_breaker(BreakerConfig {
                failure_threshold: 1,
                open_for: Duration::from_secs(600),
            }),
    )
    .unwrap();

    assert_eq!(bounded(client.token_for_read(SCOPE, "k", &[])).await, None);
    assert!(matches!(
        bounded(client.get_token(SCOPE, "k", &[])).await,
        Err(ClientError::AllEndpointsOpen)
    ));
    let stats = client.stats();
    assert_eq!(stats.attempt_failures, 1, "only the first call dialled");
    assert_eq!(stats.short_circuited, 1);
}

#[tokio::test]
async fn a_refused_request_is_a_typed_rejection_not_an_outage() {
    let broker = KillableBroker::start(memory_store());
    let client =
        TokenBrokerClient::new(ClientConfig::new([broker.url()]).with_deadline(TEST_DEADLINE))
            .unwrap();

    let error = bounded(client.put_token(SCOPE, "k", "not a token"))
        .await
        .unwrap_err();

    assert!(error.is_rejection(), "{error}");
    assert!(matches!(
        error,
        ClientError::Rejected {
            code: tonic::Code::InvalidArgument,
            ..
        }
    ));
    let merged = bounded(client.merge_tokens(&[token(3), token(5)]))
        .await
        .unwrap();
    assert_eq!(merged, token(5));
}

#[tokio::test]
async fn a_broker_killed_mid_run_never_fails_a_helper_call() {
    // Two replicas sharing one store, as replicas share Redis in production.
    let store = memory_store();
    let doomed = KillableBroker::start(store.clone());
    let survivor = KillableBroker::start(store);
    let client = TokenBrokerClient::new(
        ClientConfig::new([doomed.url(), survivor.url()]).with_deadline(TEST_DEADLINE),
    )
    .unwrap();

    let mut doomed = Some(doomed);
    let mut lost_after_kill = Vec::new();
    for i in 0..200u64 {
        if i == 100
            && let Some(mut broker) = doomed.take()
        {
            broker.kill();
        }
        let key = format!("k{i}");
        let stored = bounded(client.record_write(SCOPE, &key, &token(i))).await;
        let read = bounded(client.token_for_read(SCOPE, &key, &[])).await;
        if i >= 100 && !(stored && read == Some(token(i))) {
            lost_after_kill.push(i);
        }
    }

    assert!(
        lost_after_kill.is_empty(),
        "after the kill every pair should be served by the survivor: {lost_after_kill:?}"
    );
    let stats = client.stats();
    assert!(
        stats.attempt_failures >= 1,
        "the kill was noticed: {stats:?}"
    );
    assert_eq!(stats.writes, 200);
    assert_eq!(stats.reads, 200);
}

/// Persistent failure is loud: helper failures in a row are counted (and the tenth logs an
/// error), and one call that reaches the broker resets the count.
#[tokio::test]
async fn helper_failures_in_a_row_are_counted_until_a_call_succeeds() {
    let broker = KillableBroker::start(memory_store());
    let client =
        TokenBrokerClient::new(ClientConfig::new([broker.url()]).with_deadline(TEST_DEADLINE))
            .unwrap();
    for _ in 0..tokenbroker_client::LOUD_AFTER_CONSECUTIVE_FAILURES + 2 {
        // Refused by the broker every time (a policy or a client bug would look alike).
        assert!(!bounded(client.record_write(SCOPE, "k", "0:1#")).await);
    }
    assert_eq!(
        client.stats().consecutive_failures,
        tokenbroker_client::LOUD_AFTER_CONSECUTIVE_FAILURES + 2
    );
    assert!(bounded(client.record_write(SCOPE, "k", &token(1))).await);
    assert_eq!(client.stats().consecutive_failures, 0);

    let dead =
        TokenBrokerClient::new(ClientConfig::new([dead_endpoint()]).with_deadline(TEST_DEADLINE))
            .unwrap();
    for _ in 0..3 {
        assert_eq!(bounded(dead.token_for_read(SCOPE, "k", &[])).await, None);
    }
    assert_eq!(dead.stats().consecutive_failures, 3);
}
