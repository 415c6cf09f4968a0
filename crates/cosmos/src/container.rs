//! [`BrokeredContainer`]: a [`ContainerClient`] whose reads carry the broker's token (this
//! module) and whose writes record theirs (`writes`).
//!
//! Why reads live apart from writes: a read is where the broker can hurt (a token the
//! container cannot serve), so its path is the one with the fallback (`fallback`), the
//! generation switch (`generation`) and the one-segment rule (`read_token`); writes only
//! record what Cosmos answered.

use std::sync::Arc;

use azure_data_cosmos::models::ItemResponse;
use azure_data_cosmos::options::{ItemReadOptions, QueryOptions, SessionToken};
use azure_data_cosmos::{ContainerClient, CosmosClient, FeedScope, PartitionKey, Query};
use serde::de::DeserializeOwned;
use tokenbroker_client::TokenBrokerClient;

use crate::fallback::{is_recreation, is_unservable, served};
use crate::generation::{Generation, Generations, ResolveError};
use crate::keys::{KeyStrategy, partition_key_json};
use crate::query::{BrokeredQuery, BrokeredQueryPages, PageObserver};
use crate::range_ids::single_range_id;
use crate::read_token::{self, ReadToken, bounds};
use crate::scope::ContainerScope;

/// A [`ContainerClient`] with tokenbroker around every item operation. Cheap to clone; clones
/// share the broker client and what the process learned.
#[derive(Clone)]
pub struct BrokeredContainer {
    pub(crate) broker: TokenBrokerClient,
    strategy: KeyStrategy,
    max_unscoped_segments: usize,
    pub(crate) generations: Arc<Generations>,
}

/// The broker key and partition key JSON of one operation.
pub(crate) struct OperationKey {
    pub(crate) key: String,
    pub(crate) partition_key_json: String,
}

impl BrokeredContainer {
    /// Resolves `database`/`container` through `client` and wraps it, scoped by generation:
    /// `<account host>/<database>/<container>/<_rid>` (the resource id read once from the
    /// container's properties). Tokens of a deleted container are then never sent to its
    /// replacement, two containers never share a scope, and when a read meets a recreation
    /// (400/1024, or the SDK refusing tokens for the replacement) the wrapper resolves the
    /// container again and moves to the new scope without a restart. Keys by partition key
    /// value.
    ///
    /// Errors: the container cannot be resolved or read (it does not exist, no access).
    pub async fn connect(
        client: CosmosClient,
        database: &str,
        container: &str,
        broker: TokenBrokerClient,
    ) -> Result<Self, ResolveError> {
        let generations = Generations::named(client, database, container).await?;
        Ok(Self::with_generations(generations, broker))
    }

    /// Wraps `container` under an explicit `scope`, which must name that container and no
    /// other: see [`ContainerScope`]. Such a wrapper cannot follow a recreation of the
    /// container (its reads still succeed, through the fallback, with one extra request each
    /// until it is rebuilt); prefer [`Self::connect`]. Keys by partition key value.
    pub fn new(
        container: ContainerClient,
        broker: TokenBrokerClient,
        scope: ContainerScope,
    ) -> Self {
        Self::with_generations(Generations::fixed(container, scope), broker)
    }

