//! Redis-backed storage: a primary and an optional fallback instance, merged atomically by a
//! Lua script, with circuit breakers, health checks and an asynchronous copy queue.
//!
//! Module map: `options` (settings, redacted URLs), `keys` (the versioned key layout),
//! `script` (the merge and compare-and-set scripts, and the merge's replies), `discard`
//! (DiscardToken on one instance), `breaker` (circuit breaker), `tls` (the CA and client
//! certificate files of `rediss://`), `instance` (one Redis: connections, deadlines, health),
//! `dual` (the store: write, copy, read, degrade).

mod breaker;
mod copy_queue;
mod discard;
mod dual;
mod instance;
mod keys;
mod options;
mod pair;
mod put;
mod recovery;
mod samples;
mod script;
mod tls;

pub use dual::DualRedisStore;
pub use instance::{InstanceError, InstanceStats, RedisInstance, Role};
pub use keys::{KeyLayout, LAYOUT_VERSION};
pub use options::{ReadMode, RedisOptions, RedisUrl};
pub use pair::DualStats;
pub use script::{MergeReply, decode as decode_merge_reply};
pub use tls::TlsFileError;

/// The merge script's source, for tests that run it directly against a redis-server.
pub const MERGE_SCRIPT_SOURCE: &str = include_str!("merge.lua");
