//! Scenario (7): the controller. Five agents and the controller in this process, gossiping on
//! loopback (200 ms) against the real Docker engine; each round, `lazaretctl quarantine ID`
//! through the controller (a process: mTLS to the controller, a fan-out to find the owner, the
//! forwarded call, the owner's store write, cut and pause), beside the same command straight to
//! the owning agent and the raw Docker pause. Then `lazaretctl fleet mode` alternating
//! audit-only / enforce: from the call until every agent reports the mode over gossip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use lazaret_agent::app::{self, RunningAgent};
use lazaret_agent::config::RawConfig;
use lazaret_agent::runtime::ContainerRuntime;
use lazaret_agent::runtime::docker::DockerRuntime;
use lazaret_benches::{Measurement, summarize};
use lazaret_controller::config::ControllerConfig;
use lazaret_core::ContainerId;
use lazaret_fleet::gossip::GossipSettings;
use tokio_util::sync::CancellationToken;

use super::{Args, DOCKER_SOCKET, create_labelled};

const AGENTS: usize = 5;
const INTERVAL: Duration = Duration::from_millis(200);

fn free_tcp() -> anyhow::Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(format!("127.0.0.1:{port}"))
}

fn free_udp() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

/// Agent `index` (1-based), gossiping through `seed` (none for the first).
async fn start_agent(
    dir: &std::path::Path,
    index: usize,
    seed: Option<std::net::SocketAddr>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(RunningAgent, String, std::net::SocketAddr)> {
    let node = format!("node-{index}");
    let api = free_tcp()?;
    let gossip = free_udp()?;
    let mut raw = RawConfig {
        node_name: Some(node.clone()),
        ..RawConfig::default()
    };
    raw.metrics.listen = String::new();
    raw.state.dir = dir.join(&node);
    raw.api.listen = api.clone();
    raw.api.tls_dir = dir.join("pki");
    raw.watch.claim_unlabelled = false;
    raw.gossip.listen = gossip.to_string();
    raw.gossip.seeds = seed.map(|seed| seed.to_string()).into_iter().collect();
    raw.gossip.interval = INTERVAL;
    let config = raw.validate()?;
    let runtimes = app::runtimes_from_config(&config);
    let agent = app::start(&config, runtimes, None, shutdown.clone()).await?;
    Ok((agent, api, gossip))
}

/// `lazaretctl quarantine` through the controller vs straight to the owner, and `fleet mode`.
pub async fn controller(
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
    let dir = tempfile::tempdir()?;
    let pki_dir = dir.path().join("pki");
    lazaretctl::pki::init(&pki_dir, AGENTS)?;
    let shutdown = CancellationToken::new();
    let mut agents = Vec::new();
    let mut seed = None;
    for index in 1..=AGENTS {
        let (agent, api, gossip) = start_agent(dir.path(), index, seed, &shutdown).await?;
        seed.get_or_insert(gossip);
        agents.push((agent, api));
    }
    let listen: std::net::SocketAddr = free_tcp()?.parse()?;
    let gossip = free_udp()?;
    let controller = lazaret_controller::app::start(
        ControllerConfig {
            name: "controller".into(),
            listen,
            tls_dir: pki_dir.clone(),
            gossip: GossipSettings {
                cluster: "lazaret".into(),
                listen: gossip,
                advertise: gossip,
                seeds: seed.map(|seed| seed.to_string()).into_iter().collect(),
                interval: INTERVAL,
            },
            state_dir: dir.path().join("controller"),
            signing_key: None,
            validity: Duration::from_secs(86_400),
            metrics: None,
            budget: lazaret_core::quarantine::budget::FleetBudget {
                max: 0,
                window: Duration::from_secs(60),
            },
        },
        shutdown.clone(),
    )
    .await?;
    let address = controller.api.to_string();
    let lazaretctl = |target: (&str, &str), command: &[&str]| {
        let mut process = tokio::process::Command::new(&args.lazaretctl);
        process
            .args([target.0, target.1, "--tls-dir"])
            .arg(&pki_dir)
            .args(command)
            .env_remove("LAZARET_CONTROLLER")
            .env_remove("LAZARET_AGENT");
        process
    };
    let via_controller = ("--controller", address.as_str());
    // The fleet has formed when the controller sees every agent live.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = lazaretctl(via_controller, &["nodes", "-o", "json"])
            .output()
            .await?;
        let text = String::from_utf8_lossy(&nodes.stdout);
        if text.matches("\"status\": \"live\"").count() >= AGENTS {
            break;
        }
        if Instant::now() >= deadline {
            bail!("the controller never saw {AGENTS} live agents: {text}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let pause = Arc::new(DockerRuntime::new(DOCKER_SOCKET));
    pause.connect().await?;
    let (mut through, mut direct, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.cli_rounds {
        let owner = round % AGENTS;
        let node = format!("node-{}", owner + 1);
        let labels = [("lazaret.io/node", node.as_str())];
        let mut targets = Vec::new();
        for how in ["ctl", "direct", "raw"] {
            let name = format!("{run_label}-ctl-{how}-{round}");
            let id = create_labelled(docker, run_label, &name, &labels).await?;
            docker.start_container(&id, None).await?;
            targets.push(id);
        }
        let started = Instant::now();
        pause.pause(&ContainerId::new(targets[2].as_str())).await?;
        raw.push(started.elapsed());
        let owner_agent = &agents[owner].0;
        for id in &targets[..2] {
            let id = ContainerId::new(id.as_str());
            let mut snapshots = owner_agent.inventory.snapshots.clone();
            tokio::time::timeout(
                Duration::from_secs(10),
                snapshots.wait_for(|snapshot| {
                    snapshot.get(&id).is_some_and(|entry| {
                        entry.info.state == lazaret_core::ContainerState::Running
                    })
                }),
            )
            .await
            .context("the container never reached its owner's inventory")??;
        }
        for (index, target, samples) in [
            (0, via_controller, &mut through),
            (1, ("--agent", agents[owner].1.as_str()), &mut direct),
        ] {
            let started = Instant::now();
            let output = lazaretctl(
                target,
                &["quarantine", &targets[index], "--reason", "bench"],
            )
            .output()
            .await?;
            samples.push(started.elapsed());
            if !output.status.success() {
                bail!(
                    "lazaretctl quarantine {target:?} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }

    let mut modes = Vec::new();
    for round in 0..6 {
        let mode = if round % 2 == 0 {
            "audit-only"
        } else {
            "enforce"
        };
        let started = Instant::now();
        let output = lazaretctl(
            via_controller,
            &["fleet", "mode", mode, "--reason", "bench"],
        )
        .output()
        .await?;
        modes.push(started.elapsed());
        if !output.status.success() {
            bail!(
                "fleet mode {mode} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    shutdown.cancel();
    controller.drain().await;
    for (agent, _) in agents {
        agent.drain().await;
    }
    let measured = summarize(&through).context("no samples")?;
    let floor = summarize(&raw).context("no samples")?;
    let straight = summarize(&direct).context("no samples")?;
    Ok(vec![
        Measurement {
            metric: format!("lazaretctl quarantine through the controller ({AGENTS} agents)"),
            goal: "p50 <= 40 ms".into(),
            ratio_p50: Some(measured.p50_ms / floor.p50_ms),
            value: serde_json::to_value(&measured)?,
            floor: Some(floor),
        },
        Measurement {
            metric: "  beside: the same, straight to the owning agent".into(),
            goal: "(reported)".into(),
            ratio_p50: None,
            value: serde_json::to_value(&straight)?,
            floor: None,
        },
        Measurement {
            metric: format!(
                "lazaretctl fleet mode: call -> all {AGENTS} agents report it (200 ms gossip)"
            ),
            goal: "(reported)".into(),
            ratio_p50: None,
            value: serde_json::to_value(summarize(&modes).context("no samples")?)?,
            floor: None,
        },
    ])
}
