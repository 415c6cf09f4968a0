//! The gRPC face of the broker: request messages in, broker calls, statuses out.
//!
//! Why so thin: every rule lives in the `broker` library; this module only maps its typed errors
//! onto gRPC status codes, at the edge, so the mapping is in one place and easy to audit.

use broker::{Broker, BrokerError};
use tokenbroker_proto::v1::token_broker_server::TokenBroker;
use tokenbroker_proto::v1::{
    GetTokenRequest, GetTokenResponse, MergeTokenRequest, MergeTokenResponse, PutTokenRequest,
    PutTokenResponse,
};
use tonic::{Code, Request, Response, Status};

use std::sync::Arc;
use std::time::Instant;

use crate::metrics::RpcMetrics;

pub struct TokenBrokerService {
    broker: Broker,
    metrics: Arc<RpcMetrics>,
}

impl TokenBrokerService {
    pub fn new(broker: Broker, metrics: Arc<RpcMetrics>) -> Self {
        Self { broker, metrics }
    }

    /// Runs one RPC body and records its status and latency.
    async fn measured<T>(
        &self,
        method: usize,
        body: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let result = body.await;
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
        self.metrics.record(method, code, started.elapsed());
        result.map(Response::new)
    }
}

/// The one place where broker errors become gRPC statuses.
pub fn status(e: BrokerError) -> Status {
    match e {
        BrokerError::InvalidArgument(e) => Status::invalid_argument(e.to_string()),
        BrokerError::Conflict(m) => Status::failed_precondition(m),
        BrokerError::ResourceExhausted(m) => Status::resource_exhausted(m),
        BrokerError::Unavailable(m) => Status::unavailable(m),
    }
}

#[tonic::async_trait]
impl TokenBroker for TokenBrokerService {
    async fn put_token(
        &self,
        request: Request<PutTokenRequest>,
    ) -> Result<Response<PutTokenResponse>, Status> {
        let r = request.into_inner();
        self.measured(0, async {
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
        let r = request.into_inner();
        self.measured(1, async {
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
        let r = request.into_inner();
        self.measured(2, async {
            let merged = self.broker.merge(&r.session_tokens).map_err(status)?;
            Ok(MergeTokenResponse {
                session_token: merged.to_string(),
            })
        })
        .await
    }
}
