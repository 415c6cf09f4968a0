//! [`BrokeredContainer`]: a [`ContainerClient`] whose reads carry the broker's token and whose
//! writes record theirs.
//!
//! Why writes await PutToken: the caller may answer its own client as soon as the write returns,
//! and that client's next read may land on another pod within milliseconds. A fire-and-forget
//! PutToken could still be in flight then. The cost is one broker round trip (bounded by the
//! client's deadline) per write.

use std::sync::Arc;

use azure_data_cosmos::feed::QueryItemIterator;
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
use crate::range_ids::RangeIds;
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
    pub async fn read_item(
        &self,
        partition_key: impl Into<PartitionKey>,
        item_id: &str,
        options: Option<ItemReadOptions>,
    ) -> azure_data_cosmos::Result<ItemResponse> {
        let partition_key = partition_key.into();
        let key = self.item_key(&partition_key, item_id);
        let mut options = options.unwrap_or_default();
        if options.session_token.is_none()
            && let Some(key) = &key
        {
            options.session_token = self.token_for_read(key).await;
        }
        let response = self
            .container
            .read_item(partition_key, item_id, Some(options))
            .await?;
        if let Some(key) = &key {
            self.observe(key, &response);
        }
        Ok(response)
    }

    /// A query within one partition, with the broker's token for the partition's key (none under
    /// [`KeyStrategy::DocumentId`]). Pages are the SDK's.
    pub async fn query_items<T: DeserializeOwned + Send + 'static>(
        &self,
        query: impl Into<Query>,
        partition_key: impl Into<PartitionKey>,
        options: Option<QueryOptions>,
    ) -> azure_data_cosmos::Result<QueryItemIterator<T>> {
        let partition_key = partition_key.into();
        let key = partition_key_json(&partition_key).and_then(|json| {
            self.strategy.query_key(&json).map(|key| OperationKey {
                key,
                partition_key_json: json,
            })
        });
        let mut options = options.unwrap_or_default();
        if options.session_token.is_none()
            && let Some(key) = &key
        {
            options.session_token = self.token_for_read(key).await;
        }
        self.container
            .query_items(query, FeedScope::partition(partition_key), Some(options))
            .await
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
        let response = self
            .container
            .create_item(partition_key, item_id, item, options)
            .await?;
        self.record_write(key, &response).await;
        Ok(response)
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
        let response = self
            .container
            .upsert_item(partition_key, item_id, item, options)
            .await?;
        self.record_write(key, &response).await;
        Ok(response)
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
        let response = self
            .container
            .replace_item(partition_key, item_id, item, options)
            .await?;
        self.record_write(key, &response).await;
        Ok(response)
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
        let response = self
            .container
            .patch_item(partition_key, item_id, patch.into(), options)
            .await?;
        self.record_write(key, &response).await;
        Ok(response)
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
        let response = self
            .container
            .delete_item(partition_key, item_id, options)
            .await?;
        self.record_write(key, &response).await;
        Ok(response)
    }

    fn item_key(&self, partition_key: &PartitionKey, item_id: &str) -> Option<OperationKey> {
        let json = partition_key_json(partition_key)?;
        Some(OperationKey {
            key: self.strategy.item_key(&json, item_id),
            partition_key_json: json,
        })
    }

    /// The token to send with a read, or `None` to let the SDK send its own.
    async fn token_for_read(&self, key: &OperationKey) -> Option<SessionToken> {
        let ranges: Vec<String> = if self.strategy.spans_partitions() {
            self.range_ids
                .get(&key.partition_key_json)
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        let token = self
            .broker
            .token_for_read(self.scope.as_str(), &key.key, &ranges)
            .await?;
        let token = self.local_tokens.merged_with(&key.key, &token, &ranges);
        // Counted after the local merge, which can add ranges. A composite token for a range we
        // cannot name is not sent: the newer gateway rejects composites, and a segment of another
        // range buys nothing. The SDK's own token is used instead (normal session semantics).
        if ranges.is_empty() {
            let segments = token.split(',').count();
            if segments > self.max_unscoped_segments {
                tracing::debug!(
                    segments,
                    key = %key.key,
                    "target range not known and the token spans several ranges: reading with the SDK's own token"
                );
                return None;
            }
        }
        Some(SessionToken::new(token))
    }

    /// Remembers what a response taught: the key's token, the partition's range id.
    fn observe(&self, key: &OperationKey, response: &ItemResponse) {
        if let Some(token) = response.headers().session_token() {
            self.local_tokens.observe(&key.key, token.as_str());
            self.range_ids
                .learn(&key.partition_key_json, token.as_str());
        }
    }

    async fn record_write(&self, key: Option<OperationKey>, response: &ItemResponse) {
        let Some(key) = key else {
            return;
        };
        self.observe(&key, response);
        match response.headers().session_token() {
            Some(token) => {
                self.broker
                    .record_write(self.scope.as_str(), &key.key, token.as_str())
                    .await;
            }
            None => tracing::debug!(key = %key.key, "write response carried no session token"),
        }
    }
}
