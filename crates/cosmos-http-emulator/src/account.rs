//! The emulated account behind every region's port, and the test controls on it.
//!
//! Why one shared account: the regions are views of one in-memory store (the emulator routes a
//! request to a region by the URL it was sent to), so every listener holds the same `Account` and
//! the controls (pause, resume, drain, split) act on all of them at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use azure_core::http::{Method, Request, Url};
use azure_data_cosmos_driver::in_memory_emulator::{
    ConsistencyLevel, ContainerConfig, EmulatorStore, InMemoryEmulatorHttpClient,
    ReplicationConfig, VirtualAccountConfig, VirtualRegion, WriteMode,
};
use azure_data_cosmos_driver::models::PartitionKeyDefinition;
use serde::Serialize;

use crate::options::REGION_NAMES;
use crate::requests::RequestLog;
use crate::{Error, Options};

/// One virtual region: its name and the endpoint clients call it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Region {
    /// The region's name, as SDKs match preferred locations (`"West US"`).
    pub name: String,
    /// Its endpoint, `http://127.0.0.1:PORT/`; the first region's is the account endpoint.
    pub endpoint: String,
}

/// The emulator, its regions and what it answered.
pub(crate) struct Account {
    pub(crate) emulator: InMemoryEmulatorHttpClient,
    pub(crate) regions: Vec<Region>,
    pub(crate) requests: RequestLog,
}

