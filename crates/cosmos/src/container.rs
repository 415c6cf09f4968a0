//! [`BrokeredContainer`]: a [`ContainerClient`] whose reads carry the broker's token and whose
//! writes record theirs.
//!
//! Why writes await PutToken: the caller may answer its own client as soon as the write returns,
//! and that client's next read may land on another pod within milliseconds. A fire-and-forget
//! PutToken could still be in flight then. The cost is one broker round trip (bounded by the
//! client's deadline) per write.

use std::sync::Arc;

use azure_data_cosmos::feed::FeedRange;
use azure_data_cosmos::models::{ItemResponse, PatchInstructions};
use azure_data_cosmos::options::{
    ItemReadOptions, ItemWriteOptions, PatchItemOptions, QueryOptions, SessionToken,
};
use azure_data_cosmos::{ContainerClient, FeedScope, PartitionKey, Query};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokenbroker_client::TokenBrokerClient;

use crate::keys::{KeyStrategy, partition_key_json};
use crate::local_tokens::LocalTokens;
use crate::query::{BrokeredQuery, BrokeredQueryPages, PageObserver};
use crate::range_ids::{RangeIds, Target, single_range_id};
use crate::scope::ContainerScope;

/// How many keys the per-process token and range maps hold before starting over.
const MEMORY_CAPACITY: usize = 100_000;

/// A [`ContainerClient`] with tokenbroker around every item operation. Cheap to clone; clones
/// share the broker client and what the process learned.
#[derive(Clone)]
pub struct BrokeredContainer {
    container: ContainerClient,
    broker: TokenBrokerClient,
    scope: ContainerScope,
    strategy: KeyStrategy,
    max_unscoped_segments: usize,
    local_tokens: Arc<LocalTokens>,
    range_ids: Arc<RangeIds>,
}

/// The broker key and partition key JSON of one operation.
struct OperationKey {
    key: String,
    partition_key_json: String,
}

impl BrokeredContainer {
    /// Wraps `container`; `scope` must name that container. Keys by partition key value.
    pub fn new(
        container: ContainerClient,
        broker: TokenBrokerClient,
        scope: ContainerScope,
    ) -> Self {
        Self {
            container,
            broker,
            scope,
            strategy: KeyStrategy::default(),
            max_unscoped_segments: 1,
            local_tokens: Arc::new(LocalTokens::new(MEMORY_CAPACITY)),
            range_ids: Arc::new(RangeIds::new(MEMORY_CAPACITY)),
        }
    }

