//! Scenario harness against the real Docker engine and a real agent process. Run:
//! `cargo run --release -p lazaret-benches --bin lazaret-scenarios -- --out bench-results`
//!
//! Scenarios: (1) `docker create` → the container is in the agent's inventory with findings,
//! side by side with the raw create call; (2) a start event → the container enforced (network
//! cut and paused) by the fast path, side by side with a start event → the raw pause call
//! returned, interleaved in the same run, with the store write that precedes every action on
//! its own line; (3) the network cut and its restore in a container's namespace; (4) the agent
//! process's RSS with N containers on the host, and its CPU while idle. Every container it makes
//! carries the test label and is removed at the end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use clap::Parser;
use futures::StreamExt;
use lazaret_agent::app;
use lazaret_agent::config::RawConfig;
use lazaret_agent::enforce::netns::{self, NetnsHandle};
use lazaret_agent::runtime::docker::DockerRuntime;
use lazaret_agent::runtime::{ContainerRuntime, EventKind, RuntimeEvent, RuntimeResult};
use lazaret_agent::store::{Durability, Store};
use lazaret_agent::watcher::Backoff;
use lazaret_benches::{Measurement, summarize};
use lazaret_core::ContainerId;
use lazaret_core::policy::{PolicySet, PolicySource};
use lazaret_core::quarantine::QuarantineState;
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
    /// Run only these scenarios (comma-separated: create, enforce, cut, cli, footprint); all if
    /// unset.
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
    /// Where the JSON report is written.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
}

const DOCKER_SOCKET: &str = "/var/run/docker.sock";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
    if runs("create") {
        measurements.push(create_to_inventory(docker, run_label, args.containers).await?);
    }
    if runs("enforce") {
        measurements.extend(
            start_to_enforced(docker, run_label, args.enforced, &args.enforce_actions).await?,
        );
    }
    if runs("cut") {
        measurements.extend(cut_and_restore(docker, run_label, args.cuts).await?);
    }
    if runs("cli") {
        measurements.extend(cli_round_trip(args, docker, run_label).await?);
    }
    if runs("footprint") {
        measurements.extend(agent_process_footprint(args, docker, run_label).await?);
    }
    Ok(measurements)
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
    let mut all_labels =
        HashMap::from([(lazaret_tests::TEST_LABEL.to_string(), run_label.to_string())]);
    for (key, value) in labels {
        all_labels.insert(key.to_string(), value.to_string());
    }
    let body = ContainerCreateBody {
        image: Some(lazaret_tests::BUSYBOX_IMAGE.to_string()),
        cmd: Some(vec!["sleep".into(), "3600".into()]),
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

/// The enforce-mode policy of the start → enforced scenario, with `actions`.
fn bench_policy(actions: &str) -> String {
    format!(
        "apiVersion: lazaret.dev/v1\nkind: Policy\nname: bench-violators\nmode: enforce\n\
         match:\n  labels: {{lazaret.bench: violate}}\n\
         rules:\n  - expr: 'container.labels[\"lazaret.bench\"] == \"violate\"'\n\
         actions: [{actions}]\n"
    )
}

/// The next `Started` event of `id` on `events`.
async fn started_event(
    events: &mut (impl futures::Stream<Item = RuntimeResult<RuntimeEvent>> + Unpin),
    id: &str,
) -> anyhow::Result<Instant> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .context("no start event within 10 s")?
            .context("event stream ended")??;
        if event.kind == EventKind::Started && event.id.as_str() == id {
            return Ok(Instant::now());
        }
    }
}

