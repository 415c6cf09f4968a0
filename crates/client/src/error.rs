//! What can go wrong in a raw broker call.
//!
//! Why typed: callers of the raw calls (the CLI, tests, services that want to react) need to tell
//! "the broker said no" (a bad token, a merge conflict) from "no broker answered in time". The
//! helpers turn every variant into "no token".

use std::time::Duration;

/// A raw broker call failed, or the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Building the client: the configuration names neither an endpoint nor a discovery
    /// target.
    #[error("no broker endpoint configured")]
    NoEndpoints,
    /// Building the client, or the endpoints of a resolved discovery target: an endpoint URL
    /// that tonic does not accept, or a TLS configuration it cannot apply to it.
    #[error("invalid broker endpoint {url:?}: {source}")]
    InvalidEndpoint {
        /// The endpoint URL as configured or built from a resolved address.
        url: String,
        /// tonic's reason.
        #[source]
        source: tonic::transport::Error,
    },
    /// Building the client: both a fixed endpoint list and a discovery target are set.
    #[error("broker endpoints and a discovery target are both configured; set one of them")]
    EndpointsAndDiscovery,
    /// Building the client: the discovery target is not a URL of the form
    /// `http://tokenbroker-headless:50051` (scheme, host and port, no path or query).
    #[error("invalid broker discovery target {target:?}: {reason}")]
    InvalidDiscoveryTarget {
        /// The target as configured.
        target: String,
        /// What is missing or extra (`no port (...)`).
        reason: &'static str,
    },
    /// A resolution of the discovery target failed, or took longer than 10 s. Returned by
    /// [`refresh_endpoints`]; the background refresh only logs and counts it. The endpoints in
    /// use are kept.
    ///
    /// [`refresh_endpoints`]: crate::TokenBrokerClient::refresh_endpoints
    #[error("could not resolve broker discovery target {target:?}: {source}")]
    Resolve {
        /// The target as configured.
        target: String,
        /// The resolver's error (`TimedOut` for the 10 s limit).
        #[source]
        source: std::io::Error,
    },
    /// A resolution of the discovery target succeeded with no address. Returned by
    /// [`refresh_endpoints`]; the endpoints in use are kept.
    ///
    /// [`refresh_endpoints`]: crate::TokenBrokerClient::refresh_endpoints
    #[error("broker discovery target {target:?} resolved to no address")]
    ResolvedNothing {
        /// The target as configured.
        target: String,
    },
    /// A call found no endpoint because the discovery target has never resolved to an
    /// address (the call waits for the first resolution, within its deadline, before this).
    #[error("broker discovery target {target:?} has not resolved to any address yet")]
    NotResolved {
        /// The target as configured.
        target: String,
    },
    /// Building the client: the bearer token cannot go in an `authorization` header (not
    /// printable ASCII).
    #[error("the bearer token is not a valid header value (printable ASCII only)")]
    InvalidBearerToken,
    /// Building the client outside a Tokio runtime.
    #[error("the broker client must be created inside a Tokio runtime")]
    NoRuntime,
    /// A call was not sent: every endpoint's circuit breaker is open (or half-open with its
    /// probe in flight). Counted in `ClientStats::short_circuited`.
    #[error("every broker endpoint is out of rotation (circuit breakers open)")]
    AllEndpointsOpen,
    /// A call ran out of [`ClientConfig::deadline`](crate::ClientConfig::deadline), retries
    /// included.
    #[error("broker call to {endpoint} exceeded its deadline of {deadline:?}")]
    DeadlineExceeded {
        /// URL of the endpoint tried last.
        endpoint: String,
        /// The call's whole budget (the configured deadline).
        deadline: Duration,
    },
    /// Every attempt failed on the transport or with a status that means the endpoint could
    /// not serve (`UNAVAILABLE`, `UNKNOWN`, `CANCELLED`, `INTERNAL`); this is the last failure.
    #[error("broker {endpoint} failed: {code:?}: {message}")]
    Unavailable {
        /// URL of the endpoint tried last.
        endpoint: String,
        /// The gRPC status code of the last attempt.
        code: tonic::Code,
        /// The status message of the last attempt.
        message: String,
    },
    /// The broker answered and refused the request (`INVALID_ARGUMENT`,
    /// `FAILED_PRECONDITION` for tokens that do not merge, `RESOURCE_EXHAUSTED`,
    /// `UNAUTHENTICATED`, ...). Not retried; the endpoint counts as healthy.
    #[error("broker rejected the call: {code:?}: {message}")]
    Rejected {
        /// The gRPC status code.
        code: tonic::Code,
        /// The broker's message (it names the field at fault for `INVALID_ARGUMENT`).
        message: String,
    },
}

impl ClientError {
    /// True when the broker answered and refused the request (for example `INVALID_ARGUMENT`
    /// or `FAILED_PRECONDITION`), as opposed to no broker answering.
    pub fn is_rejection(&self) -> bool {
        matches!(self, Self::Rejected { .. })
    }
}
