//! A fleet of agent processes that gossip with each other on one engine: each `node-K` owns the
//! containers labelled `lazaret.io/node=node-K`, serves its API, gossips every 200 ms, and trusts
//! one bundle-signing key the fleet made. Agents run on loopback, or inside network namespaces
//! a test made (for partitions).
//!
//! `lazaretctl` is run as a process against any agent ([`TestFleet::ctl`]), inside that agent's
//! namespace when it has one, or against the controller ([`TestFleet::add_controller`],
//! [`TestFleet::ctl_fleet`]), which runs on loopback. Every process is SIGKILLed on drop; the
//! directory goes with the fleet.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lazaret_core::roles::Role;
use lazaretctl::{pki, signing};
use serde_json::Value;

use crate::agent_process::{AgentProcess, metric_value, scrape_metrics, workspace_binary};
use crate::controller_process::ControllerProcess;
use crate::daemon::POLL_INTERVAL;
use crate::netns::command_in;

/// The fleet's gossip interval.
pub const GOSSIP_INTERVAL: &str = "200ms";

/// Agent configuration for fault tests: quarantines re-checked every second.
pub const FAST_RECHECK: &str = "[enforcement]\nrecheck_interval = \"1s\"\n";

/// Where one agent listens.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The address its API and gossip bind (loopback, or its namespace's).
    pub host: String,
    /// Its network namespace, when not the host's.
    pub netns: Option<PathBuf>,
}

impl Placement {
    pub fn loopback() -> Placement {
        Placement {
            host: "127.0.0.1".into(),
            netns: None,
        }
    }
}

/// One agent of the fleet.
pub struct FleetAgent {
    pub node: String,
    pub api: String,
    pub metrics: String,
    pub gossip: String,
    pub placement: Placement,
    pub process: AgentProcess,
}

/// See the module docs.
pub struct TestFleet {
    dir: tempfile::TempDir,
    pub pki_dir: PathBuf,
    /// The private signing key (`keys/fleet.key`); `keys/fleet.pub` is trusted by every agent.
    pub signing_key: PathBuf,
    pub trusted_key: PathBuf,
    pub agents: Vec<FleetAgent>,
    pub controller: Option<ControllerProcess>,
    next_port: u16,
}

/// A port base per fleet, apart from other tests' (ports are checked free on loopback).
fn port_base() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

