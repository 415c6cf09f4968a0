//! The Rust Cosmos SDK's in-memory emulator (`azure_data_cosmos_driver` =1.0.0, feature
//! `__internal_in_memory_emulator`) served over HTTP on loopback, each virtual region on its own
//! port, for tests with any Cosmos SDK that speaks the gateway protocol (Python, JavaScript, the
//! Rust SDK over its HTTP transport).
//!
//! Why: the only Cosmos that runs without a network or a container image is that in-memory
//! emulator, and it plugs into the Rust SDK only. Over HTTP, every SDK can be tested against the
//! same multi-region account, with replication delay and partition splits under a test's control.
//!
//! # The account
//! One region per port: the first ([`Options::listen`]) is the write region, East US; the others
//! (West US, North Europe, ... from [`options::REGION_NAMES`]) are read regions that see writes
//! after [`Options::replication_delay`]. Each region's configured URL is its own
//! `http://127.0.0.1:PORT` endpoint, so the account (`GET /`) lists them in `writableLocations` /
//! `readableLocations` and an SDK given the first endpoint discovers the rest. Single write
//! region, Session consistency; keys are not checked (use the well-known emulator key). One
//! database and one container (partition key path `/pk`) exist from the start.
//!
//! # What the front changes (see [`quirks`])
//! Trailing slashes are stripped from request paths; responses for resources inside a container
//! get `x-ms-alt-content-path` and `x-ms-content-path`; the emulator's single-write session
//! tokens are cut to `range:version#globalLSN`.
//!
//! # Admin routes (tests only)
//! On every region's port, under [`admin::PREFIX`] (`/_emulator/`), answered in JSON; errors are
//! `{"error": "..."}` with 400 (bad parameters, unknown region), 404, 405 or 409 (the emulator
//! refused). Parameters come from the query string or a JSON object body.
//!
//! | Route | Does | Answers |
//! |---|---|---|
//! | `GET /_emulator/regions` | the regions | `{"regions":[{"name","endpoint"}]}` |
//! | `POST /_emulator/replication/pause[?region=NAME]` | stops replication into that region (default: every read region) | `{"paused":[names]}` |
//! | `POST /_emulator/replication/resume[?region=NAME]` | lets it go on, applying what queued up | `{"resumed":[names]}` |
//! | `POST /_emulator/replication/drain` | waits until every replication in flight is applied | `{"drained":true}` |
//! | `POST /_emulator/split?database=D&container=C&range=ID[&lock_ms=MS]` | splits physical partition ID at its midpoint and waits for the children | `{"children":[ids],...}` |
//! | `GET /_emulator/requests/counts` | requests answered since the start or the last reset, by region, method, status, substatus | `{"counts":[{"region","method","status","substatus","count"}]}` |
//! | `GET /_emulator/requests/log` | the latest 10,000 requests, oldest first, with the session tokens sent and returned | `{"requests":[{"region","method","path","status","substatus","request_session_token","response_session_token"}]}` |
//! | `POST /_emulator/requests/reset` | forgets the counts and the log | `{"reset":true}` |
//!
//! Admin requests are not counted. [`RunningEmulator`] offers the same controls in process.

#![warn(missing_docs)]

mod account;
pub mod admin;
mod error;
pub mod options;
pub mod quirks;
pub mod requests;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use account::Region;
pub use azure_data_cosmos_driver::in_memory_emulator::EmulatorStore;
pub use error::Error;
pub use options::Options;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::account::Account;
use crate::requests::{LoggedRequest, RequestCount};
use crate::server::RegionFront;

/// Starts the emulator.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Binds every region's port, creates the account, database and container, and serves
    /// until [`RunningEmulator::shutdown`] (or the handle is dropped). Must run inside a Tokio
    /// runtime (the emulator spawns its replications there).
    pub async fn start(options: Options) -> Result<RunningEmulator, Error> {
        let mut listeners = Vec::new();
        for addr in options.region_addresses()? {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| Error::Bind { addr, source })?;
            listeners.push((listener, bound));
        }
        let addresses: Vec<SocketAddr> = listeners.iter().map(|(_, bound)| *bound).collect();
        let account = Arc::new(Account::new(&options, &addresses)?);
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for ((listener, _), region) in listeners.into_iter().zip(&account.regions) {
            let front = Arc::new(RegionFront {
                account: Arc::clone(&account),
                name: region.name.clone(),
                base: region.endpoint.trim_end_matches('/').to_owned(),
            });
            tasks.spawn(server::serve(listener, front, stop.clone()));
        }
        Ok(RunningEmulator {
            account,
            shutdown,
            tasks,
        })
    }
}

/// A running emulator: its regions, its controls, and its shutdown. Dropping it stops serving.
pub struct RunningEmulator {
    account: Arc<Account>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for RunningEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEmulator")
            .field("regions", &self.account.regions)
            .finish_non_exhaustive()
    }
}

impl RunningEmulator {
    /// The regions, the write region first.
    pub fn regions(&self) -> &[Region] {
        &self.account.regions
    }

    /// The account endpoint: the write region's.
    pub fn endpoint(&self) -> &str {
        // `Account::new` builds one region per address and `Options` asks for at least one.
        self.account
            .regions
            .first()
            .map_or("", |region| region.endpoint.as_str())
    }

    /// The emulator's store, for what the controls here do not cover (its API is the driver's
    /// unstable one).
    pub fn store(&self) -> Arc<EmulatorStore> {
        self.account.store()
    }

    /// Creates `database` unless it exists and in it `container` (partition key path `/pk`)
    /// with `partitions` physical partitions. A container of that name is replaced: a new
    /// `_rid`, no items, LSNs starting over (what deleting and creating it again gives).
    pub async fn create_container(
        &self,
        database: &str,
        container: &str,
        partitions: u32,
    ) -> Result<(), Error> {
        self.account
            .create_container(database, container, partitions)
            .await
    }

    /// Stops replication into `region` (every read region with `None`). Returns the regions.
    pub fn pause_replication(&self, region: Option<&str>) -> Result<Vec<String>, Error> {
        self.account.pause_replication(region)
    }

    /// Lets replication into `region` (every read region with `None`) go on. Returns the
    /// regions.
    pub fn resume_replication(&self, region: Option<&str>) -> Result<Vec<String>, Error> {
        self.account.resume_replication(region)
    }

    /// Waits until every replication in flight has been applied.
    pub async fn drain_replications(&self) {
        self.account.drain_replications().await;
    }

    /// Splits physical partition `range` at its midpoint; returns the children's ids once they
    /// serve. During `lock` the parent answers 410/1007 first.
    pub async fn split_partition(
        &self,
        database: &str,
        container: &str,
        range: u32,
        lock: Duration,
    ) -> Result<Vec<u32>, Error> {
        self.account
            .split_partition(database, container, range, lock)
            .await
    }

    /// Requests answered since the start or the last reset, by region, method, status and
    /// substatus.
    pub fn request_counts(&self) -> Vec<RequestCount> {
        self.account.requests.counts()
    }

    /// The latest requests answered, oldest first.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.account.requests.log()
    }

    /// Forgets the counts and the log.
    pub fn reset_requests(&self) {
        self.account.requests.reset();
    }

    /// Stops accepting, ends every connection, and waits for the listeners to close.
    pub async fn shutdown(mut self) {
        // Receivers gone means the listeners already ended.
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