/// Start event → enforced (cut + paused) by the agent's fast path, interleaved with start event
/// → the raw pause call returned; and the store write that precedes every action.
async fn start_to_enforced(
    docker: &Docker,
    run_label: &str,
    count: usize,
    actions: &str,
) -> anyhow::Result<Vec<Measurement>> {
    let state = tempfile::tempdir()?;
    let mut raw = RawConfig::default();
    raw.metrics.listen = String::new();
    raw.containerd.enabled = Some(false);
    raw.state.dir = state.path().to_path_buf();
    raw.enforcement.blast_radius_per_minute = count * 2;
    let config = raw.validate()?;
    let policies = PolicySet::load(&[PolicySource::new("bench.yaml", bench_policy(actions))])?;
    let shutdown = CancellationToken::new();
    let runtime = Arc::new(DockerRuntime::new(DOCKER_SOCKET));
    runtime.connect().await?;
    let agent = app::start(
        &config,
        vec![runtime.clone()],
        Some(policies),
        shutdown.clone(),
    )
    .await?;
    let mut enforced = agent.subscribe_enforced().context("enforcement runs")?;
    let mut status = agent.runtime_status[0].1.clone();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|status| status.connected),
    )
    .await??;
    let since = chrono::Utc::now().timestamp() - 1;
    let mut events = runtime.events(since);
    let mut fast_path = Vec::with_capacity(count);
    let mut raw_pause = Vec::with_capacity(count);
    for index in 0..count {
        // The raw call: read the start event, pause, until the call returns.
        let baseline =
            create_container(docker, run_label, &format!("{run_label}-pause-{index}")).await?;
        docker.start_container(&baseline, None).await?;
        let received = started_event(&mut events, &baseline).await?;
        runtime.pause(&ContainerId::new(baseline.as_str())).await?;
        raw_pause.push(received.elapsed());

        // The agent: judged at create, enforced from the start event.
        let violating = create_labelled(
            docker,
            run_label,
            &format!("{run_label}-enforced-{index}"),
            &[("lazaret.bench", "violate")],
        )
        .await?;
        let id = ContainerId::new(violating.as_str());
        let mut snapshots = agent.inventory.snapshots.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            snapshots.wait_for(|snapshot| snapshot.get(&id).is_some()),
        )
        .await
        .context("the created container never reached the inventory")??;
        docker.start_container(&violating, None).await?;
        let event = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let event = enforced.recv().await?;
                if event.record.container == id {
                    return anyhow::Ok(event);
                }
            }
        })
        .await
        .context("not enforced within 10 s")??;
        if event.record.state != QuarantineState::Applied {
            bail!("quarantine of {id} ended {}", event.record.state);
        }
        fast_path.push(
            event
                .since_start_event
                .context("enforced by the slow path: the fast path missed the start")?,
        );
    }
    shutdown.cancel();
    agent.drain().await;

    // The write that precedes every action, on the same kind of store.
    let store = Store::open(state.path(), Durability::Process)?;
    let mut writes = Vec::with_capacity(count * 4);
    let template = store
        .quarantines()?
        .records
        .into_iter()
        .next()
        .context("no quarantine stored")?;
    for index in 0..count * 4 {
        let mut record = template.clone();
        record.container = ContainerId::new(format!("bench-write-{index}"));
        let started = Instant::now();
        store.put_quarantine(&record)?;
        writes.push(started.elapsed());
    }

    let measured = summarize(&fast_path).context("no samples")?;
    let floor = summarize(&raw_pause).context("no samples")?;
    let write = summarize(&writes).context("no samples")?;
    Ok(vec![
        Measurement {
            metric: format!("start event -> enforced [{actions}], fast path"),
            goal: "p50 <= 1.15x raw pause, p99 <= 40 ms".into(),
            ratio_p50: Some(measured.p50_ms / floor.p50_ms),
            value: serde_json::to_value(&measured)?,
            floor: Some(floor),
        },
        Measurement {
            metric: "  of which: store write before acting".into(),
            goal: "(reported)".into(),
            value: serde_json::to_value(&write)?,
            floor: None,
            ratio_p50: None,
        },
    ])
}

