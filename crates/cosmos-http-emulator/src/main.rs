//! `cosmos-http-emulator`: the Cosmos SDK's in-memory emulator over HTTP, one loopback port per
//! region, until SIGTERM or SIGINT.
//!
//! Why a binary: tests in other languages (and the sidecar's proofs) start it as a process and
//! read its one JSON line on stdout to learn the endpoints; logs go to stderr (`RUST_LOG`).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cosmos_http_emulator::{Emulator, Options, Region};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Serves a Cosmos account from the SDK's in-memory emulator over HTTP: one port per region,
/// the first the write region. When ready, prints one JSON line on stdout:
/// `{"regions":[{"name":"East US","endpoint":"http://127.0.0.1:PORT/"},...]}`. Test-only admin
/// routes live under `/_emulator/` (see the crate documentation).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The write region's address; the other regions take the following ports (PORT+1, ...).
    /// Port 0: each region gets a free port of its own.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// How many regions: East US, West US, North Europe, West Europe, Southeast Asia, East Asia,
    /// Central US, UK South, in that order.
    #[arg(long, default_value_t = 2)]
    regions: usize,
    /// The delay before a write is visible in the read regions (`200ms`, `1s`, `0s`). The
    /// default makes a read on another client right after a write stale unless it carries the
    /// write's session token, while a client's own older writes have replicated.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    replication_delay: Duration,
    /// The database created at start.
    #[arg(long, default_value = "shop")]
    database: String,
    /// The container created at start (partition key path `/pk`).
    #[arg(long, default_value = "orders")]
    container: String,
    /// The container's physical partitions.
    #[arg(long, default_value_t = 2)]
    partitions: u32,
    /// Also stop when stdin reaches end of file: a test that starts the emulator with a pipe on
    /// stdin and keeps its end open stops it by ending, even if killed.
    #[arg(long)]
    exit_on_stdin_close: bool,
}

#[derive(serde::Serialize)]
struct Ready<'a> {
    regions: &'a [Region],
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    // Before the ready line: a signal sent as soon as it is read must be caught.
    let stop = match Stop::install(args.exit_on_stdin_close) {
        Ok(stop) => stop,
        Err(error) => {
            eprintln!("cosmos-http-emulator: installing signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let options = Options {
        listen: args.listen,
        regions: args.regions,
        replication_delay: args.replication_delay,
        database: args.database,
        container: args.container,
        partitions: args.partitions,
    };
    let emulator = match Emulator::start(options).await {
        Ok(emulator) => emulator,
        Err(error) => {
            eprintln!("cosmos-http-emulator: {error}");
            return ExitCode::FAILURE;
        }
    };
    let ready = match serde_json::to_string(&Ready {
        regions: emulator.regions(),
    }) {
        Ok(line) => line,
        Err(error) => {
            eprintln!("cosmos-http-emulator: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{ready}").and_then(|()| stdout.flush()) {
        eprintln!("cosmos-http-emulator: writing the ready line: {error}");
        return ExitCode::FAILURE;
    }
    drop(stdout);
    stop.wait().await;
    emulator.shutdown().await;
    ExitCode::SUCCESS
}

/// What stops the emulator: SIGTERM, SIGINT, and optionally the end of stdin.
struct Stop {
    terminate: Signal,
    interrupt: Signal,
    stdin_closed: tokio::sync::oneshot::Receiver<()>,
}

impl Stop {
    fn install(stdin_too: bool) -> std::io::Result<Self> {
        let (closed, stdin_closed) = tokio::sync::oneshot::channel();
        if stdin_too {
            // A plain thread, not the runtime's blocking pool: the runtime waits for its blocking
            // tasks when it shuts down, and this read only ends with stdin.
            std::thread::spawn(move || {
                // Whatever arrives is discarded; an error reading counts as closed.
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                let _ = closed.send(());
            });
        }
        // Without the thread the sender is dropped here: the receiver then fails, and `wait`
        // ignores a failed receiver.
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            stdin_closed,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
            Ok(()) = &mut self.stdin_closed => {}
        }
    }
}
