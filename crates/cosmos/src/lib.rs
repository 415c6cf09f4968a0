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
//! its response unshared (logged and counted by the [`TokenBrokerClient`]). One thing the
//! wrapper cannot check is that the [`ContainerScope`] names the wrapped container: a scope
//! shared by two containers (or by a container deleted and recreated under the same names) can
//! hand one container another's token, which Cosmos answers with 404/1002 retries for about 30 s.
//! Give every container its own scope.
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
//!   key's own writes: one range, or a parent and its children after a split.
//! - Keyed by a session scope, the stored token can span many ranges. The wrapper asks the broker
//!   for the target range only, when it knows the range of the partition key: it learns
//!   partition key → range id from the responses it sees (every response's token names the range
//!   that served it). The SDK 1.0.0 exposes no public way to look the range id up beforehand
//!   (`FeedRange`s carry EPK bounds, not ids).
//! - When the target range is not known, a token is sent only if it has at most
//!   [`BrokeredContainer::with_max_unscoped_segments`] segments (default 1): the newer gateway
//!   rejects composite tokens, and large composites overflow header limits. Otherwise that read
//!   goes ahead with the SDK's own token (normal session semantics), for example for a
//!   partition-key key right after a split, until a response teaches the new range.
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
pub use keys::{DOCUMENT_ID_PREFIX, KeyStrategy, SESSION_PREFIX};
pub use scope::{ContainerScope, ScopeError};
