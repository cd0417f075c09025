//! The controller binary (`lazaret-controller --config FILE`) as a child process of a test, for a
//! [`crate::fleet::TestFleet`]: its configuration, state and log in a directory of the test's;
//! SIGKILLed on drop, restartable on the same state.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::agent_process::workspace_binary;
use crate::daemon::{DaemonProcess, POLL_INTERVAL};

/// Bound on reaping a killed controller.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// See the module docs.
pub struct ControllerProcess {
    daemon: DaemonProcess,
    config: std::path::PathBuf,
    /// Where `FleetService` listens.
    pub api: String,
}

impl ControllerProcess {
    /// Writes `config` to `DIR/controller.toml` and starts the controller, whose API is `api`.
    pub fn start(dir: &Path, config: &str, api: &str) -> anyhow::Result<ControllerProcess> {
        let path = dir.join("controller.toml");
        std::fs::write(&path, config)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut controller = ControllerProcess {
            daemon: DaemonProcess::new("lazaret-controller", dir.to_path_buf()),
            config: path,
            api: api.to_string(),
        };
        controller.spawn()?;
        Ok(controller)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = std::process::Command::new(workspace_binary("lazaret-controller")?);
        command.arg("--config").arg(&self.config).env(
            "RUST_LOG",
            "lazaret_controller=debug,lazaret_fleet=info,info",
        );
        self.daemon.spawn(command, "lazaret-controller").map(drop)
    }

    /// Crash: SIGKILL, reaped.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.daemon.kill(REAP_TIMEOUT).map(drop)
    }

    /// Starts it again on the same state (after [`Self::kill`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn()
    }

    /// Every run's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.daemon.dir().join("lazaret-controller.log"))
            .unwrap_or_default()
    }

    /// Polls `done` until it holds; after `timeout` fails with `what` and the log's tail.
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
                    "{what}: not after {timeout:?}; controller log tail:\n{}",
                    self.daemon.log_tail()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Ok(())
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        if let Err(error) = self.kill() {
            tracing::warn!(error = %format!("{error:#}"), "cannot kill the controller process");
        }
    }
}
