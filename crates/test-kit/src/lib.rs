//! What tokenbroker's tests, demo and benches start and kill, written once:
//!
//! - [`free_port`]: a loopback port nothing listens on;
//! - [`RedisServer`]: a real `redis-server` process on a free port, ready when it answers PING,
//!   which a test kills, pauses and restarts on the same port (dropped = killed);
//! - [`KillableBroker`] (feature `broker`): a real tokenbroker server in this process, on its own
//!   runtime, killed outright as a crashed pod is and restarted on the same port.
//!
//! Each piece waits for the event it stands for (the port answers PING, every socket of a killed
//! broker is closed) rather than for a fixed time.

#![warn(missing_docs)]
// A test kit fails by panicking: a port that cannot be bound or a redis-server that never
// answers is a broken machine, and the test that asked should stop there with the message. The
// `try_` constructors return the error instead, for the tools (demo, bench) that report it.
#![allow(clippy::expect_used)]

#[cfg(feature = "broker")]
mod killable_broker;
mod port;
mod redis_server;

#[cfg(feature = "broker")]
pub use killable_broker::{KillableBroker, memory_store};
pub use port::free_port;
pub use redis_server::RedisServer;
