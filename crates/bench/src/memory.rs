//! `memory`: what the embedded in-memory store costs per key, beside Redis, and what its expiry
//! sweep costs the request path.
//!
//! Why a scenario of its own (not a `compare` row): it needs a million keys, a TTL that passes
//! during the run, and a broker with no Redis, so it takes minutes and a broker of its own.
//!
//! One run: (1) Redis memory per key for the very keys and tokens used below (`used_memory`
//! delta through the broker's merge script); (2) the broker on the in-memory store with a short
//! `token.ttl`: warm-up, resident memory (`VmRSS`), `--keys` puts of distinct keys, `VmRSS`
//! again, so bytes per key = growth / keys; (3) GetToken in open loop on 10,000 live probe keys
//! while nothing expires; (4) the same once the TTL of the loaded keys passes, over the whole
//! time they expire and the sweeper removes them (no puts meanwhile), sampling `VmRSS` every
//! half second; (5) `VmRSS` after the sweep: memory given back.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokenbroker_proto::v1::PutTokenRequest;
use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokio::process::Command;
use tonic::transport::Channel;

use crate::compare::{
    KeyShape, broker_binary, connect, free_port, redis_memory_per_key, spawn_redis, wait_ready,
};
use crate::load::{Target, closed_loop, open_loop};
use crate::report::{Row, table};
use crate::workload::{Keys, Workload};

pub struct MemoryArgs {
    pub keys: u64,
    pub ttl: Duration,
    pub rate: f64,
    pub window: Duration,
    pub concurrency: usize,
    pub connections: usize,
    pub broker_bin: Option<std::path::PathBuf>,
    pub redis: bool,
}

/// The shape: a 20-byte scope, 10-byte keys, 2 ranges × 2 regions with 6-digit LSNs
/// (57 bytes, e.g. `0:1#123456#0=123456#1=123450,1:1#654321#0=654321#1=654320`).
const SHAPE: KeyShape = KeyShape {
    scope: "account1/db/orders-1",
    key: |i| format!("u-{i:08}"),
    token: |i| {
        let a = 100_000 + i % 800_000;
        let c = 999_999 - i % 800_000;
        format!(
            "0:1#{a}#0={a}#1={b},1:1#{c}#0={c}#1={d}",
            b = a - 6,
            d = c - 1
        )
    },
};

const PROBES: u64 = 10_000;

#[derive(Serialize)]
pub struct MemorySummary {
    pub keys: u64,
    pub scope_bytes: usize,
    pub key_bytes: usize,
    pub token_bytes: usize,
    pub ttl_secs: f64,
    pub load_puts_per_sec: f64,
    pub rss_before_load_kib: u64,
    pub rss_loaded_kib: u64,
    pub rss_after_expiry_kib: u64,
    /// Resident memory growth over the load, per key.
    pub memory_store_bytes_per_key: f64,
    pub redis_bytes_per_key: Option<f64>,
    pub redis_memory_usage_sample_key: Option<i64>,
    /// Share of the load's growth given back after the TTL passed, with no puts.
    pub rss_given_back: f64,
    pub get_p99_us_without_sweep: u64,
    pub get_p99_us_during_sweep: u64,
    /// (seconds since the window started, VmRSS KiB) during the sweep window.
    pub rss_during_sweep_kib: Vec<(f64, u64)>,
    pub rows: Vec<Row>,
    pub cpus: usize,
}