    /// Sets how broker keys are chosen.
    pub fn with_key_strategy(mut self, strategy: KeyStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// When the target range id is not known, the largest token (in segments) sent whole;
    /// default 1, so no composite token is ever sent. See the crate docs.
    pub fn with_max_unscoped_segments(mut self, segments: usize) -> Self {
        self.max_unscoped_segments = segments;
        self
    }

    /// The same container keyed by a session scope the caller supplies, for example an end-user
    /// id: every read made through it sees every write made through it for the same session, on
    /// any pod and across partitions.
    pub fn for_session(&self, session: impl Into<String>) -> Self {
        self.clone()
            .with_key_strategy(KeyStrategy::Session(session.into()))
    }

    /// The wrapped SDK client, for operations the wrapper does not cover.
    pub fn container_client(&self) -> &ContainerClient {
        &self.container
    }

    /// The broker client (its `stats()` count broker failures).
    pub fn broker(&self) -> &TokenBrokerClient {
        &self.broker
    }

    pub fn scope(&self) -> &ContainerScope {
        &self.scope
    }

    pub fn key_strategy(&self) -> &KeyStrategy {
        &self.strategy
    }

    /// Point read, with the broker's token for the key.
    ///
    /// If the response shows that the token named another range than the one that served the
    /// read (the partition split since this process learned its range), the token did not apply:
    /// the read is made once more with the token re-keyed for the range that served it.
    pub async fn read_item(
        &self,
        partition_key: impl Into<PartitionKey>,
        item_id: &str,
        options: Option<ItemReadOptions>,
    ) -> azure_data_cosmos::Result<ItemResponse> {
        let partition_key = partition_key.into();
        let mut options = options.unwrap_or_default();
        let Some(key) = self.item_key(&partition_key, item_id) else {
            return self
                .container
                .read_item(partition_key, item_id, Some(options))
                .await;
        };
        if options.session_token.is_some() {
            // The caller's own token is sent as it is; the answer is still remembered.
            return self
                .read_observed(&key, partition_key, item_id, options)
                .await;
        }
        let sent = self.token_for_read(&key, &partition_key).await;
        let sent_range = sent
            .as_ref()
            .and_then(|t| single_range_id(t).map(str::to_owned));
        options.session_token = sent.map(SessionToken::new);
        let result = self
            .read_observed(&key, partition_key.clone(), item_id, options.clone())
            .await;
        let served_range = captured_token(&result).and_then(single_range_id);
        let (Some(sent_range), Some(served_range)) = (sent_range, served_range) else {
            return result;
        };
        if sent_range == served_range {
            return result;
        }
        let retry = self.token_for_read(&key, &partition_key).await;
        if retry.as_deref().and_then(single_range_id) != Some(served_range) {
            return result;
        }
        tracing::debug!(
            key = %key.key,
            sent_range,
            served_range,
            "the token named a range that did not serve the read (split): reading again"
        );
        options.session_token = retry.map(SessionToken::new);
        self.read_observed(&key, partition_key, item_id, options)
            .await
    }

    /// One point read, whose answer is remembered.
    async fn read_observed(
        &self,
        key: &OperationKey,
        partition_key: PartitionKey,
        item_id: &str,
        options: ItemReadOptions,
    ) -> azure_data_cosmos::Result<ItemResponse> {
        let result = self
            .container
            .read_item(partition_key.clone(), item_id, Some(options))
            .await;
        self.observe(key, &partition_key, captured_token(&result))
            .await;
        result
    }

    /// A query within one partition, with the broker's token for the partition's key (none under
    /// [`KeyStrategy::DocumentId`]). Pages are the SDK's; their tokens are remembered like every
    /// other response's.
    pub async fn query_items<T: DeserializeOwned + Send + 'static>(
        &self,
        query: impl Into<Query>,
        partition_key: impl Into<PartitionKey>,
        options: Option<QueryOptions>,
    ) -> azure_data_cosmos::Result<BrokeredQuery<T>> {
        let partition_key = partition_key.into();
        let partition_key_json = partition_key_json(&partition_key);
        let key = partition_key_json.as_ref().and_then(|json| {
            self.strategy.query_key(json).map(|key| OperationKey {
                key,
                partition_key_json: json.clone(),
            })
        });
        let mut options = options.unwrap_or_default();
        if options.session_token.is_none()
            && let Some(key) = &key
        {
            options.session_token = self
                .token_for_read(key, &partition_key)
                .await
                .map(SessionToken::new);
        }
        let bounds = self.bounds(&partition_key).await;
        let pages = self
            .container
            .query_items(query, FeedScope::partition(partition_key), Some(options))
            .await?
            .into_pages();
        let observer = PageObserver {
            local_tokens: Arc::clone(&self.local_tokens),
            range_ids: Arc::clone(&self.range_ids),
            partition_key_json,
            bounds,
        };
        Ok(BrokeredQuery::new(BrokeredQueryPages::new(pages, observer)))
    }

    /// Creates an item, then records the write's token with the broker.
    pub async fn create_item<T: Serialize>(
        &self,
        partition_key: impl Into<PartitionKey>,
        item_id: &str,
        item: T,
        options: Option<ItemWriteOptions>,
    ) -> azure_data_cosmos::Result<ItemResponse> {
        let partition_key = partition_key.into();
        let key = self.item_key(&partition_key, item_id);
        let result = self
            .container
            .create_item(partition_key.clone(), item_id, item, options)
            .await;
        self.record_write(key, &partition_key, &result).await;
        result
    }