impl TestFleet {
    /// A PKI (nodes are issued as agents are added) and a signing key; no agent yet.
    pub fn new() -> anyhow::Result<TestFleet> {
        let dir = tempfile::tempdir()?;
        let pki_dir = dir.path().join("pki");
        pki::init(&pki_dir, 0)?;
        let key_base = dir.path().join("keys").join("fleet");
        signing::keygen(&key_base)?;
        let (signing_key, trusted_key) = signing::key_paths(&key_base);
        Ok(TestFleet {
            dir,
            pki_dir,
            signing_key,
            trusted_key,
            agents: Vec::new(),
            controller: None,
            next_port: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn free_ports(&mut self, host: &str) -> anyhow::Result<(u16, u16, u16)> {
        if self.next_port == 0 {
            self.next_port = port_base();
        }
        let mut found = Vec::new();
        while found.len() < 3 {
            self.next_port = self.next_port.wrapping_add(1).max(20_000);
            let port = self.next_port;
            // In a namespace of the test's, every port is free; on loopback, check.
            let free = host != "127.0.0.1"
                || (std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                    && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
            if free {
                found.push(port);
            }
        }
        Ok((found[0], found[1], found[2]))
    }

    /// Starts `node-<N>` (N = agents so far + 1) at `placement`, gossiping through `seeds`
    /// (gossip addresses; none for the first agent). It owns unlabelled containers only when it
    /// is node-1.
    pub fn add_agent(&mut self, placement: Placement, seeds: &[String]) -> anyhow::Result<usize> {
        self.add_agent_with(placement, seeds, "")
    }

    /// [`Self::add_agent`] with `extra` TOML sections appended to its configuration.
    pub fn add_agent_with(
        &mut self,
        placement: Placement,
        seeds: &[String],
        extra: &str,
    ) -> anyhow::Result<usize> {
        self.add_agent_built(placement, seeds, extra, None)
    }

    /// [`Self::add_agent_with`], running `binary` (another build of the agent, such as the
    /// previous release's) when given.
    pub fn add_agent_built(
        &mut self,
        placement: Placement,
        seeds: &[String],
        extra: &str,
        binary: Option<PathBuf>,
    ) -> anyhow::Result<usize> {
        let index = self.agents.len() + 1;
        let node = format!("node-{index}");
        if !pki::cert_paths(&self.pki_dir, &node).0.exists() {
            pki::issue(
                &self.pki_dir,
                Role::Node,
                &node,
                std::slice::from_ref(&placement.host),
            )?;
        }
        let (api_port, metrics_port, gossip_port) = self.free_ports(&placement.host)?;
        let host = &placement.host;
        let api = format!("{host}:{api_port}");
        let metrics = format!("{host}:{metrics_port}");
        let gossip = format!("{host}:{gossip_port}");
        let seeds: Vec<String> = seeds.iter().map(|seed| format!("{seed:?}")).collect();
        let config = format!(
            "node_name = \"{node}\"\n[metrics]\nlisten = \"{metrics}\"\n[containerd]\nenabled = false\n\
             [watch]\nclaim_unlabelled = {}\n[api]\nlisten = \"{api}\"\ntls_dir = \"{}\"\n\
             [gossip]\nlisten = \"{gossip}\"\nseeds = [{}]\ninterval = \"{GOSSIP_INTERVAL}\"\n\
             [bundles]\ntrusted_keys = [\"{}\"]\n{extra}",
            index == 1,
            self.pki_dir.display(),
            seeds.join(", "),
            self.trusted_key.display(),
        );
        let agent_dir = self.dir.path().join(&node);
        std::fs::create_dir_all(&agent_dir)?;
        let process =
            AgentProcess::start_built(&agent_dir, &config, &[], placement.netns.clone(), binary)?;
        process.wait_for(
            &format!("{node} gossiping"),
            Duration::from_secs(60),
            || process.log().contains("gossip running"),
        )?;
        self.agents.push(FleetAgent {
            node,
            api,
            metrics,
            gossip,
            placement,
            process,
        });
        Ok(index - 1)
    }

    /// Starts the controller on loopback, gossiping through `seeds` and signing with the fleet's
    /// key, and waits until its API answers.
    pub fn add_controller(&mut self, seeds: &[String]) -> anyhow::Result<()> {
        self.add_controller_with(seeds, "")
    }

    /// [`Self::add_controller`] with `extra` TOML sections appended to its configuration.
    pub fn add_controller_with(&mut self, seeds: &[String], extra: &str) -> anyhow::Result<()> {
        let (api_port, _, gossip_port) = self.free_ports("127.0.0.1")?;
        let api = format!("127.0.0.1:{api_port}");
        let seeds: Vec<String> = seeds.iter().map(|seed| format!("{seed:?}")).collect();
        let dir = self.dir.path().join("controller");
        std::fs::create_dir_all(&dir)?;
        let config = format!(
            "name = \"controller\"\n[api]\nlisten = \"{api}\"\ntls_dir = \"{}\"\n\
             [gossip]\nlisten = \"127.0.0.1:{gossip_port}\"\nseeds = [{}]\ninterval = \"{GOSSIP_INTERVAL}\"\n\
             [state]\ndir = \"{}\"\n[bundles]\nsigning_key = \"{}\"\n{extra}",
            self.pki_dir.display(),
            seeds.join(", "),
            dir.join("state").display(),
            self.signing_key.display(),
        );
        let controller = ControllerProcess::start(&dir, &config, &api)?;
        self.controller = Some(controller);
        self.wait_controller()
    }

    /// Waits until the controller's API answers (after a start or restart).
    pub fn wait_controller(&self) -> anyhow::Result<()> {
        let controller = self.controller.as_ref().context("no controller")?;
        controller.wait_for("the controller answering", Duration::from_secs(60), || {
            self.run_fleet(&["nodes"])
                .is_ok_and(|output| output.status.success())
        })
    }

    /// `lazaretctl --controller <controller> --tls-dir … --as admin ARGS…`.
    pub fn ctl_fleet(&self, args: &[&str]) -> Command {
        let api = self.controller.as_ref().map_or("", |c| c.api.as_str());
        let binary = workspace_binary("lazaretctl").expect("lazaretctl is built");
        let mut command = Command::new(binary);
        command
            .args(["--controller", api, "--tls-dir"])
            .arg(&self.pki_dir)
            .args(["--as", "admin"])
            .args(args)
            .env_remove("LAZARET_AGENT")
            .env_remove("LAZARET_CONTROLLER")
            .env_remove("LAZARET_TLS_DIR");
        command
    }

    /// Runs `ctl_fleet`, bounded; the output.
    pub fn run_fleet(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut command = self.ctl_fleet(args);
        let output = crate::command::run_with_timeout(&mut command, Duration::from_secs(60))?;
        Ok(Output {
            status: output.status,
            stdout: output.stdout.into_bytes(),
            stderr: output.stderr.into_bytes(),
        })
    }

    /// Waits until `agent` lists container `id` (its inventory has it).
    pub fn wait_listed(&self, agent: usize, id: &str) -> anyhow::Result<()> {
        self.agents[agent].process.wait_for(
            &format!("{id} in the inventory of {}", self.agents[agent].node),
            Duration::from_secs(60),
            || {
                self.run_ctl(agent, &["container", id])
                    .is_ok_and(|output| output.status.success())
            },
        )
    }

    /// `ctl_fleet … -o json`, which must succeed.
    pub fn fleet_json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut with_json = args.to_vec();
        with_json.extend(["-o", "json"]);
        let output = self.run_fleet(&with_json)?;
        if !output.status.success() {
            bail!(
                "lazaretctl {args:?} through the controller failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        serde_json::from_slice(&output.stdout).context("lazaretctl printed no JSON")
    }

    /// `lazaretctl --agent <agent> --tls-dir … --as admin ARGS…`, in the agent's namespace.
    pub fn ctl(&self, agent: usize, args: &[&str]) -> Command {
        let target = &self.agents[agent];
        let binary = workspace_binary("lazaretctl").expect("lazaretctl is built");
        let mut command = command_in(target.placement.netns.as_deref(), binary);
        command
            .args(["--agent", &target.api, "--tls-dir"])
            .arg(&self.pki_dir)
            .args(["--as", "admin"])
            .args(args)
            .env_remove("LAZARET_AGENT")
            .env_remove("LAZARET_TLS_DIR");
        command
    }

    /// Runs `ctl`, bounded; the output.
    pub fn run_ctl(&self, agent: usize, args: &[&str]) -> anyhow::Result<Output> {
        let mut command = self.ctl(agent, args);
        let output = crate::command::run_with_timeout(&mut command, Duration::from_secs(60))?;
        Ok(Output {
            status: output.status,
            stdout: output.stdout.into_bytes(),
            stderr: output.stderr.into_bytes(),
        })
    }

    /// `ctl … -o json`, which must succeed.
    pub fn json(&self, agent: usize, args: &[&str]) -> anyhow::Result<Value> {
        let mut with_json = args.to_vec();
        with_json.extend(["-o", "json"]);
        let output = self.run_ctl(agent, &with_json)?;
        if !output.status.success() {
            bail!(
                "lazaretctl {args:?} on {} failed: {}",
                self.agents[agent].node,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        serde_json::from_slice(&output.stdout).context("lazaretctl printed no JSON")
    }

    /// Signs the policy files in `policies` (a file or directory) as version `version` into
    /// `DIR/NAME`.
    pub fn sign(&self, name: &str, version: u64, policies: &Path) -> anyhow::Result<PathBuf> {
        self.sign_kind(
            lazaret_core::bundle::BundleKind::Policies,
            name,
            version,
            policies,
        )
    }

    /// [`Self::sign`] for files of `kind`.
    pub fn sign_kind(
        &self,
        kind: lazaret_core::bundle::BundleKind,
        name: &str,
        version: u64,
        files: &Path,
    ) -> anyhow::Result<PathBuf> {
        let key = signing::read_signing_key(&self.signing_key)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let signed = signing::sign(
            &signing::SignRequest {
                kind,
                paths: vec![files.to_path_buf()],
                version,
                created: now,
                expires: now + 86_400,
            },
            &key,
        )?;
        let path = self.dir.path().join(name);
        std::fs::write(&path, signed.to_file_bytes())?;
        Ok(path)
    }

    /// The policies bundle version `agent` enforces (from its `bundle status`), 0 for none.
    pub fn policies_version(&self, agent: usize) -> anyhow::Result<u64> {
        let status = self.json(agent, &["bundle", "status"])?;
        Ok(status["bundles"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|bundle| bundle["kind"] == "policies")
            .and_then(|bundle| bundle["version"].as_u64())
            .unwrap_or(0))
    }

    /// Waits until every agent in `agents` enforces policies `version`, and each of them sees
    /// every other one live and acking it (the acks went round).
    pub fn wait_converged(
        &self,
        agents: &[usize],
        version: u64,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let mut pending = Vec::new();
            for &agent in agents {
                let status = self.json(agent, &["bundle", "status"])?;
                let ours = status["bundles"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|bundle| bundle["kind"] == "policies" && bundle["version"] == version);
                let peers_acking = status["peers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|peer| {
                        peer["live"] == true
                            && peer["acks"]["policies"]["version"] == version
                            && agents
                                .iter()
                                .any(|other| peer["node"] == self.agents[*other].node.as_str())
                    })
                    .count();
                if !ours || peers_acking < agents.len() - 1 {
                    pending.push(format!(
                        "{} (enforces it: {ours}; peers acking: {peers_acking})",
                        self.agents[agent].node
                    ));
                }
            }
            if pending.is_empty() {
                return Ok(started.elapsed());
            }
            if Instant::now() >= deadline {
                bail!(
                    "not converged on v{version} after {timeout:?}: {}",
                    pending.join(", ")
                );
            }
            std::thread::sleep(POLL_INTERVAL.max(Duration::from_millis(200)));
        }
    }

    /// `agent`'s metric `series` (name and labels exactly as exposed), 0 when absent. Only for
    /// agents on the host's network.
    pub fn metric(&self, agent: usize, series: &str) -> anyhow::Result<f64> {
        let text = scrape_metrics(&self.agents[agent].metrics)?;
        Ok(metric_value(&text, series))
    }
}

/// A policy pausing this run's containers labelled `lazaret.fleet=<value>`.
pub fn policy(dir: &Path, containers: &crate::TestContainers, value: &str) -> PathBuf {
    let path = dir.join(format!("fleet-{value}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: fleet-{value}\nmode: enforce\n\
             match:\n  labels: {{lazaret.test: \"{}\", lazaret.fleet: \"{value}\"}}\n\
             rules: [{{expr: \"true\"}}]\nactions: [pause]\n",
            containers.run_id()
        ),
    )
    .unwrap();
    path
}

/// Starts a container owned by `node`, labelled `lazaret.fleet=<value>`.
pub fn owned(containers: &crate::TestContainers, suffix: &str, node: &str, value: &str) -> String {
    let node_label = format!("lazaret.io/node={node}");
    let fleet_label = format!("lazaret.fleet={value}");
    containers
        .run(
            suffix,
            &[
                "--label",
                &node_label,
                "--label",
                &fleet_label,
                crate::BUSYBOX_IMAGE,
                "sleep",
                "600",
            ],
        )
        .unwrap()
}

pub fn paused(containers: &crate::TestContainers, id: &str) -> bool {
    containers.field(id, "{{.State.Paused}}").unwrap() == "true"
}
