//! `sidecar`: what `tokenbroker sidecar` adds to a request over the same request sent straight
//! to the account (issue 14: at most 300 µs at p50 on loopback, the broker's round trip excluded).
//!
//! Why this shape:
//! - **Same requests, same moment**: each request is sent directly to the upstream and through
//!   the sidecar, pair after pair (the order flipped every pair), so both halves of a pair see
//!   the same machine state; on shared cores only such differences mean anything.
//! - **One request at a time on one keep-alive connection per target** (closed loop, c=1): the
//!   latency a request pays, not queueing.
//! - **The upstream is the HTTP emulator on loopback** (the SDK's in-memory emulator behind
//!   hyper): it spends far more CPU per request than the sidecar, so absolute latencies are
//!   mostly the emulator's; only the added time is the sidecar's.
//! - **Pass-through** (no broker call) is the issue's figure; **brokered** (GetToken before a
//!   read, PutToken after a write, to an in-process broker on loopback) is shown beside it, with
//!   the broker's own calls timed alone.
//! - Emulator, sidecars and broker each run on a runtime of their own, as separate processes.

use std::time::Instant;

use bytes::Bytes;
use cosmos_http_emulator::{Emulator, Options};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use test_kit::{KillableBroker, memory_store};
use tokenbroker_client::{ClientConfig, TokenBrokerClient};
use tokenbroker_sidecar::{Sidecar, SidecarMetrics, SidecarSettings};
use tokio::runtime::Runtime;

const DOCS: &str = "/dbs/shop/colls/orders/docs";
/// The issue's target for the pass-through difference at p50.
const TARGET_US: f64 = 300.0;

/// Headers every SDK request carries (the emulator checks no signature).
const SDK_HEADERS: [(&str, &str); 5] = [
    ("x-ms-version", "2020-07-15"),
    ("x-ms-date", "Tue, 01 Dec 2026 10:00:00 GMT"),
    (
        "authorization",
        "type%3Dmaster%26ver%3D1.0%26sig%3DbenchbenchbenchbenchbenchbenchbenchbenX%3D",
    ),
    ("user-agent", "tokenbroker-bench"),
    ("accept", "application/json"),
];

type Http = Client<HttpConnector, Full<Bytes>>;

pub struct SidecarArgs {
    pub requests: usize,
    pub warmup: usize,
    pub docs: usize,
    /// Worker threads of the sidecars' runtime (`tokenbroker sidecar` has one per CPU).
    pub sidecar_threads: usize,
}

#[derive(Serialize)]
pub struct Quantiles {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
}

impl Quantiles {
    fn of(h: &Histogram<u64>) -> Self {
        let q = |x| h.value_at_quantile(x) as f64 / 1000.0;
        Self {
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
        }
    }
}

#[derive(Serialize)]
pub struct Row {
    pub request: String,
    pub policy: String,
    pub pairs: usize,
    pub direct: Quantiles,
    pub through: Quantiles,
    /// p50 through minus p50 direct.
    pub added_p50_us: f64,
    /// The median of each pair's own difference.
    pub added_paired_median_us: f64,
    pub errors: u64,
    pub first_error: Option<String>,
}

#[derive(Serialize)]
pub struct Summary {
    pub rows: Vec<Row>,
    /// GetToken and PutToken timed alone, as the sidecar's broker client calls them.
    pub broker_alone: Vec<(String, Quantiles)>,
    /// The brokered sidecar's broker client: reads that got a token, writes recorded.
    pub brokered_reads_with_token: u64,
    pub brokered_writes_recorded: u64,
    pub cpus: usize,
    pub loadavg_before: String,
    pub loadavg_after: String,
}

#[derive(Clone, Copy)]
enum Kind {
    Read,
    Upsert,
}

