//! `tokenbroker`: the server (`serve`) and the operator CLI.

use std::process::ExitCode;

use clap::Parser;
use tokenbroker_server::cli::{Cli, Command, run_client};
use tokenbroker_server::config::Settings;
use tokenbroker_server::{server, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config.as_deref()).await,
        Command::Sidecar { config } => sidecar(config.as_deref()).await,
        command => match run_client(cli.target, command).await {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// The configuration, validated, and the logs and traces it asks for; exit code 2 otherwise.
fn start(config: Option<&std::path::Path>) -> Result<(Settings, telemetry::Telemetry), ExitCode> {
    let settings = Settings::load(config).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    let telemetry = telemetry::init(&settings.log, &settings.telemetry).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    Ok((settings, telemetry))
}

async fn serve(config: Option<&std::path::Path>) -> ExitCode {
    let (settings, telemetry) = match start(config) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let result = async {
        let addr = settings.listen_addr().map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let metrics_listener = match settings.metrics.listen.as_str() {
            "" => None,
            addr => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?,
            ),
        };
        let store = server::build_store(&settings).map_err(|e| e.to_string())?;
        server::serve_with_metrics(
            settings,
            store,
            listener,
            metrics_listener,
            shutdown_signal(),
        )
        .await
        .map_err(|e| e.to_string())
    }
    .await;
    // Flush the spans still buffered (the last calls of the drain among them).
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tokenbroker failed");
            ExitCode::FAILURE
        }
    }
}

async fn sidecar(config: Option<&std::path::Path>) -> ExitCode {
    let (settings, telemetry) = match start(config) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let result = tokenbroker_server::sidecar::run(&settings, shutdown_signal(), |_| {}).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tokenbroker sidecar failed");
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
