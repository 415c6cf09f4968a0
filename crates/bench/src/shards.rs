//! `shards`: PutToken on one Redis against a Redis Cluster of three masters, in one run: puts
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
    let cluster = RedisCluster::start_with(ClusterOptions {
        replicas_per_master: 0,
        ..ClusterOptions::default()
    });
    let masters = cluster.masters().iter().map(|m| m.url()).collect();
    rows.push(measure(&args, &bin, "cluster, 3 masters", &cluster.url(), masters).await?);
    Ok(rows)
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
