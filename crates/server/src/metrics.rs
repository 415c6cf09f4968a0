//! Metrics: RPC counts and latency by method and status, plus the broker's and store's samples,
//! published on a Prometheus scrape endpoint (`metrics.listen`, path `/metrics`).
//!
//! Why hand-rolled histograms (`broker::metrics::Histogram`): recording sits on every request,
//! so it is a few relaxed atomic adds into fixed arrays (method × status code × bucket), with no
//! lock and no allocation. Labels are bounded by construction: four methods, seventeen gRPC
//! codes, instance roles, breaker states; never a scope or a key. Every metric is documented in
//! docs/observability.md.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use broker::Broker;

use crate::auth::Denials;
use broker::metrics::{Histogram, HistogramSnapshot, Kind, LATENCY_BUCKETS, Sample};
use tokio::net::TcpListener;

pub const METHODS: [&str; 4] = ["PutToken", "GetToken", "MergeToken", "DiscardToken"];
const CODES: usize = 17;

/// RPC counters, shared by the service (which records) and the endpoint (which renders).
pub struct RpcMetrics {
    /// One histogram per method × status code.
    series: Vec<Histogram>,
    /// Calls refused by the authorization policy, by reason (shared with the authorizer).
    pub denials: Arc<Denials>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self::with_denials(Arc::default())
    }
}

impl RpcMetrics {
    /// Metrics that also report the authorizer's `denials`.
    pub fn with_denials(denials: Arc<Denials>) -> Self {
        Self {
            series: (0..METHODS.len() * CODES)
                .map(|_| Histogram::default())
                .collect(),
            denials,
        }
    }
}

impl RpcMetrics {
    /// Records one call of `METHODS[method]` that ended with `code` after `elapsed`.
    pub fn record(&self, method: usize, code: tonic::Code, elapsed: Duration) {
        let code = (code as usize).min(CODES - 1);
        if let Some(series) = self.series.get(method * CODES + code) {
            series.observe(elapsed);
        }
    }

    /// Samples of the calls seen so far (method × code pairs never seen are left out).
    fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        for (reason, count) in [
            ("unauthenticated", &self.denials.unauthenticated),
            ("permission_denied", &self.denials.permission_denied),
        ] {
            out.push(
                Sample::counter(
                    "tokenbroker_auth_denials_total",
                    "Calls refused by the authorization policy, by reason.",
                    count.load(std::sync::atomic::Ordering::Relaxed),
                )
                .label("reason", reason),
            );
        }
        for (m, method) in METHODS.iter().enumerate() {
            for c in 0..CODES {
                let h = &self.series[m * CODES + c];
                if h.count() == 0 {
                    continue;
                }
                let code = format!("{:?}", tonic::Code::from(c as i32));
                out.push(
                    Sample::histogram(
                        "tokenbroker_rpc_duration_seconds",
                        "gRPC calls by method and status code, with their latency.",
                        h,
                    )
                    .label("method", *method)
                    .label("code", code),
                );
            }
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders samples in the Prometheus text format, one HELP/TYPE header per metric name.
pub fn render_samples(samples: &[Sample], out: &mut String) {
    let mut last = "";
    for s in samples {
        if s.name != last {
            let kind = match s.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {} {}", s.name, s.help);
            let _ = writeln!(out, "# TYPE {} {kind}", s.name);
            last = s.name;
        }
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let labels = labels.join(",");
        match &s.histogram {
            Some(h) => render_histogram(s.name, &labels, h, out),
            None if labels.is_empty() => {
                let _ = writeln!(out, "{} {}", s.name, s.value);
            }
            None => {
                let _ = writeln!(out, "{}{{{labels}}} {}", s.name, s.value);
            }
        }
    }
}

/// Writes the `_bucket`, `_sum` and `_count` lines of one histogram series.
fn render_histogram(name: &str, labels: &str, h: &HistogramSnapshot, out: &mut String) {
    let sep = if labels.is_empty() { "" } else { "," };
    let bounds = LATENCY_BUCKETS
        .iter()
        .map(|b| b.to_string())
        .chain(std::iter::once("+Inf".to_owned()));
    for (bound, count) in bounds.zip(&h.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
    }
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

/// The whole scrape: RPC metrics, then broker and store samples (grouped by name).
pub fn render(rpc: &RpcMetrics, broker: &Broker) -> String {
    let mut out = String::with_capacity(16384);
    let mut samples = rpc.samples();
    samples.extend(broker.samples());
    // Stable: series of one name keep their order.
    samples.sort_by_key(|s| s.name);
    render_samples(&samples, &mut out);
    out
}

/// Serves `/metrics` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, rpc: Arc<RpcMetrics>, broker: Broker) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = render(&rpc, &broker);
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    body,
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}
