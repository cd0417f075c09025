//! A private containerd for the containerd backend's tests, isolated from everything else.
//!
//! All its state lives in one short directory under `/tmp` (`lzt-c-XXXX`: root, state, gRPC
//! and ttrpc sockets, config, log). It serves no debug or metrics listener and runs without the
//! CRI plugin (which would start CNI and a stream server) and without the `opt` plugin (which
//! writes to `/opt/containerd`). Containers are made with `ctr`; images come from the machine's
//! Docker engine (`docker save` → `ctr image import`), since no registry is reachable.
//!
//! What containerd 1.6 puts outside the directory, and how drop removes it: shim sockets in the
//! machine-wide `/run/containerd/s` (named after our socket path), runc state in
//! `/run/containerd/runc/<namespace>` and cgroups `/<namespace>/<id>` in every hierarchy. Use
//! [`PrivateContainerd::unique_namespace`] names, so those per-namespace directories are ours
//! alone and can be removed too. This module must never touch Docker's containerd.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::command::{CommandOutput, run_checked, run_with_timeout};
use crate::daemon::DaemonProcess;
use crate::docker::docker;
use crate::image::{BUSYBOX_IMAGE, ensure_busybox_image};
use crate::leftovers::{self, RuncContainer};

/// Upper bound for containerd to answer `ctr version` (~0.1 s here when idle).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long containerd gets after SIGTERM before SIGKILL (it stops in well under a second;
/// shims and containers keep running, as in production).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on every `ctr` call.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(60);
/// Measured: overlayfs works on this machine's `/tmp` (ext4), so the default snapshotter is
/// used (`native` would copy the image for every container).
pub const SNAPSHOTTER: &str = "overlayfs";
/// How `ctr image import` names [`BUSYBOX_IMAGE`] (references are normalised to docker.io).
pub const BUSYBOX_REFERENCE: &str = "docker.io/lazaret-test/busybox:latest";
/// What every container made by [`PrivateContainerd::run`] and `create` runs. As PID 1 it
/// ignores SIGTERM, so a graceful stop has to escalate to SIGKILL.
pub const SLEEPER_COMMAND: [&str; 2] = ["sleep", "3600"];

/// Where containerd 1.6's runc shim keeps container state, whichever containerd started it.
const RUNC_STATE_ROOT: &str = "/run/containerd/runc";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// A containerd of our own; emptied, stopped and deleted on drop.
#[derive(Debug)]
pub struct PrivateContainerd {
    /// `dir/containerd.sock`.
    socket_path: PathBuf,
    /// The containerd process, its directory and `containerd.log`.
    containerd: DaemonProcess,
}

impl PrivateContainerd {
    /// Starts a fresh containerd and waits until it answers (bounded by [`START_TIMEOUT`]).
    pub fn start() -> anyhow::Result<Self> {
        // Short on purpose: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("lzt-c-")
            .tempdir_in("/tmp")
            .context("failed to create the private containerd directory")?
            .keep();
        // From here on, Drop cleans up whatever happens.
        let mut containerd = Self {
            socket_path: dir.join("containerd.sock"),
            containerd: DaemonProcess::new("containerd", dir),
        };
        fs::write(containerd.config_path(), containerd.config())
            .context("failed to write the private containerd config")?;
        containerd.spawn_and_wait()?;
        Ok(containerd)
    }

    /// The gRPC socket (`DIR/containerd.sock`).
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The socket as the string `ContainerdRuntime::new` takes.
    pub fn socket(&self) -> String {
        self.socket_path.display().to_string()
    }

    /// The directory holding all of containerd's state, including `containerd.log`.
    pub fn dir(&self) -> &Path {
        self.containerd.dir()
    }

