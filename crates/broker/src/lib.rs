//! tokenbroker's domain: what a request may contain, how tokens are stored and merged, and how
//! the broker degrades when its store fails.
//!
//! Why a library apart from the server: the rules here (validation limits, atomic merge, "a
//! failed read is a degraded miss, not an error") are the product; the gRPC server only maps
//! them onto the wire, and the same rules are tested against every store.

#![warn(missing_docs)]

mod broker;
mod limits;
pub mod metrics;
pub mod storage;

pub use broker::{Broker, BrokerError, BrokerSettings, GetResult};
pub use limits::{InvalidArgument, Limits};
pub use session_token::SessionToken;
pub use storage::discard::Discarded;
pub use storage::{Lookup, PutParams, StoreError, StoreKey, TokenStore};
