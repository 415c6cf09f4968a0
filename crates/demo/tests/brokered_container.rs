//! `BrokeredContainer` on the real SDK and its emulator: every write kind is recorded before it
//! returns, and reads on another pod (another `CosmosClient`) see it. Replication to the read
//! region is paused except while seeding, so a read without the token is stale: the tests check
//! that too, so that they could fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use azure_data_cosmos::ContainerClient;
use azure_data_cosmos::models::PatchOperation;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use stale_reads::broker::KillableBroker;
use stale_reads::emulator::{AccountShape, CONTAINER, DATABASE, EmulatedAccount};
use tokenbroker_client::{ClientConfig, TokenBrokerClient};
use tokenbroker_cosmos::{BrokeredContainer, ContainerScope, KeyStrategy};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Order {
    id: String,
    pk: String,
    items: i64,
}

struct World {
    _broker: KillableBroker,
    account: EmulatedAccount,
    broker_url: String,
}

impl World {
    fn new() -> Self {
        let account = EmulatedAccount::new(AccountShape {
            replication_delay: Duration::from_millis(1),
            partitions: 4,
        })
        .unwrap();
        account.store().pause_replication(READ_REGION);
        let broker = KillableBroker::start().unwrap();
        let broker_url = broker.url();
        Self {
            _broker: broker,
            account,
            broker_url,
        }
    }

    fn broker_client(&self) -> TokenBrokerClient {
        TokenBrokerClient::new(
            ClientConfig::new([self.broker_url.clone()]).with_deadline(Duration::from_secs(5)),
        )
        .unwrap()
    }

    async fn plain_pod(&self) -> ContainerClient {
        self.account.new_pod(false).await.unwrap()
    }

    async fn pod(&self, strategy: KeyStrategy) -> BrokeredContainer {
        BrokeredContainer::new(self.plain_pod().await, self.broker_client(), scope())
            .with_key_strategy(strategy)
    }

    /// Seeds `orders` from a pod that takes no part afterwards, and lets them reach every region.
    async fn seed(&self, orders: &[Order]) {
        let seeder = self.plain_pod().await;
        for order in orders {
            seeder
                .upsert_item(order.pk.clone(), &order.id, order, None)
                .await
                .unwrap();
        }
        let store = self.account.store();
        store.resume_replication(READ_REGION);
        store.drain_pending_replications().await;
        store.pause_replication(READ_REGION);
    }
}

const READ_REGION: &str = "West US";

fn scope() -> ContainerScope {
    ContainerScope::new("emulator", DATABASE, CONTAINER).unwrap()
}

fn order(id: &str, pk: &str, items: i64) -> Order {
    Order {
        id: id.into(),
        pk: pk.into(),
        items,
    }
}

async fn read(pod: &ContainerClient, o: &Order) -> Option<Order> {
    match pod.read_item(o.pk.clone(), &o.id, None).await {
        Ok(response) => Some(response.into_model().unwrap()),
        Err(error) if error.status().is_not_found() => None,
        Err(error) => panic!("read failed: {error}"),
    }
}

