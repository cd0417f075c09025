//! `lazaretctl dev up`: a local fleet in one command, against this machine's engine. Makes (or
//! reuses) a dev PKI, starts N agents with their own state directories and ports, waits until
//! each API answers, writes `DIR/env` for scripts, prints how to use the CLI, and stops every
//! agent on Ctrl-C (or when one of them exits).
//!
//! Agents share the engine: `node-K` owns the containers labelled `lazaret.io/node=node-K`;
//! unlabelled ones belong to `node-1`. They gossip on loopback (node-1 is every other's seed) and
//! trust one dev bundle-signing key, `DIR/keys/dev-signing.key` (`LAZARET_SIGNING_KEY`), so a
//! bundle signed with it and applied to any agent reaches all. The controller joins last (API on
//! 7400, `LAZARET_CONTROLLER`), with the same key to sign what operators apply through it.
//! Every agent takes Falco alerts on its own loopback port (8765 upward; node-1's is
//! `LAZARET_DETECTIONS`) with the token in `DIR/detections.token` (`LAZARET_DETECTIONS_TOKEN`), and
//! enforces `DIR/policies/dev-response.yaml`: Critical and above cut and pause the container.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lazaretctl::{pki, signing};

use crate::client::{self, Failure, Target};

/// The first agent's API port; agent K listens on `BASE_API_PORT + K - 1` (or a free one).
const BASE_API_PORT: u16 = 7443;
/// The first agent's metrics port, likewise.
const BASE_METRICS_PORT: u16 = 9464;
/// The first agent's gossip (UDP) port, likewise.
const BASE_GOSSIP_PORT: u16 = 7946;
/// The first agent's detections intake port, likewise.
const BASE_DETECTIONS_PORT: u16 = 8765;
/// The response every dev agent enforces: a Falco alert of priority Critical or above about one
/// of its containers cuts and pauses it for an hour.
const DEV_RESPONSE: &str = "apiVersion: lazaret.dev/v1\nkind: Response\nname: dev-falco-critical\n\
    description: A Falco alert of priority Critical or above cuts and pauses the container for an hour.\n\
    mode: enforce\nmatch: {sources: [falco], min_severity: critical}\n\
    actions: [network-cut, pause]\nttl: 1h\n";
/// Gossip interval of the dev fleet: quicker than the 1 s default, for a snappy demo.
const DEV_GOSSIP_INTERVAL: &str = "250ms";
/// The controller's API port (or a free one), and its gossip port.
const CONTROLLER_API_PORT: u16 = 7400;
const CONTROLLER_GOSSIP_PORT: u16 = 7940;
/// How long an agent may take to answer on its API.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One started agent.
struct DevAgent {
    node: String,
    api: String,
    /// Where its detections intake listens (empty for the controller).
    detections: String,
    metrics: String,
    log: PathBuf,
    child: Child,
}

/// `port` if it is free on loopback, else any free one.
fn port_from(port: u16) -> anyhow::Result<u16> {
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
        return Ok(port);
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A free UDP port on loopback, `port` if it is.
fn udp_port_from(port: u16) -> anyhow::Result<u16> {
    if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        return Ok(port);
    }
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// What every dev agent shares.
struct Fleet<'a> {
    dir: &'a Path,
    pki_dir: &'a Path,
    policy_dirs: &'a [PathBuf],
    /// The dev response policy's directory, enforced by every agent.
    response_dir: &'a Path,
    /// The detections intake's token file.
    token_file: &'a Path,
    trusted_key: &'a Path,
    /// The dev signing key (the controller signs with it).
    signing_key: &'a Path,
    /// node-1's gossip address, once known.
    seed: Option<String>,
}

