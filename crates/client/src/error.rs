//! What can go wrong in a raw broker call.
//!
//! Why typed: callers of the raw calls (the CLI, tests, services that want to react) need to tell
//! "the broker said no" (a bad token, a merge conflict) from "no broker answered in time". The
//! helpers turn every variant into "no token".

use std::time::Duration;

/// A raw broker call failed, or the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no broker endpoint configured")]
    NoEndpoints,
    #[error("invalid broker endpoint {url:?}: {source}")]
    InvalidEndpoint {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("broker endpoints and a discovery target are both configured; set one of them")]
    EndpointsAndDiscovery,
    #[error("invalid broker discovery target {target:?}: {reason}")]
    InvalidDiscoveryTarget {
        target: String,
        reason: &'static str,
    },
    #[error("could not resolve broker discovery target {target:?}: {source}")]
    Resolve {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("broker discovery target {target:?} resolved to no address")]
    ResolvedNothing { target: String },
    #[error("broker discovery target {target:?} has not resolved to any address yet")]
    NotResolved { target: String },
    #[error("the bearer token is not a valid header value (printable ASCII only)")]
    InvalidBearerToken,
    #[error("the broker client must be created inside a Tokio runtime")]
    NoRuntime,
    #[error("every broker endpoint is out of rotation (circuit breakers open)")]
    AllEndpointsOpen,
    #[error("broker call to {endpoint} exceeded its deadline of {deadline:?}")]
    DeadlineExceeded {
        endpoint: String,
        deadline: Duration,
    },
    #[error("broker {endpoint} failed: {code:?}: {message}")]
    Unavailable {
        endpoint: String,
        code: tonic::Code,
        message: String,
    },
    #[error("broker rejected the call: {code:?}: {message}")]
    Rejected { code: tonic::Code, message: String },
}

impl ClientError {
    /// True when the broker answered and refused the request (for example `INVALID_ARGUMENT`
    /// or `FAILED_PRECONDITION`), as opposed to no broker answering.
    pub fn is_rejection(&self) -> bool {
        matches!(self, Self::Rejected { .. })
    }
}
