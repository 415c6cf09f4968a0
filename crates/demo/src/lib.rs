//! The proof that tokenbroker removes cross-pod stale reads, on the real Rust SDK.
//!
//! Why the in-memory emulator: it is `azure_data_cosmos`'s own, plugged in as the SDK's HTTP
//! client, with virtual regions and replication delay: the SDK's real session-token handling,
//! region routing and 404/1002 retries run unchanged, without a network or an Azure account.
//!
//! The scenario ([`scenario::run`]): an account with a write region (East US) and a read region
//! (West US) that receives writes after a fixed replication delay; several independent
//! `CosmosClient`s ("pods", preferring West US for reads) behind a round-robin balancer; pairs of
//! requests where one pod writes a document and the next pod reads it back at once. A read is
//! stale when it returns an older version of the document (or none). Three phases, each on fresh
//! pods: without the broker, with the broker, and with the broker killed half way.

//!
//! The same proof in other languages ([`polyglot::run`]): pods on the Python or JavaScript SDK,
//! each with its own tokenbroker sidecar, against the emulator served over HTTP.

pub mod emulator;
pub mod polyglot;
pub mod report;
pub mod scenario;
