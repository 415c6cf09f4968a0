//! A real Redis Cluster on loopback: masters with replicas, created with `redis-cli --cluster
//! create`, whose masters a test kills, pauses and restarts and whose slots it moves.
//!
//! Why real processes: what a cluster client must survive (MOVED and ASK while slots move,
//! CLUSTERDOWN while a dead master's replica is being promoted, a restarted master coming back
//! as a replica) is the servers' behaviour, which no fake reproduces. Every operation returns
//! once the cluster has converged again, seen from every running node; none sleeps for a fixed
//! time.
//!
//! Start it once per test binary (see [`RedisCluster`]): the processes are cleaned up when the
//! value is dropped or, for a value in a `static`, when the test process ends.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::free_ports;
use crate::probe::{self, Role};
use crate::redis_server::RedisServer;
use crate::sandbox::Sandbox;
use crate::tls::{TlsFiles, TlsPorts};

/// Hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// How long the cluster has to form at start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failover, a restart or a reshard has to converge.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at starting with fresh ports when a node cannot bind its port (taken meanwhile).
const START_ATTEMPTS: usize = 3;
/// Lines of each node's log in a failure message.
const LOG_LINES: usize = 15;

/// How a [`RedisCluster`] is built.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Masters; `redis-cli --cluster create` needs at least 3. Default 3.
    pub masters: usize,
    /// Replicas of each master. Default 1.
    pub replicas_per_master: usize,
    /// `cluster-node-timeout`: how long a node may not answer before it is suspected. Default
    /// 500 ms, with which a killed master's replica serves its slots 1.3 to 2 s after the kill.
    pub node_timeout: Duration,
    /// More `redis-server` arguments for every node, for example `--cluster-require-full-coverage
    /// no` (not a password: the kit's own commands send none).
    pub extra_args: Vec<String>,
    /// TLS: a TLS port beside each node's plain port, the cluster bus and replication over
    /// TLS ([`RedisCluster::tls_url`] reaches every node over TLS). Default `None`.
    pub tls: Option<TlsFiles>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            masters: 3,
            replicas_per_master: 1,
            node_timeout: Duration::from_millis(500),
            extra_args: Vec::new(),
            tls: None,
        }
    }
}

/// A node's role, as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterRole {
    /// A master (it serves the slots in [`ClusterNode::slots`], if any).
    Master,
    /// A replica of the master with this node id, which listens on `master_port` (`None` if the
    /// cluster does not know that master's address).
    Replica {
        /// The node id of the master it follows.
        master_id: String,
        /// That master's port, if it is one of the cluster's nodes.
        master_port: Option<u16>,
    },
}

/// One node of the cluster, as one node's `CLUSTER NODES` showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node id (40 hexadecimal characters; kept across restarts: the node's config file
    /// survives).
    pub id: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Master or replica.
    pub role: ClusterRole,
    /// The slots it serves, in ascending ranges (empty for a replica, and for a master that lost
    /// its slots).
    pub slots: Vec<RangeInclusive<u16>>,
    /// Flagged `fail` (agreed down) by the node asked.
    pub failed: bool,
    /// The kit's process for it runs and is not paused (it was not killed, or was restarted).
    pub running: bool,
}

impl ClusterNode {
    /// Whether it is a master.
    pub fn is_master(&self) -> bool {
        self.role == ClusterRole::Master
    }

    /// Whether it is a replica of the master with node id `master_id`.
    pub fn follows(&self, master_id: &str) -> bool {
        matches!(&self.role, ClusterRole::Replica { master_id: id, .. } if id == master_id)
    }

