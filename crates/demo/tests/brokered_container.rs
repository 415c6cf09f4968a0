//! `BrokeredContainer` on the real SDK and its emulator: every write kind is recorded before it
//! returns, and reads on another pod (another `CosmosClient`) see it. Replication to the read
//! region is paused except while seeding, so a read without the token is stale: the tests check
//! that too, so that they could fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use azure_data_cosmos::models::PatchOperation;
use azure_data_cosmos::{ContainerClient, FeedScope};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use stale_reads::emulator::{AccountShape, CONTAINER, DATABASE, EmulatedAccount};
use test_kit::{KillableBroker, memory_store};
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
        Self::with_partitions(4)
    }

    fn with_partitions(partitions: u32) -> Self {
        let account = EmulatedAccount::new(AccountShape {
            replication_delay: Duration::from_millis(1),
            partitions,
        })
        .unwrap();
        account.store().pause_replication(READ_REGION);
        let broker = KillableBroker::start(memory_store());
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

    /// Lets every write so far reach the read region, then pauses replication again.
    async fn replicate(&self) {
        let store = self.account.store();
        store.resume_replication(READ_REGION);
        store.drain_pending_replications().await;
        store.pause_replication(READ_REGION);
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
        self.replicate().await;
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

/// Upserts every order with `items: 1` through `writer`; returns what was written.
async fn upsert_with_one_item(writer: &BrokeredContainer, orders: &[Order]) -> Vec<Order> {
    let mut written = Vec::new();
    for o in orders {
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
    written
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
    assert_eq!(
        read(&world.plain_pod().await, &replaced).await,
        None,
        "stale without: the create has not reached the read region either"
    );
    world.replicate().await;
    let plain = world.plain_pod().await;
    assert_eq!(read(&plain, &replaced).await, Some(replaced.clone()));

    writer.delete_item("customer-2", "o2", None).await.unwrap();
    let reader = world.pod(KeyStrategy::PartitionKey).await;
    assert_eq!(
        brokered_read(&reader, &replaced).await,
        None,
        "the delete is seen"
    );
    assert_eq!(
        read(&world.plain_pod().await, &replaced).await,
        Some(replaced),
        "stale without: the deleted item is still read"
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

    let stale: Vec<Order> = world
        .plain_pod()
        .await
        .query_items("SELECT * FROM c", FeedScope::partition("customer-3"), None)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(stale, vec![seeded], "stale without");
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

    let written = upsert_with_one_item(&writer, &orders).await;
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
    let plain = world.plain_pod().await;
    for o in &orders {
        assert_eq!(
            read(&plain, o).await.as_ref(),
            Some(o),
            "stale without: {}",
            o.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_by_document_id_a_write_is_read_on_another_pod() {
    let world = World::new();
    let seeded = order("o8", "customer-8", 1);
    world.seed(std::slice::from_ref(&seeded)).await;
    let writer = world.pod(KeyStrategy::DocumentId).await;
    let reader = world.pod(KeyStrategy::DocumentId).await;

    let updated = order("o8", "customer-8", 2);
    writer
        .replace_item("customer-8", "o8", &updated, None)
        .await
        .unwrap();

    assert_eq!(brokered_read(&reader, &seeded).await, Some(updated));
    assert_eq!(
        read(&world.plain_pod().await, &seeded).await,
        Some(seeded),
        "stale without"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_answer_is_recorded_like_a_write() {
    let world = World::new();
    // A writer outside the broker (a service not yet using it, a script) creates the item.
    let legacy = world.plain_pod().await;
    let created = order("o9", "customer-9", 3);
    legacy
        .create_item("customer-9", "o9", &created, None)
        .await
        .unwrap();

    // A brokered pod's create of the same item answers 409; its token tells of that write.
    let writer = world.pod(KeyStrategy::PartitionKey).await;
    let conflict = writer
        .create_item("customer-9", "o9", &created, None)
        .await
        .unwrap_err();
    assert!(conflict.status().is_conflict(), "{conflict}");

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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_split_reads_send_the_child_range_token_and_see_the_writes() {
    let world = World::with_partitions(1);
    let seeded = order("o10", "customer-10", 1);
    world.seed(std::slice::from_ref(&seeded)).await;
    let writer = world.pod(KeyStrategy::PartitionKey).await;
    let reader = world.pod(KeyStrategy::PartitionKey).await;

    // Before the split: the reader learns that range 0 serves the key.
    let before = order("o10", "customer-10", 2);
    writer
        .upsert_item("customer-10", "o10", &before, None)
        .await
        .unwrap();
    assert_eq!(brokered_read(&reader, &seeded).await, Some(before));

    let store = world.account.store();
    let split_at = store.midpoint_split_epk(DATABASE, CONTAINER, 0).unwrap();
    let children = store
        .split_partition_and_wait(DATABASE, CONTAINER, 0, split_at, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(children.len(), 2, "split into {children:?}");

    // After it, the writer's token for the key names a child range; the broker keeps the
    // parent's segment too (two segments under one key).
    let after = order("o10", "customer-10", 3);
    writer
        .upsert_item("customer-10", "o10", &after, None)
        .await
        .unwrap();
    let stored = world
        .broker_client()
        .get_token(scope().as_str(), r#"["customer-10"]"#, &[])
        .await
        .unwrap()
        .session_token
        .unwrap();
    assert_eq!(stored.split(',').count(), 2, "parent and child: {stored}");

    // The reader still believes in range 0; the read tells it otherwise, and it reads again
    // with the child's token.
    assert_eq!(brokered_read(&reader, &seeded).await, Some(after.clone()));
    // A pod that never read before the split learns the child from its first answer.
    let newcomer = world.pod(KeyStrategy::PartitionKey).await;
    let first = brokered_read(&newcomer, &seeded).await;
    assert!(first.is_some());
    let again = order("o10", "customer-10", 4);
    writer
        .upsert_item("customer-10", "o10", &again, None)
        .await
        .unwrap();
    assert_eq!(brokered_read(&newcomer, &seeded).await, Some(again));
    assert_eq!(
        read(&world.plain_pod().await, &seeded)
            .await
            .map(|o| o.items),
        Some(1),
        "stale without"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_teaches_the_range_so_session_reads_ask_for_one_segment() {
    let world = World::new();
    let orders: Vec<Order> = (0..8)
        .map(|i| order(&format!("q{i}"), &format!("team-{i}"), 0))
        .collect();
    world.seed(&orders).await;
    let writer = world
        .pod(KeyStrategy::PartitionKey)
        .await
        .for_session("user-9");
    let written = upsert_with_one_item(&writer, &orders).await;

    // A reader whose first operation on the partition is a read does not know its range: the
    // session's token spans ranges, so it is not sent, and the read is the SDK's own (stale).
    let unlearned = world
        .pod(KeyStrategy::PartitionKey)
        .await
        .for_session("user-9");
    assert_eq!(
        brokered_read(&unlearned, &orders[0]).await,
        Some(orders[0].clone()),
        "no composite token is sent for an unknown range"
    );

    // A reader that queried the partition first learned its range from the query's pages.
    let reader = world
        .pod(KeyStrategy::PartitionKey)
        .await
        .for_session("user-9");
    for (o, w) in orders.iter().zip(&written) {
        let _: Vec<Order> = reader
            .query_items("SELECT * FROM c", o.pk.clone(), None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(brokered_read(&reader, o).await.as_ref(), Some(w));
    }
}
