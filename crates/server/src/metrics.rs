//! Metrics: RPC counts and latency by method and status, authorization denials, and the
//! broker's and store's own metrics, published on a Prometheus scrape endpoint
//! (`metrics.listen`, path `/metrics`). Every metric is documented in docs/observability.md.
//!
//! Why the `metrics` facade with `metrics-exporter-prometheus`: one facade for every crate (the
//! domain registers its handles through it and never sees the exporter), both crates well kept
//! (metrics-rs), and the exporter renders the Prometheus text format, so no hand-made samples,
//! histograms or rendering remain. OpenTelemetry metrics were considered and rejected: its
//! Prometheus exporter is discontinued upstream (OTLP push is what it offers instead), and
//! pushing would add the SDK's metrics half and a collector for what one scrape gives.
//!
//! Why one recorder per server, never a global one: a process may serve several brokers (the
//! integration tests run replicas side by side), each with its own `/metrics`. [`Metrics`] owns
//! the recorder; the broker, the store and the authorizer get handles registered with it. The
//! exporter's histograms buffer samples until they are drained, so a background task runs its
//! upkeep ([`Metrics::run_upkeep`]) whether or not anyone scrapes.
//!
//! Why RPC series are registered on first use: a `tokenbroker_rpc_duration_seconds` series
//! exists once its method has ended with that status at least once (4 methods × 17 codes
//! registered up front would be a thousand lines of zeros per scrape). Labels are bounded by
//! construction: [`Method`] × the 17 gRPC codes, instance roles, breaker states; never a scope or
//! a key.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::metrics::{Counter, Histogram, Recorder};
use broker::metrics::{LATENCY_BUCKETS, Registrar};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio::net::TcpListener;
use tonic::Code;

use crate::rpc::{CODES, Method, status_name};

const RPC_DURATION: &str = "tokenbroker_rpc_duration_seconds";

/// How often the exporter's buffered histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Calls refused by the authorization policy, by reason (held by the authorizer).
#[derive(Clone)]
pub struct Denials {
    pub unauthenticated: Counter,
    pub permission_denied: Counter,
}

impl Default for Denials {
    /// No-op handles.
    fn default() -> Self {
        Self {
            unauthenticated: Counter::noop(),
            permission_denied: Counter::noop(),
        }
    }
}

/// One server's metrics: its recorder and the RPC series. Cheap to clone (shared). A disabled
/// one (no `/metrics` endpoint) records nothing.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// One latency histogram per method × status code, registered on first use.
    rpc: [[OnceLock<Histogram>; CODES.len()]; Method::ALL.len()],
    denials: Denials,
}

