//! Runs the gRPC server: the broker service, health, reflection, and graceful shutdown.
//!
//! Why readiness is driven here: readiness is the conjunction of components (the store can
//! serve, the process is not shutting down), as in envoyproxy/ratelimit. On shutdown, readiness
//! goes NOT_SERVING first, the server keeps serving for `shutdown.readiness_delay` so that load
//! balancers stop routing here, then stops accepting and drains in-flight calls for at most
//! `shutdown.drain_timeout`. Liveness (`""`) stays SERVING until the process exits.
//!
//! Why connections have a maximum age: gRPC clients keep one HTTP/2 connection per address and
//! multiplex every call on it, so without an end to connections the replicas added by a scale-up
//! or a rollout would get no traffic from clients that were already connected.

use std::future::Future;
use std::sync::Arc;

use broker::metrics::BrokerMetrics;
use broker::storage::memory::MemoryStore;
use broker::storage::redis::RedisStore;
use broker::{Broker, BrokerSettings, TokenStore};
use tokenbroker_proto::v1::token_broker_server::TokenBrokerServer;
use tokenbroker_proto::v1::{FILE_DESCRIPTOR_SET, SERVICE_NAME};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::Authorizer;
use crate::config::{ServerSettings, Settings};
use crate::metrics::Metrics;
use crate::service::TokenBrokerService;
use crate::tls::TlsConfigs;

/// One start-up warning when anyone who reaches the port may write any scope.
fn warn_if_open(settings: &Settings, auth: &Authorizer) {
    if auth.enforcing() {
        return;
    }
    if settings.server.tls.client_ca_file.is_some() {
        tracing::warn!(
            "no auth.policy_file: any client with a certificate from server.tls.client_ca_file can \
             read and write every scope"
        );
    } else {
        tracing::warn!(
            "no auth.policy_file and no client certificates: any client that reaches the port can \
             read and write every scope (see docs/configuration.md: server.tls, auth.policy_file)"
        );
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot build the store: {0}")]
    Store(String),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error("cannot listen on {addr} for health probes: {source}")]
    HealthListen {
        addr: String,
        source: std::io::Error,
    },
}

/// The sockets a server serves on.
pub struct Listeners {
    /// The gRPC port (TLS when `server.tls` is set).
    pub grpc: TcpListener,
    /// `/metrics`, when enabled.
    pub metrics: Option<TcpListener>,
    /// The plaintext health port, used with TLS on; bound from `server.health_listen` when
    /// `None`.
    pub health: Option<TcpListener>,
}

/// Builds the store the settings ask for: Redis when `redis.primary_url` is set, otherwise the
/// in-memory store. Does not wait for Redis to answer (readiness says when it does).
pub fn build_store(settings: &Settings) -> Result<Arc<dyn TokenStore>, ServeError> {
    if settings.redis.primary_url.is_some() {
        let store =
            RedisStore::start(&settings.redis, settings.token.ttl).map_err(ServeError::Store)?;
        return Ok(Arc::new(store));
    }
    tracing::warn!(
        "no redis.primary_url: using the in-memory store (single instance, NOT durable, not \
         shared between replicas)"
    );
    Ok(Arc::new(MemoryStore::new(settings.memory.max_keys)))
}

/// Reports one store component (for example `redis/primary`) as its own health service.
async fn drive_component(reporter: HealthReporter, name: String, mut up: watch::Receiver<bool>) {
    loop {
        let status = if *up.borrow_and_update() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        reporter.set_service_status(&name, status).await;
        if up.changed().await.is_err() {
            return;
        }
    }
}

/// Keeps the readiness status in line with the store and the shutdown flag.
async fn drive_readiness(
    reporter: HealthReporter,
    mut store_ready: watch::Receiver<bool>,
    mut shutting_down: watch::Receiver<bool>,
) {
    let mut last = None;
    loop {
        let ready = *store_ready.borrow_and_update() && !*shutting_down.borrow_and_update();
        if last != Some(ready) {
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            tracing::info!(service = SERVICE_NAME, ?status, "readiness changed");
            reporter.set_service_status(SERVICE_NAME, status).await;
            last = Some(ready);
        }
        tokio::select! {
            changed = store_ready.changed() => if changed.is_err() { break },
            changed = shutting_down.changed() => if changed.is_err() { break },
        }
    }
}

/// The HTTP/2 server with the connection settings applied.
///
/// `server.max_connection_age` maps to tonic's `max_connection_age`: at that age the connection
/// is shut down gracefully (GOAWAY, in-flight calls finish) and the client reconnects, through
/// its balancer, to any replica. tonic's `max_connection_age_grace` is deliberately not used:
/// in tonic 0.14 setting it replaces that graceful shutdown by a hard close at age + grace,
/// which would fail the calls in flight.
fn transport(server: &ServerSettings) -> tonic::transport::Server {
    let builder =
        tonic::transport::Server::builder().max_concurrent_streams(server.max_concurrent_streams);
    if server.max_connection_age.is_zero() {
        builder
    } else {
        builder.max_connection_age(server.max_connection_age)
    }
}

/// The accepted connections, with TCP_NODELAY set on each. tonic's `Server::tcp_nodelay` does
/// not apply to connections handed over by `serve_with_incoming`, so it is set here: without it
/// Nagle's algorithm holds back the small frames of a reply (headers, data, trailers written
/// apart) until the client's delayed ACK, up to 40 ms on Linux, which showed as 40-60 ms tails
/// in every benchmark row.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Serves on `listener` until `shutdown` completes, then drains (see the module docs).
pub async fn serve(
    settings: Settings,
    store: Arc<dyn TokenStore>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_with_metrics(settings, store, listener, None, shutdown).await
}

