//! The broker endpoints and the order in which calls take them.
//!
//! Why one channel per endpoint rather than one channel to a Service name: Kubernetes Services
//! balance connections, not requests, and gRPC multiplexes every call on one HTTP/2 connection,
//! so all calls would land on one replica. Round-robin over per-endpoint channels spreads them,
//! and per-endpoint breakers let a call skip a replica that is down.
//!
//! The list is either fixed (the URLs given) or discovered: a name resolved again and again (see
//! [`crate::discovery`]). A re-resolution builds a new list and swaps it in whole; a call takes
//! the current list once (a read lock held just long enough to clone an `Arc`) and keeps it for
//! all its attempts, so its indexes stay consistent while the list changes under it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::ClientConfig;
use crate::discovery::{Discovery, Resolver, Target};
use crate::error::ClientError;
use crate::stats::{StatCounters, bump};
use breaker::{Admit, Breaker, BreakerConfig};

pub(crate) struct BrokerEndpoint {
    pub(crate) url: String,
    pub(crate) channel: Channel,
    pub(crate) breaker: Breaker,
}

/// One consistent set of endpoints.
#[derive(Default)]
pub(crate) struct EndpointList {
    list: Vec<Arc<BrokerEndpoint>>,
}

impl EndpointList {
    pub(crate) fn get(&self, index: usize) -> Option<&BrokerEndpoint> {
        self.list.get(index).map(|endpoint| &**endpoint)
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.list
            .iter()
            .map(|endpoint| endpoint.url.clone())
            .collect()
    }

    fn find(&self, url: &str) -> Option<&Arc<BrokerEndpoint>> {
        self.list.iter().find(|endpoint| endpoint.url == url)
    }
}

/// How the endpoints of a discovered list are found.
struct Resolving {
    /// The target as configured, for messages.
    target: String,
    parsed: Target,
    resolver: Arc<dyn Resolver>,
    interval: Duration,
    /// One resolution at a time: two overlapping ones could otherwise finish out of order and
    /// leave the older answer in place.
    serial: tokio::sync::Mutex<()>,
    /// Set once the first resolution has been tried, by the first call or the background task,
    /// whichever comes first. Calls wait for it (within their deadline) only while it is unset.
    first_attempt: tokio::sync::OnceCell<()>,
}

/// tonic's TLS settings from the client's.
fn tls_config(tls: &crate::config::ClientTls) -> ClientTlsConfig {
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_pem {
        Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
        None => config.with_native_roots(),
    };
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(cert, key));
    }
    if let Some(name) = &tls.domain_name {
        config = config.domain_name(name.clone());
    }
    config
}

pub(crate) struct Endpoints {
    current: RwLock<Arc<EndpointList>>,
    next: AtomicUsize,
    connect_timeout: Duration,
    breaker: BreakerConfig,
    tls: Option<ClientTlsConfig>,
    resolving: Option<Resolving>,
    stats: Arc<StatCounters>,
}

impl Endpoints {
    /// How long one resolution may take before it counts as failed. `getaddrinfo` retries on its
    /// own for a while; past this, the next resolution is a better bet than waiting on.
    pub(crate) const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