    /// Creates or replaces an item, then records the write's token with the broker.
    pub async fn upsert_item<T: Serialize>(
        &self,
        partition_key: impl Into<PartitionKey>,
        item_id: &str,
        item: T,
        options: Option<ItemWriteOptions>,
    ) -> azure_data_cosmos::Result<ItemResponse> {
        let partition_key = partition_key.into();
        let key = self.item_key(&partition_key, item_id);
        let result = self
            .container
            .upsert_item(partition_key.clone(), item_id, item, options)
            .await;
        self.record_write(key, &partition_key, &result).await;
        result
    }

    /// Replaces an item, then records the write's token with the broker.
    pub async fn replace_item<T: Serialize>(
        &self,
        partition_key: impl Into<PartitionKey>,
        item_id: &str,
        item: T,
        options: Option<ItemWriteOptions>,
    ) -> azure_data_cosmos::Result<ItemResponse> {
        let partition_key = partition_key.into();
        let key = self.item_key(&partition_key, item_id);
        let result = self
            .container
            .replace_item(partition_key.clone(), item_id, item, options)
            .await;
        self.record_write(key, &partition_key, &result).await;
        result
    }

    /// Applies a partial update (PATCH), then records the write's token with the broker. `patch`
    /// is anything that converts into [`PatchInstructions`], for example a
    /// `Vec<PatchOperation>`:
    ///
    /// ```no_run
    /// # async fn doc(orders: tokenbroker_cosmos::BrokeredContainer) -> azure_data_cosmos::Result<()> {
    /// use azure_data_cosmos::models::PatchOperation;
    /// orders
    ///     .patch_item("user-1", "order-7", vec![PatchOperation::increment("/items", 1i64)], None)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// PATCH is behind the SDK's `unstable_patch` feature in `azure_data_cosmos` 1.0.0, which
    /// this crate enables (the SDK version is pinned).
    pub async fn patch_item(
        &self,
        partition_key: impl Into<PartitionKey>,
        item_id: &str,
        patch: impl Into<PatchInstructions>,
        options: Option<PatchItemOptions>,
    ) -> azure_data_cosmos::Result<ItemResponse> {
        let partition_key = partition_key.into();
        let key = self.item_key(&partition_key, item_id);
        let result = self
            .container
            .patch_item(partition_key.clone(), item_id, patch.into(), options)
            .await;
        self.record_write(key, &partition_key, &result).await;
        result
    }

    /// Deletes an item, then records the write's token with the broker (a later read on another
    /// pod must see the delete too).
    pub async fn delete_item(
        &self,
        partition_key: impl Into<PartitionKey>,
        item_id: &str,
        options: Option<ItemWriteOptions>,
    ) -> azure_data_cosmos::Result<ItemResponse> {
        let partition_key = partition_key.into();
        let key = self.item_key(&partition_key, item_id);
        let result = self
            .container
            .delete_item(partition_key.clone(), item_id, options)
            .await;
        self.record_write(key, &partition_key, &result).await;
        result
    }

    fn item_key(&self, partition_key: &PartitionKey, item_id: &str) -> Option<OperationKey> {
        let json = partition_key_json(partition_key)?;
        Some(OperationKey {
            key: self.strategy.item_key(&json, item_id),
            partition_key_json: json,
        })
    }

    /// The bounds (EPK range) of the physical partition holding the key, from the SDK's
    /// routing map (cached by the SDK).
    async fn bounds(&self, partition_key: &PartitionKey) -> Option<FeedRange> {
        let mut ranges = self
            .container
            .feed_range_from_partition_key(partition_key.clone(), None)
            .await
            .ok()?;
        if ranges.len() == 1 {
            ranges.pop()
        } else {
            None
        }
    }

