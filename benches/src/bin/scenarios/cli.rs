//! Scenario (4): `lazaretctl quarantine` as a process against an in-process agent serving the
//! API (mutual TLS), beside the raw pause, with a read alone to show the fixed cost.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bollard::Docker;
use lazaret_agent::app;
use lazaret_agent::config::RawConfig;
use lazaret_agent::runtime::ContainerRuntime;
use lazaret_agent::runtime::docker::DockerRuntime;
use lazaret_benches::{Measurement, summarize};
use lazaret_core::ContainerId;
use tokio_util::sync::CancellationToken;

use super::{Args, DOCKER_SOCKET, create_container, start_seen_running};

/// `lazaretctl quarantine ID --reason …` (a process: start, TLS handshake, the RPC, the agent's
/// store write, cut and pause) against an in-process agent with the API, beside the raw pause.
pub async fn cli_round_trip(
    args: &Args,
    docker: &Docker,
    run_label: &str,
) -> anyhow::Result<Vec<Measurement>> {
    if !args.lazaretctl.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p lazaretctl`",
            args.lazaretctl.display()
        );
    }
    let state = tempfile::tempdir()?;
    let pki_dir = state.path().join("pki");
    lazaretctl::pki::init(&pki_dir, 1)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut raw = RawConfig {
        node_name: Some("node-1".into()),
        ..RawConfig::default()
    };
    raw.metrics.listen = String::new();
    // containerd as a default agent finds it (Docker's own, watched in `moby` too): the agent
    // pauses Docker containers through it.
    raw.state.dir = state.path().join("state");
    raw.api.listen = address.clone();
    raw.api.tls_dir = pki_dir.clone();
    let config = raw.validate()?;
    let shutdown = CancellationToken::new();
    let runtime = Arc::new(DockerRuntime::new(DOCKER_SOCKET));
    runtime.connect().await?;
    let runtimes = app::runtimes_from_config(&config);
    let containerd = connected_containerd(&runtimes).await?;
    let agent = app::start(&config, runtimes, None, shutdown.clone()).await?;
    let mut round_trips = Vec::with_capacity(args.cli_rounds);
    let mut reads = Vec::with_capacity(args.cli_rounds);
    let mut raw_pause = Vec::with_capacity(args.cli_rounds);
    let mut raw_task_pause = Vec::with_capacity(args.cli_rounds);
    for index in 0..args.cli_rounds {
        let baseline =
            create_container(docker, run_label, &format!("{run_label}-clipause-{index}")).await?;
        docker.start_container(&baseline, None).await?;
        let started = Instant::now();
        runtime.pause(&ContainerId::new(baseline.as_str())).await?;
        raw_pause.push(started.elapsed());
        if let Some(containerd) = &containerd {
            let baseline = create_container(
                docker,
                run_label,
                &format!("{run_label}-clitaskpause-{index}"),
            )
            .await?;
            docker.start_container(&baseline, None).await?;
            let started = Instant::now();
            containerd
                .pause_docker_task(&ContainerId::new(baseline.as_str()))
                .await
                .context("containerd does not watch Docker's namespace")??;
            raw_task_pause.push(started.elapsed());
        }

        let target = start_seen_running(
            docker,
            &agent.inventory,
            run_label,
            &format!("{run_label}-cli-{index}"),
        )
        .await?;
        let lazaretctl = |command: &[&str]| {
            let mut process = tokio::process::Command::new(&args.lazaretctl);
            process
                .args(["--agent", &address, "--tls-dir"])
                .arg(&pki_dir)
                .args(command);
            process
        };
        let started = Instant::now();
        let read = lazaretctl(&["quarantines"]).output().await?;
        reads.push(started.elapsed());
        let started = Instant::now();
        let output = lazaretctl(&["quarantine", &target, "--reason", "bench"])
            .output()
            .await?;
        round_trips.push(started.elapsed());
        for (what, output) in [("quarantines", &read), ("quarantine", &output)] {
            if !output.status.success() {
                bail!(
                    "lazaretctl {what} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
    shutdown.cancel();
    agent.drain().await;
    let measured = summarize(&round_trips).context("no samples")?;
    let floor = summarize(&raw_pause).context("no samples")?;
    let mut measurements = vec![
        Measurement {
            metric: "lazaretctl quarantine round trip (process, mTLS, cut + pause)".into(),
            goal: "p50 <= 25 ms".into(),
            ratio_p50: Some(measured.p50_ms / floor.p50_ms),
            value: serde_json::to_value(&measured)?,
            floor: Some(floor),
        },
        Measurement {
            metric: "  of which: a read (lazaretctl quarantines: process + mTLS + RPC)".into(),
            goal: "(reported)".into(),
            value: serde_json::to_value(summarize(&reads).context("no samples")?)?,
            floor: None,
            ratio_p50: None,
        },
    ];
    if let Some(task_pause) = summarize(&raw_task_pause) {
        measurements.push(Measurement {
            metric: "  beside: the raw containerd Tasks.Pause of a Docker container (what the agent calls)".into(),
            goal: "(reported)".into(),
            value: serde_json::to_value(task_pause)?,
            floor: None,
            ratio_p50: None,
        });
    }
    Ok(measurements)
}

/// The containerd runtime among `runtimes`, connected, when the agent watches one.
pub async fn connected_containerd(
    runtimes: &[Arc<dyn ContainerRuntime>],
) -> anyhow::Result<Option<Arc<dyn ContainerRuntime>>> {
    let Some(containerd) = runtimes
        .iter()
        .find(|runtime| runtime.kind() == lazaret_core::RuntimeKind::Containerd)
    else {
        return Ok(None);
    };
    containerd.connect().await?;
    Ok(Some(containerd.clone()))
}
