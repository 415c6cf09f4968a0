//! Read-your-writes across pods for an `azure_data_cosmos` [`ContainerClient`], through tokenbroker.
//!
//! Why a wrapper: the call pattern around every Cosmos operation (GetToken before a read, PutToken
//! after a write, never fail the operation because of the broker) is easy to forget at one call
//! site, and one forgotten write is one stale read on another pod. [`BrokeredContainer`] has the
//! same item methods as [`ContainerClient`] and does the pattern in each:
//!
//! - **reads** ([`BrokeredContainer::read_item`], [`BrokeredContainer::query_items`] within one
//!   partition) ask the broker for the key's token and send it with the request; queries
//!   return [`BrokeredQuery`], the SDK's items or pages with their tokens remembered;
//! - **writes** (create, upsert, replace, patch, delete) record the response's session token with
//!   PutToken and *await* it before returning: the caller may answer its own client next, and that
//!   client's next read may land on another pod.
//!
//! The broker never fails an operation: on any broker error or timeout the read goes ahead without
//! a broker token (the SDK then sends its own, as it would without the broker) and a write returns
//! its response unshared (logged and counted by the [`TokenBrokerClient`]). A token the container
//! cannot serve does not fail a read either (see [`BrokeredContainer::read_item`]): measured with
//! `azure_data_cosmos` 1.0.0 on its emulator, the SDK gives up on such a token within
//! milliseconds (404/1002 in every region, then 503/20310; 400/1024 or a client-side 400 after the
//! container was recreated), and the wrapper then makes the read once more without the broker's
//! token, returns that result, counts it (`ClientStats::fallback_reads`), logs it at warn with the
//! scope and the ranges, and discards the token from the broker (`DiscardToken`), so the next
//! pod's read does not meet it.
//!
//! # Scopes and container generations
//! [`BrokeredContainer::connect`] resolves the container by name and scopes its tokens by
//! generation: `<account host>/<database>/<container>/<_rid>`. A container deleted and recreated
//! under the same name has a new `_rid`, so its predecessor's tokens are never sent to it, and two
//! containers can never share a scope by mistake. When a read meets a recreation, the wrapper
//! resolves the container again and moves to the new scope, with a new SDK client (the old one
//! refuses explicit tokens for the replacement) and fresh per-process memories.
//! [`BrokeredContainer::new`] takes an explicit [`ContainerScope`] instead, for callers that need
//! one; it cannot follow a recreation (its reads still succeed, through the fallback).

//! # Keys
//! The broker stores tokens per (scope, key). The scope is the container generation (above); the
//! key comes from the [`KeyStrategy`]:
//! the partition key value (default), the document id, or a session scope the caller supplies
//! (for example an end-user id, with [`BrokeredContainer::for_session`]).
//!
//! # Sending only what the partition needs
//! A session token has one segment per partition key range (`<pkRangeId>:<token>`); Cosmos
//! rejects headers that grow too large, the newer gateway rejects composite tokens, and the SDKs
//! send only the target range's segment. So does the wrapper, whenever it knows the target range:
//! - it learns partition key → range id from the answers it sees (every single-partition
//!   answer's token names the range that served it: point reads, writes, query pages), together
//!   with the range's bounds from the SDK's routing map. The SDK 1.0.0 has no public way to look
//!   the id up beforehand (`FeedRange`s carry EPK bounds, not ids);
//! - a read asks the broker for the target range and the ranges it was split from, and sends one
//!   segment: the target's own, or, when the target has none yet (just split), its parents'
//!   merged and re-keyed under the target's id, as the SDKs do;
//! - after a split the key's bounds change, so the learned id is no longer trusted. If a point
//!   read's answer comes from another range than the one its token named, the token did not
//!   apply: the wrapper learns the new range and reads once more with the right token.
//!
//! When the target range is not known (the first read of a key by this process), the key's
//! token is sent only if it has at most [`BrokeredContainer::with_max_unscoped_segments`]
//! segments (default 1). Otherwise that read goes ahead with the SDK's own token (normal session
//! semantics), for example for a session key that spans partitions, until an answer teaches the
//! range.
//!
//! # Never worse than the SDK alone
//! A token passed in the options replaces the SDK's own for that request. So the wrapper keeps
//! what this process saw, range by range, like the SDK's own cache: every answer it sees (also
//! 409, 412 and 404 answers, except 404/1002) is merged in, and a read's token is the broker's
//! merged with it. A pod never reads older data in a range than it wrote or read before through
//! the wrapper, even if a PutToken of its own was lost. Writes made with the bare
//! [`ContainerClient`] are not seen by the wrapper: use the wrapper for every item operation on
//! the container. A 409 or 412 answer to a write is also recorded with the broker: it tells of a
//! newer write that a read of the key must not miss.
//!
//! [`ContainerClient`]: azure_data_cosmos::ContainerClient
//! [`TokenBrokerClient`]: tokenbroker_client::TokenBrokerClient

#![warn(missing_docs)]

mod container;
mod fallback;
mod generation;
mod keys;
mod local_tokens;
mod query;
mod range_ids;
mod read_token;
mod scope;
mod writes;

pub use container::BrokeredContainer;
pub use generation::ResolveError;
pub use keys::{DOCUMENT_ID_PREFIX, KeyStrategy, SESSION_PREFIX};
pub use query::{BrokeredQuery, BrokeredQueryPages};
pub use scope::{ContainerScope, ScopeError};
