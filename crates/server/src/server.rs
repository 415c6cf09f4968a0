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

use broker::storage::memory::MemoryStore;
use broker::storage::redis::DualRedisStore;
use broker::{Broker, PutOptions, TokenStore};
use tokenbroker_proto::v1::token_broker_server::TokenBrokerServer;
use tokenbroker_proto::v1::{FILE_DESCRIPTOR_SET, SERVICE_NAME};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::{ServerSettings, Settings};
use crate::metrics::RpcMetrics;
use crate::service::TokenBrokerService;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot build the store: {0}")]
    Store(String),
}

/// Builds the store the settings ask for: Redis when `redis.primary_url` is set, otherwise the
/// in-memory store. Does not wait for Redis to answer (readiness says when it does).
pub fn build_store(settings: &Settings) -> Result<Arc<dyn TokenStore>, ServeError> {
    if settings.redis.primary_url.is_some() {
        let store = DualRedisStore::start(&settings.redis, settings.token.ttl)
            .map_err(ServeError::Store)?;
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
    let broker = Broker::new(
        store.clone(),
        settings.limits.clone(),
        PutOptions {
            ttl: settings.token.ttl,
        },
    );
    let rpc_metrics = Arc::new(RpcMetrics::default());
    let service =
        TokenBrokerServer::new(TokenBrokerService::new(broker.clone(), rpc_metrics.clone()))
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
            rpc_metrics,
            broker,
        )));
    }

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let local = listener.local_addr().ok();
    tracing::info!(listen = ?local, store = %store.describe(), "tokenbroker serving");

    let (drain_tx, drain_rx) = oneshot::channel::<()>();
    let server = transport(&settings.server)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(listener), async {
            let _ = drain_rx.await;
        });
    tokio::pin!(server);
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
