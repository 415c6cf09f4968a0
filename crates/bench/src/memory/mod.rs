//! `memory`: what the embedded in-memory store costs per key, beside Redis, and what its expiry
//! sweep costs the request path.
//!
//! Why a scenario of its own (not a `compare` row): it needs a million keys, a TTL that passes
//! during the run, and brokers with no Redis, so it takes minutes and brokers of its own.
//!
//! Why two brokers: on a shared two-core machine the p99 of one window differs from the next by
//! milliseconds with whatever else runs, more than a sweep could add. So the sweep is measured
//! against a control at the same moment: broker E's keys expire, broker L's identical keys do
//! not (TTL of an hour), and both get the same GetToken load, interleaved in time.
//!
//! One run: (1) Redis memory per key for the very keys and tokens used below (`used_memory`
//! delta through the broker's merge script); (2) E and L warmed up, E's resident memory
//! (`VmRSS`), `--keys` puts of distinct keys into each, E's `VmRSS` again: bytes per key =
//! growth / keys; (3) GetToken in open loop on 10,000 live probe keys of each, before anything
//! expires; (4) the same once E's TTL passes, over the whole time its keys expire and its
//! sweeper removes them (no puts meanwhile), sampling E's `VmRSS` every half second and its
//! sweeper's CPU time; (5) E's `VmRSS` after the sweep: memory given back; (6) the two latency
//! windows at the store itself, in this process ([`inproc`]).

mod broker;
pub mod inproc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use test_kit::RedisServer;

use self::broker::Broker;
use crate::compare::{KeyShape, broker_binary, redis_memory_per_key};
use crate::load::{RunResult, closed_loop, open_loop};
use crate::procstat::{cpu_secs, status_kib};
use crate::report::{Row, table};

pub struct MemoryArgs {
    pub keys: u64,
    pub ttl: Duration,
    pub rate: f64,
    pub window: Duration,
    pub concurrency: usize,
    pub connections: usize,
    pub broker_bin: Option<PathBuf>,
    pub redis: bool,
}

/// The shape: a 20-byte scope, 10-byte keys, 2 ranges × 2 regions with 6-digit LSNs
/// (56 bytes, e.g. `0:1#123456#0=123456#1=123450,1:1#654321#0=654321#1=654320`).
pub(crate) const SHAPE: KeyShape = KeyShape {
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

pub(crate) const PROBES: u64 = 10_000;
const SWEEPER_THREAD: &str = "tokenbroker-mem";

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
    /// GetToken p99 of the expiring broker and of the control, before anything expires.
    pub get_p99_us_before: (u64, u64),
    /// The same while the expiring broker's keys expire and are swept.
    pub get_p99_us_during_sweep: (u64, u64),
    /// CPU seconds the expiring broker used during the sweep window, and its sweeper's share.
    pub broker_cpu_secs_during_sweep: f64,
    pub sweeper_cpu_secs_during_sweep: f64,
    /// (seconds since the window started, VmRSS KiB) of the expiring broker.
    pub rss_during_sweep_kib: Vec<(f64, u64)>,
    pub rows: Vec<Row>,
    /// `MemoryStore::get` timed in this process, without and during a sweep.
    pub store_rows: Vec<inproc::StoreRow>,
    pub cpus: usize,
}

fn probe_key(i: u64) -> String {
    format!("key-{i}")
}

/// The same GetToken load on both brokers at once.
async fn gets_on_both(
    e: &Broker,
    l: &Broker,
    scope: &str,
    rate: f64,
    window: Duration,
) -> (RunResult, RunResult) {
    tokio::join!(
        open_loop(e.get_probes(scope), rate, window, 10_000),
        open_loop(l.get_probes(scope), rate, window, 10_000),
    )
}

fn p99(r: &RunResult) -> u64 {
    r.latency.value_at_quantile(0.99)
}

