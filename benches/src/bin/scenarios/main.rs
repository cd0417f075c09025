//! Scenario harness against the real Docker engine and a real agent process. Run:
//! `cargo run --release -p lazaret-benches --bin lazaret-scenarios -- --out bench-results`
//!
//! Scenarios: (1) `docker create` → the container is in the agent's inventory with findings,
//! side by side with the raw create call (here); (2) a start event → enforced by the fast path
//! beside the raw pause, and (3) the network cut and restore ([`enforce`]); (4) the CLI
//! quarantine round trip ([`cli`]); (5) the agent process's RSS and idle CPU ([`footprint`]);
//! (6) fleet convergence over gossip, a 10k-indicator bundle, idle gossip bandwidth ([`fleet`]);
//! (7) quarantine through the controller and the fleet-wide switch ([`controller`]);
//! (8) a Falco alert → enforced ([`detect`]); (9) the scan's cost per container ([`scan`]);
//! (10) a burst of starts, none missed ([`burst`]).
//! Every container it makes carries the test label and is removed at the end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use clap::Parser;
use lazaret_agent::app;
use lazaret_agent::runtime::docker::DockerRuntime;
use lazaret_agent::watcher::Backoff;
use lazaret_benches::{Measurement, summarize};
use lazaret_core::ContainerId;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
struct Args {
    /// Containers created for the create → inventory latency.
    #[arg(long, default_value_t = 100)]
    containers: usize,
    /// Containers started for the start → enforced latency (and as many for the raw pause).
    #[arg(long, default_value_t = 50)]
    enforced: usize,
    /// The actions of the policy the start → enforced scenario enforces (`pause` alone shows
    /// the agent's own overhead without the cut).
    #[arg(long, default_value = "network-cut, pause")]
    enforce_actions: String,
    /// Run only these scenarios (comma-separated: create, enforce, cut, cli, footprint, fleet,
    /// controller, detect, scan, burst);
    /// all if unset.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Rounds of `lazaretctl quarantine` against an agent (and as many raw pause calls).
    #[arg(long, default_value_t = 50)]
    cli_rounds: usize,
    /// The CLI binary for the round-trip scenario (build it first).
    #[arg(long, default_value = "target/release/lazaretctl")]
    lazaretctl: PathBuf,
    /// Cut + restore rounds for the network cut latency.
    #[arg(long, default_value_t = 50)]
    cuts: usize,
    /// Containers present while the agent's memory is measured.
    #[arg(long, default_value_t = 200)]
    rss_containers: usize,
    /// Seconds of idle CPU measurement.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// The agent binary for the process scenarios (build it first).
    #[arg(long, default_value = "target/release/lazaret-agent")]
    agent: PathBuf,
    /// Agent-process fleet sizes for the convergence scenario (`fleet`).
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    fleet_processes: Vec<usize>,
    /// In-process fleet sizes for the convergence scenario (`fleet`), on the real clock (200
    /// agents saturate a 2-core machine and do not converge: see benches/README.md).
    #[arg(long, value_delimiter = ',', default_value = "100")]
    fleet_in_process: Vec<usize>,
    /// Simulated fleet sizes (`fleet`): gossip and bundle sync on a simulated clock.
    #[arg(long, value_delimiter = ',', default_value = "100,400")]
    fleet_simulated: Vec<usize>,
    /// Bundles applied one after the other per fleet.
    #[arg(long, default_value_t = 5)]
    fleet_rounds: usize,
    /// Indicators in the big indicators bundle, sent to the process fleet of this size.
    #[arg(long, default_value_t = 10_000)]
    indicators: usize,
    #[arg(long, default_value_t = 50)]
    indicator_agents: usize,
    /// Containers started at once (`burst`).
    #[arg(long, default_value_t = 300)]
    burst: usize,
    /// Running containers the scan looks inside (`scan`).
    #[arg(long, default_value_t = 50)]
    scan_containers: usize,
    /// Scan cycles timed, cold and warm each.
    #[arg(long, default_value_t = 20)]
    scan_rounds: usize,
    /// Internal: run one agent on an in-memory runtime with this configuration (the process
    /// fleet re-executes this binary so).
    #[arg(long, hide = true)]
    fake_agent: Option<PathBuf>,
    /// Where the JSON report is written.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
}

