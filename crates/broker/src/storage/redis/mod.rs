//! Redis-backed storage: a primary and an optional fallback instance, puts merged in the broker
//! and committed with a compare-and-set (the Lua merge on a contended key), with circuit
//! breakers, health checks and an asynchronous copy queue.
//!
//! Module map, one job each:
//! - settings and layout: `options` (settings, redacted URLs, the connection settings they
//!   make), `tls` (the CA and client certificate files of `rediss://`), `keys` (the versioned
//!   key layout);
//! - one instance: `instance` (connections, deadlines, the breaker of the shared
//!   `tokenbroker-breaker` crate, spans), `error` (which failures count against it),
//!   `commands` (what the broker sends: batched reads, scripts, TTLs), `health` (pings,
//!   up/down, restarts), `script` (the Lua scripts and the merge's replies), `put` and
//!   `discard` (the compare-and-set steps of PutToken and DiscardToken);
//! - the pair: `dual` (the store: start-up, write and read paths), `pair` (shared state),
//!   `copy_queue` (copies, repairs, ordered discards), `recovery` (readiness and the `primary`
//!   read mode's window), `metrics` (the counters and the metrics they are published through).

mod commands;
mod copy_queue;
mod discard;
mod dual;
mod error;
mod health;
mod instance;
mod keys;
mod metrics;
mod options;
mod pair;
mod put;
mod recovery;
mod script;
mod tls;

pub use dual::RedisStore;
pub use instance::{InstanceError, RedisInstance, Role};
pub use keys::{KeyLayout, LAYOUT_VERSION};
pub use metrics::{DualStats, InstanceStats};
pub use options::{ReadMode, RedisOptions, RedisUrl};
pub use script::{MergeReply, decode as decode_merge_reply};
pub use tls::TlsFileError;

/// The merge script's source, for tests that run it directly against a redis-server.
pub const MERGE_SCRIPT_SOURCE: &str = include_str!("merge.lua");
