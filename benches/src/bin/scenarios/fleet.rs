//! Scenario (6): fleet convergence. A signed bundle is applied to one agent; the clock stops
//! when every agent acks it over gossip (each has verified, stored and put it in force). Agents
//! run the real agent code (`app::start`) with an in-memory runtime (no containers), as processes
//! (this binary re-executed with `--fake-agent CONFIG`) or as many agents inside this process.
//! An observer joins the gossip (as `bench-observer`, publishing nothing) to read every node's
//! `ack:*`. Also: a 10k-indicator bundle to the process fleet, and idle gossip bandwidth per
//! node (bytes the agents' gossip ports send, counted by an nftables counter on the host).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chitchat::transport::UdpTransport;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, spawn_chitchat};
use lazaret_agent::app::{self, RunningAgent};
use lazaret_agent::config::RawConfig;
use lazaret_agent::runtime::fake::FakeRuntime;
use lazaret_benches::{Measurement, summarize};
use lazaret_core::bundle::{BundleKind, BundleStamp};
use lazaret_proto::v1::ApplyBundleRequest;
use lazaret_proto::v1::agent_service_client::AgentServiceClient;
use lazaretctl::{pki, signing};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::Args;

mod sim;
pub use sim::simulated;

/// The gossip interval of every bench fleet, in milliseconds.
const INTERVAL_MS: u64 = 200;
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Nodes every other node is seeded with.
const SEEDS: usize = 3;

/// `--fake-agent CONFIG`: one agent on an in-memory runtime, until SIGTERM or Ctrl-C.
pub async fn fake_agent(config: &Path) -> anyhow::Result<()> {
    let config = RawConfig::from_file(config)?.validate()?;
    let shutdown = CancellationToken::new();
    let agent = app::start(
        &config,
        vec![Arc::new(FakeRuntime::new())],
        None,
        shutdown.clone(),
    )
    .await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    shutdown.cancel();
    agent.drain().await;
    Ok(())
}

/// What every node of a bench fleet shares.
struct Fleet {
    dir: tempfile::TempDir,
    pki_dir: PathBuf,
    signing_key: PathBuf,
    trusted_key: PathBuf,
    /// (node, API address, gossip address) in order.
    nodes: Vec<(String, String, String)>,
}

impl Fleet {
    /// `count` nodes with free local ports.
    fn new(count: usize) -> anyhow::Result<Fleet> {
        Fleet::with_addresses(count, |_| Ok((free_tcp()?, free_udp()?)))
    }

    /// `count` nodes with addresses of their own that only the simulated wires know.
    fn new_simulated(count: usize) -> anyhow::Result<Fleet> {
        Fleet::with_addresses(count, |index| {
            let host = format!(
                "10.{}.{}.{}",
                index / 65_536,
                index / 256 % 256,
                index % 256
            );
            Ok((format!("{host}:7443"), format!("{host}:7946")))
        })
    }

    /// A PKI and a signing key for `count` nodes; node `index` (1-based) API and gossip
    /// addresses from `addresses`.
    fn with_addresses(
        count: usize,
        addresses: impl Fn(usize) -> anyhow::Result<(String, String)>,
    ) -> anyhow::Result<Fleet> {
        let dir = tempfile::tempdir()?;
        let pki_dir = dir.path().join("pki");
        pki::init(&pki_dir, count)?;
        let key = dir.path().join("fleet");
        signing::keygen(&key)?;
        let (signing_key, trusted_key) = signing::key_paths(&key);
        let mut nodes = Vec::new();
        for index in 1..=count {
            let (api, gossip) = addresses(index)?;
            nodes.push((format!("node-{index}"), api, gossip));
        }
        Ok(Fleet {
            dir,
            pki_dir,
            signing_key,
            trusted_key,
            nodes,
        })
    }

    fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .take(SEEDS)
            .map(|(_, _, gossip)| gossip.clone())
            .collect()
    }

    /// The configuration of node `index` (0-based).
    fn config(&self, index: usize) -> anyhow::Result<RawConfig> {
        Ok(toml::from_str(&self.config_text(index))?)
    }

    /// [`Self::config`] written to a file, for an agent process.
    fn config_file(&self, index: usize) -> anyhow::Result<PathBuf> {
        let (node, _, _) = &self.nodes[index];
        let path = self.dir.path().join(format!("{node}.toml"));
        std::fs::write(&path, self.config_text(index))?;
        Ok(path)
    }

    fn config_text(&self, index: usize) -> String {
        let (node, api, gossip) = &self.nodes[index];
        let seeds: Vec<String> = self
            .seeds()
            .into_iter()
            .filter(|seed| seed != gossip)
            .map(|seed| format!("{seed:?}"))
            .collect();
        format!(
            "node_name = \"{node}\"\n[metrics]\nlisten = \"\"\n[containerd]\nenabled = false\n\
             [state]\ndir = \"{}\"\n[api]\nlisten = \"{api}\"\ntls_dir = \"{}\"\n\
             [gossip]\nlisten = \"{gossip}\"\nseeds = [{}]\ninterval = \"{INTERVAL_MS}ms\"\n\
             [bundles]\ntrusted_keys = [\"{}\"]\n",
            self.dir.path().join(node).display(),
            self.pki_dir.display(),
            seeds.join(", "),
            self.trusted_key.display()
        )
    }

    /// Signs `kind` files at `path` as `version`.
    fn sign(
        &self,
        kind: BundleKind,
        path: &Path,
        version: u64,
    ) -> anyhow::Result<(Vec<u8>, BundleStamp)> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let signed = signing::sign(
            &signing::SignRequest {
                kind,
                paths: vec![path.to_path_buf()],
                version,
                created: now,
                expires: now + 86_400,
            },
            &signing::read_signing_key(&self.signing_key)?,
        )?;
        Ok((signed.to_file_bytes(), signed.stamp()))
    }

    /// Hands `bundle` to node 1, as the admin.
    async fn apply(&self, bundle: Vec<u8>) -> anyhow::Result<()> {
        let read = |file: &str| std::fs::read(self.pki_dir.join(file));
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.pem")?))
            .identity(Identity::from_pem(
                read("admin.pem")?,
                read("admin-key.pem")?,
            ))
            .domain_name("localhost");
        let channel = Endpoint::from_shared(format!("https://{}", self.nodes[0].1))?
            .tls_config(tls)?
            .connect()
            .await?;
        AgentServiceClient::new(channel)
            .max_encoding_message_size(64 * 1024 * 1024)
            .apply_bundle(ApplyBundleRequest { bundle })
            .await
            .context("ApplyBundle")?;
        Ok(())
    }

    fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|(node, _, _)| node.clone()).collect()
    }
}

/// The next free port below the kernel's ephemeral range (32768 and up), so a port handed out
/// here is never taken by an outgoing connection before its agent binds it.
fn next_port(free: impl Fn(u16) -> bool) -> anyhow::Result<String> {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    for _ in 0..12_000 {
        let offset = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 12_000;
        let port = 20_000 + offset;
        if free(port) {
            return Ok(format!("127.0.0.1:{port}"));
        }
    }
    bail!("no free port between 20000 and 32000")
}

