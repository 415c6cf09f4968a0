//! A real Sentinel-managed Redis on loopback: a master, its replica and three `redis-server
//! --sentinel` processes monitoring it, failed over on request or by killing the master.
//!
//! Why real processes: what a Sentinel client must survive (the master address changing, the old
//! master answering READONLY once demoted, or still answering as a master for seconds after a
//! failover until the sentinels reconfigure it) is the servers' behaviour. Every operation
//! returns once the sentinels and the servers agree; none sleeps for a fixed time.
//!
//! Start-up is fast because each sentinel's configuration file names the others and the replica
//! (`sentinel myid`, `known-sentinel`, `known-replica`, as a sentinel's own rewrite would): they
//! need not discover each other through hello messages, which take seconds.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use crate::free_ports;
use crate::probe::{self, Role};
use crate::redis_server::RedisServer;
use crate::sandbox::Sandbox;
use crate::tls::{TlsFiles, TlsPorts};

/// How long the topology has to settle at start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failover or a restart has to converge (the sentinels reconfigure a demoted master
/// 10 to 20 seconds after a failover).
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(45);
/// The sentinels' ping period while they first meet (it also spaces their reconnection
/// attempts).
const STARTUP_PING_PERIOD: Duration = Duration::from_millis(100);
/// Redis's own ping period, restored once they have met.
const DEFAULT_PING_PERIOD: Duration = Duration::from_millis(1000);
/// Lines of each process's log in a failure message.
const LOG_LINES: usize = 15;

/// How a [`RedisSentinel`] is built.
#[derive(Debug, Clone)]
pub struct SentinelOptions {
    /// The name the sentinels monitor the master under. Default `tokenbroker`.
    pub master_name: String,
    /// Replicas of the master. Default 1.
    pub replicas: usize,
    /// Sentinels. Default 3.
    pub sentinels: usize,
    /// Sentinels that must agree the master is down before a failover. Default 2.
    pub quorum: usize,
    /// `down-after-milliseconds`: how long the master may not answer before a sentinel thinks it
    /// down. Default 1500 ms: with 500 ms (and 1000 ms, less often) the sentinels of Redis 7.0
    /// were seen to think a just-promoted master down half a second after switching to it and
    /// fail over again and again for seconds, once promoting a just restarted, empty replica.
    pub down_after: Duration,
    /// `failover-timeout` (among others, a failed failover is retried after twice this).
    /// Default 2 s.
    pub failover_timeout: Duration,
    /// `requirepass` of the sentinels (and `sentinel sentinel-pass`, so they reach each other);
    /// `None` by default.
    pub sentinel_password: Option<String>,
    /// `requirepass` and `masterauth` of the master and replicas (and `sentinel auth-pass`);
    /// `None` by default.
    pub password: Option<String>,
    /// More `redis-server` arguments for the master and replicas.
    pub extra_args: Vec<String>,
    /// More arguments for the sentinels (for example an ACL `--user`).
    pub sentinel_extra_args: Vec<String>,
    /// TLS: a TLS port beside each process's plain port, replication and the sentinels'
    /// connections over TLS, the sentinels monitoring the TLS ports ([`RedisSentinel::tls_url`]
    /// reaches the sentinels and the master over TLS). Default `None`.
    pub tls: Option<TlsFiles>,
}

impl Default for SentinelOptions {
    fn default() -> Self {
        Self {
            master_name: "tokenbroker".into(),
            replicas: 1,
            sentinels: 3,
            quorum: 2,
            down_after: Duration::from_millis(1500),
            failover_timeout: Duration::from_secs(2),
            sentinel_password: None,
            password: None,
            extra_args: Vec::new(),
            sentinel_extra_args: Vec::new(),
            tls: None,
        }
    }
}

