//! The Rust SDK (`azure_data_cosmos` 1.0.0 over its own HTTP transport) through the sidecar:
//! pods on separate `CosmosClient`s, each given its own sidecar's endpoint and nothing else,
//! write-then-read pairs across pods with reads in West. Stale reads without the sidecars, none
//! through them, no failed request.
//!
//! Why beside `BrokeredContainer`: a Rust service may prefer the sidecar to the wrapper (no code
//! change at all); this shows the SDK's own routing, session cache and retries work through it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use azure_core::credentials::Secret;
use azure_data_cosmos::options::{Region, RoutingStrategy};
use azure_data_cosmos::{AccountEndpoint, AccountReference, ContainerClient, CosmosClientBuilder};
use cosmos_http_emulator::{Emulator, Options};
use serde::{Deserialize, Serialize};
use test_kit::{KillableBroker, memory_store};
use tokenbroker_sidecar::{Sidecar, SidecarMetrics, SidecarSettings};

const KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";
const PAIRS: usize = 300;
const PODS: usize = 3;

#[derive(Debug, Serialize, Deserialize)]
struct Item {
    id: String,
    pk: String,
    seq: usize,
}

async fn pod(endpoint: &str) -> ContainerClient {
    let endpoint: AccountEndpoint = endpoint.parse().expect("an endpoint");
    let account = AccountReference::with_authentication_key(endpoint, Secret::new(KEY));
    CosmosClientBuilder::new()
        .build(
            account,
            RoutingStrategy::PreferredRegions(vec![Region::WEST_US, Region::EAST_US]),
        )
        .await
        .expect("a client over HTTP")
        .database_client("shop")
        .container_client("orders", None)
        .await
        .expect("the container")
}

/// (stale, failed) over the pairs, pods on `endpoints`.
async fn pairs(endpoints: &[String], run: &str) -> (usize, Vec<String>) {
    let mut pods = Vec::new();
    for endpoint in endpoints {
        pods.push(pod(endpoint).await);
    }
    let (mut stale, mut failed) = (0, Vec::new());
    for i in 0..PAIRS {
        let key = format!("{run}-{i}");
        let item = Item {
            id: key.clone(),
            pk: key.clone(),
            seq: i,
        };
        let writer = &pods[i % pods.len()];
        let reader = &pods[(i + 1) % pods.len()];
        if let Err(error) = writer.upsert_item(key.clone(), &key, &item, None).await {
            failed.push(format!("write {i}: {error}"));
            continue;
        }
        match reader.read_item(key.clone(), &key, None).await {
            Ok(response) => match response.into_model::<Item>() {
                Ok(read) if read.seq >= i => {}
                Ok(_) => stale += 1,
                Err(error) => failed.push(format!("read {i}: {error}")),
            },
            Err(error)
                if error.status().is_not_found()
                    && !error.status().is_read_session_not_available() =>
            {
                stale += 1
            }
            Err(error) => failed.push(format!("read {i}: {error}")),
        }
    }
    (stale, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_pods_read_fresh_through_their_sidecars() {
    let emulator = Emulator::start(Options {
        partitions: 4,
        ..Options::default()
    })
    .await
    .expect("the emulator");
    let broker = KillableBroker::start(memory_store());
    let direct = vec![emulator.endpoint().to_owned(); PODS];
    let (baseline, failed) = pairs(&direct, "direct").await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(baseline > 0, "the baseline shows stale reads");

    let mut through = Vec::new();
    for _ in 0..PODS {
        let settings = SidecarSettings {
            listen: "127.0.0.1:0".into(),
            upstream: emulator.endpoint().into(),
            brokers: broker.url(),
            // A loaded CI machine must not turn a slow broker call into a stale read (the
            // default 100 ms is for production, where a late token only costs freshness).
            broker_deadline: std::time::Duration::from_secs(2),
            ..SidecarSettings::default()
        };
        let sidecar = Sidecar::bind(&settings, SidecarMetrics::noop())
            .await
            .expect("a sidecar");
        through.push(sidecar.serve_in_background());
    }
    let (stale, failed) = pairs(&through, "through").await;
    println!(
        "Rust SDK, {PODS} pods, {PAIRS} pairs: {baseline} stale without the sidecars, {stale} through them"
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        stale, 0,
        "no stale read through the sidecars (baseline {baseline})"
    );
    emulator.shutdown().await;
}