    fn with_generations(generations: Generations, broker: TokenBrokerClient) -> Self {
        Self {
            broker,
            strategy: KeyStrategy::default(),
            max_unscoped_segments: 1,
            generations: Arc::new(generations),
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

    /// The wrapped SDK client of the current generation, for operations the wrapper does not
    /// cover.
    pub fn container_client(&self) -> ContainerClient {
        self.generations.current().container.clone()
    }

    /// The broker client (its `stats()` count broker failures).
    pub fn broker(&self) -> &TokenBrokerClient {
        &self.broker
    }

    /// The broker scope of the current generation.
    pub fn scope(&self) -> ContainerScope {
        self.generations.current().scope.clone()
    }

    /// How the wrapper chooses the broker key of an operation ([`KeyStrategy::PartitionKey`]
    /// unless set with [`Self::with_key_strategy`] or [`Self::for_session`]).
    pub fn key_strategy(&self) -> &KeyStrategy {
        &self.strategy
    }

    /// Point read, with the broker's token for the key.
    ///
    /// If the read fails because the container cannot serve the broker's token (see
    /// the `fallback` module: 503/20310, 404/1002, a 400 such as 400/1024 after a recreation),
    /// it is made once more without it and that result is returned; the token is then
    /// discarded from the broker. If the response shows that the token named another range
    /// than the one that served the read (the partition split since this process learned its
    /// range), the token did not apply: the read is made once more with the token re-keyed for
    /// the range that served it. Either way, at most one extra read. A token the caller sets in
    /// `options` is sent as it is, and its failures are returned as they are.
    pub async fn read_item(
        &self,
        partition_key: impl Into<PartitionKey>,
        item_id: &str,
        options: Option<ItemReadOptions>,
    ) -> azure_data_cosmos::Result<ItemResponse> {
        let generation = self.generations.current();
        let partition_key = partition_key.into();
        let mut options = options.unwrap_or_default();
        let Some(key) = self.item_key(&partition_key, item_id) else {
            return generation
                .container
                .read_item(partition_key, item_id, Some(options))
                .await;
        };
        if options.session_token.is_some() {
            // The caller's own token is sent as it is; the answer is still remembered.
            return read_observed(&generation, &key, partition_key, item_id, options).await;
        }
        let Some(token) = self.token_for_read(&generation, &key, &partition_key).await else {
            return read_observed(&generation, &key, partition_key, item_id, options).await;
        };
        let sent_range = single_range_id(&token.sent.to_string()).map(str::to_owned);
        options.session_token = Some(SessionToken::new(token.sent.to_string()));
        let result = read_observed(
            &generation,
            &key,
            partition_key.clone(),
            item_id,
            options.clone(),
        )
        .await;
        if let Err(error) = &result
            && is_unservable(error)
        {
            let fallback_generation = if is_recreation(error) {
                self.generations.after_recreation(&generation).await
            } else {
                Arc::clone(&generation)
            };
            options.session_token = None;
            let fallback =
                read_observed(&fallback_generation, &key, partition_key, item_id, options).await;
            if served(&fallback) {
                self.unservable(&generation, &key, &token).await;
            }
            return fallback;
        }
        let served_range = captured_token(&result).and_then(single_range_id);
        let (Some(sent_range), Some(served_range)) = (sent_range, served_range) else {
            return result;
        };
        if sent_range == served_range {
            return result;
        }
        let retry = self.token_for_read(&generation, &key, &partition_key).await;
        let retry = retry.map(|t| t.sent.to_string());
        if retry.as_deref().and_then(single_range_id) != Some(served_range) {
            return result;
        }
        tracing::debug!(
            sent_range,
            served_range,
            "the token named a range that did not serve the read (split): reading again"
        );
        options.session_token = retry.map(SessionToken::new);
        read_observed(&generation, &key, partition_key, item_id, options).await
    }

    /// A read that carried `token` failed on it and succeeded without it: forget what this
    /// process had for those ranges, count, log and discard the broker's part.
    pub(crate) async fn unservable(
        &self,
        generation: &Generation,
        key: &OperationKey,
        token: &ReadToken,
    ) {
        generation.local_tokens.forget(&token.sent);
        match &token.from_broker {
            Some(from_broker) => {
                self.broker
                    .report_unservable(
                        generation.scope.as_str(),
                        &key.key,
                        &from_broker.to_string(),
                    )
                    .await;
            }
            None => {
                tracing::warn!(scope = %generation.scope, "this process's own token could not be served: forgotten");
            }
        }
    }

    /// A query within one partition, with the broker's token for the partition's key (none under
    /// [`KeyStrategy::DocumentId`]). Pages are the SDK's; their tokens are remembered like every
    /// other response's.
    ///
    /// The first page is fetched here, so its failure is returned here rather than from the
    /// stream: if the container cannot serve the broker's token (as for [`Self::read_item`]),
    /// the query is made once more without it, and the token is discarded from the broker.
    pub async fn query_items<T: DeserializeOwned + Send + 'static>(
        &self,
        query: impl Into<Query>,
        partition_key: impl Into<PartitionKey>,
        options: Option<QueryOptions>,
    ) -> azure_data_cosmos::Result<BrokeredQuery<T>> {
        let generation = self.generations.current();
        let query = query.into();
        let partition_key = partition_key.into();
        let partition_key_json = partition_key_json(&partition_key);
        let key = partition_key_json.as_ref().and_then(|json| {
            self.strategy.query_key(json).map(|key| OperationKey {
                key,
                partition_key_json: json.clone(),
            })
        });
        let mut options = options.unwrap_or_default();
        let token = match (&key, &options.session_token) {
            (Some(key), None) => self.token_for_read(&generation, key, &partition_key).await,
            _ => None,
        };
        if let Some(token) = &token {
            options.session_token = Some(SessionToken::new(token.sent.to_string()));
        }
        let query_once = |generation: Arc<Generation>, options: QueryOptions| {
            query_pages::<T>(
                generation,
                query.clone(),
                partition_key.clone(),
                partition_key_json.clone(),
                options,
            )
        };
        let result = query_once(Arc::clone(&generation), options.clone()).await;
        let (Err(error), Some(token), Some(key)) = (&result, &token, &key) else {
            return result.map(BrokeredQuery::new);
        };
        if !is_unservable(error) {
            return result.map(BrokeredQuery::new);
        }
        let fallback_generation = if is_recreation(error) {
            self.generations.after_recreation(&generation).await
        } else {
            Arc::clone(&generation)
        };
        options.session_token = None;
        let fallback = query_once(fallback_generation, options).await;
        if fallback.is_ok() {
            self.unservable(&generation, key, token).await;
        }
        fallback.map(BrokeredQuery::new)
    }

    pub(crate) fn item_key(
        &self,
        partition_key: &PartitionKey,
        item_id: &str,
    ) -> Option<OperationKey> {
        let json = partition_key_json(partition_key)?;
        Some(OperationKey {
            key: self.strategy.item_key(&json, item_id),
            partition_key_json: json,
        })
    }

    /// The token to send with a read of `key` (see [`read_token::for_read`]).
    async fn token_for_read(
        &self,
        generation: &Generation,
        key: &OperationKey,
        partition_key: &PartitionKey,
    ) -> Option<ReadToken> {
        read_token::for_read(
            &self.broker,
            generation,
            &key.key,
            &key.partition_key_json,
            partition_key,
            self.max_unscoped_segments,
        )
        .await
    }
}

/// One point read, whose answer is remembered.
async fn read_observed(
    generation: &Generation,
    key: &OperationKey,
    partition_key: PartitionKey,
    item_id: &str,
    options: ItemReadOptions,
) -> azure_data_cosmos::Result<ItemResponse> {
    let result = generation
        .container
        .read_item(partition_key.clone(), item_id, Some(options))
        .await;
    observe(generation, key, &partition_key, captured_token(&result)).await;
    result
}

/// A query's pages, the first one fetched (so that its failure is known here).
async fn query_pages<T: DeserializeOwned + Send + 'static>(
    generation: Arc<Generation>,
    query: Query,
    partition_key: PartitionKey,
    partition_key_json: Option<String>,
    options: QueryOptions,
) -> azure_data_cosmos::Result<BrokeredQueryPages<T>> {
    let bounds = bounds(&generation, &partition_key).await;
    let pages = generation
        .container
        .query_items(query, FeedScope::partition(partition_key), Some(options))
        .await?
        .into_pages();
    let observer = PageObserver {
        generation,
        partition_key_json,
        bounds,
    };
    let mut pages = BrokeredQueryPages::new(pages, observer);
    pages.fetch_first().await?;
    Ok(pages)
}

/// Remembers what a response taught: this process's progress in the range, and the range that
/// serves the partition key.
pub(crate) async fn observe(
    generation: &Generation,
    key: &OperationKey,
    partition_key: &PartitionKey,
    token: Option<&str>,
) {
    let Some(token) = token else {
        return;
    };
    generation.local_tokens.observe(token);
    if let Some(bounds) = bounds(generation, partition_key).await {
        generation
            .range_ids
            .learn(&key.partition_key_json, bounds, token);
    }
}

/// The session token of an answer, when the SDKs would take it: on success, and on 404 (other
/// than 404/1002, read session not available, whose token is the one the request asked for),
/// 409 and 412.
pub(crate) fn captured_token(result: &azure_data_cosmos::Result<ItemResponse>) -> Option<&str> {
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