    /// Whether it serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|range| range.contains(&slot))
    }

    /// How many slots it serves.
    pub fn slot_count(&self) -> usize {
        self.slots.iter().map(|range| range.len()).sum()
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:<port>`, to talk to this node alone.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl fmt::Display for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match &self.role {
            ClusterRole::Master => "master".to_string(),
            ClusterRole::Replica { master_port, .. } => match master_port {
                Some(port) => format!("replica of :{port}"),
                None => "replica".to_string(),
            },
        };
        write!(
            f,
            ":{} {} {}",
            self.port,
            &self.id[..8.min(self.id.len())],
            role
        )?;
        if !self.slots.is_empty() {
            let ranges: Vec<String> = self
                .slots
                .iter()
                .map(|r| format!("{}-{}", r.start(), r.end()))
                .collect();
            write!(f, " [{}]", ranges.join(","))?;
        }
        if self.failed {
            write!(f, " fail")?;
        }
        if !self.running {
            write!(f, " (not running)")?;
        }
        Ok(())
    }
}

/// A Redis Cluster of `redis-server` processes on free loopback ports: by default 3 masters
/// with 1 replica each, `cluster-node-timeout` 500 ms, nothing saved to disk (a restarted node
/// keeps its identity through its `nodes-<port>.conf`, not its data).
///
/// Every method takes `&self`, so the cluster can live in a `static` and be started once per
/// test binary:
///
/// ```no_run
/// use std::sync::OnceLock;
/// use test_kit::RedisCluster;
///
/// fn cluster() -> &'static RedisCluster {
///     static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
///     CLUSTER.get_or_init(RedisCluster::start)
/// }
///
/// #[test]
/// fn survives_a_failover() {
///     let cluster = cluster();
///     let _only_me = cluster.exclusive(); // this test changes the topology
///     cluster.heal(); // whatever an earlier test killed runs again
///     let old = cluster.kill_master_of_slot(0);
///     let new = cluster.wait_for_failover(&old);
///     assert_ne!(new.id, old.id);
/// }
///
/// // The waits block the calling thread (they poll every 25 ms): an async test that runs load
/// // meanwhile calls them on a blocking thread, and takes the lock with `exclusive_async`.
/// #[tokio::test(flavor = "multi_thread")]
/// async fn survives_a_failover_under_load() {
///     let _only_me = cluster().exclusive_async().await;
///     tokio::task::spawn_blocking(|| cluster().heal()).await.unwrap();
///     // ... start the load tasks ...
///     let new_master = tokio::task::spawn_blocking(|| {
///         let old = cluster().kill_master_of_slot(0);
///         cluster().wait_for_failover(&old)
///     })
///     .await
///     .unwrap();
///     // ... stop the load, check what it saw ...
/// }
/// ```
///
/// Dropped (or, in a `static`, when the test process ends): every process is killed and the
/// temporary directory removed.
///
/// Methods panic when the cluster does not converge in time (30 s), with what was seen last and
/// the tail of every node's log; a cluster that does not converge is a broken test machine.
pub struct RedisCluster {
    /// The nodes in creation order (ports fixed for the cluster's life).
    nodes: Vec<Mutex<RedisServer>>,
    ports: Vec<u16>,
    tls: TlsPorts,
    options: ClusterOptions,
    exclusive: tokio::sync::Mutex<()>,
    startup: Duration,
    /// Last: dropped after the nodes are killed.
    sandbox: Sandbox,
}

impl RedisCluster {
    /// Starts the default cluster (3 masters, 1 replica each) and returns once every node sees
    /// the cluster `ok` with all 16384 slots served and every replica's link up.
    ///
    /// # Panics
    ///
    /// If it does not start (see [`Self::try_start_with`]).
    pub fn start() -> Self {
        Self::start_with(ClusterOptions::default())
    }

    /// [`Self::start`] with other options.
    ///
    /// # Panics
    ///
    /// If it does not start (see [`Self::try_start_with`]).
    pub fn start_with(options: ClusterOptions) -> Self {
        Self::try_start_with(options).unwrap_or_else(|error| panic!("{error}"))
    }

    /// [`Self::start_with`] that returns the error: `redis-server` or `redis-cli` cannot be run
    /// (`scripts/install-test-deps` installs both), fewer than 3 masters, `redis-cli --cluster
    /// create` fails, or the cluster does not converge within 30 seconds.
    pub fn try_start_with(options: ClusterOptions) -> io::Result<Self> {
        if options.masters < 3 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a Redis Cluster needs at least 3 masters (redis-cli --cluster create)",
            ));
        }
        let began = Instant::now();
        let sandbox = Sandbox::new("cluster")?;
        let count = options.masters * (1 + options.replicas_per_master);
        let mut attempt = 0;
        let (nodes, ports, tls) = loop {
            attempt += 1;
            match Self::spawn_nodes(&sandbox, &options, count) {
                Ok(started) => break started,
                Err(error) if attempt < START_ATTEMPTS => {
                    eprintln!("test kit: cluster nodes did not start ({error}); new ports");
                }
                Err(error) => return Err(error),
            }
        };
        let mut cluster = Self {
            nodes: nodes.into_iter().map(Mutex::new).collect(),
            ports,
            tls,
            options,
            exclusive: tokio::sync::Mutex::new(()),
            startup: Duration::ZERO,
            sandbox,
        };
        cluster.create()?;
        let shape = (cluster.options.masters, cluster.options.replicas_per_master);
        cluster
            .converged(START_TIMEOUT, "the new cluster to converge", |nodes| {
                check_shape(nodes, shape)
            })
            .map_err(io::Error::other)?;
        cluster.startup = began.elapsed();
        Ok(cluster)
    }

    /// Starts `count` nodes on fresh ports (a data port and a cluster bus port each: the default
    /// bus port, port + 10000, may be past 65535 for an ephemeral port).
    fn spawn_nodes(
        sandbox: &Sandbox,
        options: &ClusterOptions,
        count: usize,
    ) -> io::Result<(Vec<RedisServer>, Vec<u16>, TlsPorts)> {
        let all = free_ports(count + TlsPorts::needed(options.tls.as_ref(), count));
        let (ports, rest) = all.split_at(count);
        let (bus_ports, tls_ports) = rest.split_at(count);
        let tls = TlsPorts::new(options.tls.as_ref(), ports, tls_ports);
        let dir = sandbox.dir();
        let mut nodes = Vec::with_capacity(count);
        for (&port, &bus_port) in ports.iter().zip(bus_ports) {
            let mut args: Vec<String> = vec![
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                dir.join(format!("nodes-{port}.conf")).display().to_string(),
                "--cluster-port".into(),
                bus_port.to_string(),
                "--cluster-node-timeout".into(),
                options.node_timeout.as_millis().to_string(),
                "--dir".into(),
                dir.display().to_string(),
                "--logfile".into(),
                dir.join(format!("{port}.log")).display().to_string(),
                "--loglevel".into(),
                "notice".into(),
                // A full sync is diskless (nothing is saved to disk), and a master waits 5 s by
                // default for more replicas to share it.
                "--repl-diskless-sync-delay".into(),
                "0".into(),
                // Nothing on disk, so that a restarted server comes back empty: a replica loads a
                // full sync from the socket, not through a dump file that a restart would load;
                // any dump is the server's own.
                "--repl-diskless-load".into(),
                "swapdb".into(),
                "--dbfilename".into(),
                format!("dump-{port}.rdb"),
            ];
            args.extend(tls.args(port, true));
            args.extend(options.extra_args.iter().cloned());
            // A node that fails here is dropped with `nodes`, which kills the others.
            nodes.push(RedisServer::start_node(port, None, args, sandbox.group())?);
        }
        Ok((nodes, ports.to_vec(), tls))
    }

    /// `redis-cli --cluster create` over every node.
    fn create(&self) -> io::Result<()> {
        let mut command = Command::new("redis-cli");
        command.arg("--cluster").arg("create");
        command.args(self.ports.iter().map(|port| format!("127.0.0.1:{port}")));
        command
            .arg("--cluster-replicas")
            .arg(self.options.replicas_per_master.to_string())
            .arg("--cluster-yes");
        run_redis_cli(&mut command).map(drop)
    }

    /// How long [`Self::start`] took, from the first process started to the converged cluster.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,...`: every node as a seed, in creation
    /// order (the broker's cluster URL form).
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// `rediss+cluster://127.0.0.1:<tls1>,...`: every node's TLS port as a seed (the cluster
    /// then names only TLS ports to the client).
    ///
    /// # Panics
    ///
    /// If the cluster was started without [`ClusterOptions::tls`].
    pub fn tls_url(&self) -> String {
        format!("rediss+cluster://{}", self.tls.seeds(&self.ports))
    }

    /// `redis://127.0.0.1:<port>` of every node, in creation order (seeds for a client such as
    /// `redis::cluster::ClusterClient`).
    pub fn node_urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// Every node's port, in creation order (fixed for the cluster's life).
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The options it was started with.
    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// A lock for tests that share this cluster and change or depend on its topology: hold it
    /// for the whole test so no other test kills or moves anything meanwhile. A test that
    /// panicked while holding it releases it (no poisoning). For a synchronous test; an async
    /// test takes [`Self::exclusive_async`].
    ///
    /// # Panics
    ///
    /// If called on a thread that runs an async runtime.
    pub fn exclusive(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.exclusive.blocking_lock()
    }

    /// [`Self::exclusive`] for an async test (a guard that may be held across `.await`).
    pub async fn exclusive_async(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.exclusive.lock().await
    }

    /// Every node, as the first running node that answers sees them now (no waiting: during a
    /// failover this view may be stale or disagree with another node's).
    ///
    /// # Panics
    ///
    /// If no running node answers CLUSTER NODES.
    pub fn nodes(&self) -> Vec<ClusterNode> {
        let running = self.running_ports();
        let mut errors = Vec::new();
        for port in running.iter().copied() {
            match self.view_of(port) {
                Ok(view) => return annotate(view, &running),
                Err(error) => errors.push(error),
            }
        }
        panic!("no running cluster node answers CLUSTER NODES: {errors:?}");
    }

    /// The masters that serve slots, by their first slot.
    ///
    /// # Panics
    ///
    /// As [`Self::nodes`].
    pub fn masters(&self) -> Vec<ClusterNode> {
        let mut masters: Vec<ClusterNode> = self
            .nodes()
            .into_iter()
            .filter(|node| node.is_master() && !node.slots.is_empty())
            .collect();
        masters.sort_by_key(|node| node.slots.first().map(|range| *range.start()));
        masters
    }

    /// The node on `port`, as [`Self::nodes`] sees it.
    ///
    /// # Panics
    ///
    /// If `port` is not a node of this cluster, or as [`Self::nodes`].
    pub fn node(&self, port: u16) -> ClusterNode {
        self.nodes()
            .into_iter()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("port {port} is not a node of this cluster"))
    }

    /// The slot of `key` (CLUSTER KEYSLOT, so hash tags count as Redis counts them).
    ///
    /// # Panics
    ///
    /// If no running node answers.
    pub fn slot_for_key(&self, key: &str) -> u16 {
        let mut errors = Vec::new();
        for port in self.running_ports() {
            let slot = probe::connect(port, None).and_then(|mut connection| {
                probe::query(
                    &mut connection,
                    port,
                    redis::cmd("CLUSTER").arg("KEYSLOT").arg(key),
                )
            });
            match slot {
                Ok(slot) => return slot,
                Err(error) => errors.push(error),
            }
        }
        panic!("no running cluster node answers CLUSTER KEYSLOT: {errors:?}");
    }

    /// The master that serves `key`'s slot, as [`Self::nodes`] sees it now.
    ///
    /// # Panics
    ///
    /// If no node serves the slot (the cluster is not `ok`), or no running node answers.
    pub fn master_for_key(&self, key: &str) -> ClusterNode {
        self.master_of_slot(self.slot_for_key(key))
    }

    /// The master that serves `slot`, as [`Self::nodes`] sees it now.
    ///
    /// # Panics
    ///
    /// If no node serves it, or no running node answers.
    pub fn master_of_slot(&self, slot: u16) -> ClusterNode {
        self.nodes()
            .into_iter()
            .find(|node| node.is_master() && node.serves(slot))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// SIGKILL to the node on `port` (a crash: it answers nothing from now on); returns at once,
    /// before the cluster notices. Does nothing if it is not running.
    ///
    /// # Panics
    ///
    /// If `port` is not a node of this cluster.
    pub fn kill(&self, port: u16) {
        self.server(port).kill();
    }

    /// Kills the master that serves `slot` and returns it as it was just before (its `slots`
    /// are what [`Self::wait_for_failover`] waits to see served by its replica).
    ///
    /// # Panics
    ///
    /// If no master serves `slot`, or no running node answers.
    pub fn kill_master_of_slot(&self, slot: u16) -> ClusterNode {
        let mut master = self.master_of_slot(slot);
        self.kill(master.port);
        master.running = false;
        master
    }

    /// SIGSTOP to the node on `port`: it keeps its connections but answers nothing, and the
    /// cluster fails it over after `node_timeout` as if it had died, until [`Self::resume`].
    ///
    /// # Panics
    ///
    /// If `port` is not a running node of this cluster.
    pub fn pause(&self, port: u16) {
        self.server(port).pause();
    }

    /// SIGCONT to a paused node: it answers again (a paused master that was failed over learns it
    /// lost its slots and becomes a replica; [`Self::wait_settled`] waits for that).
    ///
    /// # Panics
    ///
    /// If `port` is not a running node of this cluster.
    pub fn resume(&self, port: u16) {
        self.server(port).resume();
    }

    /// Waits until the slots `old_master` served are served by another running master, and the
    /// cluster is `ok` again on every running node with all slots served; returns that master.
    ///
    /// # Panics
    ///
    /// If `old_master` served no slots, or that state is not reached within 30 seconds (for
    /// example: it had no running replica).
    pub fn wait_for_failover(&self, old_master: &ClusterNode) -> ClusterNode {
        let Some(first) = old_master.slots.first().map(|range| *range.start()) else {
            panic!("{old_master} served no slots: no failover to wait for");
        };
        let what = format!("a replica of {old_master} to take over its slots");
        self.converged(CONVERGE_TIMEOUT, &what, |nodes| {
            let owner = nodes
                .iter()
                .find(|node| node.is_master() && node.serves(first))
                .ok_or_else(|| format!("slot {first} has no master"))?;
            if owner.id == old_master.id {
                return Err(format!("slot {first} still served by {owner}"));
            }
            let all_moved = old_master.slots.iter().all(|range| {
                owner
                    .slots
                    .iter()
                    .any(|own| own.start() <= range.start() && range.end() <= own.end())
            });
            if !all_moved {
                return Err(format!("{owner} serves only part of {old_master}'s slots"));
            }
            Ok(owner.clone())
        })
        .unwrap_or_else(|error| self.fail(&error))
    }

    /// Starts the node on `port` again on the same port with the same identity (its
    /// `nodes-<port>.conf`), empty; returns once it has rejoined and the cluster has converged
    /// (a master that was failed over comes back as a replica of its successor). Returns the
    /// node as it is then.
    ///
    /// # Panics
    ///
    /// If it does not start or the cluster does not converge within 30 seconds.
    pub fn restart(&self, port: u16) -> ClusterNode {
        self.server(port).restart();
        self.wait_settled()
            .into_iter()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("the restarted node :{port} is not in the cluster"))
    }

    /// Resumes every paused node, waits for the failover of a killed master that has a running
    /// replica, restarts every node that is not running, then waits as [`Self::wait_settled`]
    /// does. For a test that shares the cluster with tests that kill nodes: it starts from a
    /// whole cluster. Masters may have moved (a replica promoted stays master).
    ///
    /// # Panics
    ///
    /// As [`Self::restart`].
    pub fn heal(&self) -> Vec<ClusterNode> {
        for node in &self.nodes {
            let node = lock(node);
            if node.is_running() && !node.is_serving() {
                node.resume();
            }
        }
        let running = self.running_ports();
        if running.len() < self.ports.len() {
            // A killed master restarted before its replica took over would come back empty
            // with its slots: wait for the failover first.
            let nodes = self.nodes();
            for dead in nodes
                .iter()
                .filter(|n| !n.running && n.is_master() && !n.slots.is_empty())
            {
                let replica_runs = nodes.iter().any(|n| n.running && n.follows(&dead.id));
                if replica_runs {
                    self.wait_for_failover(dead);
                }
            }
        }
        for node in &self.nodes {
            let mut node = lock(node);
            if !node.is_running() {
                node.restart();
            }
        }
        self.wait_settled()
    }

    /// Waits until every running node sees the cluster `ok` with all 16384 slots served by
    /// running masters, every running node agrees on who serves what and who is a replica of
    /// whom, no running node is flagged failed, no slot is being migrated, and every running
    /// replica's link to its master is up. Returns the nodes then.
    ///
    /// # Panics
    ///
    /// If that is not reached within 30 seconds.
    pub fn wait_settled(&self) -> Vec<ClusterNode> {
        self.converged(CONVERGE_TIMEOUT, "the cluster to converge", |nodes| {
            Ok(nodes.to_vec())
        })
        .unwrap_or_else(|error| self.fail(&error))
    }

    /// Moves `count` slots from the master on `from` to the master on `to` with `redis-cli
    /// --cluster reshard ... --cluster-yes` (keys migrated with MIGRATE, so clients see ASK and
    /// then MOVED); returns the slots moved once every running node agrees that `to` serves them.
    /// redis-cli picks the slots (the lowest of `from`'s).
    ///
    /// # Panics
    ///
    /// If either is not a master serving slots, redis-cli fails (it refuses a cluster with a
    /// node down: [`Self::heal`] first), or the cluster does not converge within 30 seconds.
    pub fn reshard(&self, from: u16, to: u16, count: u16) -> Vec<u16> {
        let before = self.wait_settled();
        let find = |port: u16| {
            before
                .iter()
                .find(|node| node.port == port && node.is_master())
                .cloned()
                .unwrap_or_else(|| panic!(":{port} is not a master of this cluster"))
        };
        let (source, target) = (find(from), find(to));
        let mut command = Command::new("redis-cli");
        command
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &source.id, "--cluster-to", &target.id])
            .args(["--cluster-slots", &count.to_string(), "--cluster-yes"]);
        if let Err(error) = run_redis_cli(&mut command) {
            self.fail(&error.to_string());
        }
        let what = format!("{count} slots to move from {source} to :{to}");
        self.converged(CONVERGE_TIMEOUT, &what, |nodes| {
            let now_target = nodes
                .iter()
                .find(|node| node.id == target.id)
                .ok_or("the target left the cluster")?;
            let gained = now_target.slot_count().saturating_sub(target.slot_count());
            if gained != usize::from(count) {
                return Err(format!("{now_target} gained {gained} slots"));
            }
            Ok(())
        })
        .unwrap_or_else(|error| self.fail(&error));
        let after = self.node(to);
        all_slots(&source)
            .into_iter()
            .filter(|slot| after.serves(*slot))
            .collect()
    }

    /// The process behind `port`.
    fn server(&self, port: u16) -> MutexGuard<'_, RedisServer> {
        let index = self
            .ports
            .iter()
            .position(|&p| p == port)
            .unwrap_or_else(|| panic!("port {port} is not a node of this cluster"));
        lock(&self.nodes[index])
    }

    /// The ports whose process runs and is not paused.
    fn running_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .map(|node| lock(node))
            .filter(|node| node.is_serving())
            .map(|node| node.port())
            .collect()
    }

    /// What the node on `port` says of the cluster (CLUSTER NODES).
    fn view_of(&self, port: u16) -> Result<Vec<ViewNode>, String> {
        let mut connection = probe::connect(port, None)?;
        let text: String = probe::query(&mut connection, port, redis::cmd("CLUSTER").arg("NODES"))?;
        parse_nodes(&text)
    }

    /// Polls until the cluster has converged (see [`Self::wait_settled`]) and `condition` holds
    /// of the nodes then.
    fn converged<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut(&[ClusterNode]) -> Result<T, String>,
    ) -> Result<T, String> {
        probe::poll_until(what, timeout, || {
            let nodes = self.convergence()?;
            condition(&nodes)
        })
    }

    /// The nodes if the cluster has converged, or why not.
    fn convergence(&self) -> Result<Vec<ClusterNode>, String> {
        let running = self.running_ports();
        let total = self.ports.len().to_string();
        let mut first: Option<(u16, Vec<ViewNode>)> = None;
        for port in running.iter().copied() {
            let mut connection = probe::connect(port, None)?;
            let info: String =
                probe::query(&mut connection, port, redis::cmd("CLUSTER").arg("INFO"))?;
            let info = probe::fields(&info);
            let expect = [
                ("cluster_state", "ok"),
                ("cluster_slots_assigned", "16384"),
                ("cluster_slots_ok", "16384"),
                ("cluster_known_nodes", total.as_str()),
            ];
            for (field, value) in expect {
                let seen = info.get(field).copied().unwrap_or("(missing)");
                if seen != value {
                    return Err(format!(":{port} says {field}:{seen}"));
                }
            }
            let text: String =
                probe::query(&mut connection, port, redis::cmd("CLUSTER").arg("NODES"))?;
            let view = parse_nodes(&text)?;
            if let Some(open) = view.iter().find(|node| node.open_slots) {
                return Err(format!(":{port} sees slots migrating at :{}", open.port));
            }
            for node in &view {
                if running.contains(&node.port) && (node.failed || node.suspected) {
                    return Err(format!(":{port} flags the running :{} failing", node.port));
                }
            }
            let me = view
                .iter()
                .find(|node| node.myself)
                .ok_or_else(|| format!(":{port} does not list itself"))?;
            if let ClusterRole::Replica { master_port, .. } = &me.role {
                let role = probe::role(&mut connection, port)?;
                // Over TLS a replica follows its master's TLS port.
                let linked = matches!(role, Role::Replica { master_port: p, connected: true }
                    if Some(self.tls.plain(p)) == *master_port);
                if !linked {
                    return Err(format!(
                        ":{port} is a replica of {master_port:?} in the cluster, ROLE says {role:?}"
                    ));
                }
            }
            match &first {
                None => first = Some((port, view)),
                Some((first_port, first_view)) => {
                    let (a, b) = (agreed(first_view, &running), agreed(&view, &running));
                    if a != b {
                        return Err(format!(
                            ":{first_port} and :{port} disagree: {a:?} against {b:?}"
                        ));
                    }
                }
            }
        }
        let (_, view) = first.ok_or("no node of the cluster runs")?;
        let nodes = annotate(view, &running);
        let served_by_running: usize = nodes
            .iter()
            .filter(|node| node.is_master() && node.running)
            .map(ClusterNode::slot_count)
            .sum();
        if served_by_running != usize::from(SLOTS) {
            return Err(format!(
                "running masters serve {served_by_running} slots: {}",
                describe(&nodes)
            ));
        }
        Ok(nodes)
    }

    /// The last `lines` lines of every node's log (`<port>.log` in a temporary
    /// directory), for a test's failure message.
    pub fn logs(&self, lines: usize) -> String {
        format!(
            "logs in {}:\n{}",
            self.sandbox.dir().display(),
            self.sandbox.log_tails(lines)
        )
    }

    /// Panics with `error`, the current view and each node's log tail.
    fn fail(&self, error: &str) -> ! {
        let view = self
            .running_ports()
            .into_iter()
            .find_map(|port| self.view_of(port).ok())
            .map(|view| describe(&annotate(view, &self.running_ports())))
            .unwrap_or_else(|| "(no node answers)".into());
        panic!(
            "Redis Cluster: {error}\nnodes: {view}\nlogs in {}:\n{}",
            self.sandbox.dir().display(),
            self.sandbox.log_tails(LOG_LINES)
        );
    }
}

