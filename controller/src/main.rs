//! `lazaret-controller --config FILE`: runs the fleet controller until SIGTERM or Ctrl-C. Exit
//! codes: 0 stopped; 64 the configuration does not validate (the message names the field); 1
//! any other failure to start.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lazaret_controller::app;
use lazaret_controller::config::{ControllerConfig, RawConfig};
use tokio_util::sync::CancellationToken;

/// Lazaret's fleet controller: sees every node over gossip, routes operators' commands to the
/// agents that own the containers, hands bundles to the fleet, holds the fleet-wide
/// enforce/audit-only switch and anchors every agent's audit chain. Agents keep enforcing
/// without it; `lazaretctl --agent ADDR` reaches one agent directly while it is down.
#[derive(Debug, Parser)]
#[command(name = "lazaret-controller", version)]
struct Cli {
    /// The configuration file (see deploy/config/controller.toml).
    #[arg(long, short, env = "LAZARET_CONTROLLER_CONFIG")]
    config: PathBuf,
    /// Address of FleetService, host:port (overrides api.listen). It is gossiped: give an
    /// address agents and operators reach, not 0.0.0.0 (in Kubernetes: the pod's IP).
    #[arg(long, value_name = "ADDR")]
    api_listen: Option<String>,
    /// Gossip (UDP) address, host:port (overrides gossip.listen).
    #[arg(long, value_name = "ADDR")]
    gossip_listen: Option<String>,
    /// Log format: `text` for people, `json` for log pipelines (one object per line, on
    /// stderr). RUST_LOG sets the level (default info).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// The exit code of a configuration that does not validate (as the agent's).
const EXIT_CONFIG: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format.as_str() {
        "json" => logs.json().flatten_event(true).init(),
        _ => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let config = match RawConfig::from_file(&cli.config).and_then(|mut raw| {
        if let Some(listen) = &cli.api_listen {
            raw.api.listen = listen.clone();
        }
        if let Some(listen) = &cli.gossip_listen {
            raw.gossip.listen = listen.clone();
        }
        raw.validate().map_err(anyhow::Error::from)
    }) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("lazaret-controller: {error:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lazaret-controller: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: ControllerConfig) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let controller = app::start(config, shutdown.clone()).await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    shutdown.cancel();
    controller.drain().await;
    Ok(())
}
