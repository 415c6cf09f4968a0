//! What account the emulator serves: its regions, ports, replication delay and container.
//!
//! Why one struct for the library and the binary: the CLI is a thin parse into these options, so
//! a Rust test that starts the emulator in process gets exactly what the binary serves.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::Error;

/// The region names, in order: the first is the write region. `--regions N` takes the first N.
pub const REGION_NAMES: &[&str] = &[
    "East US",
    "West US",
    "North Europe",
    "West Europe",
    "Southeast Asia",
    "East Asia",
    "Central US",
    "UK South",
];

/// The default replication delay from the write region to the others: 200 ms. Long enough that
/// a read on another client right after a write (a few milliseconds later on loopback, tens on a
/// loaded CI machine) reaches a read region before the write does, so it is stale unless it
/// carries the write's session token; short enough that a client's own older writes have
/// replicated, so the tokens it keeps do not send all of its reads to the write region (with 1 s,
/// most Python SDK reads went there and came back fresh).
pub const DEFAULT_REPLICATION_DELAY: Duration = Duration::from_millis(200);

/// The account the emulator serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The first region's (the write region's) address; the others listen on the following
    /// ports. Port 0: every region gets a free port of its own.
    pub listen: SocketAddr,
    /// How many regions (1 to [`REGION_NAMES`]`.len()`), named from [`REGION_NAMES`].
    pub regions: usize,
    /// The delay before a write in the write region is visible in the others.
    pub replication_delay: Duration,
    /// The database created at start.
    pub database: String,
    /// The container created at start in that database, partition key path `/pk`.
    pub container: String,
    /// The container's physical partitions.
    pub partitions: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            regions: 2,
            replication_delay: DEFAULT_REPLICATION_DELAY,
            database: "shop".to_owned(),
            container: "orders".to_owned(),
            partitions: 2,
        }
    }
}

impl Options {
    /// The address each region listens on, in region order, or why there is none.
    pub fn region_addresses(&self) -> Result<Vec<SocketAddr>, Error> {
        if self.regions == 0 || self.regions > REGION_NAMES.len() {
            return Err(Error::Options(format!(
                "regions must be 1 to {}, not {}",
                REGION_NAMES.len(),
                self.regions
            )));
        }
        if self.partitions == 0 {
            return Err(Error::Options("partitions must be at least 1".to_owned()));
        }
        if self.database.is_empty() || self.container.is_empty() {
            return Err(Error::Options(
                "database and container need a name".to_owned(),
            ));
        }
        (0..self.regions)
            .map(|i| {
                if self.listen.port() == 0 {
                    return Ok(self.listen);
                }
                u16::try_from(i)
                    .ok()
                    .and_then(|i| self.listen.port().checked_add(i))
                    .map(|port| SocketAddr::new(self.listen.ip(), port))
                    .ok_or_else(|| {
                        Error::Options(format!(
                            "{} regions from port {} run past port 65535",
                            self.regions,
                            self.listen.port()
                        ))
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_take_consecutive_ports_or_each_a_free_one() {
        let options = Options {
            listen: "127.0.0.1:8081".parse().unwrap(),
            regions: 3,
            ..Options::default()
        };
        let ports: Vec<u16> = options
            .region_addresses()
            .unwrap()
            .iter()
            .map(|a| a.port())
            .collect();
        assert_eq!(ports, vec![8081, 8082, 8083]);
        let ports: Vec<u16> = Options::default()
            .region_addresses()
            .unwrap()
            .iter()
            .map(|a| a.port())
            .collect();
        assert_eq!(ports, vec![0, 0]);
    }

    #[test]
    fn impossible_accounts_are_refused() {
        let too_many = Options {
            regions: REGION_NAMES.len() + 1,
            ..Options::default()
        };
        assert!(matches!(
            too_many.region_addresses(),
            Err(Error::Options(_))
        ));
        let none = Options {
            regions: 0,
            ..Options::default()
        };
        assert!(matches!(none.region_addresses(), Err(Error::Options(_))));
        let past_the_end = Options {
            listen: "127.0.0.1:65535".parse().unwrap(),
            ..Options::default()
        };
        assert!(matches!(
            past_the_end.region_addresses(),
            Err(Error::Options(_))
        ));
        let no_partition = Options {
            partitions: 0,
            ..Options::default()
        };
        assert!(matches!(
            no_partition.region_addresses(),
            Err(Error::Options(_))
        ));
    }
}