/// The request an SDK sends for `kind` of document `i`, as far as the gateway sees it.
fn request(base: &str, kind: Kind, i: usize) -> http::Request<Full<Bytes>> {
    let (method, path, body) = match kind {
        Kind::Read => ("GET", format!("{DOCS}/d{i}"), String::new()),
        Kind::Upsert => (
            "POST",
            DOCS.to_owned(),
            format!(r#"{{"id":"d{i}","pk":"k{i}"}}"#),
        ),
    };
    let mut r = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", base.trim_end_matches('/')))
        .header("x-ms-documentdb-partitionkey", format!(r#"["k{i}"]"#));
    for (name, value) in SDK_HEADERS {
        r = r.header(name, value);
    }
    if let Kind::Upsert = kind {
        r = r
            .header("x-ms-documentdb-is-upsert", "True")
            .header("content-type", "application/json");
    }
    r.body(Full::new(Bytes::from(body)))
        .expect("a valid request") // ok: fixed shape
}

/// Sends one request and reads the whole answer: (nanoseconds, status or error).
async fn timed(http: &Http, req: http::Request<Full<Bytes>>) -> (u64, Result<u16, String>) {
    let start = Instant::now();
    let result = match http.request(req).await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.into_body().collect().await {
                Ok(_) => Ok(status),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    (start.elapsed().as_nanos() as u64, result)
}

/// `pairs` of the same request direct and through, after `warmup` pairs not counted.
async fn measure(http: &Http, [direct, through]: [&str; 2], kind: Kind, args: &SidecarArgs) -> Row {
    let mut d = Histogram::<u64>::new(3).expect("3 significant digits");
    let mut t = d.clone();
    let (mut paired, mut errors, mut first_error) = (Vec::new(), 0, None);
    for n in 0..args.warmup + args.requests {
        let i = n % args.docs;
        // The order flips every pair, so neither side always follows the other.
        let order = if n % 2 == 0 {
            [direct, through]
        } else {
            [through, direct]
        };
        let mut ns = [0u64; 2];
        for base in order {
            let (took, result) = timed(http, request(base, kind, i)).await;
            if !matches!(result, Ok(200 | 201)) {
                errors += 1;
                first_error.get_or_insert(format!("{base}: {result:?}"));
            }
            ns[usize::from(base == through)] = took;
        }
        if n >= args.warmup {
            d.record(ns[0]).expect("auto-resizing");
            t.record(ns[1]).expect("auto-resizing");
            paired.push(ns[1] as i64 - ns[0] as i64);
        }
    }
    paired.sort_unstable();
    let (direct, through) = (Quantiles::of(&d), Quantiles::of(&t));
    let request = match kind {
        Kind::Read => "point read",
        Kind::Upsert => "upsert",
    };
    eprintln!(
        "{request}: +{:.0} us at p50",
        through.p50_us - direct.p50_us
    );
    Row {
        request: request.into(),
        policy: String::new(),
        pairs: args.requests,
        added_p50_us: through.p50_us - direct.p50_us,
        added_paired_median_us: paired
            .get(paired.len() / 2)
            .map_or(0.0, |v| *v as f64 / 1000.0),
        direct,
        through,
        errors,
        first_error,
    }
}

fn runtime(name: &str, threads: usize) -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| format!("{name} runtime: {e}"))
}

/// A sidecar in front of `upstream` with `default_policy`, on `rt`: its URL and broker client.
async fn sidecar(
    rt: &Runtime,
    upstream: &str,
    broker: &str,
    default_policy: &str,
) -> Result<(String, TokenBrokerClient), String> {
    let settings = SidecarSettings {
        listen: "127.0.0.1:0".into(),
        upstream: upstream.into(),
        brokers: broker.into(),
        default_policy: default_policy.into(),
        ..SidecarSettings::default()
    };
    rt.spawn(async move {
        let sidecar = Sidecar::bind(&settings, SidecarMetrics::noop()).await?;
        let found = (sidecar.local_url().to_owned(), sidecar.broker().clone());
        tokio::spawn(sidecar.serve(std::future::pending()));
        Ok(found)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e: tokenbroker_sidecar::SidecarError| format!("sidecar: {e}"))
}

/// What an SDK reads first (the account, then the container); the container's `_rid`.
async fn connect(http: &Http, base: &str) -> Result<String, String> {
    let mut body = Bytes::new();
    for path in ["/", "/dbs/shop/colls/orders"] {
        let uri = format!("{}{path}", base.trim_end_matches('/'));
        let req = http::Request::get(uri).body(Full::default());
        let response = http.request(req.map_err(|e| e.to_string())?).await;
        let response = response.map_err(|e| format!("{base}{path}: {e}"))?;
        if response.status() != 200 {
            return Err(format!("{base}{path}: status {}", response.status()));
        }
        let collected = response.into_body().collect().await;
        body = collected.map_err(|e| e.to_string())?.to_bytes();
    }
    let container: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let rid = container["_rid"]
        .as_str()
        .ok_or("the container has no _rid");
    Ok(rid?.to_owned())
}

/// One broker call timed `n` times after `warmup`.
async fn broker_alone<F: Future<Output = bool>>(
    n: usize,
    warmup: usize,
    call: impl Fn() -> F,
) -> Quantiles {
    let mut h = Histogram::<u64>::new(3).expect("3 significant digits");
    for i in 0..warmup + n {
        let start = Instant::now();
        let ok = call().await;
        assert!(ok, "the broker answered nothing"); // ok: a bench run without its broker is void
        if i >= warmup {
            h.record(start.elapsed().as_nanos() as u64)
                .expect("auto-resizing");
        }
    }
    Quantiles::of(&h)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

pub async fn run(args: SidecarArgs) -> Result<Summary, String> {
    let loadavg_before = loadavg();
    let (emulator_rt, sidecar_rt) = (
        runtime("emulator", 2)?,
        runtime("sidecar", args.sidecar_threads)?,
    );
    let one_region = Options {
        regions: 1,
        ..Options::default()
    };
    let emulator = emulator_rt
        .spawn(Emulator::start(one_region))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("emulator: {e}"))?;
    let direct = emulator.endpoint().to_owned();
    let broker = KillableBroker::start(memory_store());
    let (pass_through, _) = sidecar(&sidecar_rt, &direct, &broker.url(), "pass-through").await?;
    let (brokered, brokered_client) =
        sidecar(&sidecar_rt, &direct, &broker.url(), "partition-key").await?;

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let http: Http = Client::builder(TokioExecutor::new()).build(connector);
    let rid = connect(&http, &direct).await?;
    connect(&http, &pass_through).await?;
    connect(&http, &brokered).await?;
    // Every document exists, and the broker holds each key's token (written through the sidecar).
    for i in 0..args.docs {
        let (_, result) = timed(&http, request(&brokered, Kind::Upsert, i)).await;
        result
            .ok()
            .filter(|s| *s < 300)
            .ok_or("the first upserts failed")?;
    }

    let mut rows = Vec::new();
    for (policy, through) in [("pass-through", &pass_through), ("brokered", &brokered)] {
        for kind in [Kind::Read, Kind::Upsert] {
            let row = measure(&http, [&direct, through], kind, &args).await;
            rows.push(Row {
                policy: policy.into(),
                ..row
            });
        }
    }

    // The broker's calls alone, with the sidecar's client settings and the brokered scope.
    let scope = format!("127.0.0.1/shop/orders/{rid}");
    let client = TokenBrokerClient::new(
        ClientConfig::new([broker.url()]).with_deadline(SidecarSettings::default().broker_deadline),
    )
    .map_err(|e| e.to_string())?;
    let get = broker_alone(args.requests, args.warmup, || async {
        client
            .token_for_read(&scope, r#"["k0"]"#, &[])
            .await
            .is_some()
    })
    .await;
    let put = broker_alone(args.requests, args.warmup, || {
        client.record_write(&scope, r#"["k0"]"#, "0:1#1000")
    })
    .await;
    let stats = brokered_client.stats();
    drop(emulator);
    emulator_rt.shutdown_background();
    sidecar_rt.shutdown_background();
    Ok(Summary {
        rows,
        broker_alone: vec![("GetToken".into(), get), ("PutToken".into(), put)],
        brokered_reads_with_token: stats.reads_with_token,
        brokered_writes_recorded: stats.writes - stats.write_failures,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg_before,
        loadavg_after: loadavg(),
    })
}

const HEADER: &str = "request, policy              direct p50/p90/p99   through p50/p90/p99  added p50  paired  errors";

pub fn print(s: &Summary) {
    let q = |q: &Quantiles| format!("{:.0} / {:.0} / {:.0}", q.p50_us, q.p90_us, q.p99_us);
    println!("{HEADER}");
    for r in &s.rows {
        let name = format!("{}, {}", r.request, r.policy);
        let (d, t) = (q(&r.direct), q(&r.through));
        let (added, paired) = (r.added_p50_us, r.added_paired_median_us);
        println!(
            "{name:<26} {d:>20} {t:>21} {added:>10.0} {paired:>7.0} {:>7}",
            r.errors
        );
        if let Some(e) = &r.first_error {
            println!("  first error: {e}");
        }
    }
    println!(
        "(µs, {} pairs a row; paired: the median of each pair's own difference)",
        s.rows.first().map_or(0, |r| r.pairs)
    );
    for (call, quantiles) in &s.broker_alone {
        println!("broker alone, {call:<8} {:>20}", q(quantiles));
    }
    println!(
        "brokered sidecar: {} reads sent with the broker's token, {} writes recorded",
        s.brokered_reads_with_token, s.brokered_writes_recorded
    );
    let (cpus, before, after) = (s.cpus, &s.loadavg_before, &s.loadavg_after);
    println!("machine: {cpus} CPUs; load average before: {before}; after: {after}");
    for r in s.rows.iter().filter(|r| r.policy == "pass-through") {
        let ok = if r.added_p50_us <= TARGET_US {
            "ok"
        } else {
            "MISSED"
        };
        let (request, added) = (&r.request, r.added_p50_us);
        println!("{request}, broker excluded: +{added:.0} µs at p50 (target <= 300)  {ok}");
    }
}
