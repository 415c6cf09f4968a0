//! A stored token must never fail a Cosmos read (issue 10), on the real SDK and its emulator:
//! a token ahead of the container, a container deleted and recreated under the same name, two
//! containers sharing one scope, and queries. In each, the bare SDK with that token fails
//! (checked, so the tests could fail), the wrapper's read succeeds with the bare SDK's own
//! result after exactly one read more, the fallback is counted, and the token is discarded so
//! that the next pod's read carries no unservable token. A legitimate token never triggers the
//! fallback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::http::Request;
use azure_data_cosmos::options::{ItemReadOptions, SessionToken as SdkToken};
use azure_data_cosmos::{ContainerClient, CosmosClient};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use stale_reads::emulator::{AccountShape, CONTAINER, DATABASE, EmulatedAccount, RequestObserver};
use test_kit::{KillableBroker, memory_store};
use tokenbroker_client::{ClientConfig, TokenBrokerClient};
use tokenbroker_cosmos::{BrokeredContainer, ContainerScope};

const READ_REGION: &str = "West US";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Order {
    id: String,
    pk: String,
    items: i64,
}

fn order(id: &str, pk: &str, items: i64) -> Order {
    Order {
        id: id.into(),
        pk: pk.into(),
        items,
    }
}

/// Every item request the emulator receives: its path and the session token it carried.
#[derive(Debug, Default)]
struct Requests(Mutex<Vec<(String, Option<String>)>>);

impl RequestObserver for Requests {
    fn on_request(&self, request: &Request) {
        let path = request.url().path().to_owned();
        if !path.contains("/docs") {
            return;
        }
        let token = request
            .headers()
            .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
                "x-ms-session-token",
            ))
            .map(str::to_owned);
        self.0.lock().unwrap().push((path, token));
    }
}

impl Requests {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The item requests made while `f` ran, with their tokens.
    async fn during<T>(&self, f: impl Future<Output = T>) -> (T, Vec<Option<String>>) {
        let before = self.count();
        let out = f.await;
        let seen = self.0.lock().unwrap()[before..]
            .iter()
            .map(|(_, t)| t.clone())
            .collect();
        (out, seen)
    }
}

struct World {
    _broker: KillableBroker,
    account: EmulatedAccount,
    broker_url: String,
    requests: Arc<Requests>,
}

impl World {
    fn new() -> Self {
        let requests = Arc::new(Requests::default());
        let account = EmulatedAccount::with_observer(
            AccountShape {
                replication_delay: Duration::from_millis(1),
                partitions: 4,
            },
            requests.clone(),
        )
        .unwrap();
        account.store().pause_replication(READ_REGION);
        let broker = KillableBroker::start(memory_store());
        let broker_url = broker.url();
        Self {
            _broker: broker,
            account,
            broker_url,
            requests,
        }
    }

    fn broker_client(&self) -> TokenBrokerClient {
        TokenBrokerClient::new(
            ClientConfig::new([self.broker_url.clone()]).with_deadline(Duration::from_secs(5)),
        )
        .unwrap()
    }

    async fn client(&self) -> CosmosClient {
        self.account.new_client(false).await.unwrap()
    }

    async fn plain_pod(&self) -> ContainerClient {
        self.account.new_pod(false).await.unwrap()
    }

    /// A pod whose wrapper resolves the container and scopes it by generation.
    async fn pod(&self) -> BrokeredContainer {
        BrokeredContainer::connect(
            self.client().await,
            DATABASE,
            CONTAINER,
            self.broker_client(),
        )
        .await
        .unwrap()
    }

    async fn replicate(&self) {
        let store = self.account.store();
        store.resume_replication(READ_REGION);
        store.drain_pending_replications().await;
        store.pause_replication(READ_REGION);
    }
}

const PK: &str = "customer-1";
/// The broker key of `PK` (the partition key's JSON).
const KEY: &str = r#"["customer-1"]"#;

/// `token` with every segment pushed ahead: global LSN by `global`, version by `version`.
fn ahead(token: &str, global: i64, version: i64) -> String {
    let parsed = session_token::SessionToken::parse(token).unwrap();
    let segments = parsed.segments().map(|(id, t)| {
        let session_token::PartitionToken::Vector(v) = t else {
            panic!("vector tokens expected: {token}");
        };
        let mut v = v.clone();
        v.global_lsn += global;
        v.version += version;
        (id.clone(), session_token::PartitionToken::Vector(v))
    });
    session_token::SessionToken::from_segments(segments)
        .unwrap()
        .to_string()
}

