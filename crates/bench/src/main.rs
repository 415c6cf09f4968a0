//! `tokenbroker-bench`: load generator for tokenbroker, and the baseline comparison.
//!
//! A measuring tool, not a service: it fails loudly (expect) where a setup step cannot work.

#![allow(clippy::expect_used)]

mod compare;
mod load;
mod memory;
mod procstat;
mod redis_cost;
mod report;
mod shards;
mod sidecar;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tonic::transport::Endpoint;

use crate::load::{Target, closed_loop, open_loop};
use crate::report::{Row, table};
use crate::workload::{Keys, Workload, parse_mix};

#[derive(Parser)]
#[command(
    name = "tokenbroker-bench",
    about = "Load generator and baselines for tokenbroker"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Distribution {
    Uniform,
    Zipf,
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Closed loop with this many concurrent callers (ignored with --rate).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open loop: this many calls per second.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// HTTP/2 connections (or Redis connections) to spread calls over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// What every run that starts its own broker takes.
#[derive(clap::Args, Clone)]
pub(crate) struct RunArgs {
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// The tokenbroker binary (default: next to this one).
    #[arg(long)]
    pub broker_bin: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load a running broker.
    Load {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        broker: String,
        #[command(flatten)]
        load: LoadArgs,
        /// Weights of the operations, e.g. get=80,put=15,merge=5.
        #[arg(long, default_value = "get=80,put=15,merge=5")]
        mix: String,
        #[arg(long, default_value_t = 10_000)]
        keys: u64,
        #[arg(long, value_enum, default_value = "uniform")]
        distribution: Distribution,
        /// Zipf exponent (with --distribution zipf).
        #[arg(long, default_value_t = 1.1)]
        zipf_s: f64,
        /// Partition key ranges per token (1-4).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=4))]
        segments: u32,
        /// Regions per range (1-3).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=3))]
        regions: u32,
    },
    /// The no-op baseline: unary health Checks against a running broker.
    Noop {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        broker: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Start Redis and the broker, and run the whole comparison (see docs/performance.md).
    Compare {
        #[command(flatten)]
        run: RunArgs,
        /// A broker setting as an environment variable (repeatable), e.g.
        /// `--broker-env TOKENBROKER_REDIS__READ_MODE=primary`.
        #[arg(long = "broker-env", value_parser = parse_env_setting)]
        broker_env: Vec<(String, String)>,
        #[arg(long)]
        json: bool,
    },
    /// PutToken on one Redis and on a Redis Cluster of 3 masters, in one run: puts/s and each
    /// master's command time and CPU per put (see docs/redis.md).
    Shards {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long)]
        json: bool,
    },
    /// The embedded in-memory store: bytes per key beside Redis, memory given back after the
    /// TTL, GetToken p99 while a million keys expire (see docs/performance.md).
    Memory {
        /// Distinct keys loaded (each a 2 ranges x 2 regions token).
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        /// The expiring broker's token.ttl: must outlast loading the keys plus one --window.
        #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// GetToken calls per second to each broker in both latency windows (open loop).
        #[arg(long, default_value_t = 2_500.0)]
        rate: f64,
        /// Length of the window without expiry.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        window: Duration,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// The tokenbroker binary (default: next to this one).
        #[arg(long)]
        broker_bin: Option<PathBuf>,
        /// Skip the Redis figure (no redis-server needed).
        #[arg(long)]
        no_redis: bool,
        #[arg(long)]
        json: bool,
    },
    /// What the sidecar adds to a point read and an upsert over the same request sent straight
    /// to the HTTP emulator, pair by pair, pass-through and brokered (see docs/performance.md).
    Sidecar {
        /// Measured pairs (direct, through) per request kind and policy.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Pairs sent before measuring, per request kind and policy.
        #[arg(long, default_value_t = 200)]
        warmup: usize,
        /// Distinct documents (and partition keys) the requests cycle through.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        docs: u64,
        /// Worker threads of the sidecars' runtime (`tokenbroker sidecar`: one per CPU).
        #[arg(long, default_value_t = 2)]
        sidecar_threads: usize,
        #[arg(long)]
        json: bool,
    },
}