/// A node as one `CLUSTER NODES` line shows it.
#[derive(Debug, Clone)]
struct ViewNode {
    id: String,
    port: u16,
    role: ClusterRole,
    slots: Vec<RangeInclusive<u16>>,
    myself: bool,
    failed: bool,
    /// `fail?`: suspected by the node asked, not yet agreed.
    suspected: bool,
    /// Slots being imported or migrated (`[slot-<-id]`, `[slot->-id]`).
    open_slots: bool,
}

/// Parses CLUSTER NODES: `<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent>
/// <pong-recv> <config-epoch> <link-state> <slot> ...`.
fn parse_nodes(text: &str) -> Result<Vec<ViewNode>, String> {
    let mut nodes = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(format!("unexpected CLUSTER NODES line: {line}"));
        }
        let port = fields[1]
            .split('@')
            .next()
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| format!("no port in CLUSTER NODES line: {line}"))?;
        let flags: Vec<&str> = fields[2].split(',').collect();
        let role = if flags.contains(&"slave") {
            ClusterRole::Replica {
                master_id: fields[3].to_string(),
                master_port: None,
            }
        } else {
            ClusterRole::Master
        };
        let mut slots = Vec::new();
        let mut open_slots = false;
        for slot in &fields[8..] {
            if slot.starts_with('[') {
                open_slots = true;
                continue;
            }
            let (start, end) = slot.split_once('-').unwrap_or((slot, slot));
            match (start.parse::<u16>(), end.parse::<u16>()) {
                (Ok(start), Ok(end)) => slots.push(start..=end),
                _ => return Err(format!("bad slot {slot:?} in CLUSTER NODES line: {line}")),
            }
        }
        slots.sort_by_key(|range| *range.start());
        nodes.push(ViewNode {
            id: fields[0].to_string(),
            port,
            role,
            slots,
            myself: flags.contains(&"myself"),
            failed: flags.contains(&"fail"),
            suspected: flags.contains(&"fail?"),
            open_slots,
        });
    }
    // A replica's master, by port.
    let ports: Vec<(String, u16)> = nodes.iter().map(|n| (n.id.clone(), n.port)).collect();
    for node in &mut nodes {
        if let ClusterRole::Replica {
            master_id,
            master_port,
        } = &mut node.role
        {
            *master_port = ports
                .iter()
                .find(|(id, _)| id == master_id)
                .map(|(_, port)| *port);
        }
    }
    nodes.sort_by_key(|node| node.port);
    Ok(nodes)
}

