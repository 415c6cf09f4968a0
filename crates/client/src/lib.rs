//! Rust client for tokenbroker.
//!
//! Why a crate of its own: every service that shares Cosmos DB session tokens through the broker
//! needs the same three things, and each is easy to get subtly wrong by hand:
//!
//! - **Balancing over brokers.** A Kubernetes Service pins an HTTP/2 connection to one pod, so a
//!   single `Channel` to the Service name would send every call to one replica. The client keeps
//!   one lazily-connected channel per endpoint and takes them in turn, skipping endpoints whose
//!   circuit breaker is open. The endpoints are a fixed list of URLs, or discovered:
//!   [`ClientConfig::discover`] resolves a headless Service's name into one endpoint per pod and
//!   re-resolves it periodically, keeping the list it has when DNS fails ([`Discovery`]).
//! - **A deadline on every call**, small by default ([`ClientConfig::DEFAULT_DEADLINE`]): the
//!   broker sits on the path of every Cosmos operation and must never slow it down much.
//! - **Helpers that never fail the caller.** [`TokenBrokerClient::token_for_read`] and
//!   [`TokenBrokerClient::record_write`] log, count ([`ClientStats`]) and return "no token" on any
//!   broker error or timeout, so the Cosmos call goes ahead with the database's normal session
//!   semantics. The raw calls ([`TokenBrokerClient::get_token`], `put_token`, `merge_tokens`)
//!   return a typed [`ClientError`] instead.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tokenbroker_client::ClientError> {
//! use tokenbroker_client::{ClientConfig, TokenBrokerClient};
//!
//! let broker = TokenBrokerClient::new(ClientConfig::new([
//!     "http://10.0.0.11:50051",
//!     "http://10.0.0.12:50051",
//! ]))?;
//! // After a write: record the response's session token (never fails).
//! broker.record_write("acct/db/orders", "user-1", "0:1#100#1=20").await;
//! // Before a read on another pod: the token to send, if any (never fails).
//! let token: Option<String> = broker.token_for_read("acct/db/orders", "user-1", &[]).await;
//!
//! // On Kubernetes: every pod behind the headless Service, re-resolved every 30 s.
//! let broker = TokenBrokerClient::new(ClientConfig::discover(
//!     "http://tokenbroker-headless.my-namespace.svc.cluster.local:50051",
//! ))?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod client;
mod config;
mod discovery;
mod endpoints;
mod error;
mod stats;

pub use breaker::BreakerConfig;
pub use client::{GetTokenReply, TokenBrokerClient};
pub use config::{BearerToken, ClientConfig, ClientTls};
pub use discovery::{Discovery, ResolveFuture, Resolver, SystemResolver};
pub use error::ClientError;
pub use stats::{ClientStats, LOUD_AFTER_CONSECUTIVE_FAILURES};