/// A master, its replicas and the sentinels monitoring them, on free loopback ports, with nothing
/// saved to disk: by default one replica, three sentinels, quorum 2, `down-after-milliseconds`
/// 1500 and `failover-timeout` 2000 (a killed master is replaced in about 4 s, a requested
/// failover takes about 1 s).
///
/// Every method takes `&self`, so it can live in a `static` and be started once per test binary,
/// as [`crate::RedisCluster`] shows (`static SENTINEL: OnceLock<RedisSentinel>`,
/// `SENTINEL.get_or_init(RedisSentinel::start)`; tests that change the topology hold
/// [`Self::exclusive`] and begin with [`Self::heal`]). The waits block the calling thread: from
/// an async test with load on the same runtime, call them through `spawn_blocking`.
///
/// Dropped (or, in a `static`, when the test process ends): every process is killed and the
/// temporary directory with the sentinels' configuration files removed.
///
/// Methods panic when the topology does not converge in time (45 s), with what was seen last and
/// the tail of every process's log.
pub struct RedisSentinel {
    /// Master and replicas, in start order (the first started as the master).
    data: Vec<Mutex<RedisServer>>,
    data_ports: Vec<u16>,
    sentinels: Vec<Mutex<RedisServer>>,
    sentinel_ports: Vec<u16>,
    tls: TlsPorts,
    options: SentinelOptions,
    exclusive: tokio::sync::Mutex<()>,
    startup: Duration,
    /// Last: dropped after the processes are killed.
    sandbox: Sandbox,
}

impl RedisSentinel {
    /// Starts the default topology and returns once every sentinel reports the master, sees the
    /// replica linked and the other sentinels up.
    ///
    /// # Panics
    ///
    /// If it does not start (see [`Self::try_start_with`]).
    pub fn start() -> Self {
        Self::start_with(SentinelOptions::default())
    }

    /// [`Self::start`] with other options.
    ///
    /// # Panics
    ///
    /// If it does not start (see [`Self::try_start_with`]).
    pub fn start_with(options: SentinelOptions) -> Self {
        Self::try_start_with(options).unwrap_or_else(|error| panic!("{error}"))
    }

    /// [`Self::start_with`] that returns the error: `redis-server` cannot be run
    /// (`scripts/install-test-deps` installs it), a process exits at start, or the topology does
    /// not settle within 30 seconds.
    pub fn try_start_with(options: SentinelOptions) -> io::Result<Self> {
        let began = Instant::now();
        let sandbox = Sandbox::new("sentinel")?;
        let count = 1 + options.replicas + options.sentinels;
        let ports = free_ports(TlsPorts::needed(options.tls.as_ref(), count));
        let (ports, tls_ports) = ports.split_at(count);
        let tls = TlsPorts::new(options.tls.as_ref(), ports, tls_ports);
        let (data_ports, sentinel_ports) = ports.split_at(1 + options.replicas);
        let master = data_ports[0];
        let mut data = Vec::with_capacity(data_ports.len());
        for &port in data_ports {
            let replica_of = (port != master).then_some(master);
            let args = data_args(&sandbox, &options, &tls, port, replica_of);
            data.push(RedisServer::start_node(port, None, args, sandbox.group())?);
        }
        let mut sentinels = Vec::with_capacity(sentinel_ports.len());
        for &port in sentinel_ports {
            let config =
                write_sentinel_config(&sandbox, &options, &tls, port, data_ports, sentinel_ports)?;
            let mut args = vec![
                "--sentinel".into(),
                "--dir".into(),
                sandbox.dir().display().to_string(),
                "--logfile".into(),
                sandbox
                    .dir()
                    .join(format!("sentinel-{port}.log"))
                    .display()
                    .to_string(),
                "--loglevel".into(),
                "notice".into(),
            ];
            args.extend(tls.args(port, false));
            args.extend(options.sentinel_extra_args.iter().cloned());
            // Launched together and waited for after: a sentinel that tries a peer not yet
            // listening tries again only a second later.
            sentinels.push(RedisServer::launch_node(
                port,
                Some(config),
                args,
                sandbox.group(),
            )?);
        }
        for sentinel in &mut sentinels {
            sentinel.wait_ready()?;
        }
        let mut topology = Self {
            data: data.into_iter().map(Mutex::new).collect(),
            data_ports: data_ports.to_vec(),
            sentinels: sentinels.into_iter().map(Mutex::new).collect(),
            sentinel_ports: sentinel_ports.to_vec(),
            tls,
            options,
            exclusive: tokio::sync::Mutex::new(()),
            startup: Duration::ZERO,
            sandbox,
        };
        // A sentinel that tried a peer before it listened tries again one ping period (1 s)
        // later: shortened while they meet, then back to Redis's default.
        topology.set_ping_period(STARTUP_PING_PERIOD);
        probe::poll_until("the sentinels to settle", START_TIMEOUT, || {
            topology.convergence()
        })
        .map_err(io::Error::other)?;
        topology.set_ping_period(DEFAULT_PING_PERIOD);
        topology.startup = began.elapsed();
        Ok(topology)
    }