/// What every running node must agree on: each running node's id, role and slots, and who serves
/// each slot.
fn agreed(
    view: &[ViewNode],
    running: &[u16],
) -> Vec<(String, ClusterRole, Vec<RangeInclusive<u16>>)> {
    view.iter()
        .filter(|node| running.contains(&node.port) || !node.slots.is_empty())
        .map(|node| (node.id.clone(), node.role.clone(), node.slots.clone()))
        .collect()
}

/// The public form of a view, with whether the kit's process runs.
fn annotate(view: Vec<ViewNode>, running: &[u16]) -> Vec<ClusterNode> {
    view.into_iter()
        .map(|node| ClusterNode {
            running: running.contains(&node.port),
            id: node.id,
            port: node.port,
            role: node.role,
            slots: node.slots,
            failed: node.failed,
        })
        .collect()
}

/// Masters serving slots, each with its running replicas, as expected at start.
fn check_shape(nodes: &[ClusterNode], (masters, replicas): (usize, usize)) -> Result<(), String> {
    let serving: Vec<&ClusterNode> = nodes
        .iter()
        .filter(|node| node.is_master() && !node.slots.is_empty())
        .collect();
    if serving.len() != masters {
        return Err(format!(
            "{} masters serve slots: {}",
            serving.len(),
            describe(nodes)
        ));
    }
    for master in serving {
        let followers = nodes.iter().filter(|node| node.follows(&master.id)).count();
        if followers != replicas {
            return Err(format!(
                "{master} has {followers} replicas: {}",
                describe(nodes)
            ));
        }
    }
    Ok(())
}

/// Every slot `node` serves, ascending.
fn all_slots(node: &ClusterNode) -> Vec<u16> {
    node.slots.iter().flat_map(|range| range.clone()).collect()
}

/// One line per node, for messages.
fn describe(nodes: &[ClusterNode]) -> String {
    let lines: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    lines.join("; ")
}

/// Runs a `redis-cli --cluster` command; its output on failure (redis-cli exits 0 on some
/// failures, which it reports with `[ERR]`).
fn run_redis_cli(command: &mut Command) -> io::Result<String> {
    let output = command.output().map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("cannot run redis-cli (scripts/install-test-deps installs it): {error}"),
        )
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() || stdout.contains("[ERR]") {
        return Err(io::Error::other(format!(
            "{command:?} failed ({}):\n{stdout}\n{stderr}",
            output.status
        )));
    }
    Ok(stdout)
}

/// Locks a node, whatever a panicking test left.
fn lock(node: &Mutex<RedisServer>) -> MutexGuard<'_, RedisServer> {
    node.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