/// A field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Puts keys `0..n` of `shape` once each, `callers` at a time. Fails on the first error.
async fn put_all(
    channels: &[Channel],
    scope: &str,
    key: fn(u64) -> String,
    token: fn(u64) -> String,
    n: u64,
    callers: usize,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers as u64 {
        let mut client = TokenBrokerClient::new(channels[c as usize % channels.len()].clone());
        let scope = scope.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while i < n {
                client
                    .put_token(PutTokenRequest {
                        scope: scope.clone(),
                        key: key(i),
                        session_token: token(i),
                    })
                    .await
                    .map_err(|s| format!("put {i}: {:?} {}", s.code(), s.message()))?;
                i += callers as u64;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(start.elapsed())
}

fn probe_key(i: u64) -> String {
    format!("key-{i}")
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

pub async fn run(args: MemoryArgs) -> Result<MemorySummary, String> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let (redis_bytes, redis_usage) = if args.redis {
        let port = free_port()?;
        let _redis = spawn_redis(port)?;
        let (b, u) =
            redis_memory_per_key(&format!("redis://127.0.0.1:{port}"), args.keys, &SHAPE).await?;
        eprintln!("redis: {b:.0} bytes per key");
        (Some(b), Some(u))
    } else {
        (None, None)
    };

    let port = free_port()?;
    let broker_bin = broker_binary(args.broker_bin)?;
    let broker = Command::new(&broker_bin)
        .arg("serve")
        .env("TOKENBROKER_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOKENBROKER_METRICS__LISTEN", "")
        .env("TOKENBROKER_LOG__LEVEL", "error")
        .env(
            "TOKENBROKER_TOKEN__TTL",
            humantime::format_duration(args.ttl).to_string(),
        )
        .env(
            "TOKENBROKER_MEMORY__MAX_KEYS",
            (args.keys + 100_000).to_string(),
        )
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", broker_bin.display()))?;
    let pid = broker.id().unwrap_or(0);
    let channels = connect(port, args.connections).await?;
    wait_ready(&channels[0]).await?;
    let c = args.concurrency;
    let get_probes = |scope: &str| {
        Arc::new(Target::Broker {
            channels: channels.clone(),
            workload: Workload {
                mix: [1, 0, 0],
                keys: Keys::Uniform(PROBES),
                segments: 2,
                regions: 2,
                scope: scope.into(),
            },
        })
    };

    // Warm-up: connections, buffers and runtime at their working size before the baseline.
    put_all(&channels, "warm", probe_key, SHAPE.token, PROBES, c).await?;
    closed_loop(get_probes("warm"), c, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = status_kib(pid, "VmRSS:");

    let load_start = Instant::now();
    let took = put_all(&channels, SHAPE.scope, SHAPE.key, SHAPE.token, args.keys, c).await?;
    let load_end = Instant::now();
    let rss_loaded = status_kib(pid, "VmRSS:");
    let per_key = (rss_loaded.saturating_sub(rss_before) * 1024) as f64 / args.keys as f64;
    eprintln!(
        "loaded {} keys in {:.1}s; VmRSS {rss_before} -> {rss_loaded} KiB: {per_key:.0} bytes per key",
        args.keys,
        took.as_secs_f64()
    );

    // Without a sweep: every key live, nothing expires until load_start + ttl.
    put_all(&channels, "probe-a", probe_key, SHAPE.token, PROBES, c).await?;
    if Instant::now() + args.window + Duration::from_secs(2) > load_start + args.ttl {
        return Err(format!(
            "--ttl {} is too short: loading took {:.0}s; give at least {:.0}s",
            humantime::format_duration(args.ttl),
            took.as_secs_f64(),
            took.as_secs_f64() + args.window.as_secs_f64() + 10.0
        ));
    }
    let quiet = open_loop(get_probes("probe-a"), args.rate, args.window, 10_000).await;
    eprintln!(
        "GetToken without sweep: p99 {} us",
        quiet.latency.value_at_quantile(0.99)
    );

    // During the sweep: from the first loaded key's expiry to a second past the last one's
    // (expiry is rounded up to the second, and the sweeper passes every second). Fresh probe
    // keys, put just before, outlive the window.
    sleep_until(load_start + args.ttl - Duration::from_secs(2)).await;
    put_all(&channels, "probe-b", probe_key, SHAPE.token, PROBES, c).await?;
    sleep_until(load_start + args.ttl).await;
    let sweep_window = (load_end - load_start + Duration::from_secs(3)).max(args.window);
    let window_start = Instant::now();
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        while window_start.elapsed() < sweep_window + Duration::from_secs(2) {
            samples.push((
                window_start.elapsed().as_secs_f64(),
                status_kib(pid, "VmRSS:"),
            ));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        samples
    });
    let during = open_loop(get_probes("probe-b"), args.rate, sweep_window, 10_000).await;
    eprintln!(
        "GetToken during sweep: p99 {} us",
        during.latency.value_at_quantile(0.99)
    );
    let samples = sampler.await.map_err(|e| e.to_string())?;
    let rss_after = status_kib(pid, "VmRSS:");
    drop(broker);

    let growth = rss_loaded.saturating_sub(rss_before).max(1);
    let rows = vec![
        Row::new(
            "GetToken, keys live, no expiry",
            &format!("open {:.0}/s", args.rate),
            &quiet,
        ),
        Row::new(
            "GetToken while keys expire",
            &format!("open {:.0}/s", args.rate),
            &during,
        ),
    ];
    Ok(MemorySummary {
        keys: args.keys,
        scope_bytes: SHAPE.scope.len(),
        key_bytes: (SHAPE.key)(0).len(),
        token_bytes: (SHAPE.token)(0).len(),
        ttl_secs: args.ttl.as_secs_f64(),
        load_puts_per_sec: args.keys as f64 / took.as_secs_f64().max(1e-9),
        rss_before_load_kib: rss_before,
        rss_loaded_kib: rss_loaded,
        rss_after_expiry_kib: rss_after,
        memory_store_bytes_per_key: per_key,
        redis_bytes_per_key: redis_bytes,
        redis_memory_usage_sample_key: redis_usage,
        rss_given_back: rss_loaded.saturating_sub(rss_after) as f64 / growth as f64,
        get_p99_us_without_sweep: quiet.latency.value_at_quantile(0.99),
        get_p99_us_during_sweep: during.latency.value_at_quantile(0.99),
        rss_during_sweep_kib: samples,
        rows,
        cpus,
    })
}

pub fn print(s: &MemorySummary) {
    print!("{}", table(&s.rows));
    println!();
    println!(
        "machine: {} CPUs; generator, broker (in-memory store) and Redis on one host",
        s.cpus
    );
    println!(
        "{} keys: scope {} bytes, key {} bytes, token {} bytes (2 ranges x 2 regions); loaded at {:.0} puts/s",
        s.keys, s.scope_bytes, s.key_bytes, s.token_bytes, s.load_puts_per_sec
    );
    println!(
        "in-memory store: {:.0} bytes per key (VmRSS {} -> {} KiB)",
        s.memory_store_bytes_per_key, s.rss_before_load_kib, s.rss_loaded_kib
    );
    match (s.redis_bytes_per_key, s.redis_memory_usage_sample_key) {
        (Some(b), Some(u)) => println!(
            "Redis, same keys:  {b:.0} bytes per key (used_memory delta); MEMORY USAGE of one key: {u}"
        ),
        _ => println!("Redis, same keys:  not measured (--no-redis)"),
    }
    println!(
        "after the TTL ({:.0}s), no puts: VmRSS {} KiB, {:.0}% of the load's growth given back",
        s.ttl_secs,
        s.rss_after_expiry_kib,
        s.rss_given_back * 100.0
    );
    let trace: Vec<String> = s
        .rss_during_sweep_kib
        .iter()
        .step_by(4)
        .map(|(t, kib)| format!("{t:.0}s {:.0}MiB", *kib as f64 / 1024.0))
        .collect();
    println!("  VmRSS while keys expire: {}", trace.join(", "));
    println!(
        "GetToken p99 during the sweep / without: {} / {} us = {:.2}x (target <= 2x)",
        s.get_p99_us_during_sweep,
        s.get_p99_us_without_sweep,
        s.get_p99_us_during_sweep as f64 / s.get_p99_us_without_sweep.max(1) as f64
    );
}
