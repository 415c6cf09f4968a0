//! `tokenbroker sidecar`: runs the sidecar proxy (crate `tokenbroker-sidecar`) with the server's
//! configuration loader, logs, traces and metrics, and HTTP probes.
//!
//! Why probes over HTTP here: the sidecar runs in the application's pod as a Kubernetes native
//! sidecar (an init container with `restartPolicy: Always`), whose startup probe holds the
//! application back until the sidecar listens. `/livez` answers while the process runs;
//! `/readyz` answers 200 once the application-facing listener is bound and 503 after SIGTERM.
//! Neither depends on the brokers: a broker outage must never hold back or restart the
//! application (the sidecar then forwards with the SDK's own session semantics, and says so in
//! its metrics and logs). They share `metrics.listen` with `/metrics`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use tokenbroker_sidecar::{Sidecar, SidecarMetrics};
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::metrics::{self, Metrics};

/// Why the sidecar stopped.
#[derive(Debug, thiserror::Error)]
pub enum SidecarRunError {
    /// The sidecar could not start.
    #[error(transparent)]
    Sidecar(#[from] tokenbroker_sidecar::SidecarError),
    /// The probes and metrics address could not be bound.
    #[error("metrics.listen: cannot listen on {addr}: {source}")]
    Metrics {
        addr: String,
        source: std::io::Error,
    },
}

/// Binds the sidecar and the probes, then serves until `shutdown` completes. `on_ready` gets
/// the application-facing URL once bound (tests read it from there).
pub async fn run(
    settings: &Settings,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(&str),
) -> Result<(), SidecarRunError> {
    let metrics = if settings.metrics.listen.is_empty() {
        Metrics::disabled()
    } else {
        Metrics::new()
    };
    let sidecar_metrics = match metrics.recorder() {
        Some(recorder) => SidecarMetrics::register(recorder),
        None => SidecarMetrics::noop(),
    };
    let sidecar = Sidecar::bind(&settings.sidecar, sidecar_metrics)
        .await?
        .with_span_parent(Arc::new(crate::telemetry::set_remote_parent_http));
    let ready = Arc::new(AtomicBool::new(true));
    let mut background = Vec::new();
    if !settings.metrics.listen.is_empty() {
        let addr = settings.metrics.listen.clone();
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| SidecarRunError::Metrics { addr, source })?;
        tracing::info!(listen = ?listener.local_addr().ok(), "metrics on /metrics, probes on /livez and /readyz");
        background.push(tokio::spawn(probes(
            listener,
            metrics.clone(),
            Arc::clone(&ready),
        )));
        background.push(tokio::spawn(metrics::upkeep(metrics)));
    }
    tracing::info!(
        listen = sidecar.local_url(),
        upstream = %settings.sidecar.upstream,
        "sidecar serving"
    );
    on_ready(sidecar.local_url());
    let readiness_delay = settings.shutdown.readiness_delay;
    sidecar
        .serve(async {
            shutdown.await;
            ready.store(false, Ordering::SeqCst);
            tracing::info!(
                ?readiness_delay,
                "readiness off; still serving for the delay"
            );
            tokio::time::sleep(readiness_delay).await;
        })
        .await;
    for task in background {
        task.abort();
    }
    Ok(())
}

async fn probes(listener: TcpListener, metrics: Metrics, ready: Arc<AtomicBool>) {
    let app = metrics::router(metrics)
        .route("/livez", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
                    }
                }
            }),
        );
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(%error, "probe endpoint stopped");
    }
}
