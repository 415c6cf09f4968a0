//! The writes of [`BrokeredContainer`]: each records the response's session token with the
//! broker before it returns.
//!
//! Why writes await PutToken: the caller may answer its own client as soon as the write returns,
//! and that client's next read may land on another pod within milliseconds. A fire-and-forget
//! PutToken could still be in flight then. The cost is one broker round trip (bounded by the
//! client's deadline) per write.

use azure_data_cosmos::models::{ItemResponse, PatchInstructions};
use azure_data_cosmos::options::{ItemWriteOptions, PatchItemOptions};
use azure_data_cosmos::{ContainerClient, PartitionKey};
use serde::Serialize;

use crate::container::{BrokeredContainer, OperationKey, captured_token, observe};
use crate::generation::Generation;

impl BrokeredContainer {
    /// Runs one write on the current generation's client, then records its token.
    async fn recorded<F, Fut>(
        &self,
        partition_key: PartitionKey,
        item_id: &str,
        write: F,
    ) -> azure_data_cosmos::Result<ItemResponse>
    where
        F: FnOnce(ContainerClient, PartitionKey) -> Fut,
        Fut: Future<Output = azure_data_cosmos::Result<ItemResponse>>,
    {
        let generation = self.generations.current();
        let key = self.item_key(&partition_key, item_id);
        let result = write(generation.container.clone(), partition_key.clone()).await;
        self.record_write(&generation, key, &partition_key, &result)
            .await;
        result
    }

    /// Creates an item, then records the write's token with the broker.
    pub async fn create_item<T: Serialize>(
        &self,
        partition_key: impl Into<PartitionKey>,
        item_id: &str,
        item: T,
        options: Option<ItemWriteOptions>,
    ) -> azure_data_cosmos::Result<ItemResponse> {
        self.recorded(partition_key.into(), item_id, |c, pk| async move {
            c.create_item(pk, item_id, item, options).await
        })
        .await
    }

    /// Creates or replaces an item, then records the write's token with the broker.
    pub async fn upsert_item<T: Serialize>(
        &self,
        partition_key: impl Into<PartitionKey>,
        item_id: &str,
        item: T,
        options: Option<ItemWriteOptions>,
    ) -> azure_data_cosmos::Result<ItemResponse> {
        self.recorded(partition_key.into(), item_id, |c, pk| async move {
            c.upsert_item(pk, item_id, item, options).await
        })
        .await
    }

    /// Replaces an item, then records the write's token with the broker.
    pub async fn replace_item<T: Serialize>(
        &self,
        partition_key: impl Into<PartitionKey>,
        item_id: &str,
        item: T,
        options: Option<ItemWriteOptions>,
    ) -> azure_data_cosmos::Result<ItemResponse> {
        self.recorded(partition_key.into(), item_id, |c, pk| async move {
            c.replace_item(pk, item_id, item, options).await
        })
        .await
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
        let patch = patch.into();
        self.recorded(partition_key.into(), item_id, |c, pk| async move {
            c.patch_item(pk, item_id, patch, options).await
        })
        .await
    }

    /// Deletes an item, then records the write's token with the broker (a later read on another
    /// pod must see the delete too).
    pub async fn delete_item(
        &self,
        partition_key: impl Into<PartitionKey>,
        item_id: &str,
        options: Option<ItemWriteOptions>,
    ) -> azure_data_cosmos::Result<ItemResponse> {
        self.recorded(partition_key.into(), item_id, |c, pk| async move {
            c.delete_item(pk, item_id, options).await
        })
        .await
    }

    /// Records a write's token with the broker, for every answer the SDKs take a token from
    /// (success, 409, 412, 404 other than 1002): a 412 or 409 tells of a newer write that a
    /// read of this key must not miss.
    async fn record_write(
        &self,
        generation: &Generation,
        key: Option<OperationKey>,
        partition_key: &PartitionKey,
        result: &azure_data_cosmos::Result<ItemResponse>,
    ) {
        let Some(key) = key else {
            return;
        };
        let token = captured_token(result);
        observe(generation, &key, partition_key, token).await;
        match token {
            Some(token) => {
                self.broker
                    .record_write(generation.scope.as_str(), &key.key, token)
                    .await;
            }
            None => {
                tracing::debug!(scope = %generation.scope, "write answer carried no session token to record")
            }
        }
    }
}
