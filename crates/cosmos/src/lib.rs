//! Read-your-writes across pods for an `azure_data_cosmos` [`ContainerClient`], through tokenbroker.
//!
//! Why a wrapper: the call pattern around every Cosmos operation (GetToken before a read, PutToken
//! after a write, never fail the operation because of the broker) is easy to forget at one call
//! site, and one forgotten write is one stale read on another pod. [`BrokeredContainer`] has the
//! same item methods as [`ContainerClient`] and does the pattern in each:
//!
//! - **reads** ([`BrokeredContainer::read_item`], [`BrokeredContainer::query_items`] within one
//!   partition) ask the broker for the key's token and send it with the request;
//! - **writes** (create, upsert, replace, patch, delete) record the response's session token with
//!   PutToken and *await* it before returning: the caller may answer its own client next, and that
//!   client's next read may land on another pod.
//!
//! The broker never fails an operation: on any broker error or timeout the read goes ahead without
//! a broker token (the SDK then sends its own, as it would without the broker) and a write returns
//! its response unshared (logged and counted by the [`TokenBrokerClient`]).
//!
//! # Keys
//! The broker stores tokens per (scope, key). The scope is the container
//! ([`ContainerScope`]: `account/database/container`); the key comes from the [`KeyStrategy`]:
//! the partition key value (default), the document id, or a session scope the caller supplies
//! (for example an end-user id, with [`BrokeredContainer::for_session`]).
//!
//! # Sending only what the partition needs
//! A session token has one segment per partition key range (`<pkRangeId>:<token>`); Cosmos
//! rejects headers that grow too large, and the SDKs send only the target range's segment.
//! - Keyed by partition key or document id, the stored token holds only the segments of that
//!   key's own writes: one range, or a parent and its children after a split. It is sent whole.
//! - Keyed by a session scope, the stored token can span many ranges. The wrapper asks the broker
//!   for the target range only, when it knows the range of the partition key: it learns
//!   partition key → range id from the responses it sees (every response's token names the range
//!   that served it). The SDK 1.0.0 exposes no public way to look the range id up beforehand
//!   (`FeedRange`s carry EPK bounds, not ids). When the range is not known yet, the wrapper asks
//!   for the whole token and sends it if it has at most
//!   [`BrokeredContainer::with_max_unscoped_segments`] segments (default 8): the service picks the
//!   segment of the range it serves. Beyond that it sends no broker token for that read (the SDK
//!   uses its own) rather than risk an oversized header.
//!
//! # Never worse than the SDK alone
//! A token passed in the options replaces the SDK's own for that request, so the wrapper merges
//! the broker's token with the tokens this process itself saw for the key, so that a pod never
//! reads older data than it wrote or read before, even if a PutToken of its own was lost.
//!
//! [`ContainerClient`]: azure_data_cosmos::ContainerClient
//! [`TokenBrokerClient`]: tokenbroker_client::TokenBrokerClient

mod container;
mod keys;
mod local_tokens;
mod range_ids;
mod scope;

pub use container::BrokeredContainer;
pub use keys::KeyStrategy;
pub use scope::{ContainerScope, ScopeError};