async fn brokered_read(pod: &BrokeredContainer, o: &Order) -> Option<Order> {
    match pod.read_item(o.pk.clone(), &o.id, None).await {
        Ok(response) => Some(response.into_model().unwrap()),
        Err(error) if error.status().is_not_found() => None,
        Err(error) => panic!("read failed: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_on_one_pod_is_read_on_another() {
    let world = World::new();
    let seeded = order("o1", "customer-1", 1);
    world.seed(std::slice::from_ref(&seeded)).await;
    let writer = world.pod(KeyStrategy::PartitionKey).await;
    let reader = world.pod(KeyStrategy::PartitionKey).await;

    writer
        .patch_item(
            "customer-1",
            "o1",
            vec![PatchOperation::increment("/items", 1i64)],
            None,
        )
        .await
        .unwrap();

    assert_eq!(brokered_read(&reader, &seeded).await.unwrap().items, 2);
    let unbrokered = world.plain_pod().await;
    assert_eq!(
        read(&unbrokered, &seeded).await.unwrap().items,
        1,
        "stale without"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_replace_and_delete_are_each_seen_on_another_pod() {
    let world = World::new();
    let writer = world.pod(KeyStrategy::PartitionKey).await;

    let created = order("o2", "customer-2", 5);
    writer
        .create_item("customer-2", "o2", &created, None)
        .await
        .unwrap();
    let reader = world.pod(KeyStrategy::PartitionKey).await;
    assert_eq!(
        brokered_read(&reader, &created).await,
        Some(created.clone())
    );
    assert_eq!(
        read(&world.plain_pod().await, &created).await,
        None,
        "stale without"
    );

    let replaced = order("o2", "customer-2", 6);
    writer
        .replace_item("customer-2", "o2", &replaced, None)
        .await
        .unwrap();
    let reader = world.pod(KeyStrategy::PartitionKey).await;
    assert_eq!(
        brokered_read(&reader, &replaced).await,
        Some(replaced.clone())
    );

    writer.delete_item("customer-2", "o2", None).await.unwrap();
    let reader = world.pod(KeyStrategy::PartitionKey).await;
    assert_eq!(
        brokered_read(&reader, &replaced).await,
        None,
        "the delete is seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_within_the_partition_sees_the_write() {
    let world = World::new();
    let seeded = order("o3", "customer-3", 1);
    world.seed(std::slice::from_ref(&seeded)).await;
    let writer = world.pod(KeyStrategy::PartitionKey).await;
    let reader = world.pod(KeyStrategy::PartitionKey).await;

    let updated = order("o3", "customer-3", 9);
    writer
        .upsert_item("customer-3", "o3", &updated, None)
        .await
        .unwrap();

    let items: Vec<Order> = reader
        .query_items("SELECT * FROM c", "customer-3", None)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(items, vec![updated]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_follow_the_strategy() {
    let world = World::new();
    let broker = world.broker_client();
    let scope = scope();

    let by_pk = world.pod(KeyStrategy::PartitionKey).await;
    by_pk
        .upsert_item("customer-4", "o4", order("o4", "customer-4", 1), None)
        .await
        .unwrap();
    let by_id = world.pod(KeyStrategy::DocumentId).await;
    by_id
        .upsert_item("customer-5", "o5", order("o5", "customer-5", 1), None)
        .await
        .unwrap();
    let by_user = world
        .pod(KeyStrategy::PartitionKey)
        .await
        .for_session("user-42");
    by_user
        .upsert_item("customer-6", "o6", order("o6", "customer-6", 1), None)
        .await
        .unwrap();

    let stored = |key: &'static str| {
        let broker = broker.clone();
        let scope = scope.clone();
        async move {
            broker
                .get_token(scope.as_str(), key, &[])
                .await
                .unwrap()
                .session_token
        }
    };
    assert!(stored(r#"["customer-4"]"#).await.is_some());
    assert!(stored("id:o5").await.is_some());
    assert!(stored("o5").await.is_none());
    assert!(stored(r#"["customer-5"]"#).await.is_none());
    assert!(stored("session:user-42").await.is_some());
    assert!(stored(r#"["customer-6"]"#).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_scope_spans_partitions_and_every_read_sees_its_writes() {
    let world = World::new();
    let orders: Vec<Order> = (0..8)
        .map(|i| order(&format!("s{i}"), &format!("tenant-{i}"), 0))
        .collect();
    world.seed(&orders).await;
    let writer = world
        .pod(KeyStrategy::PartitionKey)
        .await
        .for_session("user-7");
    let reader = world
        .pod(KeyStrategy::PartitionKey)
        .await
        .for_session("user-7");
    // The reader learns each partition's range from a first read, so later reads ask the
    // broker for that range only.
    for o in &orders {
        assert!(brokered_read(&reader, o).await.is_some());
    }

    let mut written = Vec::new();
    for o in &orders {
        let updated = Order {
            items: 1,
            ..o.clone()
        };
        writer
            .upsert_item(updated.pk.clone(), &updated.id, &updated, None)
            .await
            .unwrap();
        written.push(updated);
    }
    let stored = world
        .broker_client()
        .get_token(scope().as_str(), "session:user-7", &[])
        .await
        .unwrap()
        .session_token
        .unwrap();
    assert!(
        stored.split(',').count() > 1,
        "one session token across ranges: {stored}"
    );

    for o in &written {
        assert_eq!(brokered_read(&reader, o).await.as_ref(), Some(o));
    }
}
