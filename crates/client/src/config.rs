//! Client settings, with defaults meant for a broker next to the service (same cluster).
//!
//! Why these defaults: the broker answers from memory or one Redis round trip, in well under a
//! millisecond on a healthy cluster. A deadline of 100 ms is generous for that and still small
//! next to a Cosmos read, so a broker in trouble costs the caller little before it gives up.

use std::time::Duration;

use crate::discovery::Discovery;
use breaker::BreakerConfig;

/// How to reach the brokers and how long to wait for them.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Broker URLs, for example `http://10.0.0.11:50051`. Calls are balanced over all of them.
    /// Empty when the brokers are discovered instead.
    pub endpoints: Vec<String>,
    /// A name to resolve into the broker endpoints, again and again (for example a headless
    /// Service), instead of a fixed list. Set either this or [`ClientConfig::endpoints`].
    pub discovery: Option<Discovery>,
    /// The whole budget of one call, retries included. Also sent as the gRPC deadline.
    pub deadline: Duration,
    /// The budget for opening a connection to one endpoint.
    pub connect_timeout: Duration,
    /// How many attempts one call may make when an attempt fails with a transport error
    /// (connection refused or reset, `UNAVAILABLE`, `CANCELLED`), within the same deadline: on
    /// other endpoints first, then on one already tried (with a single endpoint, the same one).
    pub max_attempts: usize,
    /// When to stop sending calls to a failing endpoint, and for how long.
    pub breaker: BreakerConfig,
    /// TLS (and mutual TLS) to the brokers; `None` for plaintext. Endpoint URLs are then
    /// `https://`.
    pub tls: Option<ClientTls>,
    /// A bearer token sent with every call (`authorization: Bearer <token>`), for brokers whose
    /// policy names it by its SHA-256. Never logged.
    pub bearer_token: Option<BearerToken>,
}

/// TLS settings of the client: the CA that signed the brokers' certificates, and a client
/// certificate for brokers that require one (mutual TLS). PEM contents, not paths.
#[derive(Clone, Default)]
pub struct ClientTls {
    /// PEM CA certificate(s) the brokers' certificates are verified against; `None`: the
    /// system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and private key, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the brokers' certificates are checked against, when it is not the URL's host:
    /// needed with [`ClientConfig::discover`], whose endpoints are IP addresses (for example
    /// `tokenbroker.<namespace>.svc`).
    pub domain_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .field("domain_name", &self.domain_name)
            .finish()
    }
}

impl ClientTls {
    /// Verifies the brokers against `ca_pem` (PEM).
    pub fn with_ca(ca_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            ca_pem: Some(ca_pem.into()),
            ..Self::default()
        }
    }

    /// Presents `cert_pem` and `key_pem` to brokers that require a client certificate.
    pub fn with_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Checks the brokers' certificates against `name` instead of the URL's host.
    pub fn with_domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain_name = Some(name.into());
        self
    }
}

/// A bearer token; its Debug form hides it.
#[derive(Clone)]
pub struct BearerToken(pub String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl ClientConfig {
    /// The default deadline of a call.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(100);

    /// Defaults for the given endpoints.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            discovery: None,
            deadline: Self::DEFAULT_DEADLINE,
            connect_timeout: Self::DEFAULT_DEADLINE,
            max_attempts: 2,
            breaker: BreakerConfig::default(),
            tls: None,
            bearer_token: None,
        }
    }

    /// Defaults, with the brokers found by resolving the host of `target`
    /// (`scheme://host:port`, for example
    /// `http://tokenbroker-headless.my-namespace.svc.cluster.local:50051`): one endpoint per
    /// address, re-resolved every [`Discovery::DEFAULT_INTERVAL`]. See [`Discovery`] to change
    /// the interval or the resolver.
    pub fn discover(target: impl Into<String>) -> Self {
        Self::discover_with(Discovery::new(target))
    }

    /// Defaults, with the brokers found as `discovery` says.
    pub fn discover_with(discovery: Discovery) -> Self {
        Self {
            discovery: Some(discovery),
            ..Self::new(Vec::<String>::new())
        }
    }

    /// Sets [`ClientConfig::deadline`].
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets [`ClientConfig::connect_timeout`]. A call never waits longer than its deadline
    /// whatever this is; past the deadline the connection attempt goes on for the next call.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`ClientConfig::breaker`].
    pub fn with_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// Sets [`ClientConfig::tls`].
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets [`ClientConfig::bearer_token`].
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(BearerToken(token.into()));
        self
    }

    /// Sets [`ClientConfig::max_attempts`] (at least 1).
    pub fn with_max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
}
