//! `shards`: PutToken on one Redis against Redis Clusters of two and three masters, in one run: puts
//! per second, and what each master spent per put (command time from `INFO commandstats`, main
//! thread CPU), so that a cluster's spread and its per-shard cost are measured, not assumed.
//!
//! Why no replicas and no fallback here: the rows compare where the primary's work goes; a
//! replica's and a fallback's CPU would be the same in every row, on the same two cores.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use serde::Serialize;
use test_kit::{ClusterOptions, RedisCluster, RedisServer, free_port};
use tokio::process::Command;

use crate::RunArgs;
use crate::compare::{broker_binary, connect, redis_conn, wait_ready};
use crate::load::{Target, closed_loop};
use crate::redis_cost::{RedisCost, RedisCounters};
use crate::workload::{Keys, Workload};

/// One topology's row.
#[derive(Serialize)]
pub struct ShardRow {
    pub topology: String,
    pub puts_per_sec: f64,
    /// Per master: (address, share of the puts' command time, cost per put of all puts).
    pub masters: Vec<(String, RedisCost)>,
}

pub async fn run(args: RunArgs) -> Result<Vec<ShardRow>, String> {
    let bin = broker_binary(args.broker_bin.clone())?;
    let single = RedisServer::start();
    let mut rows = vec![measure(&args, &bin, "1 Redis", &single.url(), vec![single.url()]).await?];
    let pair = two_masters()?;
    let seeds: Vec<String> = pair
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let url = format!("redis+cluster://{}", seeds.join(","));
    let masters = pair.iter().map(RedisServer::url).collect();
    rows.push(measure(&args, &bin, "cluster, 2 masters", &url, masters).await?);
    drop(pair);
    for i in 0..2 {
        let config = format!("/tmp/tokenbroker-bench-{}-{i}.conf", std::process::id());
        let _ = std::fs::remove_file(config);
    }
    let cluster = RedisCluster::start_with(ClusterOptions {
        replicas_per_master: 0,
        ..ClusterOptions::default()
    });
    let masters = cluster.masters().iter().map(|m| m.url()).collect();
    rows.push(measure(&args, &bin, "cluster, 3 masters", &cluster.url(), masters).await?);
    Ok(rows)
}

/// A cluster of two masters and no replica. `redis-cli --cluster create` wants at least three
/// masters, so the slots are assigned by hand (`CLUSTER ADDSLOTSRANGE`, then `CLUSTER MEET`),
/// and the cluster is used once both nodes say `cluster_state:ok`.
fn two_masters() -> Result<Vec<RedisServer>, String> {
    let nodes: Vec<RedisServer> = (0..2)
        .map(|i| {
            let config = format!("tokenbroker-bench-{}-{i}.conf", std::process::id());
            RedisServer::try_start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &config,
                "--cluster-node-timeout",
                "5000",
            ])
            .map_err(|e| format!("a cluster node: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let query = |node: &RedisServer, cmd: &mut redis::Cmd| -> Result<redis::Value, String> {
        cmd.query(&mut node.connection()).map_err(|e| e.to_string())
    };
    for (node, (first, last)) in nodes.iter().zip([(0, 8191), (8192, 16383)]) {
        query(
            node,
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last),
        )?;
    }
    query(
        &nodes[0],
        redis::cmd("CLUSTER")
            .arg("MEET")
            .arg("127.0.0.1")
            .arg(nodes[1].port()),
    )?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ok = nodes.iter().all(|node| {
            query(node, redis::cmd("CLUSTER").arg("INFO"))
                .ok()
                .and_then(|v| redis::from_redis_value::<String>(v).ok())
                .is_some_and(|info| info.lines().any(|l| l.trim() == "cluster_state:ok"))
        });
        if ok {
            return Ok(nodes);
        }
        if std::time::Instant::now() > deadline {
            return Err("the two-master cluster did not reach cluster_state:ok in 30 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

async fn measure(
    args: &RunArgs,
    bin: &PathBuf,
    topology: &str,
    primary_url: &str,
    masters: Vec<String>,
) -> Result<ShardRow, String> {
    let port = free_port();
    let _broker = Command::new(bin)
        .arg("serve")
        .env("TOKENBROKER_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOKENBROKER_METRICS__LISTEN", "")
        .env("TOKENBROKER_LOG__LEVEL", "warn")
        .env("TOKENBROKER_REDIS__PRIMARY_URL", primary_url)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let channels = connect(port, args.connections).await?;
    wait_ready(&channels[0]).await?;
    let target = Arc::new(Target::Broker {
        channels,
        workload: Workload {
            mix: [0, 1, 0],
            keys: Keys::Uniform(args.keys),
            segments: 2,
            regions: 2,
            scope: "acct/db/orders".into(),
        },
    });
    closed_loop(target.clone(), args.concurrency, args.warmup).await;
    let mut conns = Vec::new();
    let mut before = Vec::new();
    for url in &masters {
        let mut conn = redis_conn(url).await?;
        before.push(RedisCounters::reset(&mut conn).await?);
        conns.push(conn);
    }
    let result = closed_loop(target, args.concurrency, args.duration).await;
    let mut per_master = Vec::new();
    for ((url, conn), before) in masters.iter().zip(&mut conns).zip(&before) {
        let after = RedisCounters::read(conn).await?;
        per_master.push((url.clone(), RedisCost::between(before, &after, result.ops)));
    }
    eprintln!("{topology}: {:.0} puts/s", result.throughput());
    Ok(ShardRow {
        topology: topology.to_owned(),
        puts_per_sec: result.throughput(),
        masters: per_master,
    })
}

pub fn print(rows: &[ShardRow]) {
    println!(
        "{:<22} {:>10}   per master: command us / cpu us per put (of all puts)",
        "topology", "puts/s"
    );
    for row in rows {
        let masters: Vec<String> = row
            .masters
            .iter()
            .map(|(_, c)| format!("{:.1} / {:.1}", c.command_us_per_op, c.cpu_us_per_op))
            .collect();
        let total_cpu: f64 = row.masters.iter().map(|(_, c)| c.cpu_us_per_op).sum();
        println!(
            "{:<22} {:>10.0}   {}   (all masters: {:.1} us cpu per put)",
            row.topology,
            row.puts_per_sec,
            masters.join(", "),
            total_cpu
        );
    }
}
