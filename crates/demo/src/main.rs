//! `stale-reads`: runs the cross-pod stale-read scenario and prints the figures.
//!
//! Why a binary as well as a test: the figures are the product's argument; anyone can run them in
//! one command and read them, not only CI.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use stale_reads::scenario::{self, ScenarioConfig};

/// Counts stale reads across pods on the Cosmos SDK's in-memory emulator: without tokenbroker,
/// with it, and with it killed half way.
#[derive(Parser)]
struct Args {
    /// Write-then-read pairs per phase.
    #[arg(long, default_value_t = 1_000)]
    pairs: usize,
    /// Pods (independent CosmosClients) behind the round-robin balancer.
    #[arg(long, default_value_t = 8)]
    pods: usize,
    /// Physical partitions of the container.
    #[arg(long, default_value_t = 16)]
    partitions: u32,
    /// Replication delay from the write region to the read region, in milliseconds.
    #[arg(long, default_value_t = 20)]
    replication_delay_ms: u64,
    /// Keep the SDK's per-partition circuit breaker on in the pods (the SDK's default). After
    /// the kill, pods that read with broker tokens then keep reading from the write region.
    #[arg(long)]
    sdk_circuit_breaker: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = ScenarioConfig {
        pairs: args.pairs,
        pods: args.pods,
        sdk_partition_circuit_breaker: args.sdk_circuit_breaker,
        ..ScenarioConfig::default()
    };
    config.account.replication_delay = Duration::from_millis(args.replication_delay_ms);
    config.account.partitions = args.partitions;

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stale-reads: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let report = match runtime.block_on(scenario::run(config)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("stale-reads: {error}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("stale-reads: {error}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.table());
    }
    match report.verdict() {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("stale-reads: the claim does not hold: {failure}");
            ExitCode::FAILURE
        }
    }
}