async fn plain_read(
    pod: &ContainerClient,
    id: &str,
    token: Option<String>,
) -> azure_data_cosmos::Result<Order> {
    let mut options = ItemReadOptions::default();
    options.session_token = token.map(SdkToken::new);
    pod.read_item(PK, id, Some(options))
        .await
        .and_then(|r| r.into_model())
}

/// Writes `o` through a fresh pod and returns its write token; the write then reaches every
/// region, so reads without a token are fresh too and only the token can fail them.
async fn seed(world: &World, o: &Order) -> String {
    let writer = world.pod().await;
    let written = writer.upsert_item(PK, &o.id, o, None).await.unwrap();
    world.replicate().await;
    written
        .headers()
        .session_token()
        .unwrap()
        .as_str()
        .to_owned()
}

/// The poisoned token in the broker fails the bare SDK; the wrapper reads the bare SDK's result
/// with one read more, counts the fallback, discards the token; the next pod meets no 404/1002.
async fn check_point_read_survives(global: i64, version: i64) {
    let world = World::new();
    let seeded = order("o1", PK, 3);
    let written = seed(&world, &seeded).await;
    let broker = world.broker_client();
    let scope = world.pod().await.scope();
    let poisoned = ahead(&written, global, version);
    broker
        .put_token(scope.as_str(), KEY, &poisoned)
        .await
        .unwrap();

    // The control: the bare SDK with that token fails, and how many requests it takes.
    let bare = world.plain_pod().await;
    let (failed, bare_with_token) = world
        .requests
        .during(plain_read(&bare, "o1", Some(poisoned.clone())))
        .await;
    let status = failed.unwrap_err().status();
    assert!(status.is_service_unavailable(), "bare SDK: {status:?}");
    let (plain, bare_without) = world.requests.during(plain_read(&bare, "o1", None)).await;
    assert_eq!(plain.unwrap(), seeded);

    let reader = world.pod().await;
    let (read, sent) = world
        .requests
        .during(reader.read_item(PK, "o1", None))
        .await;
    assert_eq!(read.unwrap().into_model::<Order>().unwrap(), seeded);
    assert_eq!(
        sent.len(),
        bare_with_token.len() + bare_without.len(),
        "exactly one read more than the bare SDK's own: {sent:?}"
    );
    assert_eq!(reader.broker().stats().fallback_reads, 1);
    assert_eq!(reader.broker().stats().discard_failures, 0);
    let left = broker.get_token(scope.as_str(), KEY, &[]).await.unwrap();
    assert_eq!(
        left.session_token, None,
        "the unservable token was discarded"
    );

    let next = world.pod().await;
    let (read, sent) = world.requests.during(next.read_item(PK, "o1", None)).await;
    assert_eq!(read.unwrap().into_model::<Order>().unwrap(), seeded);
    assert_eq!(
        sent.len(),
        bare_without.len(),
        "no 404/1002 retries: {sent:?}"
    );
    assert!(
        sent.iter().flatten().all(|t| !t.contains(&poisoned)),
        "{sent:?}"
    );
    assert_eq!(next.broker().stats().fallback_reads, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_a_million_lsns_ahead_falls_back_and_is_discarded() {
    check_point_read_survives(1_000_000, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_five_versions_ahead_falls_back_and_is_discarded() {
    check_point_read_survives(0, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_with_an_unservable_token_falls_back_and_is_discarded() {
    let world = World::new();
    let seeded = order("o1", PK, 3);
    let written = seed(&world, &seeded).await;
    let broker = world.broker_client();
    let scope = world.pod().await.scope();
    let poisoned = ahead(&written, 1_000_000, 0);
    broker
        .put_token(scope.as_str(), KEY, &poisoned)
        .await
        .unwrap();

    let reader = world.pod().await;
    // Teach the reader the key's range first (a query sends a token only for a known range).
    let _ = reader.read_item(PK, "o1", None).await.unwrap();
    broker
        .put_token(scope.as_str(), KEY, &poisoned)
        .await
        .unwrap();
    let before = reader.broker().stats().fallback_reads;
    let items: Vec<Order> = reader
        .query_items("SELECT * FROM c", PK, None)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(items, vec![seeded]);
    assert_eq!(reader.broker().stats().fallback_reads, before + 1);
    let left = broker.get_token(scope.as_str(), KEY, &[]).await.unwrap();
    assert_eq!(left.session_token, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legitimate_token_never_triggers_the_fallback() {
    let world = World::new();
    let seeded = order("o1", PK, 1);
    seed(&world, &seeded).await;
    let writer = world.pod().await;
    let reader = world.pod().await;
    let updated = order("o1", PK, 2);
    writer.upsert_item(PK, "o1", &updated, None).await.unwrap();
    // West has not seen the write: it answers 404/1002 and the SDK retries in East.
    let read: Order = reader
        .read_item(PK, "o1", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(read, updated);
    assert_eq!(reader.broker().stats().fallback_reads, 0);
    let stale = plain_read(&world.plain_pod().await, "o1", None)
        .await
        .unwrap();
    assert_eq!(stale, seeded, "stale without the broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_container_is_served_under_its_new_scope_by_old_and_new_pods() {
    let world = World::new();
    let first = order("o1", PK, 1);
    seed(&world, &first).await;
    let long_lived = world.pod().await;
    let old_scope = long_lived.scope();
    let _ = long_lived.read_item(PK, "o1", None).await.unwrap();

    // Delete and recreate under the same name: a new resource id, LSNs from scratch.
    world.plain_pod().await.delete(None).await.unwrap();
    world.account.create_container(CONTAINER).unwrap();
    world.account.store().pause_replication(READ_REGION);
    let second = order("o1", PK, 2);
    seed(&world, &second).await;
    let writer = world.pod().await;
    let new_scope = writer.scope();
    assert_ne!(new_scope, old_scope, "the scope names the generation");
    let newest = order("o1", PK, 3);
    writer.upsert_item(PK, "o1", &newest, None).await.unwrap();

    // The long-lived pod still holds the old generation: its read fails on the old token, it
    // moves to the new scope and reads without the broker's token (one read more).
    let read: Order = long_lived
        .read_item(PK, "o1", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert!(read == second || read == newest, "{read:?}");
    assert_eq!(long_lived.scope(), new_scope);
    let fallbacks = long_lived.broker().stats().fallback_reads;
    assert_eq!(fallbacks, 1);
    // From now on it reads with the new generation's token, fresh, with no fallback.
    let read: Order = long_lived
        .read_item(PK, "o1", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(read, newest);
    assert_eq!(long_lived.broker().stats().fallback_reads, fallbacks);

    let fresh = world.pod().await;
    assert_eq!(fresh.scope(), new_scope);
    let read: Order = fresh
        .read_item(PK, "o1", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(read, newest);
    assert_eq!(fresh.broker().stats().fallback_reads, 0);
    let stale = plain_read(&world.plain_pod().await, "o1", None)
        .await
        .unwrap();
    assert_eq!(stale, second, "stale without the broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_sharing_one_scope_read_through_the_fallback_and_connect_tells_them_apart() {
    let world = World::new();
    world.account.create_container("returns").unwrap();
    let client = world.client().await;
    let database = client.database_client(DATABASE);
    let orders = database.container_client(CONTAINER, None).await.unwrap();
    let returns = database.container_client("returns", None).await.unwrap();
    // The slip: one explicit scope for both.
    let shared = ContainerScope::new("acct", DATABASE, "orders").unwrap();
    let busy = BrokeredContainer::new(orders, world.broker_client(), shared.clone());
    let quiet = BrokeredContainer::new(returns, world.broker_client(), shared);
    for i in 0..50 {
        busy.upsert_item(PK, "o1", order("o1", PK, i), None)
            .await
            .unwrap();
    }
    quiet
        .upsert_item(PK, "r1", order("r1", PK, 1), None)
        .await
        .unwrap_or_else(|e| panic!("quiet write: {e}"));
    world.replicate().await;
    // The quiet container's reader gets the busy one's token (far ahead of it).
    let reader = BrokeredContainer::new(
        world
            .client()
            .await
            .database_client(DATABASE)
            .container_client("returns", None)
            .await
            .unwrap(),
        world.broker_client(),
        ContainerScope::new("acct", DATABASE, "orders").unwrap(),
    );
    let read: Order = reader
        .read_item(PK, "r1", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(read, order("r1", PK, 1));
    assert_eq!(reader.broker().stats().fallback_reads, 1);

    let a = world.pod().await;
    let b = BrokeredContainer::connect(
        world.client().await,
        DATABASE,
        "returns",
        world.broker_client(),
    )
    .await
    .unwrap();
    assert_ne!(a.scope(), b.scope());
}
