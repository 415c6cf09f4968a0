//! The sidecar between raw gateway requests and the HTTP emulator, with a real broker: each
//! behaviour the SDK tests (polyglot) rely on, pinned down on its own.
//!
//! Why raw requests: they send exactly what an SDK sends for one operation (the verb, the link,
//! the partition key header, the application's own session token), so a failure here points at
//! the sidecar, not at an SDK's retry policy. Each "pod" is its own sidecar; pods share the
//! broker and the account.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use cosmos_http_emulator::{Emulator, Options, RunningEmulator};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use test_kit::{KillableBroker, memory_store};
use tokenbroker_client::{ClientConfig, TokenBrokerClient};
use tokenbroker_sidecar::{Sidecar, SidecarMetrics, SidecarSettings};

const DOCS: &str = "/dbs/shop/colls/orders/docs";
const PK: &str = "x-ms-documentdb-partitionkey";

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn call(
    method: &str,
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::builder().method(method).uri(format!(
        "{}{}",
        base.trim_end_matches('/'),
        path
    ));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .expect("an answer");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn emulator() -> RunningEmulator {
    Emulator::start(Options {
        regions: 2,
        replication_delay: Duration::from_millis(20),
        ..Options::default()
    })
    .await
    .expect("the emulator")
}

/// A pod's sidecar, serving until the test ends.
async fn sidecar(upstream: &str, broker: &str, policy: &str) -> String {
    let settings = SidecarSettings {
        listen: "127.0.0.1:0".into(),
        upstream: upstream.into(),
        brokers: broker.into(),
        policy: policy.into(),
        ..SidecarSettings::default()
    };
    let sidecar = Sidecar::bind(&settings, SidecarMetrics::noop())
        .await
        .expect("the sidecar");
    sidecar.serve_in_background()
}

/// What an SDK does first: the account (regional endpoints) and the container (its `_rid`).
/// Returns the (write, read) region endpoints the account names.
async fn connect(base: &str) -> (String, String) {
    let account = call("GET", base, "/", &[], "").await;
    assert_eq!(account.status, 200, "{}", account.body);
    let account = account.json();
    let container = call("GET", base, "/dbs/shop/colls/orders", &[], "").await;
    assert_eq!(container.status, 200, "{}", container.body);
    let endpoint = |list: &str, i: usize| {
        account[list][i]["databaseAccountEndpoint"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    (
        endpoint("writableLocations", 0),
        endpoint("readableLocations", 1),
    )
}

fn broker_client(broker: &KillableBroker) -> TokenBrokerClient {
    TokenBrokerClient::new(ClientConfig::new([broker.url()]).with_deadline(Duration::from_secs(2)))
        .unwrap()
}

async fn rid(emulator: &RunningEmulator) -> String {
    call(
        "GET",
        emulator.endpoint(),
        "/dbs/shop/colls/orders",
        &[],
        "",
    )
    .await
    .json()["_rid"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_names_the_sidecars_listeners_region_by_region() {
    let emulator = emulator().await;
    let broker = KillableBroker::start(memory_store());
    let pod = sidecar(emulator.endpoint(), &broker.url(), "").await;
    let (write, read) = connect(&pod).await;
    assert_eq!(
        write, pod,
        "the account endpoint is the application-facing listener"
    );
    assert!(read.starts_with("http://127.0.0.1:"), "{read}");
    let upstream: Vec<&str> = emulator
        .regions()
        .iter()
        .map(|r| r.endpoint.as_str())
        .collect();
    assert!(
        !upstream.contains(&read.as_str()),
        "West goes through the sidecar too: {read}"
    );
    // The region's listener forwards to West: a read there is counted in West.
    emulator.reset_requests();
    let answer = call(
        "GET",
        &read,
        &format!("{DOCS}/nothing"),
        &[(PK, r#"["x"]"#)],
        "",
    )
    .await;
    assert_eq!(answer.status, 404);
    let log = emulator.request_log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].region, "West US");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_pod_is_read_fresh_through_another() {
    let emulator = emulator().await;
    let broker = KillableBroker::start(memory_store());
    let (a, b) = (
        sidecar(emulator.endpoint(), &broker.url(), "").await,
        sidecar(emulator.endpoint(), &broker.url(), "").await,
    );
    let (a_write, _) = connect(&a).await;
    let (_, b_west) = connect(&b).await;
    emulator.pause_replication(Some("West US")).unwrap();

    let pk = [(PK, r#"["k1"]"#)];
    let created = call("POST", &a_write, DOCS, &pk, r#"{"id":"d1","pk":"k1"}"#).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let token = created.header("x-ms-session-token").unwrap().to_owned();
    let scope = format!("127.0.0.1/shop/orders/{}", rid(&emulator).await);
    let stored = broker_client(&broker)
        .get_token(&scope, r#"["k1"]"#, &[])
        .await
        .unwrap();
    assert_eq!(
        stored.session_token.as_deref(),
        Some(token.as_str()),
        "recorded before the answer"
    );

    // Without the sidecar, West is stale; through pod B's West listener, the read is fresh.
    let west = &emulator.regions()[1].endpoint;
    let direct = call("GET", west, &format!("{DOCS}/d1"), &pk, "").await;
    assert_eq!(
        direct.status, 404,
        "the baseline: West has not seen the write"
    );
    emulator.reset_requests();
    let through = call("GET", &b_west, &format!("{DOCS}/d1"), &pk, "").await;
    assert_eq!(through.status, 200, "{}", through.body);
    let log = emulator.request_log();
    let seen: Vec<(&str, u16, Option<&str>)> = log
        .iter()
        .map(|r| {
            (
                r.region.as_str(),
                r.status,
                r.request_session_token.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("West US", 404, Some(token.as_str())),
            ("East US", 200, Some(token.as_str()))
        ],
        "West cannot serve the token yet; the write region can"
    );
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unservable_broker_token_is_read_again_without_it_and_discarded() {
    let emulator = emulator().await;
    let broker = KillableBroker::start(memory_store());
    let pod = sidecar(emulator.endpoint(), &broker.url(), "").await;
    let (write, _) = connect(&pod).await;
    let pk = [(PK, r#"["k2"]"#)];
    let created = call("POST", &write, DOCS, &pk, r#"{"id":"d2","pk":"k2"}"#).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let token = created.header("x-ms-session-token").unwrap().to_owned();
    let (range, _) = token.split_once(':').unwrap();
    // A token far ahead of the partition (a recreated container's, a lost failover's).
    let ahead = format!("{range}:0#1000000");
    let scope = format!("127.0.0.1/shop/orders/{}", rid(&emulator).await);
    let client = broker_client(&broker);
    client.put_token(&scope, r#"["k2"]"#, &ahead).await.unwrap();

    emulator.reset_requests();
    let read = call("GET", &write, &format!("{DOCS}/d2"), &pk, "").await;
    assert_eq!(
        read.status, 200,
        "the application never sees the broker's failure: {}",
        read.body
    );
    let log = emulator.request_log();
    let sent: Vec<(u16, Option<&str>)> = log
        .iter()
        .map(|r| (r.status, r.request_session_token.as_deref()))
        .collect();
    assert_eq!(sent, vec![(404, Some(ahead.as_str())), (200, None)]);
    // The discard runs in the background: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stored = client.get_token(&scope, r#"["k2"]"#, &[]).await.unwrap();
        if stored.session_token.is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not discarded: {stored:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_choose_the_key_or_keep_the_broker_out() {
    let emulator = emulator().await;
    let broker = KillableBroker::start(memory_store());
    let pod = sidecar(emulator.endpoint(), &broker.url(), "shop/orders=session").await;
    let quiet = sidecar(emulator.endpoint(), &broker.url(), "shop=pass-through").await;
    let (write, _) = connect(&pod).await;
    let (quiet_write, _) = connect(&quiet).await;
    let scope = format!("127.0.0.1/shop/orders/{}", rid(&emulator).await);
    let client = broker_client(&broker);

    let with_session = [(PK, r#"["k3"]"#), ("x-tokenbroker-session", "user-7")];
    let created = call(
        "POST",
        &write,
        DOCS,
        &with_session,
        r#"{"id":"d3","pk":"k3"}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let by_session = client
        .get_token(&scope, "session:user-7", &[])
        .await
        .unwrap();
    assert!(
        by_session.session_token.is_some(),
        "keyed by the session id"
    );
    let by_pk = client.get_token(&scope, r#"["k3"]"#, &[]).await.unwrap();
    assert!(by_pk.session_token.is_none(), "not by the partition key");

    let created = call(
        "POST",
        &quiet_write,
        DOCS,
        &[(PK, r#"["k4"]"#)],
        r#"{"id":"d4","pk":"k4"}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let passed = client.get_token(&scope, r#"["k4"]"#, &[]).await.unwrap();
    assert!(
        passed.session_token.is_none(),
        "pass-through records nothing"
    );
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_broker_fails_no_request() {
    let emulator = emulator().await;
    let mut broker = KillableBroker::start(memory_store());
    let pod = sidecar(emulator.endpoint(), &broker.url(), "").await;
    let (write, west) = connect(&pod).await;
    broker.kill();
    let pk = [(PK, r#"["k5"]"#)];
    for i in 0..20 {
        let created = call(
            "POST",
            &write,
            DOCS,
            &pk,
            &format!(r#"{{"id":"d5-{i}","pk":"k5"}}"#),
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.body);
        let read = call("GET", &west, &format!("{DOCS}/d5-{i}"), &pk, "").await;
        assert!(
            matches!(read.status, 200 | 404),
            "a read fails only as it would without the broker: {}",
            read.status
        );
        assert_eq!(read.header("x-ms-substatus"), None, "{}", read.body);
    }
    emulator.shutdown().await;
}
