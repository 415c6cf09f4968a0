//! Logging and tracing set-up: logs (human-readable or JSON lines, filtered by `log.level` or
//! `RUST_LOG`) and, when `telemetry.otlp_endpoint` is set, spans exported over OTLP/gRPC.
//!
//! Why spans are `tracing` spans bridged by `tracing-opentelemetry`: the broker library already
//! speaks `tracing` and must not depend on an exporter. The RPC and Redis spans are at DEBUG
//! level and the exporting layer has its own filter, so `log.level = info` does not hide them
//! from traces, and without an endpoint nothing enables them: a disabled span costs a relaxed
//! load. The exporting layer takes spans only (never events), from this workspace's crates only,
//! so log fields (which may carry error texts) never become span attributes.

use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing::{Level, Metadata};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter};

use crate::config::{LogFormat, LogSettings, TelemetrySettings};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.otlp_endpoint: cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Owns the trace pipeline; [`Telemetry::shutdown`] flushes it.
#[must_use = "call shutdown() before exiting, or buffered spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// True when spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter (waits at most about the export
    /// timeout). Runs on a blocking thread: the SDK's shutdown blocks until the export is done.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "trace exporter shutdown failed"),
            Err(e) => tracing::warn!(error = %e, "trace exporter shutdown panicked"),
        }
    }
}

/// Deadline of one export call to the collector.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs the global subscriber: the log layer, plus the OTLP layer when an endpoint is set.
/// Must run inside the Tokio runtime (the gRPC exporter's connection lives on it).
pub fn init(log: &LogSettings, telemetry: &TelemetrySettings) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a terminal: a log written to a file or collected from a pod must
    // be plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match log.format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Human => fmt.boxed(),
    };
    let logs = fmt.with_filter(filter);

    let Some(endpoint) = telemetry.endpoint() else {
        tracing_subscriber::registry()
            .with(logs)
            .try_init()
            .map_err(|_| TelemetryError::AlreadyInstalled)?;
        return Ok(Telemetry { provider: None });
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(telemetry.export_interval)
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            telemetry.sampling_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(telemetry.service_name.clone())
                .build(),
        )
        .build();
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("tokenbroker"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(filter::filter_fn(exported));
    if tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_err()
    {
        let _ = provider.shutdown();
        return Err(TelemetryError::AlreadyInstalled);
    }
    tracing::info!(endpoint, "exporting traces over OTLP/gRPC");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// What the OTLP layer sees: spans of this workspace's crates, DEBUG and above; no events.
fn exported(meta: &Metadata<'_>) -> bool {
    let ours = |krate: &str| {
        meta.target() == krate
            || meta
                .target()
                .strip_prefix(krate)
                .is_some_and(|rest| rest.starts_with("::"))
    };
    meta.is_span()
        && *meta.level() <= Level::DEBUG
        && (ours("tokenbroker_server") || ours("broker") || ours("tokenbroker_sidecar"))
}

/// Reads W3C trace-context headers (`traceparent`, `tracestate`) from gRPC metadata.
struct MetadataExtractor<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Makes `span` a child of the caller's span named in the request's `traceparent`, if any.
/// Does nothing when the span is disabled (no exporter), so the headers are not even parsed.
pub fn set_remote_parent(span: &tracing::Span, metadata: &tonic::metadata::MetadataMap) {
    if span.is_disabled() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&MetadataExtractor(metadata));
    // Fails only without the OTLP layer, when there is no trace to join anyway.
    let _ = span.set_parent(parent);
}

/// Reads W3C trace-context headers from an HTTP request (the sidecar's).
struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// As [`set_remote_parent`], from an HTTP request's headers: the sidecar's hook
/// (`tokenbroker_sidecar::Sidecar::with_span_parent`).
pub fn set_remote_parent_http(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extractor_reads_traceparent_from_grpc_metadata() {
        use opentelemetry::trace::TraceContextExt;
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let cx = TraceContextPropagator::new().extract(&MetadataExtractor(&md));
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
    }
}