impl Account {
    /// Builds the account for listeners bound at `addresses` (in region order) and creates the
    /// database and the container.
    pub(crate) fn new(options: &Options, addresses: &[SocketAddr]) -> Result<Self, Error> {
        let regions: Vec<Region> = REGION_NAMES
            .iter()
            .zip(addresses)
            .map(|(name, address)| Region {
                name: (*name).to_owned(),
                endpoint: endpoint(*address),
            })
            .collect();
        let virtual_regions = regions
            .iter()
            .map(|region| {
                let url = Url::parse(&region.endpoint)
                    .map_err(|e| Error::Config(format!("{}: {e}", region.endpoint)))?;
                Ok(VirtualRegion::new(&region.name, url))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let replication = if options.replication_delay.is_zero() {
            ReplicationConfig::immediate()
        } else {
            ReplicationConfig::fixed(options.replication_delay)
        };
        let config = VirtualAccountConfig::new(virtual_regions)
            .map_err(|e| Error::Config(e.to_string()))?
            .with_write_mode(WriteMode::Single)
            .with_consistency(ConsistencyLevel::Session)
            .with_replication_config(replication);
        let emulator = InMemoryEmulatorHttpClient::try_new(config)
            .map_err(|e| Error::Config(e.to_string()))?;
        let account = Self {
            emulator,
            regions,
            requests: RequestLog::default(),
        };
        account.store().create_database(&options.database);
        account.add_container(&options.database, &options.container, options.partitions)?;
        Ok(account)
    }

    /// Creates `database` unless it exists and, in it, `container` (see [`Self::add_container`]).
    pub(crate) async fn create_container(
        &self,
        database: &str,
        container: &str,
        partitions: u32,
    ) -> Result<(), Error> {
        // Creating a database again gives it a new `_rid` under its containers: only if missing.
        if !self.database_exists(database).await? {
            self.store().create_database(database);
        }
        self.add_container(database, container, partitions)
    }

    /// Whether `database` exists, asked of the emulator as a client would (its store has no
    /// public lookup).
    async fn database_exists(&self, database: &str) -> Result<bool, Error> {
        let base = self.regions.first().map_or("", |r| r.endpoint.as_str());
        let url = Url::parse(&format!("{base}dbs/{database}"))
            .map_err(|e| Error::Options(format!("database {database:?}: {e}")))?;
        let response = self
            .emulator
            .execute_request(&Request::new(url, Method::Get))
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(response.status().is_success())
    }

    /// Creates `container` in the existing `database` with `partitions` physical partitions and
    /// the partition key path `/pk`; a container of that name is replaced (a new `_rid`, no
    /// items, LSNs starting over: what deleting and creating it again gives).
    fn add_container(&self, database: &str, container: &str, partitions: u32) -> Result<(), Error> {
        if partitions == 0 {
            return Err(Error::Options("partitions must be at least 1".to_owned()));
        }
        let store = self.emulator.store();
        let partition_key: PartitionKeyDefinition = serde_json::from_value(serde_json::json!({
            "paths": ["/pk"], "kind": "Hash", "version": 2
        }))
        .map_err(|e| Error::Config(format!("partition key definition: {e}")))?;
        let config = ContainerConfig::new()
            .with_partition_count(partitions)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        store.create_container_with_config(database, container, partition_key, config);
        Ok(())
    }

    pub(crate) fn store(&self) -> Arc<EmulatorStore> {
        self.emulator.store()
    }

    /// The regions `name` designates: that one, or with `None` every region but the write
    /// region (the ones replication feeds).
    fn targets(&self, name: Option<&str>) -> Result<Vec<String>, Error> {
        match name {
            Some(name) => self
                .regions
                .iter()
                .find(|region| region.name.eq_ignore_ascii_case(name))
                .map(|region| vec![region.name.clone()])
                .ok_or_else(|| Error::UnknownRegion {
                    name: name.to_owned(),
                    known: self
                        .regions
                        .iter()
                        .map(|region| region.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            None => Ok(self
                .regions
                .iter()
                .skip(1)
                .map(|region| region.name.clone())
                .collect()),
        }
    }

    /// Stops replication into `region` (every read region with `None`); writes queue up until
    /// [`Self::resume_replication`]. Returns the regions paused.
    pub(crate) fn pause_replication(&self, region: Option<&str>) -> Result<Vec<String>, Error> {
        let targets = self.targets(region)?;
        let store = self.store();
        for target in &targets {
            store.pause_replication(target);
        }
        Ok(targets)
    }

    /// Lets replication into `region` (every read region with `None`) go on, applying what
    /// queued up. Returns the regions resumed.
    pub(crate) fn resume_replication(&self, region: Option<&str>) -> Result<Vec<String>, Error> {
        let targets = self.targets(region)?;
        let store = self.store();
        for target in &targets {
            store.resume_replication(target);
        }
        Ok(targets)
    }

    /// Waits until every replication in flight has been applied (those into a paused region
    /// stay queued).
    pub(crate) async fn drain_replications(&self) {
        self.store().drain_pending_replications().await;
    }

    /// Splits physical partition `range` of `database`/`container` at its midpoint, waits until
    /// the two children serve, and returns their ids. `lock` is how long the parent answers
    /// 410/1007 (splitting) first.
    pub(crate) async fn split_partition(
        &self,
        database: &str,
        container: &str,
        range: u32,
        lock: Duration,
    ) -> Result<Vec<u32>, Error> {
        let failed = |message: String| Error::Split {
            database: database.to_owned(),
            container: container.to_owned(),
            range,
            message,
        };
        let store = self.store();
        let epk = store
            .midpoint_split_epk(database, container, range)
            .map_err(|e| failed(e.to_string()))?;
        store
            .split_partition_and_wait(database, container, range, epk, lock)
            .await
            .map_err(|e| failed(e.to_string()))
    }
}

/// The endpoint clients use for a listener bound at `address`: an unspecified address
/// (`0.0.0.0`, `::`) is called on loopback.
fn endpoint(address: SocketAddr) -> String {
    let mut address = address;
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{address}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_urls_on_the_bound_address() {
        assert_eq!(
            endpoint("127.0.0.1:8081".parse().unwrap()),
            "http://127.0.0.1:8081/"
        );
        assert_eq!(
            endpoint("0.0.0.0:8081".parse().unwrap()),
            "http://127.0.0.1:8081/"
        );
        assert_eq!(
            endpoint("[::1]:8081".parse().unwrap()),
            "http://[::1]:8081/"
        );
    }

    fn account(regions: usize) -> Account {
        let addresses: Vec<SocketAddr> = (0..regions)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)))
            .collect();
        let options = Options {
            regions,
            ..Options::default()
        };
        Account::new(&options, &addresses).unwrap()
    }

    #[tokio::test]
    async fn controls_name_the_read_regions_or_the_one_asked_for() {
        let account = account(3);
        assert_eq!(
            account.pause_replication(None).unwrap(),
            vec!["West US".to_owned(), "North Europe".to_owned()]
        );
        assert_eq!(
            account.resume_replication(Some("west us")).unwrap(),
            vec!["West US".to_owned()]
        );
        let unknown = account.pause_replication(Some("Mars")).unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("East US, West US, North Europe"),
            "{unknown}"
        );
    }

    #[tokio::test]
    async fn a_split_returns_two_children_and_a_missing_range_is_an_error() {
        let account = account(2);
        let children = account
            .split_partition("shop", "orders", 0, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(children.len(), 2, "{children:?}");
        assert!(!children.contains(&0));
        let missing = account
            .split_partition("shop", "orders", 0, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(
            matches!(missing, Error::Split { range: 0, .. }),
            "{missing}"
        );
    }
}
