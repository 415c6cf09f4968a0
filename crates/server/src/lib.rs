//! The tokenbroker server and operator CLI: configuration, the gRPC service, health, shutdown.
//!
//! Why a library behind the binary: the integration tests start the very same server in-process
//! (on a loopback port they choose), and `main.rs` stays a few lines of dispatch.

pub mod auth;
pub mod cli;
pub mod config;
pub mod decode;
pub mod metrics;
pub mod policy;
pub mod rpc;
pub mod server;
pub mod service;
pub mod sidecar;
pub mod telemetry;
pub mod tls;
