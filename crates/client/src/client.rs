//! The client: raw calls with typed errors, and the helpers that never fail.
//!
//! Why the retry rule is narrow: a call is retried only after a transport failure (connection
//! refused or reset, `UNAVAILABLE`, `CANCELLED` for a call that raced a GOAWAY), on another
//! endpoint when there is one untried, and only within the same deadline. A
//! timeout has spent the budget already, and a refusal (`INVALID_ARGUMENT`...) would be refused by
//! every replica alike.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient as ProtoClient;
use tokenbroker_proto::v1::{
    DiscardTokenRequest, GetTokenRequest, MergeTokenRequest, PutTokenRequest,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::config::ClientConfig;
use crate::endpoints::Endpoints;
use crate::error::ClientError;
use crate::stats::{ClientStats, StatCounters, bump};

/// A `GetToken` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetTokenReply {
    /// The stored token (restricted to the requested ranges); `None` when nothing is stored.
    pub session_token: Option<String>,
    /// The broker could not consult its whole store; the answer may be behind or missing.
    pub degraded: bool,
}

/// A cheap-to-clone handle on the brokers. Clones share connections, breakers and counters.
#[derive(Clone)]
pub struct TokenBrokerClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    /// `Bearer <token>`, ready to send.
    authorization: Option<MetadataValue<Ascii>>,
    endpoints: Arc<Endpoints>,
    stats: Arc<StatCounters>,
    /// The background re-resolution, for discovered endpoints.
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    /// The last clone is gone: stop re-resolving. The task holds the endpoints, not the client,
    /// so without this it would keep resolving (and keep the channels) for nobody.
    fn drop(&mut self) {
        if let Some(refresher) = &self.refresher {
            refresher.abort();
        }
    }
}

/// Codes that say "this endpoint is not working", as opposed to "your request is wrong".
fn is_endpoint_failure(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Internal
    )
}