/// As [`serve`], also serving `/metrics` on `metrics_listener` when given.
pub async fn serve_with_metrics(
    settings: Settings,
    store: Arc<dyn TokenStore>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let listeners = Listeners {
        grpc: listener,
        metrics: metrics_listener,
        health: None,
    };
    serve_with(settings, store, listeners, shutdown).await
}

type Serving = std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// Serves on `listeners` until `shutdown` completes, then drains (see the module docs).
pub async fn serve_with(
    settings: Settings,
    store: Arc<dyn TokenStore>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let Listeners {
        grpc: listener,
        metrics: metrics_listener,
        health: health_listener,
    } = listeners;
    // One recorder per server (several may share a process); none without a /metrics endpoint.
    let metrics = if metrics_listener.is_some() {
        Metrics::new()
    } else {
        Metrics::disabled()
    };
    let auth = Authorizer::from_settings(&settings.auth)?.with_denials(metrics.denials());
    let tls = if settings.server.tls.enabled() {
        Some(TlsConfigs::new(crate::tls::load(&settings.server.tls)?))
    } else {
        None
    };
    let health_listener = match (&tls, health_listener) {
        (None, _) => None,
        (Some(_), Some(listener)) => Some(listener),
        (Some(_), None) => {
            let addr = settings.server.health_listen.clone();
            Some(
                TcpListener::bind(&addr)
                    .await
                    .map_err(|source| ServeError::HealthListen { addr, source })?,
            )
        }
    };
    warn_if_open(&settings, &auth);
    let mut broker = Broker::new(
        store.clone(),
        settings.limits.clone(),
        BrokerSettings {
            ttl: settings.token.ttl,
        },
    );
    if let Some(recorder) = metrics.recorder() {
        broker = broker.with_metrics(BrokerMetrics::register(recorder));
        store.register_metrics(recorder);
    }
    let service = TokenBrokerServer::new(TokenBrokerService::with_authorizer(
        broker,
        metrics.clone(),
        auth.clone(),
    ))
    .max_decoding_message_size(settings.server.max_message_bytes);

    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
        .await;
    let (shutting_down_tx, shutting_down_rx) = watch::channel(false);
    let mut background = vec![tokio::spawn(drive_readiness(
        reporter.clone(),
        store.ready(),
        shutting_down_rx,
    ))];
    for (name, up) in store.components() {
        background.push(tokio::spawn(drive_component(reporter.clone(), name, up)));
    }
    if let Some(metrics_listener) = metrics_listener {
        tracing::info!(listen = ?metrics_listener.local_addr().ok(), "metrics on /metrics");
        background.push(tokio::spawn(crate::metrics::serve(
            metrics_listener,
            metrics.clone(),
        )));
        background.push(tokio::spawn(crate::metrics::upkeep(metrics)));
    }

    if let Some(path) = &settings.auth.policy_file {
        background.push(tokio::spawn(
            auth.clone()
                .watch(path.clone(), settings.auth.reload_interval()),
        ));
    }
    if let Some(configs) = &tls {
        background.push(tokio::spawn(
            configs.clone().watch(settings.server.tls.clone()),
        ));
    }
    let (health_stop_tx, health_stop_rx) = oneshot::channel::<()>();
    if let Some(health_listener) = health_listener {
        tracing::info!(listen = ?health_listener.local_addr().ok(), "health (plaintext, for probes) served apart from the TLS port");
        let health_only = tonic::transport::Server::builder()
            .add_service(health_service.clone())
            .serve_with_incoming_shutdown(incoming(health_listener), async {
                let _ = health_stop_rx.await;
            });
        background.push(tokio::spawn(async move {
            if let Err(error) = health_only.await {
                tracing::error!(%error, "health port stopped");
            }
        }));
    }

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let local = listener.local_addr().ok();
    tracing::info!(
        listen = ?local,
        tls = tls.is_some(),
        mutual_tls = settings.server.tls.client_ca_file.is_some(),
        policy = auth.enforcing(),
        store = %store.describe(),
        "tokenbroker serving"
    );

    let (drain_tx, drain_rx) = oneshot::channel::<()>();
    let drained = async {
        let _ = drain_rx.await;
    };
    let router = transport(&settings.server)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service);
    let mut server: Serving = match tls {
        Some(configs) => Box::pin(
            router.serve_with_incoming_shutdown(crate::tls::incoming(listener, configs), drained),
        ),
        None => Box::pin(router.serve_with_incoming_shutdown(incoming(listener), drained)),
    };
    tokio::pin!(shutdown);

    let result = tokio::select! {
        result = &mut server => Some(result),
        () = &mut shutdown => None,
    };
    if let Some(result) = result {
        background.iter().for_each(|t| t.abort());
        return result.map_err(ServeError::from);
    }

    tracing::info!(
        readiness_delay = ?settings.shutdown.readiness_delay,
        "shutdown requested: readiness NOT_SERVING, still serving until the delay ends"
    );
    let _ = shutting_down_tx.send(true);
    let delay = tokio::time::sleep(settings.shutdown.readiness_delay);
    tokio::pin!(delay);
    let early = tokio::select! {
        result = &mut server => Some(result),
        () = &mut delay => None,
    };
    let result = match early {
        Some(result) => result,
        None => {
            tracing::info!(drain_timeout = ?settings.shutdown.drain_timeout, "draining in-flight calls");
            let _ = drain_tx.send(());
            match tokio::time::timeout(settings.shutdown.drain_timeout, &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!("drain timeout reached: exiting with calls still in flight");
                    Ok(())
                }
            }
        }
    };
    let _ = health_stop_tx.send(());
    background.iter().for_each(|t| t.abort());
    tracing::info!("tokenbroker stopped");
    result.map_err(ServeError::from)
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_tcp_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut incoming = incoming(listener);
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
