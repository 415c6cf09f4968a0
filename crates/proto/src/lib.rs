//! The tokenbroker.v1 gRPC contract, generated from `proto/tokenbroker/v1/token_broker.proto`.
//!
//! Why a crate of its own: the server, the clients and the benchmark all speak this contract,
//! and generating it once keeps them from drifting apart.

#![allow(clippy::derive_partial_eq_without_eq)]

pub mod v1 {
    tonic::include_proto!("tokenbroker.v1");

    /// The fully qualified service name, as used by gRPC health checks for readiness.
    pub const SERVICE_NAME: &str = "tokenbroker.v1.TokenBroker";

    /// Encoded `FileDescriptorSet` of the contract, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/tokenbroker_descriptor.bin"));
}
