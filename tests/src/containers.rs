//! Containers made by one test, labelled so they can all be found and removed on drop.
//!
//! Every container goes through [`TestContainers::create`] or [`TestContainers::run`], which
//! name it `lzt-<run id>-<suffix>` and label it `lazaret.test=<run id>`. Dropping the guard
//! removes exactly the containers carrying its run id: never anything else on the engine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};

use crate::docker::{docker, host_args};

/// Label key on every container a test makes; the value is the guard's run id.
pub const TEST_LABEL: &str = "lazaret.test";

/// Owns the containers of one test on one engine and removes them on drop.
#[derive(Debug)]
pub struct TestContainers {
    docker_host: Option<String>,
    run_id: String,
}

impl TestContainers {
    /// A guard for the engine at `docker_host` (`None`: the machine's default engine) with a
    /// run id unique across processes and concurrent tests.
    pub fn new(docker_host: Option<&str>) -> Self {
        Self {
            docker_host: docker_host.map(str::to_owned),
            run_id: unique_run_id(),
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn docker_host(&self) -> Option<&str> {
        self.docker_host.as_deref()
    }

    /// The label to attach to anything the test makes (e.g. through bollard) so this guard
    /// removes it.
    pub fn labels(&self) -> Vec<(String, String)> {
        vec![(TEST_LABEL.to_owned(), self.run_id.clone())]
    }

    /// `lazaret.test=<run id>`, for `--label` and `--filter label=…`.
    pub fn label_selector(&self) -> String {
        format!("{TEST_LABEL}={}", self.run_id)
    }

    /// `["-H", "unix://…"]` for a private engine, empty for the machine's.
    pub fn docker_args(&self) -> Vec<String> {
        host_args(self.docker_host())
    }

    /// The name [`Self::create`] gives a container with this suffix.
    pub fn container_name(&self, name_suffix: &str) -> String {
        format!("lzt-{}-{name_suffix}", self.run_id)
    }

    /// `docker create --name lzt-<run>-<suffix> --label lazaret.test=<run> <args…>`; `args`
    /// holds the options, the image and the command. Returns the full container id.
    pub fn create(&self, name_suffix: &str, args: &[&str]) -> anyhow::Result<String> {
        self.make_container(&["create"], name_suffix, args)
    }

    /// Same as [`Self::create`] with `docker run -d`: the container is started.
    pub fn run(&self, name_suffix: &str, args: &[&str]) -> anyhow::Result<String> {
        self.make_container(&["run", "-d"], name_suffix, args)
    }

    /// `docker inspect --format TEMPLATE CONTAINER`, e.g. `{{.State.Status}}`.
    pub fn field(&self, container: &str, template: &str) -> anyhow::Result<String> {
        self.docker(&["inspect", "--format", template, container])
    }

    /// Runs any `docker` subcommand against this guard's engine; returns trimmed stdout.
    pub fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        docker(self.docker_host(), args)
    }

    /// Ids of every container (running or not) carrying this guard's label.
    pub fn list(&self) -> anyhow::Result<Vec<String>> {
        let filter = format!("label={}", self.label_selector());
        let listing = self.docker(&["ps", "-aq", "--no-trunc", "--filter", &filter])?;
        Ok(listing.lines().map(str::to_owned).collect())
    }

    /// Force-removes every container carrying this guard's label (with anonymous volumes).
    pub fn remove_all(&self) -> anyhow::Result<()> {
        let container_ids = self.list()?;
        if container_ids.is_empty() {
            return Ok(());
        }
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(container_ids.iter().map(String::as_str));
        self.docker(&args)?;
        Ok(())
    }

    fn make_container(
        &self,
        subcommand: &[&str],
        name_suffix: &str,
        args: &[&str],
    ) -> anyhow::Result<String> {
        ensure!(
            is_valid_name_suffix(name_suffix),
            "container name suffix {name_suffix:?} must be [a-zA-Z0-9_.-]+"
        );
        let name = self.container_name(name_suffix);
        let label = self.label_selector();
        let mut docker_args: Vec<&str> = subcommand.to_vec();
        docker_args.extend(["--name", &name, "--label", &label]);
        docker_args.extend(args);
        let stdout = self
            .docker(&docker_args)
            .with_context(|| format!("failed to {} container {name}", subcommand[0]))?;
        // `docker run -d` may print pull progress first; the id is the last line.
        let container_id = stdout.lines().last().unwrap_or_default().trim().to_owned();
        if !is_full_container_id(&container_id) {
            bail!("docker printed {stdout:?} instead of a container id for {name}");
        }
        Ok(container_id)
    }
}

impl Drop for TestContainers {
    fn drop(&mut self) {
        if let Err(error) = self.remove_all() {
            tracing::warn!(run_id = %self.run_id, error = %format!("{error:#}"), "failed to remove test containers");
        }
    }
}

/// `<pid>-<counter>-<time>`: unique across concurrent tests in one process (counter) and
/// across processes (pid), and unlikely to repeat across runs (time).
fn unique_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let sequence = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("{}-{sequence}-{:x}", std::process::id(), nanos % (1 << 40))
}

fn is_valid_name_suffix(name_suffix: &str) -> bool {
    !name_suffix.is_empty()
        && name_suffix
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "_.-".contains(character))
}

fn is_full_container_id(candidate: &str) -> bool {
    candidate.len() == 64
        && candidate
            .chars()
            .all(|character| character.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_unique_and_usable_in_names() {
        let first = TestContainers::new(None);
        let second = TestContainers::new(None);
        assert_ne!(first.run_id(), second.run_id());
        assert!(is_valid_name_suffix(first.run_id()));
        assert_eq!(
            first.labels(),
            vec![(TEST_LABEL.to_owned(), first.run_id().to_owned())]
        );
        // Never touch an engine from a unit test: forget the guards instead of dropping them.
        std::mem::forget(first);
        std::mem::forget(second);
    }

    #[test]
    fn suffixes_are_checked() {
        assert!(is_valid_name_suffix("sleeper-1"));
        assert!(!is_valid_name_suffix(""));
        assert!(!is_valid_name_suffix("a b"));
        assert!(!is_valid_name_suffix("a/b"));
    }
}