/// Parses `TOKENBROKER_KEY=value`.
fn parse_env_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if k.starts_with("TOKENBROKER_") => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not TOKENBROKER_<KEY>=<value>")),
    }
}

async fn run_load(name: &str, target: Target, load: &LoadArgs) -> Row {
    let target = Arc::new(target);
    match load.rate {
        Some(rate) => {
            let r = open_loop(target, rate, load.duration, 10_000).await;
            Row::new(name, &format!("open {rate:.0}/s"), &r)
        }
        None => {
            let r = closed_loop(target, load.concurrency, load.duration).await;
            Row::new(name, &format!("closed c={}", load.concurrency), &r)
        }
    }
}

async fn channels(url: &str, n: usize) -> Result<Vec<tonic::transport::Channel>, String> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true);
    let mut out = Vec::new();
    for _ in 0..n.max(1) {
        out.push(
            endpoint
                .connect()
                .await
                .map_err(|e| format!("{url}: {e}"))?,
        );
    }
    Ok(out)
}

fn emit(row: &Row, json: bool) {
    if json {
        println!("{}", serde_json::to_string(row).expect("a row serialises")); // ok: plain data
    } else {
        print!("{}", table(std::slice::from_ref(row)));
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Load {
            broker,
            load,
            mix,
            keys,
            distribution,
            zipf_s,
            segments,
            regions,
        } => {
            async {
                let mix = parse_mix(&mix)?;
                let keys = match distribution {
                    Distribution::Uniform => Keys::Uniform(keys),
                    Distribution::Zipf => Keys::zipf(keys, zipf_s),
                };
                let workload = Workload {
                    mix,
                    keys,
                    segments,
                    regions,
                    scope: "bench/db/c".into(),
                };
                let channels = channels(&broker, load.connections).await?;
                let row = run_load("broker", Target::Broker { channels, workload }, &load).await;
                emit(&row, load.json);
                Ok::<_, String>(())
            }
            .await
        }
        Cmd::Noop { broker, load } => {
            async {
                let channels = channels(&broker, load.connections).await?;
                let row = run_load("noop", Target::Noop { channels }, &load).await;
                emit(&row, load.json);
                Ok(())
            }
            .await
        }
        Cmd::Compare {
            run,
            broker_env,
            json,
        } => {
            let args = compare::CompareArgs {
                duration: run.duration,
                warmup: run.warmup,
                concurrency: run.concurrency,
                connections: run.connections,
                keys: run.keys,
                broker_bin: run.broker_bin,
                broker_env,
            };
            compare::run(args)
                .await
                .map(|summary| report(&summary, json, compare::print))
        }
        Cmd::Shards { run, json } => shards::run(run)
            .await
            .map(|rows| report(&rows, json, |r| shards::print(r))),
        Cmd::Memory {
            keys,
            ttl,
            rate,
            window,
            concurrency,
            connections,
            broker_bin,
            no_redis,
            json,
        } => {
            let args = memory::MemoryArgs {
                keys,
                ttl,
                rate,
                window,
                concurrency,
                connections,
                broker_bin,
                redis: !no_redis,
            };
            memory::run(args)
                .await
                .map(|summary| report(&summary, json, memory::print))
        }
        Cmd::Sidecar {
            requests,
            warmup,
            docs,
            sidecar_threads,
            json,
        } => {
            let args = sidecar::SidecarArgs {
                requests,
                warmup,
                docs: docs as usize,
                sidecar_threads: sidecar_threads.max(1),
            };
            sidecar::run(args)
                .await
                .map(|summary| report(&summary, json, sidecar::print))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a run's result: one JSON object with `--json`, else `table`.
fn report<T: serde::Serialize>(result: &T, json: bool, table: impl FnOnce(&T)) {
    if json {
        // ok: plain data always serialises
        println!(
            "{}",
            serde_json::to_string_pretty(result).expect("a result serialises")
        );
    } else {
        table(result);
    }
}