/// `lazaretctl quarantine ID --reason …` (a process: start, TLS handshake, the RPC, the agent's
/// store write, cut and pause) against an in-process agent with the API, beside the raw pause.
async fn cli_round_trip(
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
    raw.containerd.enabled = Some(false);
    raw.state.dir = state.path().join("state");
    raw.api.listen = address.clone();
    raw.api.tls_dir = pki_dir.clone();
    let config = raw.validate()?;
    let shutdown = CancellationToken::new();
    let runtime = Arc::new(DockerRuntime::new(DOCKER_SOCKET));
    runtime.connect().await?;
    let agent = app::start(&config, vec![runtime.clone()], None, shutdown.clone()).await?;
    let mut round_trips = Vec::with_capacity(args.cli_rounds);
    let mut reads = Vec::with_capacity(args.cli_rounds);
    let mut raw_pause = Vec::with_capacity(args.cli_rounds);
    for index in 0..args.cli_rounds {
        let baseline =
            create_container(docker, run_label, &format!("{run_label}-clipause-{index}")).await?;
        docker.start_container(&baseline, None).await?;
        let started = Instant::now();
        runtime.pause(&ContainerId::new(baseline.as_str())).await?;
        raw_pause.push(started.elapsed());

        let target =
            create_container(docker, run_label, &format!("{run_label}-cli-{index}")).await?;
        docker.start_container(&target, None).await?;
        let id = ContainerId::new(target.as_str());
        let mut snapshots = agent.inventory.snapshots.clone();
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
    Ok(vec![
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
    ])
}

/// The network cut and its restore in one container's namespace, `rounds` times.
async fn cut_and_restore(
    docker: &Docker,
    run_label: &str,
    rounds: usize,
) -> anyhow::Result<Vec<Measurement>> {
    let id = create_container(docker, run_label, &format!("{run_label}-cut")).await?;
    docker.start_container(&id, None).await?;
    let inspected = docker.inspect_container(&id, None).await?;
    let sandbox = inspected
        .network_settings
        .and_then(|network| network.sandbox_key)
        .context("no sandbox key")?;
    let handle = NetnsHandle::open(&sandbox)?;
    let mut cuts = Vec::with_capacity(rounds);
    let mut restores = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        netns::cut(&handle).await?;
        cuts.push(started.elapsed());
        let started = Instant::now();
        netns::restore(&handle).await?;
        restores.push(started.elapsed());
    }
    let measurement = |metric: &str, samples: &[Duration]| -> anyhow::Result<Measurement> {
        Ok(Measurement {
            metric: metric.into(),
            goal: "(reported)".into(),
            value: serde_json::to_value(summarize(samples).context("no samples")?)?,
            floor: None,
            ratio_p50: None,
        })
    };
    Ok(vec![
        measurement("network cut (nft table added in the netns)", &cuts)?,
        measurement("network restore (table removed)", &restores)?,
    ])
}

fn process_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// utime + stime of a process, in clock ticks.
fn process_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Containers the agent reports through `/metrics` (a plain HTTP/1.0 GET on loopback).
async fn inventory_size(metrics_address: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(metrics_address).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let total = response
        .lines()
        .filter(|line| line.starts_with("lazaret_containers{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    Some(total)
}

/// The agent as a real process: RSS with N containers on the host, CPU while idle.
async fn agent_process_footprint(
    args: &Args,
    docker: &Docker,
    run_label: &str,
) -> anyhow::Result<Vec<Measurement>> {
    if !args.agent.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p lazaret-agent`",
            args.agent.display()
        );
    }
    let existing = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await?
        .len();
    for index in existing..args.rss_containers {
        create_container(docker, run_label, &format!("{run_label}-rss-{index}")).await?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let metrics_address = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(&args.agent)
        .args([
            "--docker-socket",
            DOCKER_SOCKET,
            "--log-level",
            "warn",
            "run",
            "--metrics-listen",
            &metrics_address,
        ])
        .kill_on_drop(true)
        .spawn()
        .context("failed to start the agent")?;
    let pid = child.id().context("agent has no pid")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let wanted = u64::try_from(args.rss_containers.max(existing))?;
    loop {
        if inventory_size(&metrics_address)
            .await
            .is_some_and(|size| size >= wanted)
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the agent did not list {wanted} containers within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_kib = process_rss_kib(pid)?;
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let before = process_cpu_ticks(pid)?;
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let after = process_cpu_ticks(pid)?;
    let idle_cpu_percent =
        (after - before) as f64 / ticks_per_second / args.idle_seconds as f64 * 100.0;
    child.kill().await.ok();
    Ok(vec![
        Measurement {
            metric: format!("agent RSS with {wanted} containers (MiB)"),
            goal: "<= 30 MiB".into(),
            value: serde_json::json!(rss_kib as f64 / 1024.0),
            floor: None,
            ratio_p50: None,
        },
        Measurement {
            metric: format!(
                "agent CPU idle over {} s (% of one core)",
                args.idle_seconds
            ),
            goal: "<= 0.5 %".into(),
            value: serde_json::json!(idle_cpu_percent),
            floor: None,
            ratio_p50: None,
        },
    ])
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
