//! The broker endpoints and the order in which calls take them.
//!
//! Why one channel per endpoint rather than one channel to a Service name: Kubernetes Services
//! balance connections, not requests, and gRPC multiplexes every call on one HTTP/2 connection,
//! so all calls would land on one replica. Round-robin over per-endpoint channels spreads them,
//! and per-endpoint breakers let a call skip a replica that is down.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tonic::transport::{Channel, Endpoint};

use crate::breaker::Breaker;
use crate::config::ClientConfig;
use crate::error::ClientError;

pub(crate) struct BrokerEndpoint {
    pub(crate) url: String,
    pub(crate) channel: Channel,
    pub(crate) breaker: Breaker,
}

pub(crate) struct Endpoints {
    list: Vec<BrokerEndpoint>,
    next: AtomicUsize,
}

impl Endpoints {
    /// Builds lazily-connected channels: nothing is dialled until the first call, so a broker
    /// that is down at start-up does not stop the service from starting.
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        if config.endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ClientError::NoRuntime);
        }
        let list = config
            .endpoints
            .iter()
            .map(|url| {
                let endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|source| ClientError::InvalidEndpoint {
                        url: url.clone(),
                        source,
                    })?
                    .connect_timeout(config.connect_timeout)
                    .tcp_nodelay(true);
                Ok(BrokerEndpoint {
                    url: url.clone(),
                    channel: endpoint.connect_lazy(),
                    breaker: Breaker::new(config.breaker),
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Self {
            list,
            next: AtomicUsize::new(0),
        })
    }

    pub(crate) fn get(&self, index: usize) -> Option<&BrokerEndpoint> {
        self.list.get(index)
    }

    /// The next endpoint in turn that is not in `tried` and whose breaker lets a call through.
    pub(crate) fn pick(&self, tried: &[usize], now: Instant) -> Option<usize> {
        let count = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| (start.wrapping_add(offset)) % count)
            .filter(|index| !tried.contains(index))
            .find(|&index| {
                self.list
                    .get(index)
                    .is_some_and(|endpoint| endpoint.breaker.try_acquire(now))
            })
    }
}
