//! The listeners and the forwarding: each listener stands for one upstream endpoint (the
//! application-facing one for the account endpoint, one per other region), and every request
//! it accepts goes to that endpoint, byte for byte but for the session token and the session
//! header.
//!
//! Why one listener per region rather than a path prefix or a header: the SDKs build request
//! URLs from the endpoint the account response names, and some drop any path of it, so the
//! port is the one thing every SDK keeps (see [`crate::account`]). Listeners for regions are
//! bound on the application-facing IP, on ports the system picks, when the account response
//! first names the region.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderMap, HeaderName, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use tokenbroker_client::TokenBrokerClient;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::learned::Learned;
use crate::metrics::SidecarMetrics;
use crate::policy::Policy;
use crate::upstream::{Body, Upstream, full};

/// Headers that belong to one connection and are never forwarded (RFC 9110 §7.6.1), and the
/// body's framing, which hyper sets again from the body it sends (a replayed body is buffered).
/// Names, not strings: removing by a string parses it again each time (the top symbol of a
/// profile of the pass-through path, measured with `tokenbroker-bench sidecar`).
const HOP_BY_HOP: [HeaderName; 10] = [
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
];

/// Everything the request handlers share.
pub(crate) struct Shared {
    pub(crate) upstream: Upstream,
    pub(crate) broker: TokenBrokerClient,
    pub(crate) learned: Learned,
    pub(crate) policy: Policy,
    pub(crate) session_header: HeaderName,
    pub(crate) max_replay_body_bytes: usize,
    pub(crate) metrics: SidecarMetrics,
    /// The configured account endpoint, normalized.
    pub(crate) account_endpoint: String,
    /// The application-facing listener's URL.
    pub(crate) main_url: String,
    /// Upstream regional endpoint (normalized) → the URL of its listener.
    pub(crate) regions: Mutex<HashMap<String, String>>,
    /// The write region's upstream endpoint, from the last account response.
    pub(crate) write_endpoint: Mutex<Option<String>>,
    listen_ip: IpAddr,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
    graceful: Mutex<Option<GracefulShutdown>>,
    /// Makes a request's span the child of the caller's (`traceparent`); set by the server,
    /// which owns the OpenTelemetry propagator.
    pub(crate) span_parent: std::sync::OnceLock<crate::SpanParent>,
    /// Region listeners to serve: handed to the task that spawns their accept loops (spawning
    /// from here would make the request future's type depend on itself).
    new_listeners: mpsc::UnboundedSender<(TcpListener, String)>,
}