/// A binary of ours: next to this one (a cargo build or an install), else on `PATH`.
fn binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Starts the controller, seeded with node-1.
fn start_controller(fleet: &Fleet<'_>) -> anyhow::Result<DevAgent> {
    let api = format!("127.0.0.1:{}", port_from(CONTROLLER_API_PORT)?);
    let gossip = format!("127.0.0.1:{}", udp_port_from(CONTROLLER_GOSSIP_PORT)?);
    let seed = fleet
        .seed
        .clone()
        .context("no agent to seed the controller with")?;
    let home = fleet.dir.join("controller");
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let config = home.join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"controller\"\n[api]\nlisten = \"{api}\"\ntls_dir = {:?}\n\
             [gossip]\nlisten = \"{gossip}\"\nseeds = [\"{seed}\"]\ninterval = \"{DEV_GOSSIP_INTERVAL}\"\n\
             [state]\ndir = {:?}\n[bundles]\nsigning_key = {:?}\n",
            fleet.pki_dir.display().to_string(),
            home.join("state").display().to_string(),
            fleet.signing_key.display().to_string(),
        ),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    let log = home.join("controller.log");
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = Command::new(binary("lazaret-controller"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .context(
            "cannot start lazaret-controller (build it with `cargo build -p lazaret-controller`)",
        )?;
    Ok(DevAgent {
        node: "controller".into(),
        api,
        detections: String::new(),
        metrics: String::new(),
        log,
        child,
    })
}

fn start_agent(fleet: &mut Fleet<'_>, index: usize) -> anyhow::Result<DevAgent> {
    let node = format!("node-{index}");
    let offset = u16::try_from(index - 1).context("too many agents")?;
    let api = format!("127.0.0.1:{}", port_from(BASE_API_PORT + offset)?);
    let metrics = format!("127.0.0.1:{}", port_from(BASE_METRICS_PORT + offset)?);
    let gossip = format!("127.0.0.1:{}", udp_port_from(BASE_GOSSIP_PORT + offset)?);
    let detections = format!("127.0.0.1:{}", port_from(BASE_DETECTIONS_PORT + offset)?);
    let seed = fleet.seed.get_or_insert_with(|| gossip.clone()).clone();
    let home = fleet.dir.join(&node);
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let config = home.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "node_name = \"{node}\"\n[watch]\nclaim_unlabelled = {}\n\
             [gossip]\nlisten = \"{gossip}\"\nseeds = [\"{seed}\"]\ninterval = \"{DEV_GOSSIP_INTERVAL}\"\n\
             [bundles]\ntrusted_keys = [{:?}]\n\
             [detections]\nlisten = \"{detections}\"\ntoken_file = {:?}\n",
            index == 1,
            fleet.trusted_key.display().to_string(),
            fleet.token_file.display().to_string(),
        ),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    let log = home.join("agent.log");
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut command = Command::new(binary("lazaret-agent"));
    command
        .arg("--config")
        .arg(&config)
        .args(["run", "--api-listen", &api, "--metrics-listen", &metrics])
        .arg("--tls-dir")
        .arg(fleet.pki_dir)
        .arg("--state-dir")
        .arg(home.join("state"));
    command.arg("--policy-dir").arg(fleet.response_dir);
    for policies in fleet.policy_dirs {
        command.arg("--policy-dir").arg(policies);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .context("cannot start lazaret-agent (build it with `cargo build -p lazaret-agent`)")?;
    Ok(DevAgent {
        node,
        api,
        detections,
        metrics,
        log,
        child,
    })
}

/// Waits until `agent`'s API answers an authenticated call.
async fn wait_ready(agent: &mut DevAgent, pki_dir: &Path) -> anyhow::Result<()> {
    let is_controller = agent.node == "controller";
    let target = Target {
        agent: agent.api.clone(),
        controller: is_controller.then(|| agent.api.clone()),
        tls_dir: pki_dir.to_path_buf(),
        identity: "admin".into(),
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = agent.child.try_wait()? {
            let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            bail!(
                "{} exited ({status}) while starting; the end of {}:\n{}",
                agent.node,
                agent.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if answers(&target, is_controller).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not answer on {} within {READY_TIMEOUT:?}; see {}",
                agent.node,
                agent.api,
                agent.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the agent (or controller) at `target` answers an authenticated call.
async fn answers(target: &Target, is_controller: bool) -> bool {
    match &target.controller {
        Some(_) if is_controller => match client::connect_controller(target).await {
            Ok(mut connected) => connected
                .list_nodes(client::request(lazaret_proto::v1::ListNodesRequest {}))
                .await
                .is_ok(),
            Err(_) => false,
        },
        _ => match client::connect(target).await {
            Ok(mut connected) => connected
                .verify_audit(client::request(lazaret_proto::v1::VerifyAuditRequest {}))
                .await
                .is_ok(),
            Err(_) => false,
        },
    }
}

/// The `DIR/env` file: `export KEY=value` lines a shell sources and a script parses.
fn env_file(
    agents: &[DevAgent],
    controller: &DevAgent,
    pki_dir: &Path,
    signing_key: &Path,
    token: &str,
    gossip_seed: &str,
) -> String {
    let join = |pick: fn(&DevAgent) -> &str| agents.iter().map(pick).collect::<Vec<_>>().join(",");
    format!(
        "export LAZARET_CONTROLLER={}\nexport LAZARET_AGENT={}\nexport LAZARET_AGENTS={}\n\
         export LAZARET_NODES={}\nexport LAZARET_TLS_DIR={}\nexport LAZARET_SIGNING_KEY={}\n\
         export LAZARET_DETECTIONS=http://{}/falco\nexport LAZARET_DETECTIONS_TOKEN={token}\n\
         export LAZARET_GOSSIP_SEED={gossip_seed}\n",
        controller.api,
        agents[0].api,
        join(|agent| &agent.api),
        join(|agent| &agent.node),
        pki_dir.display(),
        signing_key.display(),
        agents[0].detections,
    )
}

async fn run(dir: &Path, count: usize, policy_dirs: &[PathBuf]) -> anyhow::Result<()> {
    if count == 0 {
        bail!("--agents must be at least 1");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let pki_dir = dir.join("pki");
    if pki_dir.join(pki::CA_CERT).exists() {
        for index in 1..=count {
            let name = format!("node-{index}");
            if !pki::cert_paths(&pki_dir, &name).0.exists() {
                pki::issue(&pki_dir, lazaret_core::roles::Role::Node, &name, &[])?;
            }
        }
    } else {
        pki::init(&pki_dir, count)?;
    }
    let key_base = dir.join("keys").join("dev-signing");
    let (signing_key, trusted_key) = signing::key_paths(&key_base);
    if !signing_key.exists() {
        signing::keygen(&key_base)?;
    }
    let token_file = dir.join("detections.token");
    if !token_file.exists() {
        pki::write_secret(&token_file, &random_token()?)?;
    }
    let token = std::fs::read_to_string(&token_file)?.trim().to_string();
    let response_dir = dir.join("policies");
    std::fs::create_dir_all(&response_dir)?;
    std::fs::write(response_dir.join("dev-response.yaml"), DEV_RESPONSE)?;
    let mut fleet = Fleet {
        dir: &dir,
        pki_dir: &pki_dir,
        policy_dirs,
        response_dir: &response_dir,
        token_file: &token_file,
        trusted_key: &trusted_key,
        signing_key: &signing_key,
        seed: None,
    };
    let mut agents = Vec::new();
    let started: anyhow::Result<()> = async {
        for index in 1..=count {
            agents.push(start_agent(&mut fleet, index)?);
            let agent = agents.last_mut().expect("just pushed");
            wait_ready(agent, &pki_dir).await?;
        }
        Ok(())
    }
    .await;
    if let Err(error) = started {
        stop(&mut agents);
        return Err(error);
    }
    let started = async {
        let mut controller = start_controller(&fleet)?;
        let ready = wait_ready(&mut controller, &pki_dir).await;
        agents.push(controller);
        ready
    }
    .await;
    if let Err(error) = started {
        stop(&mut agents);
        return Err(error);
    }
    let controller = agents.pop().expect("the controller was pushed last");
    let env = dir.join("env");
    std::fs::write(
        &env,
        env_file(
            &agents,
            &controller,
            &pki_dir,
            &signing_key,
            &token,
            fleet.seed.as_deref().unwrap_or_default(),
        ),
    )
    .with_context(|| format!("cannot write {}", env.display()))?;
    println!(
        "Lazaret dev fleet is up ({count} agent(s) on this machine's engine, and a controller):"
    );
    println!(
        "  {:<10} API {}  log {}",
        "controller",
        controller.api,
        controller.log.display()
    );
    for agent in &agents {
        println!(
            "  {:<8} API {}  metrics http://{}/metrics  log {}",
            agent.node,
            agent.api,
            agent.metrics,
            agent.log.display()
        );
    }
    println!("\nIn another shell:");
    println!("  source {}", env.display());
    println!("  lazaretctl nodes                              # through the controller");
    println!("  lazaretctl containers");
    println!("  lazaretctl quarantine NAME --reason \"why\"     # cut the network and pause");
    println!("  lazaretctl events --follow");
    println!(
        "  curl -H \"Authorization: Bearer $LAZARET_DETECTIONS_TOKEN\" -d @falco-alert.json $LAZARET_DETECTIONS"
    );
    println!("  lazaretctl detections                        # what Falco reported, what was done");
    println!("  lazaretctl release NAME --reason \"why\"");
    println!(
        "  lazaretctl bundle sign --kind policies --key $LAZARET_SIGNING_KEY --out p.bundle deploy/policies/"
    );
    println!("  lazaretctl bundle apply p.bundle && lazaretctl nodes   # every agent enforces it");
    println!("  lazaretctl fleet mode audit-only --reason \"why\"  # the fleet-wide kill switch");
    println!(
        "  lazaretctl --agent $LAZARET_AGENT containers    # one agent, without the controller"
    );
    println!("\nCtrl-C stops every agent and the controller.");
    agents.push(controller);
    let exited = async {
        loop {
            for agent in &mut agents {
                if let Ok(Some(status)) = agent.child.try_wait() {
                    return (agent.node.clone(), status);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => println!("\nstopping…"),
        (node, status) = exited => eprintln!("{node} exited ({status}); stopping the others"),
    }
    stop(&mut agents);
    Ok(())
}

/// 32 random bytes as hex: the dev detections token.
fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness for the detections token"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// SIGTERM every agent, then waits for each (a few seconds at most, then SIGKILL).
fn stop(agents: &mut [DevAgent]) {
    for agent in agents.iter() {
        let _signalled = Command::new("kill")
            .args(["-TERM", &agent.child.id().to_string()])
            .status();
    }
    for agent in agents.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(agent.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _killed = agent.child.kill();
        let _reaped = agent.child.wait();
    }
}

/// `lazaretctl dev up`.
pub fn up(dir: &Path, count: usize, policy_dirs: &[PathBuf]) -> ExitCode {
    client::block_on(async {
        run(dir, count, policy_dirs).await.map_err(|error| Failure {
            message: format!("{error:#}"),
            code: client::EXIT_REFUSED,
        })
    })
}
