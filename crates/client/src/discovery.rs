//! Finding the brokers through DNS: one name (a headless Service) resolved to every broker pod's
//! address, again and again.
//!
//! Why resolve in the client: a headless Service's name resolves to one A/AAAA record per ready
//! pod. Handing that name to one tonic `Channel` would connect to one of them and send every call
//! there; resolving it here gives one channel (and one breaker) per pod, which the round-robin in
//! [`crate::endpoints`] spreads calls over. Resolving again periodically picks up pods that a
//! scale-up or a rollout added and drops the ones that left.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tonic::codegen::http::Uri;

use crate::error::ClientError;

/// What a [`Resolver`] returns: the addresses, or why there are none.
pub type ResolveFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;

/// Turns a host name and port into socket addresses. The client uses the port of each returned
/// address as it is, so a resolver may also map one name to brokers on different ports.
///
/// Why a trait: tests (and services with their own discovery) swap DNS for an answer they
/// control. Any `Fn(String, u16) -> impl Future<Output = io::Result<Vec<SocketAddr>>>` is one;
/// [`SystemResolver`] is the default.
pub trait Resolver: Send + Sync + 'static {
    /// Resolves `host` (a name, or an IP literal without brackets) for `port`.
    fn resolve(&self, host: &str, port: u16) -> ResolveFuture;
}

impl<F, Fut> Resolver for F
where
    F: Fn(String, u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'static,
{
    fn resolve(&self, host: &str, port: u16) -> ResolveFuture {
        Box::pin(self(host.to_owned(), port))
    }
}

/// The system resolver (`getaddrinfo`, through [`tokio::net::lookup_host`]), which follows the
/// pod's `/etc/resolv.conf` and so the cluster DNS and its search domains.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> ResolveFuture {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), port)).await?;
            Ok(addrs.collect())
        })
    }
}

/// Where to find the brokers by name, and how often to look again.
#[derive(Clone)]
pub struct Discovery {
    /// `scheme://host:port`, for example `http://tokenbroker-headless.ns.svc.cluster.local:50051`.
    /// Every resolved address becomes an endpoint `scheme://ip:port`.
    pub target: String,
    /// How long to wait between two resolutions (at least [`Discovery::MIN_INTERVAL`]).
    pub interval: Duration,
    /// Who resolves the name; [`SystemResolver`] unless a test or a service says otherwise.
    pub resolver: Arc<dyn Resolver>,
}

impl Discovery {
    /// The default time between two resolutions.
    ///
    /// Why 30 s: a pod that left costs little before the next resolution (its breaker takes it
    /// out of rotation after a few failed attempts, each retried on another pod within the same
    /// deadline), so the interval mostly decides how soon a new pod gets its first calls; until
    /// then the pods already known serve them. Half a minute is quick next to a rollout, and one
    /// small DNS query per client pod every 30 s is no load on the cluster DNS, which caches
    /// answers anyway (CoreDNS's default `cache 30`).
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

    /// The shortest interval the client accepts, so that a zero interval cannot spin.
    pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

    /// How often to try again while the name has never resolved to anything (the brokers may
    /// start after the service): calls fail until then, so waiting a whole interval would be long.
    pub const UNRESOLVED_RETRY: Duration = Duration::from_secs(1);

    /// Discovery of `target` with the default interval and the system resolver.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            interval: Self::DEFAULT_INTERVAL,
            resolver: Arc::new(SystemResolver),
        }
    }

    /// Sets [`Discovery::interval`].
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets [`Discovery::resolver`].
    pub fn with_resolver(mut self, resolver: impl Resolver) -> Self {
        self.resolver = Arc::new(resolver);
        self
    }
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("target", &self.target)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// A discovery target taken apart: what to resolve, and how to write the endpoint URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) scheme: String,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Target {
    pub(crate) fn parse(target: &str) -> Result<Self, ClientError> {
        let invalid = |reason: &'static str| ClientError::InvalidDiscoveryTarget {
            target: target.to_owned(),
            reason,
        };
        let uri: Uri = target
            .parse()
            .map_err(|_| invalid("not a URL such as http://tokenbroker-headless:50051"))?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| invalid("no scheme (http:// or https://)"))?;
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        let port = uri
            .port_u16()
            .ok_or_else(|| invalid("no port (the broker listens on 50051 by default)"))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid(
                "a path or query has no meaning for a broker endpoint",
            ));
        }
        Ok(Self {
            scheme: scheme.to_owned(),
            // `[::1]` in a URL, `::1` for the resolver.
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        })
    }

    /// The endpoint URL for one resolved address (`SocketAddr` adds the brackets of IPv6).
    pub(crate) fn endpoint_url(&self, addr: SocketAddr) -> String {
        format!("{}://{addr}", self.scheme)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_a_service_name_with_scheme_and_port() {
        let target =
            Target::parse("http://tokenbroker-headless.ns.svc.cluster.local:50051").unwrap();
        assert_eq!(
            target,
            Target {
                scheme: "http".into(),
                host: "tokenbroker-headless.ns.svc.cluster.local".into(),
                port: 50051,
            }
        );
        assert_eq!(
            target.endpoint_url("10.1.2.3:50051".parse().unwrap()),
            "http://10.1.2.3:50051"
        );
        assert_eq!(
            target.endpoint_url("[fd00::7]:50051".parse().unwrap()),
            "http://[fd00::7]:50051"
        );
    }

    #[test]
    fn ipv6_literals_lose_their_brackets_for_the_resolver() {
        assert_eq!(Target::parse("http://[::1]:50051").unwrap().host, "::1");
    }

    #[test]
    fn rejects_targets_it_cannot_resolve_or_rebuild() {
        for bad in [
            "tokenbroker-headless:50051",
            "http://tokenbroker-headless",
            "http://tokenbroker-headless:50051/v1",
            "",
        ] {
            let error = Target::parse(bad).unwrap_err();
            assert!(
                matches!(error, ClientError::InvalidDiscoveryTarget { .. }),
                "{bad:?}: {error:?}"
            );
        }
    }
}