    /// Builds lazily-connected channels: nothing is dialled until the first call, so a broker
    /// that is down at start-up does not stop the service from starting. With discovery, nothing
    /// is resolved here either, for the same reason: the list starts empty and fills on the
    /// first call or in the background (see [`Endpoints::spawn_refresher`]).
    pub(crate) fn new(
        config: &ClientConfig,
        stats: Arc<StatCounters>,
    ) -> Result<Self, ClientError> {
        let resolving = match &config.discovery {
            Some(_) if !config.endpoints.is_empty() => {
                return Err(ClientError::EndpointsAndDiscovery);
            }
            Some(discovery) => Some(Resolving::new(discovery)?),
            None if config.endpoints.is_empty() => return Err(ClientError::NoEndpoints),
            None => None,
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ClientError::NoRuntime);
        }
        let mut endpoints = Self {
            current: RwLock::new(Arc::default()),
            next: AtomicUsize::new(0),
            connect_timeout: config.connect_timeout,
            breaker: config.breaker,
            tls: config.tls.as_ref().map(tls_config),
            resolving,
            stats,
        };
        let list = config
            .endpoints
            .iter()
            .map(|url| endpoints.build(url))
            .collect::<Result<Vec<_>, ClientError>>()?;
        endpoints.current = RwLock::new(Arc::new(EndpointList { list }));
        Ok(endpoints)
    }

    fn build(&self, url: &str) -> Result<Arc<BrokerEndpoint>, ClientError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|source| ClientError::InvalidEndpoint {
                url: url.to_owned(),
                source,
            })?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        let endpoint =
            match &self.tls {
                Some(tls) => endpoint.tls_config(tls.clone()).map_err(|source| {
                    ClientError::InvalidEndpoint {
                        url: url.to_owned(),
                        source,
                    }
                })?,
                None => endpoint,
            };
        Ok(Arc::new(BrokerEndpoint {
            url: url.to_owned(),
            channel: endpoint.connect_lazy(),
            breaker: Breaker::new(self.breaker),
        }))
    }

    /// The current list.
    pub(crate) fn snapshot(&self) -> Arc<EndpointList> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The list a call should use. While a discovered list has never been resolved, waits (at
    /// most until `deadline`) for the first resolution, so that the first calls after start-up
    /// do not fail just because the background resolution has not finished yet. After that
    /// first attempt, an empty list fails the call at once.
    pub(crate) async fn for_call(
        &self,
        deadline: Instant,
    ) -> Result<Arc<EndpointList>, ClientError> {
        let list = self.snapshot();
        if !list.is_empty() {
            return Ok(list);
        }
        let Some(resolving) = &self.resolving else {
            return Err(ClientError::NoEndpoints);
        };
        if !resolving.first_attempt.initialized() {
            // A timeout here leaves the attempt to the next caller or the background task.
            let _ = tokio::time::timeout_at(deadline.into(), self.first_resolution()).await;
        }
        let list = self.snapshot();
        if !list.is_empty() {
            Ok(list)
        } else {
            Err(ClientError::NotResolved {
                target: resolving.target.clone(),
            })
        }
    }

    async fn first_resolution(&self) {
        if let Some(resolving) = &self.resolving {
            resolving
                .first_attempt
                .get_or_init(|| async {
                    // Logged and counted inside.
                    let _ = self.refresh().await;
                })
                .await;
        }
    }

    /// Resolves the discovery target now and swaps in the new list: endpoints whose address is
    /// still there are kept as they are (their connection and breaker state with them), new
    /// addresses get new endpoints, the others are dropped once the calls using them finish.
    ///
    /// A failed resolution, or one that returns no address, keeps the previous list: a DNS
    /// hiccup must not take every broker away. Returns the number of endpoints in use; for a
    /// fixed list, just that number.
    pub(crate) async fn refresh(&self) -> Result<usize, ClientError> {
        let Some(resolving) = &self.resolving else {
            return Ok(self.snapshot().len());
        };
        let _serial = resolving.serial.lock().await;
        match self.resolve_and_build(resolving).await {
            Ok(list) => {
                let count = list.len();
                let old = std::mem::replace(
                    &mut *self.current.write().unwrap_or_else(PoisonError::into_inner),
                    Arc::new(list),
                );
                self.log_change(resolving, &old);
                bump(&self.stats.resolutions);
                Ok(count)
            }
            Err(error) => {
                bump(&self.stats.resolution_failures);
                tracing::warn!(
                    %error,
                    kept = self.snapshot().len(),
                    "tokenbroker endpoint resolution failed; keeping the endpoints in use"
                );
                Err(error)
            }
        }
    }

    async fn resolve_and_build(&self, resolving: &Resolving) -> Result<EndpointList, ClientError> {
        let target = &resolving.parsed;
        let resolution = tokio::time::timeout(
            Self::RESOLVE_TIMEOUT,
            resolving.resolver.resolve(&target.host, target.port),
        )
        .await
        .unwrap_or_else(|_elapsed| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {:?}", Self::RESOLVE_TIMEOUT),
            ))
        });
        let addrs: Vec<SocketAddr> = resolution.map_err(|source| ClientError::Resolve {
            target: resolving.target.clone(),
            source,
        })?;
        if addrs.is_empty() {
            return Err(ClientError::ResolvedNothing {
                target: resolving.target.clone(),
            });
        }
        let old = self.snapshot();
        let mut list: Vec<Arc<BrokerEndpoint>> = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let url = target.endpoint_url(addr);
            if list.iter().any(|endpoint| endpoint.url == url) {
                continue;
            }
            let endpoint = match old.find(&url) {
                Some(kept) => Arc::clone(kept),
                None => self.build(&url)?,
            };
            list.push(endpoint);
        }
        Ok(EndpointList { list })
    }

    fn log_change(&self, resolving: &Resolving, old: &EndpointList) {
        let new = self.snapshot();
        let added: Vec<&str> = new
            .list
            .iter()
            .filter(|endpoint| old.find(&endpoint.url).is_none())
            .map(|endpoint| endpoint.url.as_str())
            .collect();
        let removed: Vec<&str> = old
            .list
            .iter()
            .filter(|endpoint| new.find(&endpoint.url).is_none())
            .map(|endpoint| endpoint.url.as_str())
            .collect();
        if added.is_empty() && removed.is_empty() {
            tracing::debug!(target = %resolving.target, count = new.len(), "tokenbroker endpoints unchanged");
        } else {
            tracing::info!(
                target = %resolving.target,
                ?added,
                ?removed,
                count = new.len(),
                "tokenbroker endpoints changed"
            );
        }
    }

    /// Starts re-resolving in the background, for a discovered list. The task holds the
    /// endpoints but not the client, and the client aborts it when its last clone is dropped.
    pub(crate) fn spawn_refresher(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let interval = self
            .resolving
            .as_ref()?
            .interval
            .max(Discovery::MIN_INTERVAL);
        let endpoints = Arc::clone(self);
        Some(tokio::spawn(async move {
            endpoints.first_resolution().await;
            loop {
                let wait = if endpoints.snapshot().is_empty() {
                    interval.min(Discovery::UNRESOLVED_RETRY)
                } else {
                    interval
                };
                tokio::time::sleep(wait).await;
                // Logged and counted inside; a failure keeps the list in use.
                let _ = endpoints.refresh().await;
            }
        }))
    }

    /// The next endpoint of `list` in turn whose breaker lets a call through, preferring those
    /// not in `tried`. An endpoint already tried is taken again only when every one has been
    /// (a single endpoint, typically): a call that raced the server's GOAWAY at the end of a
    /// connection's age fails without having been sent, and goes through on the next connection.
    pub(crate) fn pick(&self, list: &EndpointList, tried: &[usize], now: Instant) -> Option<usize> {
        let count = list.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let in_turn = || (0..count).map(|offset| (start.wrapping_add(offset)) % count);
        let untried = in_turn().filter(|index| !tried.contains(index));
        let again = in_turn().filter(|index| tried.contains(index));
        untried.chain(again).find(|&index| {
            list.get(index)
                .is_some_and(|endpoint| endpoint.breaker.admit(now) != Admit::No)
        })
    }
}