    /// `SENTINEL DEBUG ping-period` on every running sentinel (Redis 7; ignored where refused).
    fn set_ping_period(&self, period: Duration) {
        for port in self.running(&self.sentinels) {
            let _ = self.sentinel_connection(port).and_then(|mut connection| {
                probe::query::<()>(
                    &mut connection,
                    port,
                    redis::cmd("SENTINEL")
                        .arg("DEBUG")
                        .arg("ping-period")
                        .arg(period.as_millis().to_string()),
                )
            });
        }
    }

    /// How long [`Self::start`] took, from the first process started to the settled topology.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// `redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>/<master-name>` (the
    /// broker's Sentinel URL form; no password in it).
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!(
            "redis+sentinel://{}/{}",
            sentinels.join(","),
            self.options.master_name
        )
    }

    /// `rediss+sentinel://127.0.0.1:<tls1>,.../<master-name>`: the sentinels' TLS ports, which
    /// name the master's TLS port.
    ///
    /// # Panics
    ///
    /// If the topology was started without [`SentinelOptions::tls`].
    pub fn tls_url(&self) -> String {
        let sentinels = self.tls.seeds(&self.sentinel_ports);
        format!("rediss+sentinel://{sentinels}/{}", self.options.master_name)
    }

    /// `redis://127.0.0.1:<port>` of every sentinel (with `:<password>@` if the sentinels
    /// require one), for a client such as `redis::sentinel::SentinelClient`.
    pub fn sentinel_urls(&self) -> Vec<String> {
        let auth = match &self.options.sentinel_password {
            Some(password) => format!(":{password}@"),
            None => String::new(),
        };
        self.sentinel_ports
            .iter()
            .map(|port| format!("redis://{auth}127.0.0.1:{port}"))
            .collect()
    }

    /// The master name the sentinels monitor.
    pub fn master_name(&self) -> &str {
        &self.options.master_name
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> &[u16] {
        &self.sentinel_ports
    }

    /// The master's and replicas' ports, in start order (the first started as the master; which
    /// one is master now is [`Self::master_addr`]).
    pub fn data_ports(&self) -> &[u16] {
        &self.data_ports
    }

    /// The options it was started with (passwords included).
    pub fn options(&self) -> &SentinelOptions {
        &self.options
    }

    /// A lock for tests that share this topology and change or depend on it, in a synchronous
    /// test (see [`crate::RedisCluster::exclusive`]).
    ///
    /// # Panics
    ///
    /// If called on a thread that runs an async runtime.
    pub fn exclusive(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.exclusive.blocking_lock()
    }

    /// [`Self::exclusive`] for an async test.
    pub async fn exclusive_async(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.exclusive.lock().await
    }

    /// The master's address as the first running sentinel that answers reports it now
    /// (`SENTINEL get-master-addr-by-name`; no waiting).
    ///
    /// # Panics
    ///
    /// If no running sentinel answers.
    pub fn master_addr(&self) -> SocketAddr {
        let mut errors = Vec::new();
        for port in self.running(&self.sentinels) {
            match self.reported_master(port) {
                Ok(port) => return SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                Err(error) => errors.push(error),
            }
        }
        panic!("no running sentinel reports the master: {errors:?}");
    }

    /// `redis://127.0.0.1:<port>` of the current master ([`Self::master_addr`]), with the
    /// password if the servers require one.
    ///
    /// # Panics
    ///
    /// As [`Self::master_addr`].
    pub fn master_url(&self) -> String {
        let auth = match &self.options.password {
            Some(password) => format!(":{password}@"),
            None => String::new(),
        };
        format!("redis://{auth}{}", self.master_addr())
    }

    /// Asks a sentinel for a failover (`SENTINEL FAILOVER`, repeated while a sentinel answers that
    /// one is in progress or no replica is fit yet) and returns the new master's address once
    /// every running sentinel reports it and it answers ROLE as a master. The old master is
    /// still a master, accepting writes that its later resync drops, for 10 to 20 seconds more
    /// (measured with Redis 7.0: the sentinels ask a replica for INFO every 10 s and wait 8 s
    /// after seeing it report the master role before they reconfigure it);
    /// [`Self::wait_settled`] waits for that, [`Self::heal`] does it at once.
    ///
    /// # Panics
    ///
    /// If no failover happens within 45 seconds.
    pub fn failover(&self) -> SocketAddr {
        let old = self.master_addr();
        let name = self.options.master_name.clone();
        let asked = probe::poll_until(
            "a sentinel to accept SENTINEL FAILOVER",
            CONVERGE_TIMEOUT,
            || {
                let mut errors = Vec::new();
                for port in self.running(&self.sentinels) {
                    let answer = self.sentinel_connection(port).and_then(|mut connection| {
                        probe::query::<String>(
                            &mut connection,
                            port,
                            redis::cmd("SENTINEL").arg("FAILOVER").arg(&name),
                        )
                    });
                    match answer {
                        Ok(_) => return Ok(()),
                        Err(error) => errors.push(error),
                    }
                }
                Err(errors.join("; "))
            },
        );
        if let Err(error) = asked {
            self.fail(&error);
        }
        self.wait_for_failover(old.port())
    }

    /// SIGKILL to the current master ([`Self::master_addr`]); returns its port at once, before
    /// the sentinels notice. [`Self::wait_for_failover`] waits for the promotion.
    ///
    /// # Panics
    ///
    /// As [`Self::master_addr`].
    pub fn kill_master(&self) -> u16 {
        let port = self.master_addr().port();
        self.kill(port);
        port
    }

    /// Waits until every running sentinel reports a master other than the one on `old_master`,
    /// the same one, and it answers ROLE as a master; returns its address.
    ///
    /// # Panics
    ///
    /// If that does not happen within 45 seconds.
    pub fn wait_for_failover(&self, old_master: u16) -> SocketAddr {
        let what = format!("the sentinels to promote a replica of :{old_master}");
        probe::poll_until(&what, CONVERGE_TIMEOUT, || {
            let master = self.agreed_master()?;
            if master == old_master {
                return Err(format!("the sentinels still report :{old_master}"));
            }
            let mut connection = probe::connect(master, self.options.password.as_deref())?;
            match probe::role(&mut connection, master)? {
                Role::Master => Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, master))),
                role => Err(format!("the reported master :{master} says ROLE {role:?}")),
            }
        })
        .unwrap_or_else(|error| self.fail(&error))
    }

    /// SIGKILL to the process on `port` (a master, a replica or a sentinel); returns at once.
    /// Does nothing if it is not running.
    ///
    /// # Panics
    ///
    /// If `port` is not one of this topology's.
    pub fn kill(&self, port: u16) {
        self.server(port).kill();
    }

    /// SIGSTOP to the process on `port`: connections stay open, nothing answers (a paused master
    /// is failed over as a dead one), until [`Self::resume`].
    ///
    /// # Panics
    ///
    /// If `port` is not one of this topology's running processes.
    pub fn pause(&self, port: u16) {
        self.server(port).pause();
    }

    /// SIGCONT to a paused process.
    ///
    /// # Panics
    ///
    /// If `port` is not one of this topology's running processes.
    pub fn resume(&self, port: u16) {
        self.server(port).resume();
    }

    /// Starts the process on `port` again (killing it first if it runs) and waits as
    /// [`Self::wait_settled`] does. A master or replica comes back empty, as a replica of the
    /// master the sentinels report (as a Kubernetes chart's init step does), unless it is that
    /// master itself (killed and not failed over yet), which comes back as an empty master; a
    /// sentinel comes back with the configuration it rewrote.
    ///
    /// # Panics
    ///
    /// If it does not start, or the topology does not settle within 45 seconds.
    pub fn restart(&self, port: u16) {
        self.start_again(port);
        self.wait_settled();
    }

    /// Resumes every paused process; if the master the sentinels report does not run, waits for
    /// its failover (or, with no server left running, restarts it as an empty master); restarts
    /// every other server that is not running, as a replica ([`Self::restart`]); turns a running
    /// server that still believes itself master while the sentinels report another into a
    /// replica of that one (what the sentinels do 10 to 20 seconds after a failover); restarts
    /// every sentinel that is not running; and waits as [`Self::wait_settled`] does. Returns the
    /// master's address.
    ///
    /// Killed sentinels are restarted last, once the failover is over (unless too few run to
    /// authorize one): a sentinel restarted in the middle of a failover was seen to start a
    /// second one at once, which promoted the just restarted, empty old master.
    ///
    /// # Panics
    ///
    /// As [`Self::restart`].
    pub fn heal(&self) -> SocketAddr {
        for server in self.sentinels.iter().chain(&self.data) {
            let server = lock(server);
            if server.is_running() && !server.is_serving() {
                server.resume();
            }
        }
        let majority = self.sentinel_ports.len() / 2 + 1;
        if self.running(&self.sentinels).len() < majority.max(self.options.quorum) {
            self.restart_dead_sentinels();
        }
        // The sentinels must agree on a master before a server can be pointed at it.
        let mut master = probe::poll_until(
            "the sentinels to agree on a master",
            CONVERGE_TIMEOUT,
            || self.agreed_master(),
        )
        .unwrap_or_else(|error| self.fail(&error));
        let running = self.running(&self.data);
        if !running.contains(&master) {
            if running.is_empty() {
                self.start_again(master);
            } else {
                master = self.wait_for_failover(master).port();
            }
        }
        for (index, port) in self.data_ports.iter().enumerate() {
            if !lock(&self.data[index]).is_running() {
                self.start_again(*port);
            } else if *port != master {
                let stale_master = probe::connect(*port, self.options.password.as_deref())
                    .and_then(|mut connection| {
                        let role = probe::role(&mut connection, *port)?;
                        if role == Role::Master {
                            probe::query::<()>(
                                &mut connection,
                                *port,
                                redis::cmd("REPLICAOF")
                                    .arg("127.0.0.1")
                                    .arg(self.tls.tls(master)),
                            )?;
                        }
                        Ok(())
                    });
                if let Err(error) = stale_master {
                    self.fail(&error);
                }
            }
        }
        self.restart_dead_sentinels();
        self.wait_settled()
    }

    /// Starts every sentinel that is not running again.
    fn restart_dead_sentinels(&self) {
        for (index, port) in self.sentinel_ports.iter().enumerate() {
            if !lock(&self.sentinels[index]).is_running() {
                self.start_again(*port);
            }
        }
    }

    /// Waits until every running sentinel reports the same master, which runs and answers ROLE
    /// as a master; every other running server is a replica of it with its link up; and every
    /// running sentinel sees that master up and not being failed over, each running replica
    /// linked, and each other running sentinel up. A failover can start at once from there.
    /// Returns the master's address.
    ///
    /// # Panics
    ///
    /// If that is not reached within 45 seconds.
    pub fn wait_settled(&self) -> SocketAddr {
        probe::poll_until("the sentinels to settle", CONVERGE_TIMEOUT, || {
            self.convergence()
        })
        .unwrap_or_else(|error| self.fail(&error))
    }

    /// The settled master's address, or why it is not settled.
    fn convergence(&self) -> Result<SocketAddr, String> {
        let master = self.agreed_master()?;
        let data = self.running(&self.data);
        if !data.contains(&master) {
            return Err(format!("the reported master :{master} does not run"));
        }
        let password = self.options.password.as_deref();
        for port in data.iter().copied() {
            let mut connection = probe::connect(port, password)?;
            let role = probe::role(&mut connection, port)?;
            let fine = if port == master {
                role == Role::Master
            } else {
                role == Role::Replica {
                    master_port: self.tls.tls(master),
                    connected: true,
                }
            };
            if !fine {
                return Err(format!(
                    ":{port} says ROLE {role:?}; the master is :{master}"
                ));
            }
        }
        let sentinels = self.running(&self.sentinels);
        let name = &self.options.master_name;
        for port in sentinels.iter().copied() {
            let mut connection = self.sentinel_connection(port)?;
            let state: HashMap<String, String> = probe::query(
                &mut connection,
                port,
                redis::cmd("SENTINEL").arg("MASTER").arg(name),
            )?;
            let flags = state.get("flags").map(String::as_str).unwrap_or("");
            if flags != "master" {
                return Err(format!("sentinel :{port} flags the master {flags}"));
            }
            let replicas: Vec<HashMap<String, String>> = probe::query(
                &mut connection,
                port,
                redis::cmd("SENTINEL").arg("REPLICAS").arg(name),
            )?;
            for replica in data.iter().filter(|&&p| p != master) {
                let port_of = |r: &HashMap<String, String>, field: &str| {
                    r.get(field)
                        .and_then(|p| p.parse::<u16>().ok())
                        .map(|p| self.tls.plain(p))
                };
                let seen = replicas
                    .iter()
                    .find(|r| port_of(r, "port") == Some(*replica));
                let fine = seen.is_some_and(|r| {
                    r.get("flags").map(String::as_str) == Some("slave")
                        && r.get("master-link-status").map(String::as_str) == Some("ok")
                        && port_of(r, "master-port") == Some(master)
                });
                if !fine {
                    return Err(format!(
                        "sentinel :{port} sees replica :{replica} as {seen:?}"
                    ));
                }
            }
            let others: Vec<HashMap<String, String>> = probe::query(
                &mut connection,
                port,
                redis::cmd("SENTINEL").arg("SENTINELS").arg(name),
            )?;
            for other in sentinels.iter().filter(|&&p| p != port) {
                let seen = others.iter().find(|s| {
                    let port = s.get("port").and_then(|p| p.parse::<u16>().ok());
                    port.map(|p| self.tls.plain(p)) == Some(*other)
                });
                // `master_down` (that sentinel's vote in the last failover) may remain: the
                // sentinels forget such votes only 5 s after the last one, and it does not stop
                // a failover.
                let fine = seen.is_some_and(|s| {
                    let flags = s.get("flags").map(String::as_str).unwrap_or("");
                    flags == "sentinel" || flags == "sentinel,master_down"
                });
                if !fine {
                    return Err(format!(
                        "sentinel :{port} sees sentinel :{other} as {seen:?}"
                    ));
                }
            }
        }
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, master)))
    }

    /// The master port every running sentinel reports, or why they do not agree.
    fn agreed_master(&self) -> Result<u16, String> {
        let mut agreed: Option<(u16, u16)> = None;
        for port in self.running(&self.sentinels) {
            let master = self.reported_master(port)?;
            match agreed {
                None => agreed = Some((port, master)),
                Some((first, first_master)) if first_master != master => {
                    return Err(format!(
                        "sentinel :{first} reports :{first_master}, sentinel :{port} :{master}"
                    ));
                }
                Some(_) => {}
            }
        }
        agreed
            .map(|(_, master)| master)
            .ok_or_else(|| "no sentinel runs".to_string())
    }

    /// The master port the sentinel on `port` reports.
    fn reported_master(&self, port: u16) -> Result<u16, String> {
        let mut connection = self.sentinel_connection(port)?;
        let addr: Option<(String, u16)> = probe::query(
            &mut connection,
            port,
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&self.options.master_name),
        )?;
        match addr {
            Some((host, master)) if host == "127.0.0.1" => Ok(self.tls.plain(master)),
            other => Err(format!("sentinel :{port} reports the master at {other:?}")),
        }
    }

    fn sentinel_connection(&self, port: u16) -> Result<redis::Connection, String> {
        probe::connect(port, self.options.sentinel_password.as_deref())
    }

    /// Kills the process on `port` if it runs and starts it again (see [`Self::restart`]).
    fn start_again(&self, port: u16) {
        if let Some(index) = self.sentinel_ports.iter().position(|&p| p == port) {
            lock(&self.sentinels[index]).restart();
            return;
        }
        let index = self.data_index(port);
        lock(&self.data[index]).kill();
        let master = probe::poll_until(
            "the sentinels to agree on a master",
            CONVERGE_TIMEOUT,
            || self.agreed_master(),
        )
        .unwrap_or_else(|error| self.fail(&error));
        let replica_of = (master != port).then_some(master);
        let args = data_args(&self.sandbox, &self.options, &self.tls, port, replica_of);
        let started = RedisServer::start_node(port, None, args, self.sandbox.group());
        match started {
            Ok(server) => *lock(&self.data[index]) = server,
            Err(error) => self.fail(&format!("cannot restart :{port}: {error}")),
        }
    }

    /// The process on `port`.
    fn server(&self, port: u16) -> MutexGuard<'_, RedisServer> {
        match self.sentinel_ports.iter().position(|&p| p == port) {
            Some(index) => lock(&self.sentinels[index]),
            None => lock(&self.data[self.data_index(port)]),
        }
    }

    fn data_index(&self, port: u16) -> usize {
        self.data_ports
            .iter()
            .position(|&p| p == port)
            .unwrap_or_else(|| panic!("port {port} is not one of this Sentinel topology's"))
    }

    /// The ports of `servers` whose process runs and is not paused.
    fn running(&self, servers: &[Mutex<RedisServer>]) -> Vec<u16> {
        servers
            .iter()
            .map(|server| lock(server))
            .filter(|server| server.is_serving())
            .map(|server| server.port())
            .collect()
    }

    /// The last `lines` lines of every process's log (`<port>.log`, `sentinel-<port>.log` in a
    /// temporary directory), for a test's failure message.
    pub fn logs(&self, lines: usize) -> String {
        format!(
            "logs in {}:\n{}",
            self.sandbox.dir().display(),
            self.sandbox.log_tails(lines)
        )
    }

    /// Panics with `error` and each process's log tail.
    fn fail(&self, error: &str) -> ! {
        panic!(
            "Redis Sentinel: {error}\nlogs in {}:\n{}",
            self.sandbox.dir().display(),
            self.sandbox.log_tails(LOG_LINES)
        );
    }
}