mod burst;
mod cli;
mod controller;
mod detect;
mod enforce;
mod fleet;
mod footprint;
mod scan;

const DOCKER_SOCKET: &str = "/var/run/docker.sock";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(config) = &args.fake_agent {
        return fleet::fake_agent(config).await;
    }
    lazaret_tests::ensure_busybox_image(None).context("failed to build the test image")?;
    let docker = Docker::connect_with_unix(DOCKER_SOCKET, 60, bollard::API_DEFAULT_VERSION)?
        .negotiate_version()
        .await?;
    let run_label = format!("bench-{}", std::process::id());
    let result = run_all(&args, &docker, &run_label).await;
    remove_labelled(&docker, &run_label).await?;
    let measurements = result?;
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("scenarios.json");
    std::fs::write(&path, serde_json::to_string_pretty(&measurements)?)?;
    for measurement in &measurements {
        println!(
            "{:<45} goal {:<22} {}{}",
            measurement.metric,
            measurement.goal,
            measurement.value,
            measurement
                .ratio_p50
                .map(|ratio| format!("  (p50 ratio to floor {ratio:.2})"))
                .unwrap_or_default()
        );
    }
    println!("report: {}", path.display());
    Ok(())
}

async fn run_all(
    args: &Args,
    docker: &Docker,
    run_label: &str,
) -> anyhow::Result<Vec<Measurement>> {
    let runs =
        |scenario: &str| args.only.is_empty() || args.only.iter().any(|only| only == scenario);
    let mut measurements = Vec::new();
    // Each scenario in turn; its containers are removed before the next (so that, e.g., the
    // footprint counts its own 200 and not every earlier scenario's). A scenario that fails is
    // reported as failed, and the others still run.
    let mut record =
        async |scenario: &str, outcome: anyhow::Result<Vec<Measurement>>| -> anyhow::Result<()> {
            match outcome {
                Ok(measured) => measurements.extend(measured),
                Err(error) => {
                    eprintln!("scenario {scenario} failed: {error:#}");
                    measurements.push(Measurement {
                        metric: format!("scenario `{scenario}`"),
                        goal: "(failed)".into(),
                        value: serde_json::json!(format!("failed: {error:#}")),
                        floor: None,
                        ratio_p50: None,
                    });
                }
            }
            remove_labelled(docker, run_label).await
        };
    if runs("create") {
        let outcome = create_to_inventory(docker, run_label, args.containers)
            .await
            .map(|measured| vec![measured]);
        record("create", outcome).await?;
    }
    if runs("enforce") {
        let outcome =
            enforce::start_to_enforced(docker, run_label, args.enforced, &args.enforce_actions)
                .await;
        record("enforce", outcome).await?;
    }
    if runs("cut") {
        let outcome = enforce::cut_and_restore(docker, run_label, args.cuts).await;
        record("cut", outcome).await?;
    }
    if runs("cli") {
        record("cli", cli::cli_round_trip(args, docker, run_label).await).await?;
    }
    if runs("detect") {
        let outcome = detect::alert_to_enforced(args, docker, run_label).await;
        record("detect", outcome).await?;
    }
    if runs("burst") {
        record("burst", burst::burst(args, docker, run_label).await).await?;
    }
    if runs("scan") {
        let outcome = scan::cost_per_container(args, docker, run_label).await;
        record("scan", outcome).await?;
    }
    if runs("controller") {
        let outcome = controller::controller(args, docker, run_label).await;
        record("controller", outcome).await?;
    }
    if runs("footprint") {
        let outcome = footprint::agent_process_footprint(args, docker, run_label).await;
        record("footprint", outcome).await?;
    }
    if runs("fleet") {
        for &count in args.fleet_processes.iter().filter(|&&count| count > 0) {
            record("fleet", fleet::processes(args, count).await).await?;
        }
        for &count in args.fleet_in_process.iter().filter(|&&count| count > 0) {
            let outcome = fleet::in_process(args, count)
                .await
                .map(|measured| vec![measured]);
            record("fleet", outcome).await?;
        }
        for &count in args.fleet_simulated.iter().filter(|&&count| count > 0) {
            let outcome = fleet::simulated(args, count).map(|measured| vec![measured]);
            record("fleet", outcome).await?;
        }
    }
    Ok(measurements)
}

