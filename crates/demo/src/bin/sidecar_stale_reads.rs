//! `sidecar-stale-reads`: the cross-pod stale-read proof with the Python and JavaScript SDKs,
//! each pod behind its own tokenbroker sidecar, and prints the figures.
//!
//! Why a binary as well as a test: anyone can rerun the figures in one command (the SDKs come
//! from `scripts/install-polyglot-deps`).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use stale_reads::polyglot::{self, PolyglotConfig, Sdk};

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    Python,
    Javascript,
    All,
}

/// Counts stale reads across pods on the Python and JavaScript Cosmos SDKs: straight to the
/// account, through a tokenbroker sidecar per pod, and with the broker killed half way.
#[derive(Parser)]
struct Args {
    /// Which SDK's pods.
    #[arg(long, value_enum, default_value = "all")]
    sdk: Which,
    /// Write-then-read pairs per phase.
    #[arg(long, default_value_t = 1_000)]
    pairs: usize,
    /// Pods (SDK clients, each with its own sidecar) behind the round-robin balancer.
    #[arg(long, default_value_t = 3)]
    pods: usize,
    /// Physical partitions of the container.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Replication delay from the write region to the read region, in milliseconds.
    #[arg(long, default_value_t = 200)]
    replication_delay_ms: u64,
    /// Print one JSON line per SDK instead of the tables.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = PolyglotConfig {
        pairs: args.pairs,
        pods: args.pods,
        partitions: args.partitions,
        replication_delay: Duration::from_millis(args.replication_delay_ms),
        ..PolyglotConfig::default()
    };
    let sdks = match args.sdk {
        Which::Python => vec![Sdk::Python],
        Which::Javascript => vec![Sdk::JavaScript],
        Which::All => vec![Sdk::Python, Sdk::JavaScript],
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sidecar-stale-reads: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let mut code = ExitCode::SUCCESS;
    for sdk in sdks {
        let report = match runtime.block_on(polyglot::run(sdk, &config)) {
            Ok(report) => report,
            Err(error) => {
                eprintln!("sidecar-stale-reads: {sdk:?}: {error}");
                return ExitCode::from(2);
            }
        };
        if args.json {
            match serde_json::to_string(&report) {
                Ok(json) => println!("{json}"),
                Err(error) => {
                    eprintln!("sidecar-stale-reads: {error}");
                    return ExitCode::from(2);
                }
            }
        } else {
            println!("{}", report.table());
        }
        if let Err(failure) = report.verdict() {
            eprintln!("sidecar-stale-reads: {sdk:?}: the claim does not hold: {failure}");
            code = ExitCode::FAILURE;
        }
    }
    code
}