/// The arguments of a master (`replica_of` `None`) or a replica.
fn data_args(
    sandbox: &Sandbox,
    options: &SentinelOptions,
    tls: &TlsPorts,
    port: u16,
    replica_of: Option<u16>,
) -> Vec<String> {
    let dir = sandbox.dir();
    let mut args: Vec<String> = vec![
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
        // Nothing on disk, so that a restarted server comes back empty: a replica loads a full
        // sync from the socket, not through a dump file that a restart would load; any dump
        // is the server's own.
        "--repl-diskless-load".into(),
        "swapdb".into(),
        "--dbfilename".into(),
        format!("dump-{port}.rdb"),
    ];
    if let Some(password) = &options.password {
        args.extend(["--requirepass".into(), password.clone()]);
        args.extend(["--masterauth".into(), password.clone()]);
    }
    if let Some(master) = replica_of {
        let master = tls.tls(master);
        args.extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
    }
    args.extend(tls.args(port, false));
    args.extend(options.extra_args.iter().cloned());
    args
}

/// Writes `sentinel-<port>.conf`: the master to monitor, the replicas and the other sentinels
/// already known (with fixed ids, at their TLS ports with TLS), passwords; returns its path.
fn write_sentinel_config(
    sandbox: &Sandbox,
    options: &SentinelOptions,
    tls: &TlsPorts,
    port: u16,
    data_ports: &[u16],
    sentinel_ports: &[u16],
) -> io::Result<PathBuf> {
    let name = &options.master_name;
    let mut lines = vec![
        format!("sentinel myid {}", sentinel_id(port)),
        format!(
            "sentinel monitor {name} 127.0.0.1 {} {}",
            tls.tls(data_ports[0]),
            options.quorum
        ),
        format!(
            "sentinel down-after-milliseconds {name} {}",
            options.down_after.as_millis()
        ),
        format!(
            "sentinel failover-timeout {name} {}",
            options.failover_timeout.as_millis()
        ),
        format!("sentinel parallel-syncs {name} 1"),
    ];
    if let Some(password) = &options.password {
        lines.push(format!("sentinel auth-pass {name} {password}"));
    }
    if let Some(password) = &options.sentinel_password {
        lines.push(format!("requirepass {password}"));
        lines.push(format!("sentinel sentinel-pass {password}"));
    }
    for replica in &data_ports[1..] {
        let replica = tls.tls(*replica);
        lines.push(format!("sentinel known-replica {name} 127.0.0.1 {replica}"));
    }
    for other in sentinel_ports.iter().filter(|&&p| p != port) {
        lines.push(format!(
            "sentinel known-sentinel {name} 127.0.0.1 {} {}",
            tls.tls(*other),
            sentinel_id(*other)
        ));
    }
    let path = sandbox.dir().join(format!("sentinel-{port}.conf"));
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok(path)
}

/// A sentinel's run id (40 hexadecimal characters), unique within a topology: its port.
fn sentinel_id(port: u16) -> String {
    format!("{port:040x}")
}

/// Locks a process, whatever a panicking test left.
fn lock(server: &Mutex<RedisServer>) -> MutexGuard<'_, RedisServer> {
    server
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
