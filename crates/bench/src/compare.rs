//! `compare`: the whole comparison in one run, so that ratios come from one machine state.
//!
//! Starts two `redis-server`s and the release `tokenbroker` on loopback, then measures, one
//! after the other with the same generator: the no-op RPC ceiling, GetToken and PutToken on the
//! dual-Redis store, 64 writers on one hot key, direct Redis GET and EVALSHA, p99 at half of the
//! measured maximum rates (open loop), broker memory, and Redis memory per stored key.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use session_token::SessionToken;
use test_kit::{RedisServer, free_port};
use tokenbroker_proto::v1::GetTokenRequest;
use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokio::process::Command;
use tonic::transport::{Channel, Endpoint};

use crate::load::{RunResult, Target, closed_loop, open_loop};
use crate::redis_cost::{PairCost, PairCounters};
use crate::report::{Row, table};
use crate::workload::{Keys, Workload};

pub struct CompareArgs {
    pub duration: Duration,
    pub warmup: Duration,
    pub concurrency: usize,
    pub connections: usize,
    pub keys: u64,
    pub broker_bin: Option<PathBuf>,
    /// Extra `TOKENBROKER_*` settings for the broker, e.g. `TOKENBROKER_REDIS__READ_MODE=primary`.
    pub broker_env: Vec<(String, String)>,
}

#[derive(Serialize)]
pub struct Summary {
    pub rows: Vec<Row>,
    pub get_vs_noop: f64,
    pub put_vs_noop: f64,
    /// 64 writers on one key, tokens shaped as in the uniform PutToken row.
    pub hot_key_vs_uniform_put: f64,
    /// 64 writers on one key, each with its own range (the lost-update check; 65-segment tokens).
    pub hot_key_own_ranges_vs_uniform_put: f64,
    pub hot_key_lost_updates: u64,
    pub get_p99_us_at_half_rate: u64,
    /// The no-op RPC's p99 at the same rate: the floor of this machine and generator.
    pub noop_p99_us_at_get_half_rate: u64,
    pub put_p99_us_at_half_rate: u64,
    pub broker_peak_rss_mib: f64,
    pub redis_bytes_per_key: f64,
    pub redis_memory_usage_sample_key: i64,
    /// What the GetToken and PutToken rows cost each Redis, per RPC.
    pub redis_costs: Vec<PairCost>,
    pub cpus: usize,
}

