//! The gRPC face of the broker: request messages in, broker calls, statuses out; one metric
//! record and one span per call.
//!
//! Why so thin: every rule lives in the `broker` library; this module only maps its typed errors
//! onto gRPC status codes, at the edge, so the mapping is in one place and easy to audit. The
//! span carries the method and the status code only: scopes, keys and tokens are caller data
//! and never become span attributes.

use broker::{Broker, BrokerError};
use tokenbroker_proto::v1::token_broker_server::TokenBroker;
use tokenbroker_proto::v1::{
    DiscardTokenRequest, DiscardTokenResponse, GetTokenRequest, GetTokenResponse,
    MergeTokenRequest, MergeTokenResponse, PutTokenRequest, PutTokenResponse, SERVICE_NAME,
};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

use std::time::Instant;

use crate::auth::{Authorizer, Caller};
use crate::metrics::Metrics;
use crate::policy::Access;
use crate::rpc::Method;
use crate::telemetry;

/// Codes that mark a server span as failed (OpenTelemetry's gRPC conventions): the others are
/// the caller's errors, not the server's.
fn server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

pub struct TokenBrokerService {
    broker: Broker,
    metrics: Metrics,
    auth: Authorizer,
}

impl TokenBrokerService {
    /// The service; every caller may do everything (no policy).
    pub fn new(broker: Broker, metrics: Metrics) -> Self {
        Self::with_authorizer(broker, metrics, Authorizer::allow_all())
    }

    /// The service, checking every call with `auth` first.
    pub fn with_authorizer(broker: Broker, metrics: Metrics, auth: Authorizer) -> Self {
        Self {
            broker,
            metrics,
            auth,
        }
    }

    /// Runs one RPC body in its span (a child of the caller's `traceparent`, if any) and
    /// records its status and latency.
    async fn measured<T>(
        &self,
        method: Method,
        metadata: &MetadataMap,
        body: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let span = tracing::debug_span!(
            "rpc",
            otel.name = method.span_name(),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = SERVICE_NAME,
            rpc.method = method.name(),
            rpc.grpc.status_code = tracing::field::Empty,
        );
        telemetry::set_remote_parent(&span, metadata);
        let started = Instant::now();
        let result = body.instrument(span.clone()).await;
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
        self.metrics.record(method, code, started.elapsed());
        span.record("rpc.grpc.status_code", code as i32);
        if server_error(code) {
            span.record("otel.status_code", "ERROR");
        }
        result.map(Response::new)
    }
}

/// The one place where broker errors become gRPC statuses.
pub fn status(e: BrokerError) -> Status {
    match e {
        BrokerError::InvalidArgument(e) => Status::invalid_argument(e.to_string()),
        e @ BrokerError::Conflict(_) => Status::failed_precondition(e.to_string()),
        BrokerError::ResourceExhausted(m) => Status::resource_exhausted(m),
        BrokerError::Unavailable(m) => Status::unavailable(m),
        BrokerError::Internal(m) => Status::internal(m),
    }
}

#[tonic::async_trait]
impl TokenBroker for TokenBrokerService {
    async fn put_token(
        &self,
        request: Request<PutTokenRequest>,
    ) -> Result<Response<PutTokenResponse>, Status> {
        let (metadata, extensions, r) = request.into_parts();
        let caller = Caller::from_request(&metadata, &extensions);
        self.measured(Method::PutToken, &metadata, async {
            self.auth
                .check(&caller, Some(&r.scope), Some(Access::Write))?;
            let stored = self
                .broker
                .put(&r.scope, &r.key, &r.session_token)
                .await
                .map_err(status)?;
            Ok(PutTokenResponse {
                session_token: stored.to_string(),
            })
        })
        .await
    }

    async fn get_token(
        &self,
        request: Request<GetTokenRequest>,
    ) -> Result<Response<GetTokenResponse>, Status> {
        let (metadata, extensions, r) = request.into_parts();
        let caller = Caller::from_request(&metadata, &extensions);
        self.measured(Method::GetToken, &metadata, async {
            self.auth
                .check(&caller, Some(&r.scope), Some(Access::Read))?;
            let result = self
                .broker
                .get(&r.scope, &r.key, &r.partition_key_range_ids)
                .await
                .map_err(status)?;
            Ok(GetTokenResponse {
                found: result.token.is_some(),
                session_token: result.token.map(|t| t.to_string()).unwrap_or_default(),
                degraded: result.degraded,
            })
        })
        .await
    }

    async fn merge_token(
        &self,
        request: Request<MergeTokenRequest>,
    ) -> Result<Response<MergeTokenResponse>, Status> {
        let (metadata, extensions, r) = request.into_parts();
        let caller = Caller::from_request(&metadata, &extensions);
        self.measured(Method::MergeToken, &metadata, async {
            self.auth.check(&caller, None, None)?;
            let merged = self.broker.merge(&r.session_tokens).map_err(status)?;
            Ok(MergeTokenResponse {
                session_token: merged.to_string(),
            })
        })
        .await
    }

    async fn discard_token(
        &self,
        request: Request<DiscardTokenRequest>,
    ) -> Result<Response<DiscardTokenResponse>, Status> {
        let (metadata, extensions, r) = request.into_parts();
        let caller = Caller::from_request(&metadata, &extensions);
        self.measured(Method::DiscardToken, &metadata, async {
            self.auth
                .check(&caller, Some(&r.scope), Some(Access::Write))?;
            let discarded = self
                .broker
                .discard(
                    &r.scope,
                    &r.key,
                    &r.session_token,
                    &r.partition_key_range_ids,
                )
                .await
                .map_err(status)?;
            if !discarded.removed.is_empty() {
                // The scope and the ranges, never the key: keys can be end-user identifiers.
                tracing::info!(
                    scope = %r.scope,
                    ranges = ?discarded.removed.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    "DiscardToken removed unservable ranges"
                );
            }
            Ok(DiscardTokenResponse {
                discarded_partition_key_range_ids: discarded
                    .removed
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                session_token: discarded
                    .remaining
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            })
        })
        .await
    }
}
