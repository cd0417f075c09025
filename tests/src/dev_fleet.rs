//! `lazaretctl dev up` as a child of a test: started in a directory, its `DIR/env` read back,
//! interrupted (stopping its agents and controller) when dropped. One at a time in a test
//! process: `dev up` prefers fixed ports (7400, 7443, …), and two starting at once race for them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::agent_process::workspace_binary;

/// How long `dev up` may take to write its environment, and to stop.
const DEADLINE: Duration = Duration::from_secs(60);

/// The variables `dev up` writes to `DIR/env`.
pub const ENV_KEYS: usize = 9;

/// The environment `dev up` wrote to `path` (`export KEY=value` lines).
pub fn dev_env(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Held by the one `dev up` of this process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A running `dev up`; on drop it is interrupted (Ctrl-C) and reaped.
pub struct DevUp {
    pub child: Child,
    /// Released when this fleet is gone.
    _turn: MutexGuard<'static, ()>,
}

impl DevUp {
    /// `lazaretctl dev up --agents AGENTS --dir DIR`, once its environment is written.
    pub fn start(dir: &Path, agents: usize) -> anyhow::Result<(DevUp, Vec<(String, String)>)> {
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let child = Command::new(workspace_binary("lazaretctl")?)
            .args(["dev", "up", "--agents", &agents.to_string(), "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start dev up")?;
        let mut fleet = DevUp { child, _turn: turn };
        let env_path = dir.join("env");
        let deadline = Instant::now() + DEADLINE;
        while dev_env(&env_path).len() < ENV_KEYS {
            if Instant::now() > deadline {
                bail!("dev up wrote no env");
            }
            if fleet.child.try_wait()?.is_some() {
                bail!("dev up exited early");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok((fleet, dev_env(&env_path)))
    }
}

impl Drop for DevUp {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _interrupted = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let _reaped = crate::command::wait_with_deadline(&mut self.child, DEADLINE);
        }
    }
}