fn free_tcp() -> anyhow::Result<String> {
    next_port(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
}

fn free_udp() -> anyhow::Result<String> {
    next_port(|port| std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok())
}

/// A gossip member that only reads: every node's acks.
struct Observer {
    handle: ChitchatHandle,
}

impl Observer {
    async fn join(seeds: Vec<String>) -> anyhow::Result<Observer> {
        Observer::join_over(seeds, free_udp()?.parse()?, &UdpTransport).await
    }

    async fn join_over(
        seeds: Vec<String>,
        address: std::net::SocketAddr,
        transport: &dyn chitchat::transport::Transport,
    ) -> anyhow::Result<Observer> {
        let generation = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new("bench-observer", generation, address),
            cluster_id: "lazaret".into(),
            gossip_interval: Duration::from_millis(200),
            listen_addr: address,
            seed_nodes: seeds,
            failure_detector_config: Default::default(),
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V1,
        };
        let handle = spawn_chitchat(config, Vec::new(), transport).await?;
        Ok(Observer { handle })
    }

    /// Every node's ack of `kind` (payload of the sealed value; seals are the agents' business).
    async fn acks(&self, kind: BundleKind) -> HashMap<String, BundleStamp> {
        let key = format!("ack:{kind}");
        let chitchat = self.handle.chitchat();
        let chitchat = chitchat.lock().await;
        let mut acks: HashMap<String, (u64, BundleStamp)> = HashMap::new();
        for (id, state) in chitchat.node_states() {
            let Some(stamp) = state
                .get(&key)
                .and_then(|value| value.split_once('.'))
                .and_then(|(_, payload)| serde_json::from_str::<BundleStamp>(payload).ok())
            else {
                continue;
            };
            let newer = acks
                .get(&*id.node_id)
                .is_none_or(|(generation, _)| *generation <= id.generation_id);
            if newer {
                acks.insert(id.node_id.to_string(), (id.generation_id, stamp));
            }
        }
        acks.into_iter()
            .map(|(node, (_, stamp))| (node, stamp))
            .collect()
    }

    /// Waits until every node in `nodes` acks `stamp`.
    async fn wait_all(
        &self,
        nodes: &[String],
        kind: BundleKind,
        stamp: BundleStamp,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let acks = self.acks(kind).await;
            let missing = nodes
                .iter()
                .filter(|node| acks.get(*node) != Some(&stamp))
                .count();
            if missing == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{missing} of {} nodes never acked {kind} {stamp}",
                    nodes.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every node announced its API (the fleet has formed).
    async fn wait_formed(&self, count: usize) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT * 2;
        loop {
            let formed = {
                let chitchat = self.handle.chitchat();
                let chitchat = chitchat.lock().await;
                chitchat
                    .node_states()
                    .values()
                    .filter(|state| state.get("node").is_some())
                    .count()
            };
            if formed >= count {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("only {formed} of {count} nodes formed the fleet");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// CPU seconds (user + system) of `pid` so far (clock ticks of 10 ms); 0 once it is gone.
fn cpu_seconds(pid: u32) -> f64 {
    super::footprint::process_cpu_ticks(pid).map_or(0.0, |ticks| ticks as f64 / 100.0)
}

/// Agent processes, SIGTERMed (then killed) on drop.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &self.0 {
            let _sent = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _killed = child.kill();
            let _reaped = child.wait();
        }
    }
}

/// A policy that matches nothing (the fake runtime has no containers): version `round`.
fn policies_dir(fleet: &Fleet, round: u64) -> anyhow::Result<PathBuf> {
    let dir = fleet.dir.path().join(format!("policies-{round}"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("bench.yaml"),
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: bench-{round}\nmode: enforce\n\
             match:\n  labels: {{lazaret.bench: never}}\nrules: [{{check: privileged}}]\nactions: [pause]\n"
        ),
    )?;
    Ok(dir)
}

/// `rounds` bundles applied one after the other; the time until all nodes acked each.
async fn converge_rounds(
    fleet: &Fleet,
    observer: &Observer,
    rounds: usize,
) -> anyhow::Result<Vec<Duration>> {
    let nodes = fleet.node_names();
    let mut samples = Vec::new();
    for round in 1..=rounds as u64 {
        let dir = policies_dir(fleet, round)?;
        let (bytes, stamp) = fleet.sign(BundleKind::Policies, &dir, round)?;
        let started = Instant::now();
        fleet.apply(bytes).await?;
        observer
            .wait_all(&nodes, BundleKind::Policies, stamp)
            .await?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

/// The convergence goal for a fleet of `count` (10, 50, 100, 400 nodes).
fn goal(count: usize) -> &'static str {
    match count {
        0..=10 => "p50 <= 1 s",
        11..=50 => "p50 <= 1.5 s",
        51..=100 => "p50 <= 2 s",
        _ => "p50 <= 3 s",
    }
}

fn measurement(
    metric: String,
    goal: &str,
    samples: &[Duration],
    cpu: String,
) -> anyhow::Result<Measurement> {
    let mut value = serde_json::to_value(summarize(samples).context("no samples")?)?;
    value["cpu"] = cpu.into();
    Ok(Measurement {
        metric,
        goal: goal.into(),
        value,
        floor: None,
        ratio_p50: None,
    })
}

/// Convergence with `count` agent processes, the 10k-indicator bundle, and idle bandwidth.
pub async fn processes(args: &Args, count: usize) -> anyhow::Result<Vec<Measurement>> {
    let fleet = Fleet::new(count)?;
    let exe = std::env::current_exe()?;
    let mut children = Processes(Vec::new());
    for index in 0..count {
        let log = std::fs::File::create(fleet.dir.path().join(format!("node-{}.log", index + 1)))?;
        let child = Command::new(&exe)
            .arg("--fake-agent")
            .arg(fleet.config_file(index)?)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        children.0.push(child);
    }
    let observer = Observer::join(fleet.seeds()).await?;
    if let Err(error) = observer.wait_formed(count).await {
        let mut failed = String::new();
        for index in 1..=count {
            let log = std::fs::read_to_string(fleet.dir.path().join(format!("node-{index}.log")))
                .unwrap_or_default();
            if log.contains("Error") {
                let tail: Vec<&str> = log
                    .lines()
                    .filter(|line| !line.starts_with("  "))
                    .rev()
                    .take(3)
                    .collect();
                failed.push_str(&format!("\nnode-{index}: {}", tail.join(" | ")));
            }
        }
        bail!("{error}{failed}");
    }
    let pids: Vec<u32> = children.0.iter().map(Child::id).collect();
    let cpu_total = || pids.iter().map(|&pid| cpu_seconds(pid)).sum::<f64>();
    let (cpu_before, started) = (cpu_total(), Instant::now());
    let samples = converge_rounds(&fleet, &observer, args.fleet_rounds).await?;
    let cpu = (cpu_total() - cpu_before) / started.elapsed().as_secs_f64() * 100.0;
    let mut measurements = vec![measurement(
        format!("bundle applied -> acked by all {count} agent processes (200 ms gossip)"),
        goal(count),
        &samples,
        format!("{cpu:.0}% of one core for all {count} agents during the rounds"),
    )?];
    if count == args.indicator_agents {
        let dir = fleet.dir.path().join("indicators");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("intel.yaml"), indicators_document(args.indicators))?;
        let (bytes, stamp) = fleet.sign(BundleKind::Indicators, &dir, 1)?;
        let size = bytes.len();
        let started = Instant::now();
        fleet.apply(bytes).await?;
        observer
            .wait_all(&fleet.node_names(), BundleKind::Indicators, stamp)
            .await?;
        measurements.push(measurement(
            format!(
                "{} indicators ({} KiB bundle) -> acked by all {count} agents",
                args.indicators,
                size / 1024
            ),
            "<= 2.5 s",
            &[started.elapsed()],
            String::new(),
        )?);
        measurements.push(idle_bandwidth(&fleet, args.idle_seconds).await?);
    }
    drop(children);
    Ok(measurements)
}

fn indicators_document(count: usize) -> String {
    let mut text =
        String::from("apiVersion: lazaret.dev/v1\nkind: Indicators\nsource: bench\nindicators:\n");
    for index in 0..count {
        text.push_str(&format!(
            "  - {{id: ioc-{index}, type: ip, value: 198.18.{}.{}}}\n",
            index / 256 % 256,
            index % 256
        ));
    }
    text
}

/// Bytes the fleet's gossip ports send while idle, per node per second (an nftables counter in
/// a table of its own, removed afterwards).
async fn idle_bandwidth(fleet: &Fleet, seconds: u64) -> anyhow::Result<Measurement> {
    const TABLE: &str = "lazaret_bench_gossip";
    let ports: Vec<String> = fleet
        .nodes
        .iter()
        .filter_map(|(_, _, gossip)| gossip.rsplit_once(':').map(|(_, port)| port.to_string()))
        .collect();
    let nft = |script: String| -> anyhow::Result<String> {
        let output = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .expect("piped")
                    .write_all(script.as_bytes())?;
                child.wait_with_output()
            })?;
        if !output.status.success() {
            bail!("nft: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    nft(format!(
        "table inet {TABLE} {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n  udp sport {{ {} }} counter\n }}\n}}\n",
        ports.join(", ")
    ))?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let listed = nft(format!("list table inet {TABLE}\n"));
    let deleted = nft(format!("delete table inet {TABLE}\n"));
    let listed = listed?;
    deleted?;
    let bytes: f64 = listed
        .split_whitespace()
        .skip_while(|word| *word != "bytes")
        .nth(1)
        .and_then(|bytes| bytes.parse().ok())
        .context("no counter in the nft listing")?;
    let per_node = bytes / fleet.nodes.len() as f64 / seconds as f64;
    Ok(Measurement {
        metric: format!(
            "idle gossip sent per node ({} nodes, 200 ms)",
            fleet.nodes.len()
        ),
        goal: "(reported)".into(),
        value: serde_json::json!({ "bytes_per_second": per_node.round() }),
        floor: None,
        ratio_p50: None,
    })
}

/// Convergence with `count` agents inside this process.
pub async fn in_process(args: &Args, count: usize) -> anyhow::Result<Measurement> {
    let fleet = Fleet::new(count)?;
    let shutdown = CancellationToken::new();
    let mut agents: Vec<RunningAgent> = Vec::new();
    for index in 0..count {
        let config = fleet.config(index)?.validate()?;
        agents.push(
            app::start(
                &config,
                vec![Arc::new(FakeRuntime::new())],
                None,
                shutdown.clone(),
            )
            .await?,
        );
    }
    let observer = Observer::join(fleet.seeds()).await?;
    observer.wait_formed(count).await?;
    let (cpu_before, started) = (cpu_seconds(std::process::id()), Instant::now());
    let samples = converge_rounds(&fleet, &observer, args.fleet_rounds).await?;
    let cpu =
        (cpu_seconds(std::process::id()) - cpu_before) / started.elapsed().as_secs_f64() * 100.0;
    shutdown.cancel();
    for agent in agents {
        agent.drain().await;
    }
    measurement(
        format!("bundle applied -> acked by all {count} in-process agents (200 ms gossip)"),
        goal(count),
        &samples,
        format!("{cpu:.0}% of one core for the whole process"),
    )
}
