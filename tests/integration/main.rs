//! tokenbroker's integration tests: one test binary, real parts only. Servers are real tonic
//! servers on loopback ports; Redis instances are real `redis-server` processes started by the
//! harness on free ports.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod bad_input;
mod cli;
mod connection_age;
mod deploy_manifests;
mod discard;
mod grpc_api;
mod lua_merge;
mod observability;
mod python_client;
mod redis_cluster;
mod redis_faults;
mod redis_replica_acks;
mod redis_sentinel;
mod redis_store;
mod redis_tls;
mod replicas;
mod security;
mod shutdown;