    /// The token to send with a read, or `None` to let the SDK send its own.
    ///
    /// When the target range is known, exactly one segment is sent: the target's, merged from
    /// the broker's and this process's, or, when the target has none yet (just split), its
    /// parents' merged and re-keyed under the target's id, as the SDKs do. When it is not
    /// known, the broker's token is sent (merged with this process's for the same ranges) only
    /// if it has at most `max_unscoped_segments` segments.
    async fn token_for_read(
        &self,
        key: &OperationKey,
        partition_key: &PartitionKey,
    ) -> Option<String> {
        let target = match self.bounds(partition_key).await {
            Some(bounds) => self.range_ids.target(&key.partition_key_json, &bounds),
            None => None,
        };
        let ranges = target.as_ref().map(Target::ranges).unwrap_or_default();
        let broker = self
            .broker
            .token_for_read(self.scope.as_str(), &key.key, &ranges)
            .await?;
        let broker = match session_token::SessionToken::parse(&broker) {
            Ok(token) => token,
            Err(error) => {
                tracing::warn!(%error, key = %key.key, "the broker's token does not parse: reading with the SDK's own token");
                return None;
            }
        };
        let token = match &target {
            Some(target) => {
                let seen = match self.local_tokens.get(&ranges) {
                    Some(local) => broker.merge(&local).unwrap_or(broker),
                    None => broker,
                };
                rekey_for_target(&seen, target)?
            }
            None => self.local_tokens.merged_into(broker),
        };
        // A composite token for a range we cannot name is not sent: the newer gateway rejects
        // composites, and a segment of another range buys nothing. The SDK's own token is used
        // instead (normal session semantics).
        if target.is_none() && token.len() > self.max_unscoped_segments {
            tracing::debug!(
                segments = token.len(),
                key = %key.key,
                "target range not known and the token spans several ranges: reading with the SDK's own token"
            );
            return None;
        }
        Some(token.to_string())
    }

    /// Remembers what a response taught: this process's progress in the range, and the range
    /// that serves the partition key.
    async fn observe(&self, key: &OperationKey, partition_key: &PartitionKey, token: Option<&str>) {
        let Some(token) = token else {
            return;
        };
        self.local_tokens.observe(token);
        if let Some(bounds) = self.bounds(partition_key).await {
            self.range_ids.learn(&key.partition_key_json, bounds, token);
        }
    }

    /// Records a write's token with the broker, for every answer the SDKs take a token from
    /// (success, 409, 412, 404 other than 1002): a 412 or 409 tells of a newer write that a
    /// read of this key must not miss.
    async fn record_write(
        &self,
        key: Option<OperationKey>,
        partition_key: &PartitionKey,
        result: &azure_data_cosmos::Result<ItemResponse>,
    ) {
        let Some(key) = key else {
            return;
        };
        let token = captured_token(result);
        self.observe(&key, partition_key, token).await;
        match token {
            Some(token) => {
                self.broker
                    .record_write(self.scope.as_str(), &key.key, token)
                    .await;
            }
            None => {
                tracing::debug!(key = %key.key, "write answer carried no session token to record")
            }
        }
    }
}

/// The session token of an answer, when the SDKs would take it: on success, and on 404 (other
/// than 404/1002, read session not available, whose token is the one the request asked for),
/// 409 and 412.
fn captured_token(result: &azure_data_cosmos::Result<ItemResponse>) -> Option<&str> {
    match result {
        Ok(response) => response.headers().session_token().map(|t| t.as_str()),
        Err(error) => {
            let status = error.status();
            let captured = (status.is_not_found() && !status.is_read_session_not_available())
                || status.is_conflict()
                || status.is_precondition_failed();
            if !captured {
                return None;
            }
            error
                .response()?
                .headers()
                .session_token
                .as_ref()
                .map(|t| t.as_str())
        }
    }
}

/// The one segment to send for `target`: its own token if `token` has one, otherwise its
/// parents' merged, under the target's id. `None` when `token` has neither.
fn rekey_for_target(
    token: &session_token::SessionToken,
    target: &Target,
) -> Option<session_token::SessionToken> {
    let id = session_token::PkRangeId::new(&target.id).ok()?;
    let own = token.get(&target.id).cloned();
    let segment = match own {
        Some(own) => own,
        None => {
            let mut parents = target
                .parents
                .iter()
                .filter_map(|p| token.get(p).map(|t| (p, t)));
            let (_, first) = parents.next()?;
            parents.fold(first.clone(), |acc, (range, parent)| {
                acc.merge(parent, range).unwrap_or(acc)
            })
        }
    };
    session_token::SessionToken::from_segments([(id, segment)])
}