pub(crate) async fn redis_conn(url: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    use redis::IntoConnectionInfo;
    // TCP_NODELAY, as the broker's own connections: the baseline is an app that tuned its client.
    let info = url
        .into_connection_info()
        .map_err(|e| e.to_string())?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    let client = redis::Client::open(info).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get_multiplexed_async_connection().await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(format!("{url}: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

pub(crate) async fn connect(port: u16, n: usize) -> Result<Vec<Channel>, String> {
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true);
    let mut channels = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while channels.len() < n {
        match endpoint.connect().await {
            Ok(c) => channels.push(c),
            Err(e) if Instant::now() > deadline => return Err(format!("broker: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    Ok(channels)
}

pub(crate) fn broker_binary(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let sibling = exe.with_file_name("tokenbroker");
    if sibling.exists() {
        Ok(sibling)
    } else {
        Err(format!(
            "{} not found: build it (cargo build --release -p tokenbroker) or pass --broker-bin",
            sibling.display()
        ))
    }
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> Result<i64, String> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .map_err(|e| e.to_string())?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no used_memory in INFO".into())
}

/// The keys and tokens a memory measurement stores: key `i` is `(scope, key(i))` holding
/// `token(i)`.
pub(crate) struct KeyShape {
    pub scope: &'static str,
    pub key: fn(u64) -> String,
    pub token: fn(u64) -> String,
}

/// The shape of this comparison's Redis memory row: 2 ranges × 2 regions, 7-digit LSNs.
const COMPARE_SHAPE: KeyShape = KeyShape {
    scope: "acct/db/orders",
    key: |i| format!("user-{i:08}"),
    token: |i| format!("0:1#{v}#0={v}#1={v},1:1#{v}#0={v}#1={v}", v = 1_000_000 + i),
};

/// Stores `n` tokens of `shape` through the merge script (as the broker does) and returns
/// (bytes per key from INFO, MEMORY USAGE of one key).
pub(crate) async fn redis_memory_per_key(
    url: &str,
    n: u64,
    shape: &KeyShape,
) -> Result<(f64, i64), String> {
    let mut conn = redis_conn(url).await?;
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let before = used_memory(&mut conn).await?;
    let script = Arc::new(redis::Script::new(
        broker::storage::redis::MERGE_SCRIPT_SOURCE,
    ));
    let layout = broker::storage::redis::KeyLayout::new("tb");
    // A thousand scripts in flight at a time, pipelined on the one multiplexed connection.
    let mut start = 0;
    while start < n {
        let mut calls = tokio::task::JoinSet::new();
        for i in start..(start + 1000).min(n) {
            let key = layout.redis_key(&broker::StoreKey::new(shape.scope, (shape.key)(i)));
            let token = (shape.token)(i);
            let (mut c, script) = (conn.clone(), script.clone());
            calls.spawn(async move {
                script
                    .key(key)
                    .arg(token)
                    .arg(3_600_000u64)
                    .arg(256)
                    .invoke_async::<redis::Value>(&mut c)
                    .await
            });
        }
        while let Some(call) = calls.join_next().await {
            call.map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        start += 1000;
    }
    let after = used_memory(&mut conn).await?;
    let sample_key = layout.redis_key(&broker::StoreKey::new(shape.scope, (shape.key)(0)));
    let usage: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(sample_key)
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(((after - before) as f64 / n as f64, usage))
}

pub async fn run(args: CompareArgs) -> Result<Summary, String> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let start_redis = || RedisServer::try_start_with(&[]).map_err(|e| e.to_string());
    let (primary, fallback, memory_redis) = (start_redis()?, start_redis()?, start_redis()?);
    let (p_url, f_url) = (primary.url(), fallback.url());
    let b_port = free_port();

    let broker_bin = broker_binary(args.broker_bin)?;
    let broker = Command::new(&broker_bin)
        .arg("serve")
        .env("TOKENBROKER_LISTEN", format!("127.0.0.1:{b_port}"))
        .env("TOKENBROKER_METRICS__LISTEN", "")
        .env("TOKENBROKER_LOG__LEVEL", "warn")
        .env("TOKENBROKER_REDIS__PRIMARY_URL", &p_url)
        .env("TOKENBROKER_REDIS__FALLBACK_URL", &f_url)
        .envs(args.broker_env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", broker_bin.display()))?;
    let broker_pid = broker.id().unwrap_or(0);
    let channels = connect(b_port, args.connections).await?;
    wait_ready(&channels[0]).await?;

    let scope = "acct/db/orders".to_string();
    let workload = |mix: [u32; 3]| Workload {
        mix,
        keys: Keys::Uniform(args.keys),
        segments: 2,
        regions: 2,
        scope: scope.clone(),
    };
    let mut rows = Vec::new();
    let (d, c) = (args.duration, args.concurrency);

    // Seed every key so that gets find tokens.
    let seed = Arc::new(Target::Broker {
        channels: channels.clone(),
        workload: workload([0, 1, 0]),
    });
    closed_loop(seed, c, args.warmup).await;

    let measure = |name: &'static str, target: Target| {
        let target = Arc::new(target);
        let warmup = args.warmup;
        async move {
            closed_loop(target.clone(), c, warmup).await;
            let r = closed_loop(target, c, d).await;
            eprintln!("{name}: {:.0} ops/s", r.throughput());
            r
        }
    };

    let noop = measure(
        "noop",
        Target::Noop {
            channels: channels.clone(),
        },
    )
    .await;
    rows.push(Row::new(
        "noop RPC (health Check)",
        &format!("closed c={c}"),
        &noop,
    ));
    let mut counters = PairCounters::new(redis_conn(&p_url).await?, redis_conn(&f_url).await?);
    let mut redis_costs = Vec::new();
    let (get, cost) = measure_with_cost(
        &mut counters,
        "GetToken",
        Target::Broker {
            channels: channels.clone(),
            workload: workload([1, 0, 0]),
        },
        c,
        args.warmup,
        d,
    )
    .await?;
    redis_costs.push(cost);
    rows.push(Row::new(
        "GetToken (dual Redis)",
        &format!("closed c={c}"),
        &get,
    ));
    let (put, cost) = measure_with_cost(
        &mut counters,
        "PutToken",
        Target::Broker {
            channels: channels.clone(),
            workload: workload([0, 1, 0]),
        },
        c,
        args.warmup,
        d,
    )
    .await?;
    redis_costs.push(cost);
    rows.push(Row::new(
        "PutToken (dual Redis)",
        &format!("closed c={c}"),
        &put,
    ));
    let mixed = measure(
        "mixed",
        Target::Broker {
            channels: channels.clone(),
            workload: workload([80, 15, 5]),
        },
    )
    .await;
    rows.push(Row::new(
        "mix get80/put15/merge5",
        &format!("closed c={c}"),
        &mixed,
    ));
    let zipf = measure(
        "zipf",
        Target::Broker {
            channels: channels.clone(),
            workload: Workload {
                keys: Keys::zipf(args.keys, 1.1),
                ..workload([80, 20, 0])
            },
        },
    )
    .await;
    rows.push(Row::new(
        "mix get80/put20, zipf 1.1",
        &format!("closed c={c}"),
        &zipf,
    ));
    let hot = closed_loop(
        Arc::new(Target::HotKey {
            channels: channels.clone(),
            scope: "hot".into(),
        }),
        64,
        d,
    )
    .await;
    rows.push(Row::new("hot key Put, own ranges", "closed c=64", &hot));
    let lost = hot_key_lost(&channels[0], &hot.acked).await?;
    // The same 64 writers on one key with the uniform row's token shape (2 ranges x 2 regions):
    // the throughput the target compares. The row above gives each writer its own range so that
    // a lost update is detectable, which makes every stored token 65 segments long.
    let hot_same_shape = closed_loop(
        Arc::new(Target::Broker {
            channels: channels.clone(),
            workload: Workload {
                keys: Keys::Uniform(1),
                ..workload([0, 1, 0])
            },
        }),
        64,
        d,
    )
    .await;
    rows.push(Row::new(
        "hot key Put, 2x2 tokens",
        "closed c=64",
        &hot_same_shape,
    ));

    let mut redis_conns = Vec::new();
    for _ in 0..args.connections {
        redis_conns.push(redis_conn(&p_url).await?);
    }
    let redis_get = measure(
        "redis get",
        Target::RedisGet {
            connections: redis_conns.clone(),
            keys: args.keys,
        },
    )
    .await;
    rows.push(Row::new(
        "Redis GET direct",
        &format!("closed c={c}"),
        &redis_get,
    ));
    let script = Arc::new(redis::Script::new(
        broker::storage::redis::MERGE_SCRIPT_SOURCE,
    ));
    let evalsha = measure(
        "redis evalsha",
        Target::RedisEvalsha {
            connections: redis_conns,
            keys: args.keys,
            script,
            workload: workload([0, 1, 0]),
        },
    )
    .await;
    rows.push(Row::new(
        "Redis EVALSHA merge direct",
        &format!("closed c={c}"),
        &evalsha,
    ));

    let half_get = get.throughput() / 2.0;
    let started = counters.start().await?;
    let open_get = open_loop(
        Arc::new(Target::Broker {
            channels: channels.clone(),
            workload: workload([1, 0, 0]),
        }),
        half_get,
        d,
        10_000,
    )
    .await;
    redis_costs.push(
        counters
            .finish("GetToken at half max", started, open_get.ops)
            .await?,
    );
    rows.push(Row::new(
        "GetToken at half max",
        &format!("open {half_get:.0}/s"),
        &open_get,
    ));
    // The control for the two rows at half rate: the no-op RPC at the same rate as the
    // GetToken row, so that the machine's own tail (generator, scheduling) is visible.
    let open_noop = open_loop(
        Arc::new(Target::Noop {
            channels: channels.clone(),
        }),
        half_get,
        d,
        10_000,
    )
    .await;
    rows.push(Row::new(
        "noop at GetToken's half max",
        &format!("open {half_get:.0}/s"),
        &open_noop,
    ));
    let half_put = put.throughput() / 2.0;
    let started = counters.start().await?;
    let open_put = open_loop(
        Arc::new(Target::Broker {
            channels: channels.clone(),
            workload: workload([0, 1, 0]),
        }),
        half_put,
        d,
        10_000,
    )
    .await;
    redis_costs.push(
        counters
            .finish("PutToken at half max", started, open_put.ops)
            .await?,
    );
    rows.push(Row::new(
        "PutToken at half max",
        &format!("open {half_put:.0}/s"),
        &open_put,
    ));

    let rss = peak_rss_mib(broker_pid);
    let (bytes_per_key, usage) =
        redis_memory_per_key(&memory_redis.url(), 100_000, &COMPARE_SHAPE).await?;
    drop(broker);

    Ok(Summary {
        get_vs_noop: get.throughput() / noop.throughput(),
        put_vs_noop: put.throughput() / noop.throughput(),
        hot_key_vs_uniform_put: hot_same_shape.throughput() / put.throughput(),
        hot_key_own_ranges_vs_uniform_put: hot.throughput() / put.throughput(),
        hot_key_lost_updates: lost,
        get_p99_us_at_half_rate: open_get.latency.value_at_quantile(0.99),
        noop_p99_us_at_get_half_rate: open_noop.latency.value_at_quantile(0.99),
        put_p99_us_at_half_rate: open_put.latency.value_at_quantile(0.99),
        broker_peak_rss_mib: rss,
        redis_bytes_per_key: bytes_per_key,
        redis_memory_usage_sample_key: usage,
        redis_costs,
        cpus,
        rows,
    })
}

/// A closed-loop row measured after its warm-up, with what it cost each Redis.
async fn measure_with_cost(
    counters: &mut PairCounters,
    name: &str,
    target: Target,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<(RunResult, PairCost), String> {
    let target = Arc::new(target);
    closed_loop(target.clone(), concurrency, warmup).await;
    let started = counters.start().await?;
    let r = closed_loop(target, concurrency, duration).await;
    eprintln!("{name}: {:.0} ops/s", r.throughput());
    let cost = counters.finish(name, started, r.ops).await?;
    Ok((r, cost))
}

pub(crate) async fn wait_ready(channel: &Channel) -> Result<(), String> {
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: tokenbroker_proto::v1::SERVICE_NAME.into(),
            })
            .await;
        if r.is_ok_and(|r| r.into_inner().status == 1) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("broker never became ready".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After the hot-key run: how many writers' last acknowledged put the stored token misses.
async fn hot_key_lost(channel: &Channel, acked: &[u64]) -> Result<u64, String> {
    let mut c = TokenBrokerClient::new(channel.clone());
    let read = c
        .get_token(GetTokenRequest {
            scope: "hot".into(),
            key: "hot".into(),
            partition_key_range_ids: vec![],
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let stored = SessionToken::parse(&read.session_token).map_err(|e| e.to_string())?;
    let mut lost = 0;
    for (writer, last) in acked.iter().enumerate() {
        if *last == 0 {
            continue;
        }
        let want =
            SessionToken::parse(&format!("{}:1#{last}", writer + 1)).map_err(|e| e.to_string())?;
        if !want.is_covered_by(&stored) {
            lost += 1;
        }
    }
    Ok(lost)
}

pub fn print(summary: &Summary) {
    print!("{}", table(&summary.rows));
    println!();
    print!("{}", crate::redis_cost::table(&summary.redis_costs));
    let check = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!();
    println!(
        "machine: {} CPUs; load generator, broker and both Redis on one host",
        summary.cpus
    );
    println!(
        "GetToken / no-op RPC        {:>6.1}%   (target >= 70%)  {}",
        summary.get_vs_noop * 100.0,
        check(summary.get_vs_noop >= 0.7)
    );
    println!(
        "PutToken / no-op RPC        {:>6.1}%   (target >= 60%)  {}",
        summary.put_vs_noop * 100.0,
        check(summary.put_vs_noop >= 0.6)
    );
    println!(
        "hot key / uniform PutToken  {:>6.1}%   (target >= 50%)  {}",
        summary.hot_key_vs_uniform_put * 100.0,
        check(summary.hot_key_vs_uniform_put >= 0.5)
    );
    println!(
        "  with a range per writer   {:>6.1}%   (65-segment tokens; the lost-update check)",
        summary.hot_key_own_ranges_vs_uniform_put * 100.0
    );
    println!(
        "hot key lost updates        {:>6}    (target 0)       {}",
        summary.hot_key_lost_updates,
        check(summary.hot_key_lost_updates == 0)
    );
    println!(
        "GetToken p99 at half max    {:>6} us (target <= 2000) {}",
        summary.get_p99_us_at_half_rate,
        check(summary.get_p99_us_at_half_rate <= 2000)
    );
    println!(
        "  no-op RPC p99, same rate  {:>6} us (the floor of this machine and generator)",
        summary.noop_p99_us_at_get_half_rate
    );
    println!(
        "PutToken p99 at half max    {:>6} us (target <= 2000) {}",
        summary.put_p99_us_at_half_rate,
        check(summary.put_p99_us_at_half_rate <= 2000)
    );
    println!(
        "broker peak RSS             {:>6.1} MiB (target <= 64) {}",
        summary.broker_peak_rss_mib,
        check(summary.broker_peak_rss_mib <= 64.0)
    );
    println!(
        "Redis bytes per key (2 ranges x 2 regions): {:.0} (INFO used_memory delta / 100000); MEMORY USAGE of one key: {}",
        summary.redis_bytes_per_key, summary.redis_memory_usage_sample_key
    );
}
