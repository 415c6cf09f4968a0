//! Metrics: RPC counts and latency by method and status, plus the broker's and store's samples,
//! published on a Prometheus scrape endpoint (`metrics.listen`, path `/metrics`).
//!
//! Why hand-rolled histograms: recording sits on every request, so it is a few relaxed atomic
//! adds into fixed arrays (method × status code × bucket), with no lock and no allocation.
//! Labels are bounded by construction: three methods, seventeen gRPC codes, instance roles;
//! never a scope or a key.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use broker::Broker;
use broker::metrics::{Kind, Sample};
use tokio::net::TcpListener;

pub const METHODS: [&str; 3] = ["PutToken", "GetToken", "MergeToken"];
const CODES: usize = 17;
/// Latency bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Default)]
struct Series {
    count: AtomicU64,
    sum_micros: AtomicU64,
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
}

/// RPC counters, shared by the service (which records) and the endpoint (which renders).
pub struct RpcMetrics {
    series: Vec<Series>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self {
            series: (0..METHODS.len() * CODES)
                .map(|_| Series::default())
                .collect(),
        }
    }
}

impl RpcMetrics {
    /// Records one call of `METHODS[method]` that ended with `code` after `elapsed`.
    pub fn record(&self, method: usize, code: tonic::Code, elapsed: Duration) {
        let code = (code as usize).min(CODES - 1);
        let Some(series) = self.series.get(method * CODES + code) else {
            return;
        };
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        series.count.fetch_add(1, Ordering::Relaxed);
        series
            .sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        series.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        out.push_str("# HELP tokenbroker_rpc_duration_seconds gRPC calls by method and status code, with their latency.\n");
        out.push_str("# TYPE tokenbroker_rpc_duration_seconds histogram\n");
        for (m, method) in METHODS.iter().enumerate() {
            for c in 0..CODES {
                let s = &self.series[m * CODES + c];
                let count = s.count.load(Ordering::Relaxed);
                if count == 0 {
                    continue;
                }
                let code = format!("{:?}", tonic::Code::from(c as i32));
                let labels = format!("method=\"{method}\",code=\"{code}\"");
                let mut cumulative = 0;
                for (i, bound) in BUCKETS.iter().enumerate() {
                    cumulative += s.buckets[i].load(Ordering::Relaxed);
                    let _ = writeln!(
                        out,
                        "tokenbroker_rpc_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                    );
                }
                cumulative += s.buckets[BUCKETS.len()].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "tokenbroker_rpc_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
                );
                let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "tokenbroker_rpc_duration_seconds_sum{{{labels}}} {sum}"
                );
                let _ = writeln!(
                    out,
                    "tokenbroker_rpc_duration_seconds_count{{{labels}}} {count}"
                );
            }
        }
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
            };
            let _ = writeln!(out, "# HELP {} {}", s.name, s.help);
            let _ = writeln!(out, "# TYPE {} {kind}", s.name);
            last = s.name;
        }
        if s.labels.is_empty() {
            let _ = writeln!(out, "{} {}", s.name, s.value);
        } else {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(out, "{}{{{}}} {}", s.name, labels.join(","), s.value);
        }
    }
}

/// The whole scrape: RPC metrics, then broker and store samples (grouped by name).
pub fn render(rpc: &RpcMetrics, broker: &Broker) -> String {
    let mut out = String::with_capacity(8192);
    rpc.render(&mut out);
    let mut samples = broker.samples();
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