/// Creates and starts a sleeping container, and waits (10 s at most) until `inventory` shows it
/// running.
async fn start_seen_running(
    docker: &Docker,
    inventory: &lazaret_agent::inventory::InventoryHandle,
    run_label: &str,
    name: &str,
) -> anyhow::Result<String> {
    let target = create_container(docker, run_label, name).await?;
    docker.start_container(&target, None).await?;
    let id = ContainerId::new(target.as_str());
    let mut snapshots = inventory.snapshots.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        snapshots.wait_for(|snapshot| {
            snapshot
                .get(&id)
                .is_some_and(|entry| entry.info.state == lazaret_core::ContainerState::Running)
        }),
    )
    .await
    .context("the container never reached the inventory")??;
    Ok(target)
}

async fn create_container(docker: &Docker, run_label: &str, name: &str) -> anyhow::Result<String> {
    create_labelled(docker, run_label, name, &[]).await
}

/// A sleeping busybox container with the run's label and `labels`.
async fn create_labelled(
    docker: &Docker,
    run_label: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> anyhow::Result<String> {
    create_command(docker, run_label, name, labels, &["sleep", "3600"]).await
}

/// A busybox container running `command`, with the run's label and `labels`.
async fn create_command(
    docker: &Docker,
    run_label: &str,
    name: &str,
    labels: &[(&str, &str)],
    command: &[&str],
) -> anyhow::Result<String> {
    let mut all_labels =
        HashMap::from([(lazaret_tests::TEST_LABEL.to_string(), run_label.to_string())]);
    for (key, value) in labels {
        all_labels.insert(key.to_string(), value.to_string());
    }
    let body = ContainerCreateBody {
        image: Some(lazaret_tests::BUSYBOX_IMAGE.to_string()),
        cmd: Some(command.iter().map(ToString::to_string).collect()),
        labels: Some(all_labels),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(name.to_string()),
        ..Default::default()
    };
    Ok(docker.create_container(Some(options), body).await?.id)
}

/// `docker create` → the container is in the inventory with its findings.
async fn create_to_inventory(
    docker: &Docker,
    run_label: &str,
    count: usize,
) -> anyhow::Result<Measurement> {
    let shutdown = CancellationToken::new();
    let backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };
    let agent = app::start_with_backoff(
        None,
        backoff,
        vec![Arc::new(DockerRuntime::new(DOCKER_SOCKET))],
        shutdown.clone(),
    )
    .await?;
    let mut status = agent.runtime_status[0].1.clone();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|status| status.connected),
    )
    .await??;
    let mut end_to_end = Vec::with_capacity(count);
    let mut raw_create = Vec::with_capacity(count);
    for index in 0..count {
        let mut snapshots = agent.inventory.snapshots.clone();
        let started = Instant::now();
        let id = ContainerId::new(
            create_container(docker, run_label, &format!("{run_label}-lat-{index}")).await?,
        );
        raw_create.push(started.elapsed());
        tokio::time::timeout(
            Duration::from_secs(10),
            snapshots.wait_for(|snapshot| {
                snapshot
                    .get(&id)
                    .is_some_and(|entry| !entry.findings.is_empty())
            }),
        )
        .await
        .context("container never reached the inventory")??;
        end_to_end.push(started.elapsed());
    }
    shutdown.cancel();
    agent.drain().await;
    let measured = summarize(&end_to_end).context("no samples")?;
    let floor = summarize(&raw_create).context("no samples")?;
    Ok(Measurement {
        metric: "docker create -> in inventory with findings".into(),
        goal: "(baseline, no goal yet)".into(),
        ratio_p50: Some(measured.p50_ms / floor.p50_ms),
        value: serde_json::to_value(&measured)?,
        floor: Some(floor),
    })
}

async fn remove_labelled(docker: &Docker, run_label: &str) -> anyhow::Result<()> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{}={run_label}", lazaret_tests::TEST_LABEL)],
    )]);
    let listed = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await?;
    for container in listed {
        if let Some(id) = container.id {
            let options = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            docker.remove_container(&id, Some(options)).await?;
        }
    }
    Ok(())
}
