//! What tokenbroker's tests, demo and benches start and kill, written once:
//!
//! - [`free_port`]: a loopback port nothing listens on;
//! - [`RedisServer`]: a real `redis-server` process on a free port, ready when it answers PING,
//!   which a test kills, pauses and restarts on the same port (dropped = killed);
//! - [`RedisCluster`]: a real Redis Cluster (3 masters with a replica each by default) whose
//!   masters a test kills and restarts and whose slots it moves;
//! - [`RedisSentinel`]: a master, a replica and three sentinels, failed over on request or by
//!   killing the master;
//! - [`TlsFiles`]: either topology with TLS ports beside the plain ones (the kit's probes stay
//!   plain), reached over TLS through its `tls_url`;
//! - [`KillableBroker`] (feature `broker`): a real tokenbroker server in this process, on its own
//!   runtime, killed outright as a crashed pod is and restarted on the same port.
//!
//! Each piece waits for the event it stands for (the port answers PING, every socket of a killed
//! broker is closed, every node sees the cluster `ok` again) rather than for a fixed time.
//!
//! The topologies take a second or two to start: start each once per test binary, in a
//! `static` (the example on [`RedisCluster`]); their processes are killed and their files
//! removed when the test process ends, although a `static` is never dropped. With
//! `TEST_KIT_TRACE` set, every wait prints what it is still waiting for.

#![warn(missing_docs)]
// A test kit fails by panicking: a port that cannot be bound or a redis-server that never
// answers is a broken machine, and the test that asked should stop there with the message. The
// `try_` constructors return the error instead, for the tools (demo, bench) that report it.
#![allow(clippy::expect_used)]

mod cluster;
#[cfg(feature = "broker")]
mod killable_broker;
mod port;
mod probe;
mod redis_server;
mod sandbox;
mod sentinel;
mod tls;

pub use cluster::{ClusterNode, ClusterOptions, ClusterRole, RedisCluster, SLOTS};
#[cfg(feature = "broker")]
pub use killable_broker::{KillableBroker, memory_store};
pub use port::{free_port, free_ports};
pub use redis_server::RedisServer;
pub use sentinel::{RedisSentinel, SentinelOptions};
pub use tls::TlsFiles;