/// The URL a client reaches `addr` at: an unspecified IP is reached on loopback.
fn url_of(addr: SocketAddr, tls: bool) -> String {
    let ip = if addr.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}/", SocketAddr::new(ip, addr.port()))
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        upstream: Upstream,
        broker: TokenBrokerClient,
        learned: Learned,
        policy: Policy,
        session_header: HeaderName,
        max_replay_body_bytes: usize,
        metrics: SidecarMetrics,
        account_endpoint: String,
        main_addr: SocketAddr,
        tls: Option<TlsAcceptor>,
        shutdown: watch::Receiver<bool>,
        new_listeners: mpsc::UnboundedSender<(TcpListener, String)>,
    ) -> Self {
        Self {
            upstream,
            broker,
            learned,
            policy,
            session_header,
            max_replay_body_bytes,
            metrics,
            account_endpoint,
            main_url: url_of(main_addr, tls.is_some()),
            regions: Mutex::new(HashMap::new()),
            write_endpoint: Mutex::new(None),
            listen_ip: main_addr.ip(),
            tls,
            shutdown,
            graceful: Mutex::new(Some(GracefulShutdown::new())),
            new_listeners,
            span_parent: std::sync::OnceLock::new(),
        }
    }

    /// The local URL standing for the upstream `endpoint` (normalized): the application-facing
    /// listener for the account endpoint, else the region's listener, bound now if needed.
    /// `None` when no listener could be bound (logged; the region is then reached directly).
    pub(crate) async fn local_url_for(&self, endpoint: &str) -> Option<String> {
        if endpoint == self.account_endpoint {
            return Some(self.main_url.clone());
        }
        if let Some(url) = self.lock_regions().get(endpoint) {
            return Some(url.clone());
        }
        let listener = match TcpListener::bind(SocketAddr::new(self.listen_ip, 0)).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, endpoint, "cannot bind a listener for a region: the application will reach it directly, without the broker");
                return None;
            }
        };
        let url = match listener.local_addr() {
            Ok(addr) => url_of(addr, self.tls.is_some()),
            Err(error) => {
                tracing::error!(%error, endpoint, "listener without an address");
                return None;
            }
        };
        // Two account responses may race: the first to insert wins, the other listener closes.
        let mut regions = self.lock_regions();
        if let Some(existing) = regions.get(endpoint) {
            return Some(existing.clone());
        }
        regions.insert(endpoint.to_owned(), url.clone());
        drop(regions);
        tracing::info!(endpoint, local = %url, "listening for a region");
        if self
            .new_listeners
            .send((listener, endpoint.to_owned()))
            .is_err()
        {
            tracing::warn!(
                endpoint,
                "the sidecar is stopping: the region's listener is not served"
            );
        }
        Some(url)
    }

    fn lock_regions(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.regions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the connections still open to finish their requests.
    pub(crate) async fn drain(&self) {
        let graceful = self
            .graceful
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(graceful) = graceful {
            graceful.shutdown().await;
        }
    }

    /// Accepts connections on `listener` until shutdown, each served with `upstream_base` as its
    /// upstream.
    pub(crate) async fn accept(self: Arc<Self>, listener: TcpListener, upstream_base: String) {
        let mut shutdown = self.shutdown.clone();
        let upstream_base: Arc<str> = upstream_base.into();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let shared = Arc::clone(&self);
            let base = Arc::clone(&upstream_base);
            tokio::spawn(async move {
                match shared.tls.clone() {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(tls) => shared.serve_connection(TokioIo::new(tls), base).await,
                        Err(error) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                    },
                    None => shared.serve_connection(TokioIo::new(stream), base).await,
                }
            });
        }
    }

    async fn serve_connection<IO>(self: Arc<Self>, io: IO, upstream_base: Arc<str>)
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let shared = Arc::clone(&self);
        let service = service_fn(move |request: Request<Incoming>| {
            let shared = Arc::clone(&shared);
            let base = Arc::clone(&upstream_base);
            async move { Ok::<_, Infallible>(crate::handlers::handle(shared, &base, request).await) }
        });
        // HTTP/1.1 or HTTP/2, whichever the SDK speaks: the Rust SDK's transport (reqwest)
        // opens plain-text connections with HTTP/2 prior knowledge; the others speak HTTP/1.1.
        let connection = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .into_owned();
        // Watched: a shutdown lets its request in flight finish, then closes it.
        let watched = self
            .graceful
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|graceful| graceful.watch(connection));
        let Some(watched) = watched else {
            return;
        };
        let result = watched.await;
        if let Err(error) = result {
            tracing::debug!(%error, "connection ended with an error");
        }
    }

    /// Sends a request upstream to `base` (a normalized `scheme://host:port/`), with `headers`
    /// cleaned of hop-by-hop and `host` headers. A request the upstream does not answer gets a
    /// 502 naming the reason.
    pub(crate) async fn send(
        &self,
        base: &str,
        method: &http::Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response<Incoming>, Response<Body>> {
        let uri: Uri = match format!("{}{}", base.trim_end_matches('/'), path_and_query).parse() {
            Ok(uri) => uri,
            Err(error) => return Err(bad_gateway(&format!("upstream URL: {error}"))),
        };
        let mut request = Request::builder().method(method.clone()).uri(uri);
        if let Some(out) = request.headers_mut() {
            for (name, value) in headers {
                if name != http::header::HOST && !is_hop_by_hop(name) {
                    out.append(name.clone(), value.clone());
                }
            }
        }
        let request = match request.body(body) {
            Ok(request) => request,
            Err(error) => return Err(bad_gateway(&format!("request: {error}"))),
        };
        match self.upstream.request(request).await {
            Ok(response) => Ok(response),
            Err(error) => {
                self.metrics.upstream_errors.increment(1);
                tracing::warn!(%error, upstream = base, "the upstream did not answer");
                Err(bad_gateway(&format!(
                    "the upstream {base} did not answer: {error}"
                )))
            }
        }
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// A response for the application: the upstream's, hop-by-hop headers removed.
pub(crate) fn to_app(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    for name in &HOP_BY_HOP {
        parts.headers.remove(name);
    }
    Response::from_parts(parts, crate::upstream::stream(body))
}

/// 502 with a short text body.
pub(crate) fn bad_gateway(reason: &str) -> Response<Body> {
    let mut response = Response::new(full(format!("tokenbroker sidecar: {reason}\n")));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
