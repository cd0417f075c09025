//! Running external tools (`docker`, `ip`, `tar`, `umount`, …) with a deadline.
//!
//! Every command the harness runs goes through [`run_with_timeout`], so a hung engine or a
//! stuck tool fails the test with a clear error instead of hanging it. This module must never
//! wait without a bound, and never leave a timed-out child running.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How often a running child is polled for exit.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long to wait for the output pipes once the child has exited. A grandchild that inherited
/// the pipes could otherwise keep them open forever.
const PIPE_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What a finished command printed, and how it ended.
#[derive(Debug)]
pub struct CommandOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs `command` to completion with stdin closed, killing it after `timeout`. A non-zero exit
/// is *not* an error here (callers such as `docker image inspect` read it as an answer); see [`run_checked`].
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> anyhow::Result<CommandOutput> {
    let description = describe(command);
    if command.get_program().is_empty() {
        bail!("empty program name");
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("failed to spawn `{description}`"))?;
    let stdout_reader = spawn_pipe_reader(child.stdout.take());
    let stderr_reader = spawn_pipe_reader(child.stderr.take());

    let status = wait_with_deadline(&mut child, timeout)
        .with_context(|| format!("failed to wait for `{description}`"))?;
    let Some(status) = status else {
        let stderr = receive_pipe(&stderr_reader);
        bail!(
            "`{description}` timed out after {timeout:?}; stderr: {}",
            stderr.trim()
        );
    };
    Ok(CommandOutput {
        status,
        stdout: receive_pipe(&stdout_reader),
        stderr: receive_pipe(&stderr_reader),
    })
}

/// Runs `command` and returns its stdout; a non-zero exit is an error carrying stderr.
pub fn run_checked(command: &mut Command, timeout: Duration) -> anyhow::Result<String> {
    let description = describe(command);
    let output = run_with_timeout(command, timeout)?;
    if !output.success() {
        bail!(
            "`{description}` failed ({}): {}",
            output.status,
            output.stderr.trim()
        );
    }
    Ok(output.stdout)
}

/// Waits for `child` until `timeout`; on expiry kills it, reaps it and returns `None`.
pub fn wait_with_deadline(
    child: &mut Child,
    timeout: Duration,
) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            // The child may exit between the check and the kill; both outcomes are fine.
            if let Err(error) = child.kill() {
                tracing::debug!(%error, "kill after timeout failed");
            }
            child.wait()?;
            return Ok(None);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// A short, human-readable rendering of a command line for error messages.
pub fn describe(command: &Command) -> String {
    let mut parts = vec![command.get_program().to_string_lossy().into_owned()];
    parts.extend(
        command
            .get_args()
            .map(|argument| argument.to_string_lossy().into_owned()),
    );
    parts.join(" ")
}

fn spawn_pipe_reader<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe
            && let Err(error) = pipe.read_to_end(&mut text)
        {
            tracing::debug!(%error, "reading a child's pipe failed");
        }
        // The receiver may be gone if the caller stopped waiting; nothing to do then.
        sender
            .send(String::from_utf8_lossy(&text).into_owned())
            .ok();
    });
    receiver
}

fn receive_pipe(receiver: &mpsc::Receiver<String>) -> String {
    receiver
        .recv_timeout(PIPE_DRAIN_TIMEOUT)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_and_status() {
        let output = run_with_timeout(
            Command::new("sh").args(["-c", "echo hi; exit 3"]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(output.stdout, "hi\n");
        assert_eq!(output.status.code(), Some(3));
    }

    #[test]
    fn kills_a_child_that_overruns() {
        let started = Instant::now();
        let error = run_with_timeout(Command::new("sleep").arg("30"), Duration::from_millis(200))
            .unwrap_err();
        assert!(error.to_string().contains("timed out"), "{error:#}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn checked_failure_carries_stderr() {
        let error = run_checked(
            Command::new("sh").args(["-c", "echo boom >&2; exit 1"]),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(error.to_string().contains("boom"), "{error:#}");
    }
}
