//! The agent binary (`lazaret-agent run`) as a child process of a test: for what only a real
//! process shows (a `kill -9` mid-flight, a restart on the same state directory, flags and
//! configuration files as an operator writes them).
//!
//! The binary is the one `cargo test --workspace` builds next to the test executables
//! ([`workspace_binary`]). The process keeps its configuration, state and log in a directory of
//! the test's; it is SIGKILLed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::daemon::DaemonProcess;

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
}

impl AgentProcess {
    /// Writes `config` (TOML) to `DIR/agent.toml` and runs
    /// `lazaret-agent --config DIR/agent.toml run --state-dir DIR/state --policy-dir POLICIES`
    /// with debug logs of the agent's own modules into `DIR/lazaret-agent.log`.
    pub fn start(dir: &Path, config: &str, policies: &Path) -> anyhow::Result<AgentProcess> {
        let config_path = dir.join("agent.toml");
        std::fs::write(&config_path, config)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let path = |path: &Path| path.display().to_string();
        let args = vec![
            "--config".into(),
            path(&config_path),
            "--log-level".into(),
            "lazaret_agent=debug,info".into(),
            "run".into(),
            "--state-dir".into(),
            path(&dir.join("state")),
            "--policy-dir".into(),
            path(policies),
        ];
        let mut agent = AgentProcess {
            daemon: DaemonProcess::new("lazaret-agent", dir.to_path_buf()),
            args,
        };
        agent.spawn()?;
        Ok(agent)
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

    /// The current run's last log lines, for failure messages.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    /// The log of every run so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.daemon.dir().join("lazaret-agent.log")).unwrap_or_default()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(workspace_binary("lazaret-agent")?);
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