impl Metrics {
    /// A recorder of its own, with the latency buckets of docs/observability.md.
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // The buckets are a non-empty constant, so this cannot fail; if it ever did, the
        // exporter's default buckets would still publish every series.
        let builder = match builder.set_buckets(&LATENCY_BUCKETS) {
            Ok(with_buckets) => with_buckets,
            Err(error) => {
                tracing::error!(%error, "latency buckets refused: the exporter's defaults apply");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let r = Registrar::new(&recorder);
        let help = "Calls refused by the authorization policy, by reason.";
        let denials = Denials {
            unauthenticated: r.counter(
                "tokenbroker_auth_denials_total",
                help,
                &[("reason", "unauthenticated")],
            ),
            permission_denied: r.counter(
                "tokenbroker_auth_denials_total",
                help,
                &[("reason", "permission_denied")],
            ),
        };
        recorder.describe_histogram(
            RPC_DURATION.into(),
            None,
            "gRPC calls by method and status code, with their latency.".into(),
        );
        Self {
            inner: Some(Arc::new(Inner {
                recorder,
                handle,
                rpc: Default::default(),
                denials,
            })),
        }
    }

    /// Metrics that record nothing (no `/metrics` endpoint).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// The recorder to register handles with; `None` when disabled.
    pub fn recorder(&self) -> Option<&dyn Recorder> {
        self.inner.as_ref().map(|i| &i.recorder as &dyn Recorder)
    }

    /// The authorizer's handles.
    pub fn denials(&self) -> Denials {
        self.inner
            .as_ref()
            .map(|i| i.denials.clone())
            .unwrap_or_default()
    }

    /// Records one call of `method` that ended with `code` after `elapsed`.
    pub fn record(&self, method: Method, code: Code, elapsed: Duration) {
        let Some(inner) = &self.inner else {
            return;
        };
        let Some(slot) = inner
            .rpc
            .get(method.index())
            .and_then(|by_code| by_code.get(code as usize))
        else {
            return;
        };
        slot.get_or_init(|| {
            Registrar::new(&inner.recorder).histogram(
                RPC_DURATION,
                "gRPC calls by method and status code, with their latency.",
                &[("method", method.name()), ("code", status_name(code))],
            )
        })
        .record(elapsed);
    }

    /// The scrape, in the Prometheus text format (empty when disabled).
    pub fn render(&self) -> String {
        self.inner
            .as_ref()
            .map(|i| i.handle.render())
            .unwrap_or_default()
    }

    /// Folds the histogram samples buffered since the last upkeep into their buckets, so the
    /// buffers stay small between scrapes.
    pub fn run_upkeep(&self) {
        if let Some(inner) = &self.inner {
            inner.handle.run_upkeep();
        }
    }
}

/// Runs [`Metrics::run_upkeep`] every few seconds until the task is aborted.
pub async fn upkeep(metrics: Metrics) {
    let mut ticker = tokio::time::interval(UPKEEP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        metrics.run_upkeep();
    }
}

/// The `/metrics` route, rendering `metrics` at each scrape.
pub fn router(metrics: Metrics) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = metrics.render();
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    body,
                )
            }
        }),
    )
}

/// Serves `/metrics` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    if let Err(e) = axum::serve(listener, router(metrics)).await {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_series_appear_once_used_with_the_standard_code_names() {
        let metrics = Metrics::new();
        assert!(!metrics.render().contains(RPC_DURATION));
        metrics.record(Method::GetToken, Code::Ok, Duration::from_micros(300));
        metrics.record(
            Method::PutToken,
            Code::InvalidArgument,
            Duration::from_secs(2),
        );
        let scrape = metrics.render();
        for line in [
            "# TYPE tokenbroker_rpc_duration_seconds histogram",
            "tokenbroker_rpc_duration_seconds_bucket{method=\"GetToken\",code=\"OK\",le=\"0.00025\"} 0",
            "tokenbroker_rpc_duration_seconds_bucket{method=\"GetToken\",code=\"OK\",le=\"0.0005\"} 1",
            "tokenbroker_rpc_duration_seconds_count{method=\"GetToken\",code=\"OK\"} 1",
            "tokenbroker_rpc_duration_seconds_bucket{method=\"PutToken\",code=\"INVALID_ARGUMENT\",le=\"1\"} 0",
            "tokenbroker_rpc_duration_seconds_bucket{method=\"PutToken\",code=\"INVALID_ARGUMENT\",le=\"+Inf\"} 1",
            "tokenbroker_auth_denials_total{reason=\"unauthenticated\"} 0",
        ] {
            assert!(scrape.contains(line), "missing {line:?} in\n{scrape}");
        }
        assert_eq!(
            scrape
                .lines()
                .filter(|l| l.starts_with("tokenbroker_rpc_duration_seconds_count"))
                .count(),
            2,
            "{scrape}"
        );
    }

    #[test]
    fn two_servers_count_apart() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.record(Method::MergeToken, Code::Ok, Duration::from_millis(1));
        assert!(a.render().contains("method=\"MergeToken\""));
        assert!(!b.render().contains("method=\"MergeToken\""));
    }

    #[test]
    fn disabled_metrics_record_nothing() {
        let metrics = Metrics::disabled();
        metrics.record(Method::GetToken, Code::Ok, Duration::from_millis(1));
        metrics.run_upkeep();
        assert!(metrics.render().is_empty());
        assert!(metrics.recorder().is_none());
    }
}