pub async fn run(args: MemoryArgs) -> Result<MemorySummary, String> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let (redis_bytes, redis_usage) = if args.redis {
        let redis = RedisServer::try_start_with(&[]).map_err(|e| e.to_string())?;
        let (b, u) = redis_memory_per_key(&redis.url(), args.keys, &SHAPE).await?;
        eprintln!("redis: {b:.0} bytes per key");
        (Some(b), Some(u))
    } else {
        (None, None)
    };

    let bin = broker_binary(args.broker_bin)?;
    let max_keys = args.keys + 100_000;
    let conns = args.connections;
    let e = Broker::start(&bin, args.ttl, max_keys, conns).await?;
    let l = Broker::start(&bin, Duration::from_secs(3600), max_keys, conns).await?;
    let c = args.concurrency;

    // Warm-up: connections, buffers and runtime at their working size before the baseline.
    for b in [&e, &l] {
        b.put_all("warm", probe_key, PROBES, c).await?;
        closed_loop(b.get_probes("warm"), c, Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = e.rss_kib();

    let load_start = Instant::now();
    let (loaded_e, loaded_l) = tokio::join!(
        e.put_all(SHAPE.scope, SHAPE.key, args.keys, c),
        l.put_all(SHAPE.scope, SHAPE.key, args.keys, c),
    );
    loaded_e?;
    loaded_l?;
    let took = load_start.elapsed();
    let rss_loaded = e.rss_kib();
    let per_key = (rss_loaded.saturating_sub(rss_before) * 1024) as f64 / args.keys as f64;
    eprintln!(
        "loaded {} keys into each broker in {:.1}s; VmRSS {rss_before} -> {rss_loaded} KiB: \
         {per_key:.0} bytes per key",
        args.keys,
        took.as_secs_f64()
    );

    // Before: nothing expires until load_start + ttl.
    e.put_all("probe-a", probe_key, PROBES, c).await?;
    l.put_all("probe-a", probe_key, PROBES, c).await?;
    if Instant::now() + args.window + Duration::from_secs(3) > load_start + args.ttl {
        return Err(format!(
            "--ttl {} is too short: loading took {:.0}s; give at least {:.0}s",
            humantime::format_duration(args.ttl),
            took.as_secs_f64(),
            took.as_secs_f64() + args.window.as_secs_f64() + 15.0
        ));
    }
    let before = gets_on_both(&e, &l, "probe-a", args.rate, args.window).await;
    eprintln!(
        "GetToken p99 before expiry: {} / {} us",
        p99(&before.0),
        p99(&before.1)
    );

    // During the sweep: from E's first expiry to past its last one (expiry is rounded up to
    // the second, and the sweeper passes every second). Fresh probe keys, put just before,
    // outlive the window.
    tokio::time::sleep_until((load_start + args.ttl - Duration::from_secs(3)).into()).await;
    e.put_all("probe-b", probe_key, PROBES, c).await?;
    l.put_all("probe-b", probe_key, PROBES, c).await?;
    tokio::time::sleep_until((load_start + args.ttl).into()).await;
    let window = (took + Duration::from_secs(4)).max(args.window);
    let (pid, start) = (e.pid, Instant::now());
    let cpu_start = (cpu_secs(pid, None), cpu_secs(pid, Some(SWEEPER_THREAD)));
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        while start.elapsed() < window + Duration::from_secs(2) {
            samples.push((start.elapsed().as_secs_f64(), status_kib(pid, "VmRSS:")));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        samples
    });
    let during = gets_on_both(&e, &l, "probe-b", args.rate, window).await;
    let cpu = (
        cpu_secs(pid, None) - cpu_start.0,
        cpu_secs(pid, Some(SWEEPER_THREAD)) - cpu_start.1,
    );
    eprintln!(
        "GetToken p99 during the sweep: {} / {} us",
        p99(&during.0),
        p99(&during.1)
    );
    let samples = sampler.await.map_err(|e| e.to_string())?;
    let rss_after = e.rss_kib();
    drop((e, l));
    let store_rows = inproc::run(args.keys, SHAPE.token).await?;

    let growth = rss_loaded.saturating_sub(rss_before).max(1);
    let mode = format!("open {:.0}/s", args.rate);
    let rows = vec![
        Row::new("E: GetToken, before expiry", &mode, &before.0),
        Row::new("L: GetToken, same time", &mode, &before.1),
        Row::new("E: GetToken, keys expiring", &mode, &during.0),
        Row::new("L: GetToken, same time", &mode, &during.1),
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
        get_p99_us_before: (p99(&before.0), p99(&before.1)),
        get_p99_us_during_sweep: (p99(&during.0), p99(&during.1)),
        broker_cpu_secs_during_sweep: cpu.0,
        sweeper_cpu_secs_during_sweep: cpu.1,
        rss_during_sweep_kib: samples,
        rows,
        store_rows,
        cpus,
    })
}

pub fn print(s: &MemorySummary) {
    print!("{}", table(&s.rows));
    println!();
    println!(
        "machine: {} CPUs; generator, brokers E and L (in-memory store) and Redis on one host",
        s.cpus
    );
    println!(
        "{} keys: scope {} bytes, key {} bytes, token {} bytes (2 ranges x 2 regions); each broker loaded at {:.0} puts/s",
        s.keys, s.scope_bytes, s.key_bytes, s.token_bytes, s.load_puts_per_sec
    );
    println!(
        "in-memory store: {:.0} bytes per key (E's VmRSS {} -> {} KiB)",
        s.memory_store_bytes_per_key, s.rss_before_load_kib, s.rss_loaded_kib
    );
    match (s.redis_bytes_per_key, s.redis_memory_usage_sample_key) {
        (Some(b), Some(u)) => println!(
            "Redis, same keys:  {b:.0} bytes per key (used_memory delta); MEMORY USAGE of one key: {u}"
        ),
        _ => println!("Redis, same keys:  not measured (--no-redis)"),
    }
    println!(
        "after E's TTL ({:.0}s), no puts: VmRSS {} KiB, {:.0}% of the load's growth given back",
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
    println!("  E's VmRSS while keys expire: {}", trace.join(", "));
    let ratio = |(e, l): (u64, u64)| e as f64 / l.max(1) as f64;
    println!(
        "GetToken p99, E while its keys expire / L at the same time: {} / {} us = {:.2}x (target <= 2x)",
        s.get_p99_us_during_sweep.0,
        s.get_p99_us_during_sweep.1,
        ratio(s.get_p99_us_during_sweep)
    );
    println!(
        "  the same before anything expired: {} / {} us = {:.2}x; E during / E before: {:.2}x",
        s.get_p99_us_before.0,
        s.get_p99_us_before.1,
        ratio(s.get_p99_us_before),
        s.get_p99_us_during_sweep.0 as f64 / s.get_p99_us_before.0.max(1) as f64
    );
    println!(
        "E's CPU during the sweep window: {:.2} s, of which its sweeper thread {:.2} s",
        s.broker_cpu_secs_during_sweep, s.sweeper_cpu_secs_during_sweep
    );
    println!();
    println!(
        "MemoryStore::get in this process, one thread, {} keys expiring:",
        s.keys
    );
    println!(
        "{:<34} {:>9} {:>8} {:>8} {:>9} {:>9}",
        "window", "gets", "p50 ns", "p99 ns", "p99.9 ns", "max ns"
    );
    for r in &s.store_rows {
        println!(
            "{:<34} {:>9} {:>8} {:>8} {:>9} {:>9}",
            r.window, r.gets, r.p50_ns, r.p99_ns, r.p999_ns, r.max_ns
        );
    }
}
