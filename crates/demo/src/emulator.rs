//! The emulated account: two regions, delayed replication, one container; and "pods", each its
//! own `CosmosClient`.
//!
//! Why each pod is its own `CosmosClient`: a client keeps every session token it has seen, and
//! that cache is exactly what pods do not share. Pods are created fresh for each phase so that no
//! phase inherits tokens from another.

use std::sync::Arc;
use std::time::Duration;

use azure_core::http::Url;
use azure_data_cosmos::options::{PartitionFailoverOptions, Region, RoutingStrategy};
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, ContainerClient, CosmosClient, CosmosClientBuilder,
    CosmosRuntimeBuilder,
};
pub use azure_data_cosmos_driver::in_memory_emulator::RequestObserver;
use azure_data_cosmos_driver::in_memory_emulator::{
    ConsistencyLevel, ContainerConfig, EmulatorStore, InMemoryEmulatorHttpClient,
    ReplicationConfig, VirtualAccountConfig, VirtualRegion, WriteMode,
};

pub const DATABASE: &str = "shop";
pub const CONTAINER: &str = "orders";
const EAST_URL: &str = "https://eastus.emulator.local";
const WEST_URL: &str = "https://westus.emulator.local";
/// The emulator does not check keys; the SDK wants one.
const KEY: &str = "dGVzdGtleQ==";

/// Why the emulated account could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("emulator configuration: {0}")]
    Config(String),
    #[error("Cosmos SDK: {0}")]
    Sdk(#[from] azure_data_cosmos::CosmosError),
}

/// The shape of the emulated account.
#[derive(Debug, Clone, Copy)]
pub struct AccountShape {
    /// Delay before a write in East US is visible in West US.
    pub replication_delay: Duration,
    /// Physical partitions of the container.
    pub partitions: u32,
}

/// One emulated account shared by every pod.
pub struct EmulatedAccount {
    emulator: Arc<InMemoryEmulatorHttpClient>,
    shape: AccountShape,
}

impl EmulatedAccount {
    pub fn new(shape: AccountShape) -> Result<Self, EmulatorError> {
        Self::build(shape, None)
    }

    /// The same account, with `observer` shown every request the emulator receives (tests
    /// count requests and look at the session token each one carried).
    pub fn with_observer(
        shape: AccountShape,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<Self, EmulatorError> {
        Self::build(shape, Some(observer))
    }

    fn build(
        shape: AccountShape,
        observer: Option<Arc<dyn RequestObserver>>,
    ) -> Result<Self, EmulatorError> {
        let url = |s: &str| Url::parse(s).map_err(|e| EmulatorError::Config(e.to_string()));
        let config = VirtualAccountConfig::new(vec![
            VirtualRegion::new("East US", url(EAST_URL)?),
            VirtualRegion::new("West US", url(WEST_URL)?),
        ])
        .map_err(|e| EmulatorError::Config(e.to_string()))?
        .with_write_mode(WriteMode::Single)
        .with_consistency(ConsistencyLevel::Session)
        .with_replication_config(ReplicationConfig::fixed(shape.replication_delay));
        let mut emulator = InMemoryEmulatorHttpClient::new(config);
        if let Some(observer) = observer {
            emulator = emulator.with_request_observer(observer);
        }
        let emulator = Arc::new(emulator);
        let store = emulator.store();
        store.create_database(DATABASE);
        let account = Self { emulator, shape };
        account.create_container(CONTAINER)?;
        Ok(account)
    }

    /// Creates container `name` in the database, with the account's partition count and the
    /// partition key path `/pk`. After the container was deleted, this is its recreation: a new
    /// resource id (`_rid`) under the same name, with LSNs starting over.
    pub fn create_container(&self, name: &str) -> Result<(), EmulatorError> {
        let partition_key = serde_json::from_value(serde_json::json!({
            "paths": ["/pk"], "kind": "Hash", "version": 2
        }))
        .map_err(|e| EmulatorError::Config(e.to_string()))?;
        let container = ContainerConfig::new()
            .with_partition_count(self.shape.partitions)
            .with_throughput(10_000)
            .build()
            .map_err(|e| EmulatorError::Config(e.to_string()))?;
        self.emulator.store().create_container_with_config(
            DATABASE,
            name,
            partition_key,
            container,
        );
        Ok(())
    }

    pub fn store(&self) -> Arc<EmulatorStore> {
        self.emulator.store()
    }

    /// A new pod: its own `CosmosClient` (own session cache), preferring West US, where reads
    /// may be behind; writes go to East US, the write region. `partition_circuit_breaker` is the
    /// SDK's per-partition circuit breaker (on by default in the SDK): it counts 404/1002 answers
    /// and, after 10 on a partition, routes that client's reads of the partition to the write
    /// region for minutes.
    pub async fn new_pod(
        &self,
        partition_circuit_breaker: bool,
    ) -> Result<ContainerClient, EmulatorError> {
        Ok(self
            .new_client(partition_circuit_breaker)
            .await?
            .database_client(DATABASE)
            .container_client(CONTAINER, None)
            .await?)
    }

    /// A new pod's `CosmosClient` (see [`Self::new_pod`]), for what needs more than one
    /// container client: resolving the container again after it was recreated.
    pub async fn new_client(
        &self,
        partition_circuit_breaker: bool,
    ) -> Result<CosmosClient, EmulatorError> {
        let endpoint: AccountEndpoint = EAST_URL
            .parse()
            .map_err(|e: azure_data_cosmos::CosmosError| EmulatorError::Config(e.to_string()))?;
        let account = AccountReference::with_authentication_key(
            endpoint,
            azure_core::credentials::Secret::new(KEY),
        );
        let runtime = CosmosRuntimeBuilder::from(self.emulator.runtime_builder())
            .build()
            .await?;
        let failover = PartitionFailoverOptions::builder()
            .with_circuit_breaker_enabled(partition_circuit_breaker)
            .build()?;
        Ok(CosmosClientBuilder::new()
            .with_runtime(runtime)
            .with_partition_failover_options(failover)
            .build(
                account,
                RoutingStrategy::PreferredRegions(vec![Region::WEST_US, Region::EAST_US]),
            )
            .await?)
    }
}
