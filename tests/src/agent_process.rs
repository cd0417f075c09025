//! The agent binary (`lazaret-agent run`) as a child process of a test: for what only a real
//! process shows (a `kill -9` mid-flight, a restart on the same state directory, flags and
//! configuration files as an operator writes them).
//!
//! The binary is the one `cargo test --workspace` builds next to the test executables
//! ([`workspace_binary`]). The process keeps its configuration, state and log in a directory of
//! the test's; it is SIGKILLed on drop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lazaret_agent::store::{Durability, Store};
use lazaret_core::audit::AuditRecord;

use crate::daemon::{DaemonProcess, POLL_INTERVAL};
use crate::netns::command_in;

/// Bound on reaping a killed agent.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// A binary of this workspace, built by `cargo test --workspace` into the target directory that
/// holds the running test executable (`target/<profile>/deps/…` → `target/<profile>/NAME`).
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot tell where the test executable is")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable is not in target/<profile>/deps")?;
    let binary = profile_dir.join(name);
    if !binary.is_file() {
        bail!(
            "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p {name}` \
             first)",
            binary.display()
        );
    }
    Ok(binary)
}

/// `lazaret-agent run` as a child process; see the module docs.
pub struct AgentProcess {
    daemon: DaemonProcess,
    args: Vec<String>,
    /// Run inside this network namespace (`nsenter --net=…`), when set.
    netns: Option<PathBuf>,
    /// A program (and its arguments) that execs the agent, e.g. `setpriv …`; empty: none.
    wrapper: Vec<String>,
    /// Another build of the agent than this workspace's (the previous release's), when set.
    binary: Option<PathBuf>,
}

impl AgentProcess {
    /// Writes `config` (TOML) to `DIR/agent.toml` and runs
    /// `lazaret-agent --config DIR/agent.toml run --state-dir DIR/state --policy-dir POLICIES`
    /// with debug logs of the agent's own modules into `DIR/lazaret-agent.log`.
    pub fn start(dir: &Path, config: &str, policies: &Path) -> anyhow::Result<AgentProcess> {
        let policies = ["--policy-dir".to_string(), policies.display().to_string()];
        AgentProcess::start_with(dir, config, &policies, None)
    }

    /// Like [`Self::start`], with `extra` arguments after `run` instead of a policy directory,
    /// and inside the network namespace at `netns` when given.
    pub fn start_with(
        dir: &Path,
        config: &str,
        extra: &[String],
        netns: Option<PathBuf>,
    ) -> anyhow::Result<AgentProcess> {
        AgentProcess::launch(dir, config, extra, netns, Vec::new(), None)
    }

    /// [`Self::start_with`], running `binary` (another build of the agent) when given.
    pub fn start_built(
        dir: &Path,
        config: &str,
        extra: &[String],
        netns: Option<PathBuf>,
        binary: Option<PathBuf>,
    ) -> anyhow::Result<AgentProcess> {
        AgentProcess::launch(dir, config, extra, netns, Vec::new(), binary)
    }

    /// Like [`Self::start`], executed by `wrapper` (a program and its arguments that execs
    /// the agent's command line given after them, as `setpriv … --` does).
    pub fn start_wrapped(
        dir: &Path,
        config: &str,
        policies: &Path,
        wrapper: &[String],
    ) -> anyhow::Result<AgentProcess> {
        let policies = ["--policy-dir".to_string(), policies.display().to_string()];
        AgentProcess::launch(dir, config, &policies, None, wrapper.to_vec(), None)
    }

    fn launch(
        dir: &Path,
        config: &str,
        extra: &[String],
        netns: Option<PathBuf>,
        wrapper: Vec<String>,
        binary: Option<PathBuf>,
    ) -> anyhow::Result<AgentProcess> {
        let config_path = dir.join("agent.toml");
        std::fs::write(&config_path, config)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let path = |path: &Path| path.display().to_string();
        let mut args = vec![
            "--config".into(),
            path(&config_path),
            "--log-level".into(),
            "lazaret_agent=debug,info".into(),
            "run".into(),
            "--state-dir".into(),
            path(&dir.join("state")),
        ];
        args.extend(extra.iter().cloned());
        let mut agent = AgentProcess {
            daemon: DaemonProcess::new("lazaret-agent", dir.to_path_buf()),
            args,
            netns,
            wrapper,
            binary,
        };
        agent.spawn()?;
        Ok(agent)
    }

    /// The agent's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Whether the agent process is still alive (reaped when it is not).
    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    /// The state directory (sled store) the agent runs on.
    pub fn state_dir(&self) -> PathBuf {
        self.daemon.dir().join("state")
    }

    /// Crash: SIGKILL, reaped.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.daemon.kill(REAP_TIMEOUT).map(drop)
    }

    /// Starts the agent again with the same arguments (after [`Self::kill`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn()
    }

    /// Polls `done` until it holds; after `timeout` fails with `what` and the agent's log tail.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !done() {
            if Instant::now() >= deadline {
                bail!(
                    "{what}: not after {timeout:?}; agent log tail:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Ok(())
    }

    /// The audit trail in the state directory, after checking its chain verifies. The agent must
    /// not be running (the store is opened here).
    pub fn verified_audit(&self) -> anyhow::Result<Vec<AuditRecord>> {
        let store = Store::open(&self.state_dir(), Durability::Process)?;
        store
            .verify_audit(None)?
            .map_err(|broken| anyhow::anyhow!("the audit chain does not verify: {broken:?}"))?;
        Ok(store.audit_records(1, usize::MAX)?)
    }

    /// The current run's last log lines, for failure messages.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    /// The log of every run so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.daemon.dir().join("lazaret-agent.log")).unwrap_or_default()
    }

    /// Runs `binary` instead of this workspace's agent from the next [`Self::restart`] on (an
    /// upgrade or a downgrade in place); `None`: this workspace's again.
    pub fn use_binary(&mut self, binary: Option<PathBuf>) {
        self.binary = binary;
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let binary = match &self.binary {
            Some(binary) => binary.clone(),
            None => workspace_binary("lazaret-agent")?,
        };
        let mut command = match self.wrapper.split_first() {
            Some((program, arguments)) => {
                let mut command = command_in(self.netns.as_deref(), program);
                command.args(arguments).arg(binary);
                command
            }
            None => command_in(self.netns.as_deref(), binary),
        };
        command.args(&self.args);
        self.daemon.spawn(command, "lazaret-agent run").map(drop)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Err(error) = self.kill() {
            tracing::warn!(error = %format!("{error:#}"), "cannot kill the agent process");
        }
    }
}

/// Whether `audit` holds a record on `target` with `action` whose outcome contains `outcome`.
pub fn has_audit_record(audit: &[AuditRecord], target: &str, action: &str, outcome: &str) -> bool {
    audit.iter().any(|record| {
        record.target == target && record.action == action && record.outcome.contains(outcome)
    })
}

/// One line per record (`target action outcome`), for failure messages.
pub fn describe_audit(audit: &[AuditRecord]) -> String {
    audit
        .iter()
        .map(|record| format!("{} {} {}", record.target, record.action, record.outcome))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Prometheus text an agent serves at `http://ADDRESS/metrics` (host network only).
pub fn scrape_metrics(address: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)
        .with_context(|| format!("cannot reach the metrics endpoint at {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// The value of the series `series` (name and labels exactly as exposed) in `text`; 0 if absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}
