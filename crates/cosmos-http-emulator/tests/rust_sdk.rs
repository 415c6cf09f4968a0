//! The Rust SDK (`azure_data_cosmos` =1.0.0) against the emulator over real HTTP: its default
//! transport (reqwest, the `reqwest` feature; the SDK offers no public hook for another HTTP
//! client), key auth over plain `http://` on loopback, endpoint discovery from the account.
//!
//! Why: the sidecar's Rust proof runs the SDK over HTTP; this pins down that the emulator alone
//! serves it, and that a read region really lags (a client that never saw the write reads it
//! stale in West) while a client holding the write's token reads it fresh.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use azure_core::credentials::Secret;
use azure_data_cosmos::options::{Region, RoutingStrategy};
use azure_data_cosmos::{AccountEndpoint, AccountReference, ContainerClient, CosmosClientBuilder};
use cosmos_http_emulator::requests::LoggedRequest;
use cosmos_http_emulator::{Emulator, Options, RunningEmulator};
use serde::{Deserialize, Serialize};

const KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    id: String,
    pk: String,
    value: u32,
}

/// A pod: its own client (own session cache), reading from West US first.
async fn pod(emulator: &RunningEmulator) -> ContainerClient {
    let endpoint: AccountEndpoint = emulator.endpoint().parse().expect("an endpoint");
    let account = AccountReference::with_authentication_key(endpoint, Secret::new(KEY));
    let client = CosmosClientBuilder::new()
        .build(
            account,
            RoutingStrategy::PreferredRegions(vec![Region::WEST_US, Region::EAST_US]),
        )
        .await
        .expect("a client over HTTP");
    client
        .database_client("shop")
        .container_client("orders", None)
        .await
        .expect("the container")
}

/// (region, status, substatus) of the logged `method` requests whose path ends with `suffix`.
fn requests(log: &[LoggedRequest], method: &str, suffix: &str) -> Vec<(String, u16, u32)> {
    log.iter()
        .filter(|r| r.method == method && r.path.ends_with(suffix))
        .map(|r| (r.region.clone(), r.status, r.substatus))
        .collect()
}

fn in_region(status: &[(u16, u32)], region: &str) -> Vec<(String, u16, u32)> {
    status
        .iter()
        .map(|(s, sub)| (region.to_owned(), *s, *sub))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_created_in_east_is_read_in_west_stale_without_its_token_fresh_with_it() {
    let emulator = Emulator::start(Options::default()).await.expect("start");
    let writer = pod(&emulator).await;
    emulator.pause_replication(Some("West US")).expect("pause");

    let item = Item {
        id: "r1".to_owned(),
        pk: "r1".to_owned(),
        value: 7,
    };
    writer
        .create_item("r1", "r1", &item, None)
        .await
        .expect("create in East");

    // A pod that never saw the write reads in West, which has not got it.
    let reader = pod(&emulator).await;
    let stale = reader.read_item("r1", "r1", None).await.map(|_| ());
    let error = stale.expect_err("West has not got the item yet");
    assert!(error.status().is_not_found(), "{error}");

    // The writer holds the write's token: West cannot serve it, the SDK reads in East.
    let fresh: Item = writer
        .read_item("r1", "r1", None)
        .await
        .and_then(|r| r.into_model())
        .expect("the writer reads its write");
    assert_eq!(fresh, item);

    emulator.resume_replication(None).expect("resume");
    emulator.drain_replications().await;
    let replicated: Item = reader
        .read_item("r1", "r1", None)
        .await
        .and_then(|r| r.into_model())
        .expect("West has it now");
    assert_eq!(replicated, item);

    let log = emulator.request_log();
    assert_eq!(
        requests(&log, "POST", "/docs"),
        in_region(&[(201, 0)], "East US"),
        "one create, in the write region"
    );
    let reads = requests(&log, "GET", "/docs/r1");
    assert_eq!(
        reads,
        [
            in_region(&[(404, 0), (404, 1002)], "West US"),
            in_region(&[(200, 0)], "East US"),
            in_region(&[(200, 0)], "West US"),
        ]
        .concat(),
        "stale in West; West cannot serve the writer's token, East can; then West has it"
    );
    emulator.shutdown().await;
}
