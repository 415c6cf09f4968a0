//! Test harness: in-process brokers on loopback, and the built `tokenbroker` binary.

pub mod broker;
pub mod certs;
pub mod cluster;
pub mod load;
pub mod process;
pub mod redis;
pub mod sidecar;
pub mod stores;

pub use broker::{TestBroker, settings};