    /// The containerd process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.containerd.pid()
    }

    /// A namespace name no other test or containerd uses: `lzt-<dir suffix>-<suffix>`.
    pub fn unique_namespace(&self, suffix: &str) -> String {
        let dir_name = self.dir().file_name().unwrap_or_default().to_string_lossy();
        format!("lzt-{}-{suffix}", dir_name.trim_start_matches("lzt-c-"))
    }

    /// Whether containerd is still alive (reaps it if it has exited on its own).
    pub fn is_running(&mut self) -> bool {
        self.containerd.is_running()
    }

    /// `ctr --address SOCK -n NAMESPACE <args>`; returns stdout, fails with ctr's stderr.
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> anyhow::Result<String> {
        run_checked(&mut self.ctr_command(namespace, args), CTR_TIMEOUT)
    }

    /// Like [`Self::ctr`], for callers that read a failure as an answer.
    pub fn ctr_output(&self, namespace: &str, args: &[&str]) -> anyhow::Result<CommandOutput> {
        run_with_timeout(&mut self.ctr_command(namespace, args), CTR_TIMEOUT)
    }

    /// Imports the busybox test image into `namespace` as [`BUSYBOX_REFERENCE`], from the
    /// machine's Docker engine (which builds it if needed).
    pub fn import_busybox(&self, namespace: &str) -> anyhow::Result<()> {
        let archive = self.dir().join("busybox.tar");
        if !archive.exists() {
            ensure_busybox_image(None)?;
            let archive_path = archive.to_str().context("directory path is not utf-8")?;
            docker(None, &["save", "-o", archive_path, BUSYBOX_IMAGE])
                .context("failed to save the busybox image from the machine's engine")?;
        }
        let archive_path = archive.to_str().context("directory path is not utf-8")?;
        self.ctr(namespace, &["image", "import", archive_path])
            .with_context(|| format!("failed to import busybox into namespace {namespace}"))?;
        Ok(())
    }

    /// `ctr run -d`: a started container `id` running [`SLEEPER_COMMAND`] from the busybox
    /// image, with `labels` and `extra_args` (e.g. `--cap-add CAP_SYS_ADMIN`, `--with-ns …`).
    pub fn run(
        &self,
        namespace: &str,
        id: &str,
        labels: &[(&str, &str)],
        extra_args: &[&str],
    ) -> anyhow::Result<()> {
        self.make_container(
            namespace,
            &["run", "-d", "--null-io"],
            id,
            labels,
            extra_args,
        )
    }

    /// `ctr container create`: like [`Self::run`] without a task.
    pub fn create(
        &self,
        namespace: &str,
        id: &str,
        labels: &[(&str, &str)],
        extra_args: &[&str],
    ) -> anyhow::Result<()> {
        self.make_container(namespace, &["container", "create"], id, labels, extra_args)
    }

    /// Starts the task of a container made by [`Self::create`].
    pub fn start_task(&self, namespace: &str, id: &str) -> anyhow::Result<()> {
        self.ctr(namespace, &["task", "start", "-d", "--null-io", id])?;
        Ok(())
    }

    /// Kills and deletes the container's task (if any), then the container.
    pub fn remove(&self, namespace: &str, id: &str) -> anyhow::Result<()> {
        let task = self.ctr_output(namespace, &["task", "rm", "-f", id])?;
        if !task.success() && !task.stderr.contains("not found") {
            bail!("failed to delete the task of {id}: {}", task.stderr.trim());
        }
        self.ctr(namespace, &["container", "rm", id])?;
        Ok(())
    }

    /// Every namespace this containerd has.
    pub fn namespaces(&self) -> anyhow::Result<Vec<String>> {
        let listing = run_checked(
            Command::new("ctr")
                .arg("--address")
                .arg(&self.socket_path)
                .args(["namespaces", "ls", "-q"]),
            CTR_TIMEOUT,
        )?;
        Ok(listing.lines().map(str::to_owned).collect())
    }

    /// Graceful shutdown: SIGTERM, up to [`STOP_TIMEOUT`], then SIGKILL. Shims and containers
    /// keep running (containerd reattaches to them on [`Self::start_again`]).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        stop_gracefully(&mut self.containerd, &self.socket_path)
    }

    /// Restarts containerd on the same directory and socket (stopping it first if it runs).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            self.stop()?;
        }
        self.spawn_and_wait()
    }

    fn config_path(&self) -> PathBuf {
        self.dir().join("config.toml")
    }

    fn config(&self) -> String {
        let dir = self.dir().display();
        format!(
            r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt"]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
"#
        )
    }

    fn ctr_command(&self, namespace: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(&self.socket_path)
            .args(["--namespace", namespace])
            .args(args);
        command
    }

    fn make_container(
        &self,
        namespace: &str,
        subcommand: &[&str],
        id: &str,
        labels: &[(&str, &str)],
        extra_args: &[&str],
    ) -> anyhow::Result<()> {
        let mut args: Vec<String> = subcommand.iter().map(|arg| arg.to_string()).collect();
        args.extend(["--snapshotter".to_owned(), SNAPSHOTTER.to_owned()]);
        for (key, value) in labels {
            args.extend(["--label".to_owned(), format!("{key}={value}")]);
        }
        args.extend(extra_args.iter().map(|arg| arg.to_string()));
        args.extend([BUSYBOX_REFERENCE.to_owned(), id.to_owned()]);
        args.extend(SLEEPER_COMMAND.iter().map(|arg| arg.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ctr(namespace, &args)
            .with_context(|| format!("failed to make container {id} in {namespace}"))?;
        Ok(())
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        let socket_path = &self.socket_path;
        let elapsed = self.containerd.wait_until(
            || socket_path.exists() && answers(socket_path),
            START_TIMEOUT,
            |containerd| stop_gracefully(containerd, socket_path),
        )?;
        tracing::info!(?elapsed, socket = %self.socket(), "private containerd ready");
        Ok(())
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new("containerd");
        command.arg("--config").arg(self.config_path());
        let pid = self.containerd.spawn(command, "containerd")?;
        tracing::info!(pid, dir = %self.dir().display(), "private containerd spawned");
        Ok(())
    }

    /// Deletes every task and container of a running containerd, namespace by namespace.
    fn remove_all_containers(&self) -> anyhow::Result<()> {
        for namespace in self.namespaces()? {
            let listing = self.ctr(&namespace, &["container", "ls", "-q"])?;
            for id in listing.lines().filter(|line| !line.is_empty()) {
                self.remove(&namespace, id)?;
            }
        }
        Ok(())
    }

    /// The containers this containerd ever gave a task, from its task bundles on disk (they
    /// outlive a crash): exactly the runc state and shim sockets that may be left outside.
    fn bundles(&self) -> Vec<RuncContainer> {
        let task_state = self.dir().join("state/io.containerd.runtime.v2.task");
        let Ok(namespaces) = fs::read_dir(task_state) else {
            return Vec::new();
        };
        let mut bundles = Vec::new();
        for namespace in namespaces.flatten() {
            let Ok(containers) = fs::read_dir(namespace.path()) else {
                continue;
            };
            for container in containers.flatten() {
                bundles.push(RuncContainer {
                    namespace: namespace.file_name().to_string_lossy().into_owned(),
                    id: container.file_name().to_string_lossy().into_owned(),
                });
            }
        }
        bundles
    }

    /// Last resort after containerd is gone: shims, runc containers, shim sockets, our
    /// namespaces' runc and cgroup directories, mounts, files. Each step runs even if an
    /// earlier one failed.
    fn remove_leftovers(&self) {
        let containerd = &self.containerd;
        let bundles = self.bundles();
        // Shims and containerd name the directory in their command lines; nothing else does.
        containerd.kill_leftover_processes();
        for bundle in &bundles {
            let runc_root = Path::new(RUNC_STATE_ROOT).join(&bundle.namespace);
            if runc_root.join(&bundle.id).exists() {
                let deleted = run_checked(
                    Command::new("runc")
                        .arg("--root")
                        .arg(&runc_root)
                        .args(["delete", "-f", &bundle.id]),
                    CTR_TIMEOUT,
                );
                if let Err(error) = deleted {
                    containerd.warn_cleanup_failed("delete a runc container", &error);
                }
            }
            if let Err(error) = leftovers::remove_shim_socket(&self.socket_path, bundle) {
                containerd.warn_cleanup_failed("remove a shim socket", &error);
            }
        }
        // containerd keeps one directory per namespace that ever had a task, even after the
        // tasks are gone: those are the namespaces with runc and cgroup directories outside.
        let own_prefix = self.unique_namespace("");
        let task_roots = fs::read_dir(self.dir().join("root/io.containerd.runtime.v2.task"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut own_namespaces: Vec<&str> = bundles
            .iter()
            .map(|bundle| bundle.namespace.as_str())
            .chain(task_roots.iter().map(String::as_str))
            .filter(|namespace| namespace.starts_with(&own_prefix))
            .collect();
        own_namespaces.sort_unstable();
        own_namespaces.dedup();
        for namespace in own_namespaces {
            remove_empty_directory(&Path::new(RUNC_STATE_ROOT).join(namespace));
            if let Ok(hierarchies) = fs::read_dir(CGROUP_ROOT) {
                for hierarchy in hierarchies.flatten() {
                    remove_empty_directory(&hierarchy.path().join(namespace));
                }
            }
        }
        containerd.remove_directory();
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        if self.is_running() {
            if answers(&self.socket_path)
                && let Err(error) = self.remove_all_containers()
            {
                tracing::warn!(error = %format!("{error:#}"), "failed to remove the private containerd's containers");
            }
            if let Err(error) = self.stop() {
                tracing::warn!(error = %format!("{error:#}"), "failed to stop the private containerd");
            }
        }
        self.remove_leftovers();
    }
}

/// `rmdir`: only an empty directory (or cgroup without tasks) goes; anything else stays.
fn remove_empty_directory(directory: &Path) {
    match fs::remove_dir(directory) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(directory = %directory.display(), %error, "left a directory that is not empty");
        }
    }
}

/// [`PrivateContainerd::stop`] on the two fields it needs, so that
/// [`DaemonProcess::wait_until`] can run it too.
fn stop_gracefully(containerd: &mut DaemonProcess, socket_path: &Path) -> anyhow::Result<()> {
    let was_running = containerd.signal_and_wait(STOP_TIMEOUT, |_pid, error| {
        tracing::warn!(error = %format!("{error:#}"), "failed to signal the private containerd");
    })?;
    if was_running && socket_path.exists() {
        fs::remove_file(socket_path).context("failed to remove the stale socket")?;
    }
    Ok(())
}

/// Whether the containerd listening on `socket_path` answers `ctr version`.
fn answers(socket_path: &Path) -> bool {
    let mut command = Command::new("ctr");
    command.arg("--address").arg(socket_path).arg("version");
    run_with_timeout(&mut command, VERSION_TIMEOUT).is_ok_and(|output| output.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_namespaces_are_valid_containerd_identifiers() {
        let containerd = PrivateContainerd {
            socket_path: PathBuf::from("/tmp/lzt-c-Ab12/containerd.sock"),
            containerd: DaemonProcess::new("containerd", PathBuf::from("/tmp/lzt-c-Ab12")),
        };
        assert_eq!(containerd.unique_namespace("pods"), "lzt-Ab12-pods");
        assert!(containerd.config().contains("io.containerd.grpc.v1.cri"));
        // Never touch the machine from a unit test: the directory does not exist anyway.
        std::mem::forget(containerd);
    }
}
