//! The `docker` CLI, pointed at either the machine's engine or a private one.
//!
//! A "docker host" is `None` for the machine's default engine (whatever the CLI picks, usually
//! `/var/run/docker.sock`) or `Some(path)` for a unix socket; `unix://…` and `tcp://…` strings
//! are accepted as they are. Every call is bounded by a timeout so a wedged engine fails a test
//! instead of hanging it.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::command::{self, CommandOutput};

/// Generous enough for `docker import` of a small image on a loaded 2-core machine.
pub const DOCKER_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The `-H` value for `docker_host`, or `None` for the machine's default engine.
pub fn host_url(docker_host: Option<&str>) -> Option<String> {
    let host = docker_host?;
    if host.contains("://") {
        return Some(host.to_owned());
    }
    Some(format!("unix://{host}"))
}

/// `["-H", url]` for a specific engine, empty for the default one.
pub fn host_args(docker_host: Option<&str>) -> Vec<String> {
    match host_url(docker_host) {
        Some(url) => vec!["-H".to_owned(), url],
        None => Vec::new(),
    }
}

/// A `docker` command already pointed at `docker_host`; add the subcommand and arguments.
pub fn docker_command(docker_host: Option<&str>) -> Command {
    let mut command = Command::new("docker");
    command.args(host_args(docker_host));
    command
}

/// Runs `docker <args>` against `docker_host` and returns its trimmed stdout; a non-zero exit
/// is an error that carries docker's stderr.
pub fn docker(docker_host: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
    let mut command = docker_command(docker_host);
    command.args(args);
    let stdout = command::run_checked(&mut command, DOCKER_COMMAND_TIMEOUT)?;
    Ok(stdout.trim().to_owned())
}

/// Runs `docker <args>` and returns how it ended, for callers that read a failure as an answer.
pub fn docker_output(docker_host: Option<&str>, args: &[&str]) -> anyhow::Result<CommandOutput> {
    let mut command = docker_command(docker_host);
    command.args(args);
    command::run_with_timeout(&mut command, DOCKER_COMMAND_TIMEOUT)
}

/// Whether the engine at `docker_host` answers `docker info` within `timeout`.
pub fn engine_answers(docker_host: Option<&str>, timeout: Duration) -> bool {
    let mut command = docker_command(docker_host);
    command.args(["info", "--format", "{{.ID}}"]);
    command::run_with_timeout(&mut command, timeout).is_ok_and(|output| output.success())
}

/// Whether a container with this id or name exists on `docker_host`.
pub fn container_exists(docker_host: Option<&str>, container: &str) -> anyhow::Result<bool> {
    let output = docker_output(
        docker_host,
        &["container", "inspect", "--format", "{{.Id}}", container],
    )
    .with_context(|| format!("failed to inspect container {container}"))?;
    if output.success() {
        return Ok(true);
    }
    if is_not_found(&output.stderr) {
        return Ok(false);
    }
    anyhow::bail!(
        "failed to inspect container {container}: {}",
        output.stderr.trim()
    )
}

/// Whether docker's stderr says the object does not exist (as opposed to any other failure).
pub fn is_not_found(stderr: &str) -> bool {
    stderr.to_ascii_lowercase().contains("no such")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_path_becomes_a_unix_url() {
        assert_eq!(
            host_url(Some("/tmp/x/docker.sock")).as_deref(),
            Some("unix:///tmp/x/docker.sock")
        );
        assert_eq!(
            host_url(Some("unix:///tmp/x/docker.sock")).as_deref(),
            Some("unix:///tmp/x/docker.sock")
        );
        assert_eq!(host_url(None), None);
        assert!(host_args(None).is_empty());
    }
}
