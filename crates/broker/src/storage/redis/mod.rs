//! Redis-backed storage: a primary and an optional fallback instance, puts merged in the broker
//! and committed with a compare-and-set (the Lua merge on a contended key), with circuit
//! breakers, health checks and an asynchronous copy queue.
//!
//! Module map, one job each:
//! - settings and layout: `options` (settings, the connection settings they make), `url` (the
//!   standalone, `redis+cluster://` and `redis+sentinel://` URLs, redacted), `tls` (the CA and
//!   client certificate files of `rediss://`), `keys` (the versioned key layout);
//! - reaching a topology: `connection` (the connection commands run on, the cluster and
//!   Sentinel clients, the wrong-mode checks), `dial` (opening connections; following the
//!   sentinels' master);
//! - one Redis instance: `error` (roles, and which failures count against an instance),
//!   `instance` (connections, deadlines, the breaker of the shared `tokenbroker-breaker` crate,
//!   spans), `commands` (what the broker sends: batched reads, scripts, TTLs), `replica_ack`
//!   (a put's write and the `WAIT` of `redis.min_replica_acks`, pipelined on one connection),
//!   `health` (pings, up/down, restarts), `script` (the Lua scripts and the merge's replies);
//! - what the pair asks of an instance: `ops` (the trait), `put` and `discard` (one instance's
//!   compare-and-set steps of PutToken and DiscardToken);
//! - the pair, over any instance: `pair` (shared state, settings), `write` (PutToken with
//!   failover, DiscardToken), `read` (GetToken, merge, read repair), `copy_queue` (copies,
//!   repairs, ordered discards), `recovery` (readiness and the `primary` read mode's window);
//! - `store` (the [`RedisStore`]: the pair on Redis instances, its tasks, the store interface),
//!   `metrics` (the counters and the metrics they are published through);
//! - tests: `fake` (an in-memory instance with injected failures) and `pair_tests` (the pair's
//!   rules on it), beside the real-Redis suites in `tests/`.

mod cluster_nodes;
mod commands;
mod connection;
mod copy_queue;
mod dial;
mod discard;
mod error;
mod health;
mod instance;
mod keys;
mod metrics;
mod ops;
mod options;
mod pair;
mod put;
mod read;
mod recovery;
mod replica_ack;
mod script;
mod store;
mod tls;
mod url;
mod write;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod pair_tests;

pub use connection::RedisConnection;
pub use error::{InstanceError, Role};
pub use instance::RedisInstance;
pub use keys::{KeyLayout, LAYOUT_VERSION};
pub use metrics::{InstanceStats, PairStats};
pub use options::{ReadMode, RedisOptions, RedisUrl};
pub use script::{MergeReply, decode as decode_merge_reply};
pub use store::RedisStore;
pub use tls::TlsFileError;

/// The merge script's source, for tests that run it directly against a redis-server.
pub const MERGE_SCRIPT_SOURCE: &str = include_str!("merge.lua");