impl TokenBrokerClient {
    /// Builds the client. Connections are opened lazily, on first use, so this succeeds while
    /// brokers are down. Must be called inside a Tokio runtime.
    ///
    /// With [`ClientConfig::discover`], the name is not resolved here either, so this succeeds
    /// while the brokers (or their DNS records) do not exist yet. A background task resolves it
    /// at once and then every [`Discovery::interval`](crate::Discovery::interval); the first
    /// calls wait for that first answer within their deadline. While nothing has resolved,
    /// calls fail at once with [`ClientError::NotResolved`] (the helpers return "no token").
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let stats = Arc::new(StatCounters::default());
        let endpoints = Arc::new(Endpoints::new(&config, Arc::clone(&stats))?);
        let refresher = endpoints.spawn_refresher();
        let authorization = match &config.bearer_token {
            Some(token) => Some(
                format!("Bearer {}", token.0)
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| ClientError::InvalidBearerToken)?,
            ),
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                authorization,
                config,
                endpoints,
                stats,
                refresher,
            }),
        })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ClientStats {
        let mut stats = self.inner.stats.snapshot();
        stats.endpoints = u64::try_from(self.inner.endpoints.snapshot().len()).unwrap_or(u64::MAX);
        stats
    }

    /// The URLs of the endpoints in use: the configured list, or the last successful resolution.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.endpoints.snapshot().urls()
    }

    /// Resolves the discovery target now, without waiting for the next interval, and returns
    /// the number of endpoints in use. Endpoints still resolved keep their connection and
    /// breaker. On an error (or no address) the endpoints in use stay as they are; the error is
    /// also logged and counted in [`ClientStats::resolution_failures`]. With a fixed list this
    /// does nothing.
    ///
    /// Useful after an event that says the set of brokers changed, and in tests.
    pub async fn refresh_endpoints(&self) -> Result<usize, ClientError> {
        self.inner.endpoints.refresh().await
    }

    /// `PutToken`: merges `session_token` into the token stored under (`scope`, `key`) and returns
    /// the stored result.
    pub async fn put_token(
        &self,
        scope: &str,
        key: &str,
        session_token: &str,
    ) -> Result<String, ClientError> {
        let request = PutTokenRequest {
            scope: scope.to_owned(),
            key: key.to_owned(),
            session_token: session_token.to_owned(),
        };
        self.call(|mut client, request_timeout| {
            let request = self.request(request.clone(), request_timeout);
            async move { client.put_token(request).await }
        })
        .await
        .map(|reply| reply.session_token)
    }

    /// `GetToken`: the token stored under (`scope`, `key`), restricted to `range_ids` if any.
    pub async fn get_token(
        &self,
        scope: &str,
        key: &str,
        range_ids: &[String],
    ) -> Result<GetTokenReply, ClientError> {
        let request = GetTokenRequest {
            scope: scope.to_owned(),
            key: key.to_owned(),
            partition_key_range_ids: range_ids.to_vec(),
        };
        let reply = self
            .call(|mut client, request_timeout| {
                let request = self.request(request.clone(), request_timeout);
                async move { client.get_token(request).await }
            })
            .await?;
        Ok(GetTokenReply {
            session_token: reply.found.then_some(reply.session_token),
            degraded: reply.degraded,
        })
    }

    /// `MergeToken`: merges tokens with the broker's rules, storing nothing.
    pub async fn merge_tokens(&self, session_tokens: &[String]) -> Result<String, ClientError> {
        let request = MergeTokenRequest {
            session_tokens: session_tokens.to_vec(),
        };
        self.call(|mut client, request_timeout| {
            let request = self.request(request.clone(), request_timeout);
            async move { client.merge_token(request).await }
        })
        .await
        .map(|reply| reply.session_token)
    }

    /// `DiscardToken`: removes from the token stored under (`scope`, `key`) the ranges of
    /// `session_token` (all, or only `range_ids` when not empty) whose stored segment is at
    /// least as far ahead: the token a read carried and Cosmos could not serve. Returns the
    /// ranges removed.
    pub async fn discard_token(
        &self,
        scope: &str,
        key: &str,
        session_token: &str,
        range_ids: &[String],
    ) -> Result<Vec<String>, ClientError> {
        let request = DiscardTokenRequest {
            scope: scope.to_owned(),
            key: key.to_owned(),
            session_token: session_token.to_owned(),
            partition_key_range_ids: range_ids.to_vec(),
        };
        self.call(|mut client, request_timeout| {
            let request = self.request(request.clone(), request_timeout);
            async move { client.discard_token(request).await }
        })
        .await
        .map(|reply| reply.discarded_partition_key_range_ids)
    }

    /// Reports a read that failed on the broker's token and succeeded once made again without
    /// it (the fallback of docs/clients.md): counts it ([`ClientStats::fallback_reads`]), logs
    /// it at warn with the scope and the ranges (never the key), and discards the token's
    /// ranges from the broker so that the next reader does not meet it. Returns whether the
    /// broker answered the discard; on a broker error it logs and counts instead. Never fails.
    pub async fn report_unservable(&self, scope: &str, key: &str, session_token: &str) -> bool {
        let stats = &self.inner.stats;
        bump(&stats.fallback_reads);
        let ranges = range_ids_of(session_token);
        tracing::warn!(
            scope,
            ranges,
            "the broker's token could not be served: read again without it, discarding it"
        );
        match self.discard_token(scope, key, session_token, &[]).await {
            Ok(_) => {
                stats.helper_succeeded();
                true
            }
            Err(error) => {
                bump(&stats.discard_failures);
                stats.helper_failed(&error);
                tracing::warn!(%error, scope, ranges, "tokenbroker DiscardToken failed; the token stays");
                false
            }
        }
    }

    /// The token to send with a read of (`scope`, `key`), or `None`: nothing stored, or the
    /// broker failed or timed out (logged and counted). Never fails.
    pub async fn token_for_read(
        &self,
        scope: &str,
        key: &str,
        range_ids: &[String],
    ) -> Option<String> {
        let stats = &self.inner.stats;
        bump(&stats.reads);
        match self.get_token(scope, key, range_ids).await {
            Ok(reply) => {
                stats.helper_succeeded();
                if reply.degraded {
                    bump(&stats.degraded_answers);
                }
                if reply.session_token.is_some() {
                    bump(&stats.reads_with_token);
                }
                reply.session_token
            }
            Err(error) => {
                bump(&stats.read_failures);
                stats.helper_failed(&error);
                tracing::warn!(%error, scope, key, "tokenbroker GetToken failed; reading without a token");
                None
            }
        }
    }

    /// Records the token a write returned under (`scope`, `key`). Returns whether the broker
    /// stored it; on a broker error or timeout it logs and counts instead. Never fails.
    pub async fn record_write(&self, scope: &str, key: &str, session_token: &str) -> bool {
        let stats = &self.inner.stats;
        bump(&stats.writes);
        match self.put_token(scope, key, session_token).await {
            Ok(_) => {
                stats.helper_succeeded();
                true
            }
            Err(error) => {
                bump(&stats.write_failures);
                stats.helper_failed(&error);
                tracing::warn!(%error, scope, key, "tokenbroker PutToken failed; the token is not shared");
                false
            }
        }
    }

    /// A request with its deadline and, when configured, the bearer token.
    fn request<T>(&self, message: T, timeout: std::time::Duration) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(timeout);
        if let Some(value) = &self.inner.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    /// Runs one call: picks endpoints in turn, applies the deadline to the whole call, retries
    /// on another endpoint after a transport failure, and feeds the breakers.
    async fn call<T, F, Fut>(&self, attempt: F) -> Result<T, ClientError>
    where
        F: Fn(ProtoClient<Channel>, std::time::Duration) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let inner = &*self.inner;
        let budget = inner.config.deadline;
        let deadline = Instant::now() + budget;
        // One list for the whole call, even if a re-resolution swaps it meanwhile.
        let endpoints = inner.endpoints.for_call(deadline).await?;
        let mut tried = Vec::with_capacity(inner.config.max_attempts);
        let mut last_failure = None;
        while tried.len() < inner.config.max_attempts {
            let now = Instant::now();
            let Some(index) = inner.endpoints.pick(&endpoints, &tried, now) else {
                break;
            };
            tried.push(index);
            let Some(endpoint) = endpoints.get(index) else {
                break;
            };
            let remaining = deadline.saturating_duration_since(now);
            let client = ProtoClient::new(endpoint.channel.clone());
            let outcome =
                tokio::time::timeout_at(deadline.into(), attempt(client, remaining)).await;
            match outcome {
                Ok(Ok(response)) => {
                    endpoint.breaker.success();
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) if !is_endpoint_failure(status.code()) => {
                    // The broker answered: the endpoint works, the request was refused.
                    endpoint.breaker.success();
                    return Err(ClientError::Rejected {
                        code: status.code(),
                        message: status.message().to_owned(),
                    });
                }
                Ok(Err(status)) => {
                    endpoint.breaker.failure(Instant::now());
                    bump(&inner.stats.attempt_failures);
                    // tonic enforces the grpc-timeout we set and may report the expiry itself
                    // (as CANCELLED "Timeout expired") just before our own timer fires.
                    if status.code() == Code::DeadlineExceeded || Instant::now() >= deadline {
                        bump(&inner.stats.deadline_exceeded);
                        return Err(ClientError::DeadlineExceeded {
                            endpoint: endpoint.url.clone(),
                            deadline: budget,
                        });
                    }
                    last_failure = Some(ClientError::Unavailable {
                        endpoint: endpoint.url.clone(),
                        code: status.code(),
                        message: status.message().to_owned(),
                    });
                }
                Err(_elapsed) => {
                    endpoint.breaker.failure(Instant::now());
                    bump(&inner.stats.attempt_failures);
                    bump(&inner.stats.deadline_exceeded);
                    return Err(ClientError::DeadlineExceeded {
                        endpoint: endpoint.url.clone(),
                        deadline: budget,
                    });
                }
            }
        }
        Err(last_failure.unwrap_or_else(|| {
            bump(&inner.stats.short_circuited);
            ClientError::AllEndpointsOpen
        }))
    }
}

/// The range ids of a header value (`0:1#5,3:2#9` gives `0,3`), for logs.
fn range_ids_of(session_token: &str) -> String {
    session_token
        .split(',')
        .filter_map(|segment| segment.split_once(':').map(|(id, _)| id))
        .collect::<Vec<_>>()
        .join(",")
}
