//! Traces and metrics from a real server: spans exported over OTLP/gRPC to an in-test collector
//! (a real tonic TraceService on loopback) and the Prometheus scrape checked against
//! docs/observability.md.
//!
//! The OTLP test installs the process-wide tracing subscriber (as `tokenbroker serve` does), so
//! it is the only test in this binary that may call `telemetry::init`.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use broker::TokenStore;
use broker::metrics::LATENCY_BUCKETS;
use broker::storage::redis::{RedisStore, RedisUrl};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokenbroker_proto::v1::{
    DiscardTokenRequest, GetTokenRequest, MergeTokenRequest, PutTokenRequest,
};
use tokenbroker_server::config::{LogSettings, TelemetrySettings};
use tokenbroker_server::rpc::{CODES, Method, status_name};
use tokenbroker_server::telemetry;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::support::process::{connect_when_listening, free_port, spawn_broker_binary};
use crate::support::redis::RedisServer;
use crate::support::stores::{TTL, redis_options, wait_for};
use crate::support::{TestBroker, settings};

const KEY: &str = "otel-secret-key";
const TOKEN: &str = "0:1#77#1=5";

/// An exported span with its resource's `service.name`.
struct Exported {
    service: String,
    span: Span,
}

/// The collector: forwards every exported span to the test.
struct Collector(mpsc::UnboundedSender<Exported>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| string_attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                let _ = self.0.send(Exported {
                    service: service.clone(),
                    span,
                });
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn value(attrs: &[KeyValue], key: &str) -> Option<Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v: AnyValue| v.value)
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    match value(attrs, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match value(attrs, key) {
        Some(Value::IntValue(i)) => Some(i),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Request with a W3C `traceparent`.
fn traced<T>(message: T, trace_id: &str, parent_id: &str, sampled: bool) -> Request<T> {
    let mut r = Request::new(message);
    let flags = if sampled { "01" } else { "00" };
    r.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-{flags}")
            .parse()
            .unwrap(),
    );
    r
}

/// Receives spans until `done` holds for the spans of `trace_id` received so far.
async fn spans_of(
    rx: &mut mpsc::UnboundedReceiver<Exported>,
    all: &mut Vec<Exported>,
    trace_id: &str,
    done: impl Fn(&[&Span]) -> bool,
) -> Vec<Span> {
    let wait = async {
        loop {
            let of_trace: Vec<&Span> = all
                .iter()
                .map(|e| &e.span)
                .filter(|s| hex(&s.trace_id) == trace_id)
                .collect();
            if done(&of_trace) {
                return of_trace.into_iter().cloned().collect::<Vec<_>>();
            }
            all.push(rx.recv().await.expect("collector stopped"));
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("spans of trace {trace_id} never all arrived"))
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// Starts a collector on a loopback port; the receiver gets every span exported to it.
async fn start_collector() -> (SocketAddr, mpsc::UnboundedReceiver<Exported>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_spans_join_the_callers_trace_and_show_each_redis_call() {
    let (collector_addr, mut rx) = start_collector().await;

    // Telemetry as `tokenbroker serve` installs it, logs off (they would interleave with every
    // other test's output), a short export interval so the test does not wait 5 s per batch.
    let log = LogSettings {
        level: "off".into(),
        ..LogSettings::default()
    };
    let config = TelemetrySettings {
        otlp_endpoint: Some(format!("http://{collector_addr}")),
        service_name: "tokenbroker-under-test".into(),
        export_interval: Duration::from_millis(50),
        ..TelemetrySettings::default()
    };
    let telemetry = telemetry::init(&log, &config).unwrap();
    assert!(telemetry.exporting());

    let primary = RedisServer::start();
    let fallback = RedisServer::start();
    let store =
        Arc::new(RedisStore::start(&redis_options(&primary, Some(&fallback)), TTL).unwrap());
    wait_for(store.ready(), true).await;
    let broker = TestBroker::start_with_store(settings(), store).await;
    let mut c = broker.client().await;
    let put = || PutTokenRequest {
        scope: "acct/db/otel".into(),
        key: KEY.into(),
        session_token: TOKEN.into(),
    };

    // A caller that did not sample its trace: the broker records nothing for it.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    c.put_token(traced(put(), unsampled, "b7ad6b7169203331", false))
        .await
        .unwrap();

    // PutToken: the RPC span is the caller's child; its Redis commands on the primary are the
    // RPC's children: the read (MGET) and, since the same token is stored already, the TTL
    // refresh (PEXPIRE).
    let put_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    c.put_token(traced(put(), put_trace, caller_span, true))
        .await
        .unwrap();
    let mut all = Vec::new();
    let rpc_name = "tokenbroker.v1.TokenBroker/PutToken";
    let spans = spans_of(&mut rx, &mut all, put_trace, |s| {
        s.iter().any(|s| s.name == rpc_name)
            && s.iter().any(|s| s.name == "MGET")
            && s.iter().any(|s| s.name == "PEXPIRE")
    })
    .await;
    let [rpc] = named(&spans, rpc_name)[..] else {
        panic!("one PutToken span expected: {spans:?}")
    };
    assert_eq!(hex(&rpc.parent_span_id), caller_span);
    assert_eq!(rpc.kind, SpanKind::Server as i32);
    assert_eq!(
        string_attr(&rpc.attributes, "rpc.system").as_deref(),
        Some("grpc")
    );
    assert_eq!(
        string_attr(&rpc.attributes, "rpc.service").as_deref(),
        Some("tokenbroker.v1.TokenBroker")
    );
    assert_eq!(
        string_attr(&rpc.attributes, "rpc.method").as_deref(),
        Some("PutToken")
    );
    assert_eq!(int_attr(&rpc.attributes, "rpc.grpc.status_code"), Some(0));
    for command in ["MGET", "PEXPIRE"] {
        let [span] = named(&spans, command)[..] else {
            panic!("one {command} span expected: {spans:?}")
        };
        assert_eq!(span.parent_span_id, rpc.span_id);
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(
            string_attr(&span.attributes, "db.system").as_deref(),
            Some("redis")
        );
        assert_eq!(
            string_attr(&span.attributes, "db.operation.name").as_deref(),
            Some(command)
        );
        assert_eq!(
            string_attr(&span.attributes, "tokenbroker.redis.instance").as_deref(),
            Some("primary")
        );
    }
    assert!(
        all.iter().all(|e| hex(&e.span.trace_id) != unsampled),
        "the unsampled call was exported (it ended before the sampled one, so it would have \
         been in the same or an earlier batch)"
    );

    // GetToken reads both instances (merge mode): one MGET span per instance under the RPC.
    let get_trace = "5ce0e9a56015fec5aadfa328ae398115";
    let read = c
        .get_token(traced(
            GetTokenRequest {
                scope: "acct/db/otel".into(),
                key: KEY.into(),
                partition_key_range_ids: vec![],
            },
            get_trace,
            "ab42124a3c573678",
            true,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(read.found && !read.degraded, "{read:?}");
    let get_name = "tokenbroker.v1.TokenBroker/GetToken";
    let spans = spans_of(&mut rx, &mut all, get_trace, |s| {
        s.iter().any(|s| s.name == get_name) && s.iter().filter(|s| s.name == "MGET").count() == 2
    })
    .await;
    let [rpc] = named(&spans, get_name)[..] else {
        panic!("one GetToken span expected: {spans:?}")
    };
    let instances: BTreeSet<String> = named(&spans, "MGET")
        .into_iter()
        .inspect(|s| assert_eq!(s.parent_span_id, rpc.span_id))
        .filter_map(|s| string_attr(&s.attributes, "tokenbroker.redis.instance"))
        .collect();
    assert_eq!(
        instances,
        BTreeSet::from(["fallback".to_owned(), "primary".to_owned()])
    );

    // The resource names the service; no span attribute carries the key or the token.
    for e in &all {
        if [put_trace, get_trace].contains(&hex(&e.span.trace_id).as_str()) {
            assert_eq!(e.service, "tokenbroker-under-test");
        }
        let text = format!("{:?} {:?}", e.span.name, e.span.attributes);
        assert!(
            !text.contains(KEY) && !text.contains("77#1=5") && !text.contains("acct/db"),
            "caller data in a span: {text}"
        );
    }

    // The sidecar: each request is a span, the child of the application's `traceparent`. Its
    // upstream refuses connections, so the read is answered 502; the span says so.
    let mut sidecar_settings = tokenbroker_server::config::Settings::default();
    sidecar_settings.sidecar.upstream = format!("http://127.0.0.1:{}/", free_port());
    sidecar_settings.sidecar.brokers = "http://127.0.0.1:1".into();
    let sidecar = crate::support::sidecar::start(sidecar_settings).await;
    let app: SocketAddr = sidecar
        .app_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let sidecar_trace = "6e0c63257de34c92bf9efcd03927272e";
    let app_span = "53995c3f42cd8ad8";
    let mut stream = tokio::net::TcpStream::connect(app).await.unwrap();
    let request = format!(
        "GET /dbs/shop/colls/orders/docs/o1 HTTP/1.0\r\nHost: app\r\n\
         traceparent: 00-{sidecar_trace}-{app_span}-01\r\n\
         x-ms-documentdb-partitionkey: [\"o1\"]\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.0 502"), "{answer}");
    let spans = spans_of(&mut rx, &mut all, sidecar_trace, |s| {
        s.iter().any(|s| s.name == "sidecar.request")
    })
    .await;
    let [request] = named(&spans, "sidecar.request")[..] else {
        panic!("one sidecar.request span expected: {spans:?}")
    };
    assert_eq!(hex(&request.parent_span_id), app_span);
    assert_eq!(
        string_attr(&request.attributes, "operation").as_deref(),
        Some("read")
    );
    assert_eq!(
        int_attr(&request.attributes, "http.response.status_code"),
        Some(502),
        "{:?}",
        request.attributes
    );
    sidecar.stop().await;

    broker.stop().await;
    telemetry.shutdown().await;
}

/// `tokenbroker serve` exports the spans still buffered when it exits on SIGTERM. The export
/// interval is ten minutes, so only that final flush can deliver the span.
#[tokio::test]
async fn the_binary_flushes_buffered_spans_on_sigterm() {
    let (collector_addr, mut rx) = start_collector().await;
    let port = free_port();
    let mut child = spawn_broker_binary(
        &[
            ("TOKENBROKER_LISTEN", format!("127.0.0.1:{port}")),
            ("TOKENBROKER_SHUTDOWN__READINESS_DELAY", "0s".into()),
            (
                "TOKENBROKER_TELEMETRY__OTLP_ENDPOINT",
                format!("http://{collector_addr}"),
            ),
            ("TOKENBROKER_TELEMETRY__EXPORT_INTERVAL", "10m".into()),
        ],
        Stdio::null(),
    );
    let mut c = TokenBrokerClient::new(connect_when_listening(port).await);
    let trace = "8c1e4d5a2f6b7e9d0a1b2c3d4e5f6a7b";
    c.merge_token(traced(
        MergeTokenRequest {
            session_tokens: vec!["0:1#5".into(), "0:1#7".into()],
        },
        trace,
        "1122334455667788",
        true,
    ))
    .await
    .unwrap();
    drop(c);

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("broker did not exit after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");

    // The collector queued the spans before answering the export the process waited for.
    let mut all = Vec::new();
    while let Ok(e) = rx.try_recv() {
        all.push(e);
    }
    let merge: Vec<&Span> = all
        .iter()
        .map(|e| &e.span)
        .filter(|s| hex(&s.trace_id) == trace)
        .collect();
    assert_eq!(merge.len(), 1, "{merge:?}");
    assert_eq!(merge[0].name, "tokenbroker.v1.TokenBroker/MergeToken");
    assert_eq!(hex(&merge[0].parent_span_id), "1122334455667788");
    assert_eq!(all[0].service, "tokenbroker");
}

/// The metric table of docs/observability.md: name → (type, label names).
fn documented_metrics() -> HashMap<String, (String, BTreeSet<String>)> {
    let doc = include_str!("../../docs/observability.md");
    let mut out = HashMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `tokenbroker_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`'))
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        out.insert(
            cells[1].trim_matches('`').to_owned(),
            (cells[2].to_owned(), labels),
        );
    }
    out
}

/// Label names of one sample line (`name{a="x",b="y"} 1`).
fn label_names(line: &str) -> BTreeSet<String> {
    let Some((_, rest)) = line.split_once('{') else {
        return BTreeSet::new();
    };
    let inside = rest.split_once('}').map_or("", |(l, _)| l);
    inside
        .split(',')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_owned()))
        .collect()
}

/// The values docs/observability.md lists for `label` in a metric's meaning cell: the
/// backticked words after "`label`:" up to the end of that sentence.
fn documented_values(metric: &str, label: &str) -> BTreeSet<String> {
    let doc = include_str!("../../docs/observability.md");
    let row = doc
        .lines()
        .find(|l| l.starts_with(&format!("| `{metric}` ")))
        .unwrap_or_else(|| panic!("{metric} is not in the table"));
    let after = row
        .split_once(&format!("`{label}`:"))
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no values of {label} for {metric}"));
    let sentence = after.split_once(". ").map_or(after, |(s, _)| s);
    sentence
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The histogram buckets docs/observability.md lists ("Histogram buckets (seconds): ...").
fn documented_buckets() -> Vec<String> {
    let doc = include_str!("../../docs/observability.md").replace('\n', " ");
    let (_, after) = doc.split_once("Histogram buckets (seconds):").unwrap();
    let (list, _) = after.split_once(". ").unwrap();
    list.split(',').map(|b| b.trim().to_owned()).collect()
}

/// The method and code labels, the buckets and the status names in the docs are the code's: every
/// method, the 17 gRPC status names of the specification, `LATENCY_BUCKETS`.
#[test]
fn documented_label_values_and_buckets_are_the_codes() {
    let methods: BTreeSet<String> = Method::ALL.iter().map(|m| m.name().to_owned()).collect();
    assert_eq!(
        documented_values("tokenbroker_rpc_duration_seconds", "method"),
        methods
    );
    let codes: BTreeSet<String> = CODES.iter().map(|c| status_name(*c).to_owned()).collect();
    assert_eq!(codes.len(), 17);
    assert_eq!(
        documented_values("tokenbroker_rpc_duration_seconds", "code"),
        codes
    );
    let mut buckets: Vec<String> = LATENCY_BUCKETS.iter().map(f64::to_string).collect();
    buckets.push("+Inf".into());
    assert_eq!(documented_buckets(), buckets);
}

/// Every metric in the docs is in the scrape, with its type and exactly its labels; every
/// metric in the scrape is documented, with documented `method` and `code` values and the
/// documented buckets.
#[tokio::test]
async fn every_documented_metric_is_scraped_with_its_labels() {
    let documented = documented_metrics();
    assert!(documented.len() >= 17, "{documented:?}");

    let primary = RedisServer::start();
    let fallback = RedisServer::start();
    let store =
        Arc::new(RedisStore::start(&redis_options(&primary, Some(&fallback)), TTL).unwrap());
    wait_for(store.ready(), true).await;
    let broker = TestBroker::start_with_store(settings(), store).await;
    let mut c = broker.client().await;
    c.put_token(PutTokenRequest {
        scope: "acct/db/m".into(),
        key: "k".into(),
        session_token: "0:1#1".into(),
    })
    .await
    .unwrap();
    // Every method, and a caller's error, so that their series are checked too.
    let refused = c
        .put_token(PutTokenRequest {
            scope: "acct/db/m".into(),
            key: "k".into(),
            session_token: "not a token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    c.get_token(GetTokenRequest {
        scope: "acct/db/m".into(),
        key: "k".into(),
        partition_key_range_ids: vec![],
    })
    .await
    .unwrap();
    c.merge_token(MergeTokenRequest {
        session_tokens: vec!["0:1#1".into()],
    })
    .await
    .unwrap();
    c.discard_token(DiscardTokenRequest {
        scope: "acct/db/m".into(),
        key: "k".into(),
        session_token: "0:1#1".into(),
        partition_key_range_ids: vec![],
    })
    .await
    .unwrap();
    let standalone = broker.scrape().await;
    // The topology metrics exist only for a cluster or a Sentinel instance: a second broker, on
    // the binary's shared cluster (primary) and Sentinel set (fallback), scraped after a
    // health round has published the cluster's slots.
    let mut options = redis_options(&primary, None);
    options.primary_url = Some(RedisUrl::parse(&crate::support::cluster::shared().url()).unwrap());
    options.fallback_url =
        Some(RedisUrl::parse(&crate::support::cluster::shared_sentinel().url()).unwrap());
    options.namespace = crate::support::cluster::namespace();
    let topologies = Arc::new(RedisStore::start(&options, TTL).unwrap());
    wait_for(topologies.ready(), true).await;
    let second = TestBroker::start_with_store(settings(), topologies).await;
    let mut c2 = second.client().await;
    c2.put_token(PutTokenRequest {
        scope: "acct/db/m".into(),
        key: "k".into(),
        session_token: "0:1#1".into(),
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut topology_scrape = second.scrape().await;
    // The node counts are published in the same round, after the slots: wait for both.
    let masters_ok =
        "tokenbroker_redis_cluster_nodes{instance=\"primary\",role=\"master\",state=\"ok\"} 3";
    while !(topology_scrape.contains("tokenbroker_redis_cluster_masters{instance=\"primary\"} 3")
        && topology_scrape.contains(masters_ok))
    {
        assert!(std::time::Instant::now() < deadline, "{topology_scrape}");
        tokio::task::yield_now().await;
        topology_scrape = second.scrape().await;
    }
    for line in [
        "tokenbroker_redis_cluster_slots{instance=\"primary\",state=\"ok\"} 16384",
        "tokenbroker_redis_cluster_slots{instance=\"primary\",state=\"fail\"} 0",
        "tokenbroker_redis_master_changes_total{instance=\"fallback\"} 0",
    ] {
        assert!(
            topology_scrape.contains(line),
            "no {line} in\n{topology_scrape}"
        );
    }
    let scrape = format!("{standalone}\n{topology_scrape}");

    let label_value = |line: &str, label: &str| {
        let (_, rest) = line.split_once(&format!("{label}=\"")).unwrap();
        rest.split_once('"').unwrap().0.to_owned()
    };
    let rpc_counts: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("tokenbroker_rpc_duration_seconds_count{"))
        .collect();
    let methods = documented_values("tokenbroker_rpc_duration_seconds", "method");
    let codes = documented_values("tokenbroker_rpc_duration_seconds", "code");
    let seen: BTreeSet<(String, String)> = rpc_counts
        .iter()
        .map(|l| (label_value(l, "method"), label_value(l, "code")))
        .inspect(|(m, c)| assert!(methods.contains(m) && codes.contains(c), "{m} {c}"))
        .collect();
    for method in &methods {
        assert!(seen.contains(&(method.clone(), "OK".into())), "{seen:?}");
    }
    assert!(seen.contains(&("PutToken".into(), "INVALID_ARGUMENT".into())));
    let buckets: Vec<String> = scrape
        .lines()
        .filter(|l| l.starts_with("tokenbroker_rpc_duration_seconds_bucket{method=\"GetToken\""))
        .map(|l| label_value(l, "le"))
        .collect();
    assert_eq!(buckets, documented_buckets());

    let mut typed = HashMap::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            typed.insert(name.to_owned(), kind.to_owned());
        }
    }
    for name in typed.keys() {
        assert!(
            documented.contains_key(name),
            "{name} is scraped but not in docs/observability.md"
        );
    }
    // The sidecar's metrics are checked against a sidecar's scrape, below.
    for (name, (kind, labels)) in documented
        .iter()
        .filter(|(name, _)| !name.starts_with(SIDECAR_PREFIX))
    {
        assert_eq!(typed.get(name), Some(kind), "type of {name}");
        let series = if kind == "histogram" {
            format!("{name}_bucket")
        } else {
            name.clone()
        };
        let lines: Vec<&str> = scrape
            .lines()
            .filter(|l| {
                l.strip_prefix(series.as_str())
                    .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
            })
            .collect();
        assert!(!lines.is_empty(), "no sample of {name}");
        for line in lines {
            let mut got = label_names(line);
            if kind == "histogram" {
                assert!(got.remove("le"), "{line}");
            }
            assert_eq!(&got, labels, "labels of {line}");
        }
    }
    broker.stop().await;
}

/// The prefix of the sidecar's own metrics.
const SIDECAR_PREFIX: &str = "tokenbroker_sidecar_";

/// `tokenbroker sidecar`'s `/metrics`: every metric it publishes is documented, with its type and
/// exactly its labels, and every documented `tokenbroker_sidecar_*` metric is published; the
/// `operation` and `result` values are the documented ones. The probes answer as
/// docs/observability.md and docs/sidecar.md say.
#[tokio::test]
async fn the_sidecars_metrics_are_documented() {
    let documented = documented_metrics();
    let mut settings = tokenbroker_server::config::Settings::default();
    // Nothing is sent upstream or to a broker: the metrics are registered at start-up.
    settings.sidecar.upstream = "http://127.0.0.1:9/".into();
    settings.sidecar.brokers = "http://127.0.0.1:9".into();
    let sidecar = crate::support::sidecar::start(settings).await;
    assert_eq!(sidecar.get("/livez").await.0, 200);
    assert_eq!(sidecar.get("/readyz").await.0, 200);
    let (status, scrape) = sidecar.get("/metrics").await;
    assert_eq!(status, 200, "{scrape}");

    let mut typed = HashMap::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            typed.insert(name.to_owned(), kind.to_owned());
        }
    }
    assert!(
        typed.keys().any(|n| n.starts_with(SIDECAR_PREFIX)),
        "{scrape}"
    );
    for name in typed.keys() {
        assert!(
            documented.contains_key(name),
            "{name} is scraped from the sidecar but not in docs/observability.md"
        );
    }
    let sidecar_metrics: Vec<(&String, &(String, BTreeSet<String>))> = documented
        .iter()
        .filter(|(name, _)| name.starts_with(SIDECAR_PREFIX))
        .collect();
    assert!(sidecar_metrics.len() >= 8, "{sidecar_metrics:?}");
    for (name, (kind, labels)) in &sidecar_metrics {
        assert_eq!(typed.get(*name), Some(kind), "type of {name}");
        let lines: Vec<&str> = scrape
            .lines()
            .filter(|l| {
                l.strip_prefix(name.as_str())
                    .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
            })
            .collect();
        assert!(!lines.is_empty(), "no sample of {name}");
        for line in &lines {
            assert_eq!(&label_names(line), labels, "labels of {line}");
        }
    }
    let values = |metric: &str, label: &str| -> BTreeSet<String> {
        scrape
            .lines()
            .filter(|l| l.starts_with(&format!("{metric}{{")))
            .map(|l| {
                let (_, rest) = l.split_once(&format!("{label}=\"")).unwrap();
                rest.split_once('"').unwrap().0.to_owned()
            })
            .collect()
    };
    for (metric, label) in [
        ("tokenbroker_sidecar_requests_total", "operation"),
        ("tokenbroker_sidecar_puts_total", "result"),
    ] {
        assert_eq!(
            values(metric, label),
            documented_values(metric, label),
            "{metric}: the {label} values"
        );
    }
    sidecar.stop().await;
}
