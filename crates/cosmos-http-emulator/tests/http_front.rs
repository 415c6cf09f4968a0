//! The HTTP front and its admin routes, in process, with raw gateway requests: what the SDKs
//! rely on (region endpoints in the account, the three quirks smoothed) and what tests drive
//! (pause, resume, drain, split, counts, log).
//!
//! Why raw requests as well as SDK tests: they pin down each behaviour on its own, so an SDK test
//! failing later points at the SDK's side, not at the front.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Response, call};
use cosmos_http_emulator::{Emulator, Options, RunningEmulator};

async fn http(
    method: &'static str,
    endpoint: &str,
    path: &str,
    headers: &[(&'static str, &str)],
    body: &str,
) -> Response {
    let (endpoint, path, body) = (endpoint.to_owned(), path.to_owned(), body.to_owned());
    let headers: Vec<(&'static str, String)> =
        headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        call(method, &endpoint, &path, &headers, &body)
    })
    .await
    .expect("the HTTP call")
}

async fn emulator() -> RunningEmulator {
    emulator_with_delay(Duration::from_millis(50)).await
}

async fn emulator_with_delay(replication_delay: Duration) -> RunningEmulator {
    Emulator::start(Options {
        regions: 3,
        replication_delay,
        ..Options::default()
    })
    .await
    .expect("start the emulator")
}

fn east_west(emulator: &RunningEmulator) -> (String, String) {
    let regions = emulator.regions();
    (regions[0].endpoint.clone(), regions[1].endpoint.clone())
}

/// `range:version#globalLSN`, the normalised form.
fn is_normalised(token: &str) -> bool {
    let Some((range, rest)) = token.split_once(':') else {
        return false;
    };
    let parts: Vec<&str> = rest.split('#').collect();
    range.parse::<u32>().is_ok()
        && parts.len() == 2
        && parts.iter().all(|p| p.parse::<i64>().is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_lists_every_region_by_its_own_endpoint() {
    let emulator = emulator().await;
    let names: Vec<&str> = emulator.regions().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["East US", "West US", "North Europe"]);
    let mut ports: Vec<&str> = emulator
        .regions()
        .iter()
        .map(|r| r.endpoint.as_str())
        .collect();
    ports.dedup();
    assert_eq!(ports.len(), 3, "one endpoint per region: {ports:?}");
    for region in emulator.regions() {
        assert!(
            region.endpoint.starts_with("http://127.0.0.1:") && region.endpoint.ends_with('/'),
            "{}",
            region.endpoint
        );
    }
    assert_eq!(emulator.endpoint(), emulator.regions()[0].endpoint);

    // Any region's endpoint answers for the account.
    let account = http("GET", &emulator.regions()[2].endpoint, "/", &[], "")
        .await
        .json();
    let endpoints = |key: &str| -> Vec<(String, String)> {
        account[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {account}"))
            .iter()
            .map(|l| {
                (
                    l["name"].as_str().unwrap_or_default().to_owned(),
                    l["databaseAccountEndpoint"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    };
    let all: Vec<(String, String)> = emulator
        .regions()
        .iter()
        .map(|r| (r.name.clone(), r.endpoint.clone()))
        .collect();
    assert_eq!(endpoints("writableLocations"), all[..1]);
    assert_eq!(endpoints("readableLocations"), all);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_owner_headers_and_normalised_tokens_and_slashes_are_forgiven() {
    let emulator = emulator().await;
    let (east, west) = east_west(&emulator);
    let pk = [("x-ms-documentdb-partitionkey", r#"["a"]"#)];

    let container = http("GET", &east, "/dbs/shop/colls/orders/", &[], "").await;
    assert_eq!(
        container.status, 200,
        "a trailing slash is forgiven: {}",
        container.body
    );
    let rid = container.json()["_rid"].as_str().expect("_rid").to_owned();
    assert_eq!(
        container.header("x-ms-alt-content-path"),
        None,
        "the container itself has no container owner"
    );

    let created = http(
        "POST",
        &east,
        "/dbs/shop/colls/orders/docs",
        &pk,
        r#"{"id":"a","pk":"a"}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.header("x-ms-alt-content-path"),
        Some("dbs/shop/colls/orders")
    );
    assert_eq!(created.header("x-ms-content-path"), Some(rid.as_str()));
    let token = created
        .header("x-ms-session-token")
        .expect("a session token");
    assert!(is_normalised(token), "{token}");

    emulator.drain_replications().await;
    let read = http("GET", &west, "/dbs/shop/colls/orders/docs/a/", &pk, "").await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert!(is_normalised(
        read.header("x-ms-session-token").unwrap_or_default()
    ));
    assert_eq!(read.header("x-ms-content-path"), Some(rid.as_str()));

    let ranges = http("GET", &west, "/dbs/shop/colls/orders/pkranges/", &[], "").await;
    assert_eq!(ranges.status, 200, "{}", ranges.body);
    assert_eq!(
        ranges.header("x-ms-alt-content-path"),
        Some("dbs/shop/colls/orders")
    );
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replication_leaves_a_read_region_stale_until_resumed_and_drained() {
    // Immediate replication: only the pause can keep West behind.
    let emulator = emulator_with_delay(Duration::ZERO).await;
    let (east, west) = east_west(&emulator);
    let pk = [("x-ms-documentdb-partitionkey", r#"["b"]"#)];

    let paused = http(
        "POST",
        &east,
        "/_emulator/replication/pause?region=West%20US",
        &[],
        "",
    )
    .await;
    assert_eq!(paused.json()["paused"], serde_json::json!(["West US"]));
    let created = http(
        "POST",
        &east,
        "/dbs/shop/colls/orders/docs",
        &pk,
        r#"{"id":"b","pk":"b"}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let token = created
        .header("x-ms-session-token")
        .unwrap_or_default()
        .to_owned();

    let stale = http("GET", &west, "/dbs/shop/colls/orders/docs/b", &pk, "").await;
    assert_eq!(
        (stale.status, stale.header("x-ms-substatus")),
        (404, None),
        "{}",
        stale.body
    );
    let with_token: Vec<(&str, &str)> = vec![pk[0], ("x-ms-session-token", token.as_str())];
    let unservable = http(
        "GET",
        &west,
        "/dbs/shop/colls/orders/docs/b",
        &with_token,
        "",
    )
    .await;
    assert_eq!(
        (unservable.status, unservable.header("x-ms-substatus")),
        (404, Some("1002")),
        "the write's token cannot be served in West yet"
    );

    let resumed = http("POST", &west, "/_emulator/replication/resume", &[], "").await;
    assert_eq!(
        resumed.json()["resumed"],
        serde_json::json!(["West US", "North Europe"])
    );
    let drained = http("POST", &west, "/_emulator/replication/drain", &[], "").await;
    assert_eq!(drained.status, 200, "{}", drained.body);
    let fresh = http(
        "GET",
        &west,
        "/dbs/shop/colls/orders/docs/b",
        &with_token,
        "",
    )
    .await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);

    let counts = http("GET", &east, "/_emulator/requests/counts", &[], "")
        .await
        .json();
    let count = |status: u64, substatus: u64| {
        counts["counts"]
            .as_array()
            .expect("counts")
            .iter()
            .find(|c| {
                c["region"] == "West US"
                    && c["method"] == "GET"
                    && c["status"] == status
                    && c["substatus"] == substatus
            })
            .map_or(0, |c| c["count"].as_u64().unwrap_or(0))
    };
    assert_eq!(
        (count(404, 0), count(404, 1002), count(200, 0)),
        (1, 1, 1),
        "{counts}"
    );

    let log = http("GET", &east, "/_emulator/requests/log", &[], "")
        .await
        .json();
    let requests = log["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 4, "admin requests are not logged: {log}");
    assert_eq!(requests[2]["request_session_token"], token.as_str());
    assert_eq!(
        requests[1]["request_session_token"],
        serde_json::Value::Null
    );

    let reset = http("POST", &east, "/_emulator/requests/reset", &[], "").await;
    assert_eq!(reset.status, 200);
    assert!(emulator.request_counts().is_empty() && emulator.request_log().is_empty());
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_replaces_a_range_by_its_two_children() {
    let emulator = emulator().await;
    let (east, _) = east_west(&emulator);
    let split = http(
        "POST",
        &east,
        "/_emulator/split",
        &[],
        r#"{"database":"shop","container":"orders","range":1}"#,
    )
    .await;
    assert_eq!(split.status, 200, "{}", split.body);
    let children: Vec<u64> = split.json()["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .collect();
    assert_eq!(children.len(), 2, "{}", split.body);

    let ranges = http("GET", &east, "/dbs/shop/colls/orders/pkranges", &[], "")
        .await
        .json();
    let mut ids: Vec<String> = ranges["PartitionKeyRanges"]
        .as_array()
        .expect("ranges")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    let mut expected = vec!["0".to_owned()];
    expected.extend(children.iter().map(u64::to_string));
    expected.sort();
    assert_eq!(ids, expected);

    let again = http(
        "POST",
        &east,
        "/_emulator/split?database=shop&container=orders&range=1",
        &[],
        "",
    )
    .await;
    assert_eq!(again.status, 409, "range 1 is gone: {}", again.body);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_mistakes_are_answered_with_the_reason() {
    let emulator = emulator().await;
    let (east, _) = east_west(&emulator);
    let cases = [
        (
            "POST",
            "/_emulator/replication/pause?region=Mars",
            "",
            400,
            "Mars",
        ),
        (
            "POST",
            "/_emulator/split?database=shop&range=0",
            "",
            400,
            "container",
        ),
        (
            "POST",
            "/_emulator/split?database=shop&container=orders&range=x",
            "",
            400,
            "range",
        ),
        ("POST", "/_emulator/split", "[1]", 400, "JSON object"),
        ("GET", "/_emulator/replication/pause", "", 405, "method"),
        ("GET", "/_emulator/nothing", "", 404, "/_emulator/nothing"),
    ];
    for (method, path, body, status, reason) in cases {
        let response = http(method, &east, path, &[], body).await;
        assert_eq!(
            response.status, status,
            "{method} {path}: {}",
            response.body
        );
        let error = response.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.contains(reason), "{method} {path}: {error}");
    }
    assert!(
        emulator.request_log().is_empty(),
        "admin requests are not logged"
    );
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_created_again_gets_a_new_rid() {
    let emulator = emulator().await;
    let (east, _) = east_west(&emulator);
    let rid = |r: Response| r.json()["_rid"].as_str().unwrap_or_default().to_owned();
    let before = rid(http("GET", &east, "/dbs/shop/colls/orders", &[], "").await);
    emulator
        .create_container("shop", "orders", 1)
        .await
        .expect("recreate");
    emulator
        .create_container("other", "things", 1)
        .await
        .expect("a new database");
    let after = rid(http("GET", &east, "/dbs/shop/colls/orders", &[], "").await);
    assert!(!before.is_empty() && before != after, "{before} -> {after}");
    let things = http("GET", &east, "/dbs/other/colls/things", &[], "").await;
    assert_eq!(things.status, 200, "{}", things.body);
    emulator.shutdown().await;
}
