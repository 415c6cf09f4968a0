//! The container generation a [`crate::BrokeredContainer`] works with: the SDK client, the
//! broker scope, and what this process learned of the container's ranges.
//!
//! Why generations: a container deleted and recreated under the same name is a new container
//! (a new `_rid`, LSNs starting over). Its predecessor's tokens are unservable in it (the
//! service answers 404/1002, then the SDK 503/20310), and an SDK client created before the
//! recreation refuses every explicit session token for the replacement (a client-side 400,
//! after a 400/1024 CollectionRidMismatch). So tokens are scoped by generation
//! (`<account host>/<database>/<container>/<_rid>`), and when a read meets the recreation the
//! wrapper resolves the container again: a new SDK client, the new scope, fresh per-process
//! memories. Operations take the current generation when they start and keep it to the end.

use std::sync::{Arc, PoisonError, RwLock};

use azure_data_cosmos::{ContainerClient, CosmosClient};

use crate::local_tokens::LocalTokens;
use crate::range_ids::RangeIds;
use crate::scope::{ContainerScope, ScopeError};

/// How many keys the per-process token and range maps hold before starting over.
const MEMORY_CAPACITY: usize = 100_000;

/// Why a container could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The SDK could not build the container client or read the container's properties.
    #[error("cannot resolve container {database}/{container}: {source}")]
    Sdk {
        /// The database name as given.
        database: String,
        /// The container name as given.
        container: String,
        /// The SDK's error.
        #[source]
        source: azure_data_cosmos::CosmosError,
    },
    /// The container's properties carry no resource id (`_rid`).
    #[error("container {database}/{container}: its properties carry no resource id (_rid)")]
    NoResourceId {
        /// The database name as given.
        database: String,
        /// The container name as given.
        container: String,
    },
    /// The account endpoint has no host name.
    #[error("the account endpoint {0} has no host name")]
    NoHost(String),
    /// A part of the scope is not usable.
    #[error(transparent)]
    Scope(#[from] ScopeError),
}

/// One generation of the container, as this process sees it.
pub(crate) struct Generation {
    pub(crate) container: ContainerClient,
    pub(crate) scope: ContainerScope,
    pub(crate) local_tokens: LocalTokens,
    pub(crate) range_ids: RangeIds,
}

impl Generation {
    pub(crate) fn new(container: ContainerClient, scope: ContainerScope) -> Self {
        Self {
            container,
            scope,
            local_tokens: LocalTokens::new(MEMORY_CAPACITY),
            range_ids: RangeIds::new(MEMORY_CAPACITY),
        }
    }
}

/// Where the container came from, so that it can be resolved again.
enum Source {
    /// Given by the caller with an explicit scope: never resolved again.
    Fixed,
    /// Resolved by name through a `CosmosClient`.
    Named {
        client: CosmosClient,
        database: String,
        container: String,
    },
}

/// The current generation, swapped when the container turns out to have been recreated.
pub(crate) struct Generations {
    current: RwLock<Arc<Generation>>,
    source: Source,
    /// One re-resolution at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl Generations {
    pub(crate) fn fixed(container: ContainerClient, scope: ContainerScope) -> Self {
        Self {
            current: RwLock::new(Arc::new(Generation::new(container, scope))),
            source: Source::Fixed,
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Resolves `database`/`container` through `client` and scopes it by its resource id.
    pub(crate) async fn named(
        client: CosmosClient,
        database: &str,
        container: &str,
    ) -> Result<Self, ResolveError> {
        let generation = resolve(&client, database, container).await?;
        Ok(Self {
            current: RwLock::new(Arc::new(generation)),
            source: Source::Named {
                client,
                database: database.to_owned(),
                container: container.to_owned(),
            },
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn current(&self) -> Arc<Generation> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The container looks recreated (a read through `seen` met 400/1024 or the SDK's
    /// refusal): resolves it again and moves to the new generation when its resource id
    /// changed. Returns the generation to use now; `seen` itself when the container was given
    /// with a fixed scope, or when resolving fails (logged).
    pub(crate) async fn after_recreation(&self, seen: &Arc<Generation>) -> Arc<Generation> {
        let Source::Named {
            client,
            database,
            container,
        } = &self.source
        else {
            return Arc::clone(seen);
        };
        let _one_at_a_time = self.refreshing.lock().await;
        let current = self.current();
        if !Arc::ptr_eq(&current, seen) {
            // Another operation moved on already.
            return current;
        }
        match resolve(client, database, container).await {
            Ok(fresh) => {
                if fresh.scope == current.scope {
                    // Same resource id: not a recreation after all; a fresh SDK client still
                    // clears whatever the old one concluded.
                    tracing::info!(scope = %current.scope, "container resolved again: same generation");
                } else {
                    tracing::warn!(old = %current.scope, new = %fresh.scope, "container was recreated: moving to the new generation's scope");
                }
                let fresh = Arc::new(fresh);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&fresh);
                fresh
            }
            Err(error) => {
                tracing::warn!(%error, "cannot resolve the container again; keeping the current generation");
                current
            }
        }
    }
}

/// Builds the SDK client of `database`/`container` and its generation scope.
async fn resolve(
    client: &CosmosClient,
    database: &str,
    container: &str,
) -> Result<Generation, ResolveError> {
    let sdk = |source| ResolveError::Sdk {
        database: database.to_owned(),
        container: container.to_owned(),
        source,
    };
    let database_client = client.database_client(database);
    let resolving = database_client
        .container_client(container, None)
        .await
        .map_err(sdk)?;
    let properties = resolving
        .read(None)
        .await
        .map_err(sdk)?
        .into_model()
        .map_err(sdk)?;
    // The SDK resolves a container client from its cache, which still names the previous
    // generation right after a recreation; reading the properties refreshes that cache, so
    // the client kept is resolved again, now for the generation the properties describe.
    // Measured on the emulator: without this, the kept client refuses every explicit token.
    let container_client = database_client
        .container_client(container, None)
        .await
        .map_err(sdk)?;
    let rid =
        properties
            .system_properties
            .resource_id
            .ok_or_else(|| ResolveError::NoResourceId {
                database: database.to_owned(),
                container: container.to_owned(),
            })?;
    let endpoint = client.endpoint();
    let host = endpoint
        .host_str()
        .ok_or_else(|| ResolveError::NoHost(endpoint.to_string()))?;
    let scope = ContainerScope::for_generation(host, database, container, &rid)?;
    Ok(Generation::new(container_client, scope))
}