impl Resolving {
    fn new(discovery: &Discovery) -> Result<Self, ClientError> {
        Ok(Self {
            target: discovery.target.clone(),
            parsed: Target::parse(&discovery.target)?,
            resolver: Arc::clone(&discovery.resolver),
            interval: discovery.interval,
            serial: tokio::sync::Mutex::new(()),
            first_attempt: tokio::sync::OnceCell::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use super::*;

    /// A resolver whose answer the test sets; `None` answers with an error.
    fn scripted(answer: Arc<Mutex<Option<Vec<SocketAddr>>>>) -> Arc<dyn Resolver> {
        Arc::new(move |_host: String, _port: u16| {
            let answer = answer.lock().unwrap().clone();
            async move { answer.ok_or_else(|| std::io::Error::other("no such host")) }
        })
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn untried_endpoints_come_first_then_a_tried_one_is_taken_again() {
        let stats = Arc::new(StatCounters::default());
        let two = ClientConfig::new(["http://127.0.0.1:1001", "http://127.0.0.1:1002"]);
        let endpoints = Endpoints::new(&two, Arc::clone(&stats)).unwrap();
        let list = endpoints.snapshot();
        let now = Instant::now();
        let first = endpoints.pick(&list, &[], now).unwrap();
        assert_ne!(endpoints.pick(&list, &[first], now), Some(first));
        assert!(endpoints.pick(&list, &[0, 1], now).is_some());

        let one = ClientConfig::new(["http://127.0.0.1:1001"]);
        let endpoints = Endpoints::new(&one, stats).unwrap();
        let list = endpoints.snapshot();
        assert_eq!(
            endpoints.pick(&list, &[0], now),
            Some(0),
            "a single endpoint is tried again"
        );
    }

    #[tokio::test]
    async fn a_re_resolution_keeps_the_endpoints_still_there_and_only_those() {
        let answer = Arc::new(Mutex::new(Some(vec![addr(1001), addr(1002)])));
        let mut discovery = Discovery::new("http://brokers:50051");
        discovery.resolver = scripted(Arc::clone(&answer));
        let config = ClientConfig::discover_with(discovery);
        let stats = Arc::new(StatCounters::default());
        let endpoints = Endpoints::new(&config, Arc::clone(&stats)).unwrap();
        assert_eq!(
            endpoints.snapshot().len(),
            0,
            "nothing resolved at construction"
        );

        assert_eq!(endpoints.refresh().await.unwrap(), 2);
        let before = endpoints.snapshot();
        *answer.lock().unwrap() = Some(vec![addr(1002), addr(1003), addr(1003)]);
        assert_eq!(endpoints.refresh().await.unwrap(), 2, "duplicates collapse");
        let after = endpoints.snapshot();

        assert_eq!(
            after.urls(),
            ["http://127.0.0.1:1002", "http://127.0.0.1:1003"]
        );
        let kept_before = before.find("http://127.0.0.1:1002").unwrap();
        let kept_after = after.find("http://127.0.0.1:1002").unwrap();
        assert!(
            Arc::ptr_eq(kept_before, kept_after),
            "the same endpoint (channel and breaker), not a rebuilt one"
        );
        assert_eq!(stats.snapshot().resolutions, 2);
    }

    #[tokio::test]
    async fn a_failed_or_empty_resolution_keeps_the_list() {
        let answer = Arc::new(Mutex::new(Some(vec![addr(1001)])));
        let mut discovery = Discovery::new("http://brokers:50051");
        discovery.resolver = scripted(Arc::clone(&answer));
        let config = ClientConfig::discover_with(discovery);
        let stats = Arc::new(StatCounters::default());
        let endpoints = Endpoints::new(&config, Arc::clone(&stats)).unwrap();
        endpoints.refresh().await.unwrap();

        *answer.lock().unwrap() = None;
        assert!(matches!(
            endpoints.refresh().await,
            Err(ClientError::Resolve { .. })
        ));
        *answer.lock().unwrap() = Some(Vec::new());
        assert!(matches!(
            endpoints.refresh().await,
            Err(ClientError::ResolvedNothing { .. })
        ));

        assert_eq!(endpoints.snapshot().urls(), ["http://127.0.0.1:1001"]);
        let stats = stats.snapshot();
        assert_eq!((stats.resolutions, stats.resolution_failures), (1, 2));
    }

    #[tokio::test]
    async fn a_list_and_a_discovery_target_together_are_refused() {
        let mut config = ClientConfig::discover("http://brokers:50051");
        config.endpoints = vec!["http://127.0.0.1:1".into()];
        assert!(matches!(
            Endpoints::new(&config, Arc::default()),
            Err(ClientError::EndpointsAndDiscovery)
        ));
    }
}
