//! `lazaret-agent`: parse flags and configuration, build the agent, run until SIGTERM/SIGINT,
//! drain. Exit codes: 0 ok, 1 `scan --fail-on` threshold reached, 2 runtime or I/O error,
//! 64 bad configuration or policy (the message names the field, or the file and line).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use lazaret_agent::app;
use lazaret_agent::config::{ConfigError, RawConfig};
use lazaret_agent::telemetry;
use lazaret_core::Severity;
use lazaret_core::policy::{PolicySet, files};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

const EXIT_FINDINGS: u8 = 1;
const EXIT_ERROR: u8 = 2;
const EXIT_CONFIG: u8 = 64;

/// Lazaret's node agent: watches this host's containers, checks their security posture
/// (CIS Docker Benchmark), and enforces policy.
#[derive(Debug, Parser)]
#[command(name = "lazaret-agent", version)]
struct Cli {
    /// TOML configuration file (every key is documented in deploy/config/agent.toml).
    #[arg(long, short = 'c', env = "LAZARET_AGENT_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Docker Engine API socket (overrides docker.socket).
    #[arg(long, global = true)]
    docker_socket: Option<String>,
    /// containerd API socket (overrides containerd.socket and enables containerd; by default
    /// containerd is watched when /run/containerd/containerd.sock or Docker's own exists).
    #[arg(long, global = true)]
    containerd_socket: Option<String>,
    /// This node's name in the fleet (overrides node_name; default: the host name).
    #[arg(long, global = true)]
    node_name: Option<String>,
    /// Log format: text or json (overrides log.format).
    #[arg(long, global = true)]
    log_format: Option<String>,
    /// Log filter, e.g. info or lazaret_agent=debug (overrides log.level; RUST_LOG wins).
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent daemon until SIGTERM or SIGINT.
    Run {
        /// Address for the Prometheus /metrics endpoint, host:port ("" disables; overrides
        /// metrics.listen).
        #[arg(long)]
        metrics_listen: Option<String>,
        /// Enforce the policies in this directory or file (repeatable; adds to policies.dirs).
        /// Loaded whole at start: one bad policy and the agent exits 64.
        #[arg(long, value_name = "DIR|FILE")]
        policy_dir: Vec<PathBuf>,
        /// The state directory: quarantines, exemptions, audit chain (overrides state.dir).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Serve the gRPC API with the CA and this node's certificate from this PKI directory
        /// (`lazaretctl pki init --dir DIR`; overrides api.tls_dir). Without it the API is off.
        #[arg(long, value_name = "DIR")]
        tls_dir: Option<PathBuf>,
        /// Address of the gRPC API, host:port (overrides api.listen). Peers and the controller
        /// call it at this address, so give the node's own address, not 0.0.0.0.
        #[arg(long, value_name = "ADDR")]
        api_listen: Option<String>,
        /// Gossip (UDP) address, host:port (overrides gossip.listen; peers reach the node there
        /// unless gossip.advertise says otherwise). A DaemonSet passes the node's IP here.
        #[arg(long, value_name = "ADDR")]
        gossip_listen: Option<String>,
    },
    /// Print a one-shot posture report of this host and exit.
    Scan {
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Exit 1 when a container fails a check, or an advisory applies, of at least this
        /// severity (info, low, medium, high, critical).
        #[arg(long, value_name = "SEVERITY")]
        fail_on: Option<Severity>,
        /// Judge every container against the policies in this directory or file (repeatable)
        /// and show what each policy would do. Nothing is enforced by `scan`.
        #[arg(long, value_name = "DIR|FILE")]
        policy_dir: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            if let Some(config_error) = error.downcast_ref::<ConfigError>() {
                eprintln!("error: {config_error}");
                return ExitCode::from(EXIT_CONFIG);
            }
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn load_config(cli: &Cli, metrics_listen: Option<&String>) -> Result<RawConfig, ConfigError> {
    let mut raw = match &cli.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    if let Some(socket) = &cli.docker_socket {
        raw.docker.socket = socket.clone();
        raw.docker.enabled = true;
    }
    if let Some(socket) = &cli.containerd_socket {
        raw.containerd.socket = socket.clone();
        raw.containerd.enabled = Some(true);
    }
    if let Some(name) = &cli.node_name {
        raw.node_name = Some(name.clone());
    }
    if let Some(format) = &cli.log_format {
        raw.log.format = format.clone();
    }
    if let Some(level) = &cli.log_level {
        raw.log.level = level.clone();
    }
    if let Some(listen) = metrics_listen {
        raw.metrics.listen = listen.clone();
    }
    Ok(raw)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let metrics_listen = match &cli.command {
        Command::Run { metrics_listen, .. } => metrics_listen.as_ref(),
        Command::Scan { .. } => None,
    };
    let mut raw = load_config(&cli, metrics_listen)?;
    if let Command::Run {
        policy_dir,
        state_dir,
        tls_dir,
        api_listen,
        gossip_listen,
        ..
    } = &cli.command
    {
        raw.policies.dirs.extend(policy_dir.iter().cloned());
        if let Some(dir) = state_dir {
            raw.state.dir = dir.clone();
        }
        if let Some(dir) = tls_dir {
            raw.api.tls_dir = dir.clone();
        }
        if let Some(listen) = api_listen {
            raw.api.listen = listen.clone();
        }
        if let Some(listen) = gossip_listen {
            raw.gossip.listen = listen.clone();
        }
    }
    let config = raw.validate()?;
    telemetry::init(config.log_format, &config.log_level);
    let runtimes = app::runtimes_from_config(&config);
    match cli.command {
        Command::Scan {
            output,
            fail_on,
            policy_dir,
        } => {
            let policies = match load_policies(&policy_dir) {
                Ok(policies) => policies,
                Err(code) => return Ok(code),
            };
            let report = app::scan(config.node_name.clone(), runtimes, policies.as_ref()).await?;
            match output {
                Output::Json => println!("{}", report.to_json()),
                Output::Table => print!("{}", report.to_table()),
            }
            if report.runtimes.iter().all(|runtime| !runtime.reachable) {
                eprintln!("error: no configured runtime is reachable");
                return Ok(ExitCode::from(EXIT_ERROR));
            }
            let failed =
                fail_on.is_some_and(|threshold| report.has_failures_at_or_above(threshold));
            Ok(if failed {
                ExitCode::from(EXIT_FINDINGS)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Run { .. } => {
            let policies = match load_policies(&config.policy_dirs) {
                Ok(policies) => policies,
                Err(code) => return Ok(code),
            };
            if let Some(set) = &policies {
                info!(
                    policies = set.policies.len(),
                    reload_every = ?config.policy_reload,
                    "policies loaded"
                );
            }
            let shutdown = CancellationToken::new();
            let agent = app::start(&config, runtimes, policies, shutdown.clone()).await?;
            info!(node = %config.node_name, "lazaret agent running");
            wait_for_signal().await?;
            info!("shutting down");
            shutdown.cancel();
            tokio::select! {
                _ = agent.drain() => {}
                _ = wait_for_signal() => warn!("second signal: exiting at once"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The policy set of `dirs`, whole or nothing; `None` for no dirs. A bad policy is printed
/// (file and line) and becomes exit 64.
fn load_policies(dirs: &[PathBuf]) -> Result<Option<PolicySet>, ExitCode> {
    if dirs.is_empty() {
        return Ok(None);
    }
    match files::read_sources(dirs).and_then(|sources| PolicySet::load(&sources)) {
        Ok(set) => Ok(Some(set)),
        Err(errors) => {
            eprintln!("error: {errors}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        interrupted = tokio::signal::ctrl_c() => interrupted?,
    }
    Ok(())
}
