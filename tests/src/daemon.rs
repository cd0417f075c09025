//! One daemon process of our own (a [`crate::PrivateDockerd`] or [`crate::PrivateContainerd`]):
//! its child process, the directory holding its state, and its log file.
//!
//! [`DaemonProcess`] is what those daemons have in common: spawning with the output appended to
//! `DIR/<name>.log`, polling (`is_running`), a graceful stop (SIGTERM, a bounded wait, SIGKILL),
//! a crash (`kill`), waiting until it answers, the tail of the current run's log, and the
//! clean-up steps every drop runs. What differs (the command line, how to tell it is ready, what
//! to do once it is gone) stays with the owner, which also decides the clean-up order: this type
//! has no `Drop` of its own.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::command::{run_with_timeout, wait_with_deadline};
use crate::leftovers;

/// How often [`DaemonProcess::wait_until`] asks whether the daemon is ready.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Bound on the `kill` command that delivers SIGTERM.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How many lines [`DaemonProcess::log_tail`] keeps.
const LOG_TAIL_LINES: usize = 40;

/// A daemon's child process, directory and log; see the [module documentation](self).
#[derive(Debug)]
pub struct DaemonProcess {
    /// The program (`dockerd`, `containerd`): names the log file and every message.
    name: &'static str,
    dir: PathBuf,
    /// Log lines containing this are left out of [`Self::log_tail`].
    log_noise: Option<&'static str>,
    child: Option<Child>,
    /// Where the current run's output starts in the log.
    log_offset: u64,
}

impl DaemonProcess {
    /// A daemon called `name` (as in "private `name`") keeping its state and `name.log` in
    /// `dir`. Nothing runs until [`Self::spawn`].
    pub fn new(name: &'static str, dir: PathBuf) -> Self {
        Self {
            name,
            dir,
            log_noise: None,
            child: None,
            log_offset: 0,
        }
    }

    /// Leaves the log lines containing `noise` out of [`Self::log_tail`].
    pub fn hiding_log_lines_containing(mut self, noise: &'static str) -> Self {
        self.log_noise = Some(noise);
        self
    }

    /// The directory holding the daemon's state and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id while the daemon runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs `command` in the directory, stdin closed, stdout and stderr appended to the log;
    /// `description` names it in the error. Returns the process id.
    pub fn spawn(&mut self, mut command: Command, description: &str) -> anyhow::Result<u32> {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("failed to open {}", log_path.display()))?;
        self.log_offset = log.metadata().map(|metadata| metadata.len()).unwrap_or(0);
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .context("failed to duplicate the log handle")?,
            )
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("failed to spawn {description}"))?;
        let pid = child.id();
        self.child = Some(child);
        Ok(pid)
    }

    /// Whether the daemon is still alive (reaps it if it has exited on its own).
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                tracing::warn!(%status, dir = %self.dir.display(), "private {} exited on its own", self.name);
                self.child = None;
                false
            }
            Err(error) => {
                tracing::warn!(%error, "failed to poll the private {}", self.name);
                true
            }
        }
    }

    /// SIGTERM, then up to `timeout` for the daemon to exit, then SIGKILL. `signal_failed`
    /// reports a `kill` that could not run (with the pid). Returns whether a daemon was running.
    pub fn signal_and_wait(
        &mut self,
        timeout: Duration,
        signal_failed: impl FnOnce(u32, &anyhow::Error),
    ) -> anyhow::Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(false);
        };
        let started = Instant::now();
        let pid = child.id();
        let mut kill = Command::new("kill");
        kill.args(["-s", "TERM", "--", &pid.to_string()]);
        if let Err(error) = run_with_timeout(&mut kill, SIGNAL_TIMEOUT) {
            signal_failed(pid, &error);
        }
        let status = wait_with_deadline(&mut child, timeout)
            .with_context(|| format!("failed to wait for the private {}", self.name))?;
        match status {
            Some(status) => {
                tracing::info!(%status, elapsed = ?started.elapsed(), "private {} stopped", self.name)
            }
            None => {
                tracing::warn!(?timeout, "private {} ignored SIGTERM; killed", self.name)
            }
        }
        Ok(true)
    }

    /// Crash: SIGKILL right away, then reap the daemon within `reap_timeout`. Returns whether a
    /// daemon was running.
    pub fn kill(&mut self, reap_timeout: Duration) -> anyhow::Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(false);
        };
        if let Err(error) = child.kill() {
            tracing::debug!(%error, "private {} was already gone", self.name);
        }
        wait_with_deadline(&mut child, reap_timeout)
            .with_context(|| format!("failed to reap the killed private {}", self.name))?;
        Ok(true)
    }

    /// Polls until `ready` holds and returns how long that took. Fails with the log tail if the
    /// daemon exits first, or if `timeout` passes first, after running `stop` on it.
    pub fn wait_until(
        &mut self,
        mut ready: impl FnMut() -> bool,
        timeout: Duration,
        stop: impl FnOnce(&mut Self) -> anyhow::Result<()>,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            if !self.is_running() {
                bail!(
                    "private {} exited during startup; log tail:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if ready() {
                return Ok(started.elapsed());
            }
            if Instant::now() >= deadline {
                let log_tail = self.log_tail();
                if let Err(error) = stop(self) {
                    tracing::warn!(error = %format!("{error:#}"), "failed to stop a private {} that never became ready", self.name);
                }
                bail!(
                    "private {} not ready after {timeout:?}; log tail:\n{log_tail}",
                    self.name
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The last lines the current run wrote to the log (or why they cannot be read).
    pub fn log_tail(&self) -> String {
        self.read_log_tail()
            .unwrap_or_else(|error| format!("(cannot read {}.log: {error:#})", self.name))
    }

    /// Clean-up step: kills every process whose command line names the directory.
    pub fn kill_leftover_processes(&self) {
        if let Err(error) =
            leftovers::kill_processes_mentioning(&format!("{}/", self.dir.display()))
        {
            self.warn_cleanup_failed("kill leftover processes", &error);
        }
    }

    /// Clean-up step: removes the directory (unmounting what is mounted below it).
    pub fn remove_directory(&self) {
        if let Err(error) = leftovers::remove_directory(&self.dir) {
            self.warn_cleanup_failed("remove the directory", &error);
        }
    }

    /// Reports a clean-up `step` that failed; clean-up goes on with the next one.
    pub fn warn_cleanup_failed(&self, step: &str, error: &anyhow::Error) {
        tracing::warn!(dir = %self.dir.display(), step, error = %format!("{error:#}"), "private {} cleanup step failed", self.name);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    fn read_log_tail(&self) -> anyhow::Result<String> {
        let mut log = File::open(self.log_path())?;
        log.seek(SeekFrom::Start(self.log_offset))?;
        let mut raw_text = Vec::new();
        log.read_to_end(&mut raw_text)?;
        let text = String::from_utf8_lossy(&raw_text);
        let useful_lines: Vec<&str> = text
            .lines()
            .filter(|line| self.log_noise.is_none_or(|noise| !line.contains(noise)))
            .collect();
        let first_kept = useful_lines.len().saturating_sub(LOG_TAIL_LINES);
        Ok(useful_lines[first_kept..].join("\n"))
    }
}
