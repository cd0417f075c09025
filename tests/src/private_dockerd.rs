//! A private Docker engine for fault tests (restart, crash, outage), isolated from the machine's.
//!
//! The engine keeps all its state in one short directory under `/tmp` (socket, data root, exec
//! root with its own managed containerd, pid file, log) and runs in its own network namespace.
//! It must never disturb the machine's engine:
//! - `--bridge none` in the host's namespace would delete the machine's `docker0` bridge, so
//!   dockerd is started with `nsenter --net=…` inside a [`NetNs`] it owns (`ip netns exec` does
//!   not work: it remounts `/sys` and dockerd fails with "Devices cgroup isn't mounted");
//! - `/etc/docker/daemon.json` belongs to the machine's engine (and sets `data-root`, which
//!   would clash with our flag), so dockerd reads an empty config file of its own;
//! - `--iptables=false --ip-masq=false` keep it off the host's firewall.
//!
//! With no system containerd (`/run/containerd/containerd.sock`), dockerd starts its own
//! containerd under the exec root, so the default `moby` namespace is private. If a system
//! containerd exists, dockerd would share it, so unique containerd namespaces are used instead.
//!
//! Known sharing that cannot be avoided with 20.10: `/etc/docker/key.json` (so `docker info`
//! reports the *same engine ID* as the machine's engine), the `/docker` cgroup parent, and
//! containerd's shim socket directory `/run/containerd/s` (names are unique per containerd).

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::daemon::{self, DaemonProcess};
use crate::docker::{docker, engine_answers};
use crate::leftovers;
use crate::netns::NetNs;

/// Upper bound for dockerd to answer `docker info` (it takes ~0.3 s when idle here, ~10 s when
/// it must stop containers left running by a crash).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dockerd gets after SIGTERM before SIGKILL. Running containers get their own stop
/// timeout (10 s unless created with `--stop-timeout`) during that time.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

const SYSTEM_CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
const DEFAULT_CONTAINERD_NAMESPACE: &str = "moby";
const INFO_TIMEOUT: Duration = Duration::from_secs(5);
const CONTAINERD_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A dockerd of our own; stopped, emptied and deleted on drop.
#[derive(Debug)]
pub struct PrivateDockerd {
    /// `dir/docker.sock`.
    socket_path: PathBuf,
    netns: NetNs,
    /// Set when a system containerd is shared: unique names instead of `moby`.
    unique_containerd_namespace: Option<String>,
    /// The dockerd process, its directory and `dockerd.log`.
    dockerd: DaemonProcess,
}

impl PrivateDockerd {
    /// Starts a fresh engine and waits until it answers (bounded by [`START_TIMEOUT`]).
    pub fn start() -> anyhow::Result<Self> {
        let netns = NetNs::create("dockerd")?;
        // Short on purpose: unix socket paths are limited to 108 bytes, and containerd nests
        // its sockets a few levels below the exec root.
        let dir = tempfile::Builder::new()
            .prefix("lzt-d-")
            .tempdir_in("/tmp")
            .context("failed to create the private dockerd directory")?
            .keep();
        let unique_containerd_namespace = Path::new(SYSTEM_CONTAINERD_SOCKET)
            .exists()
            .then(|| format!("lzt-{}", netns.name()));
        // From here on, Drop cleans up whatever happens.
        let mut private_dockerd = Self {
            socket_path: dir.join("docker.sock"),
            netns,
            unique_containerd_namespace,
            // grpc connection chatter crowds out the lines that explain a failure.
            dockerd: DaemonProcess::new("dockerd", dir).hiding_log_lines_containing("module=grpc"),
        };
        fs::write(private_dockerd.dir().join("daemon.json"), "{}\n")
            .context("failed to write the private daemon.json")?;
        private_dockerd.spawn_and_wait()?;
        Ok(private_dockerd)
    }

    /// The engine's API socket (`DIR/docker.sock`); pass it as a docker host to the harness.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// `unix://DIR/docker.sock`, for `docker -H` and `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket_path().display())
    }

    /// The socket path as the `docker_host` argument the rest of the harness takes.
    pub fn docker_host(&self) -> Option<&str> {
        self.socket_path().to_str()
    }

    /// The directory holding all the engine's state, including `dockerd.log`.
    pub fn dir(&self) -> &Path {
        self.dockerd.dir()
    }

    pub fn netns(&self) -> &NetNs {
        &self.netns
    }

    /// The containerd namespace this engine's containers live in.
    pub fn containerd_namespace(&self) -> &str {
        self.unique_containerd_namespace
            .as_deref()
            .unwrap_or(DEFAULT_CONTAINERD_NAMESPACE)
    }

    /// The gRPC socket of the containerd this engine uses (its own, unless a system one exists).
    pub fn containerd_socket_path(&self) -> PathBuf {
        if self.unique_containerd_namespace.is_some() {
            return PathBuf::from(SYSTEM_CONTAINERD_SOCKET);
        }
        self.dir().join("exec/containerd/containerd.sock")
    }

    /// The dockerd process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.dockerd.pid()
    }

    /// Whether dockerd is still alive (reaps it if it has exited on its own).
    pub fn is_running(&mut self) -> bool {
        self.dockerd.is_running()
    }

    /// Graceful shutdown: SIGTERM, up to [`STOP_TIMEOUT`], then SIGKILL. Afterwards neither
    /// dockerd nor its containerd runs and the socket is gone.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        stop_gracefully(&mut self.dockerd, &self.socket_path)
    }

    /// Crash: SIGKILL dockerd right away. Its containerd dies with it, but shims and running
    /// containers stay (as after a real crash) until [`Self::start_again`] or drop.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if !self.dockerd.kill(CONTAINERD_EXIT_TIMEOUT)? {
            return Ok(());
        }
        finish_stop(self.dockerd.dir(), &self.socket_path)
    }

    /// Restarts the engine on the same directory and socket (stopping it first if it runs).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            self.stop()?;
        }
        self.spawn_and_wait()
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        let socket_path = &self.socket_path;
        let elapsed = self.dockerd.wait_until(
            || socket_path.exists() && engine_answers(socket_path.to_str(), INFO_TIMEOUT),
            START_TIMEOUT,
            |dockerd| stop_gracefully(dockerd, socket_path),
        )?;
        tracing::info!(?elapsed, host = %self.host(), "private dockerd ready");
        Ok(())
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = self.netns.command("dockerd");
        command.args(self.dockerd_args());
        let pid = self.dockerd.spawn(command, "nsenter … dockerd")?;
        tracing::info!(pid, dir = %self.dir().display(), netns = %self.netns.name(), "private dockerd spawned");
        Ok(())
    }

    fn dockerd_args(&self) -> Vec<String> {
        let dir = self.dir().display();
        let mut args = vec![
            format!("--config-file={dir}/daemon.json"),
            format!("--host=unix://{dir}/docker.sock"),
            format!("--data-root={dir}/data"),
            format!("--exec-root={dir}/exec"),
            format!("--pidfile={dir}/docker.pid"),
            "--bridge=none".to_owned(),
            "--iptables=false".to_owned(),
            "--ip-masq=false".to_owned(),
            "--storage-driver=vfs".to_owned(),
        ];
        if let Some(namespace) = &self.unique_containerd_namespace {
            args.push(format!("--containerd-namespace={namespace}"));
            args.push(format!(
                "--containerd-plugins-namespace={namespace}-plugins"
            ));
        }
        args
    }

    /// Last resort after dockerd is gone: containers, shims, mounts, files. Each step runs even
    /// if an earlier one failed, so one stuck piece does not leave all the others behind.
    fn remove_leftovers(&self) {
        let dockerd = &self.dockerd;
        let deleted = leftovers::delete_runc_containers(&self.dir().join("exec/runtime-runc"))
            .unwrap_or_else(|error| {
                dockerd.warn_cleanup_failed("delete runc containers", &error);
                Vec::new()
            });
        // Shims name the directory in their command line; so does anything else of ours.
        dockerd.kill_leftover_processes();
        for container in &deleted {
            if let Err(error) =
                leftovers::remove_shim_socket(&self.containerd_socket_path(), container)
            {
                dockerd.warn_cleanup_failed("remove a shim socket", &error);
            }
        }
        dockerd.remove_directory();
    }

    /// Removes every container of a running engine, so shutdown waits on none of them.
    fn remove_all_containers(&self) -> anyhow::Result<()> {
        let listing = docker(self.docker_host(), &["ps", "-aq", "--no-trunc"])?;
        let container_ids: Vec<&str> = listing.lines().collect();
        if container_ids.is_empty() {
            return Ok(());
        }
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(container_ids);
        docker(self.docker_host(), &args)?;
        Ok(())
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        if self.is_running() {
            // A wedged engine would make `docker rm` wait for its full timeout: skip it then.
            let answers = engine_answers(self.docker_host(), INFO_TIMEOUT);
            if answers && let Err(error) = self.remove_all_containers() {
                tracing::warn!(error = %format!("{error:#}"), "failed to remove the private engine's containers");
            }
            if let Err(error) = self.stop() {
                tracing::warn!(error = %format!("{error:#}"), "failed to stop the private dockerd");
            }
        }
        self.remove_leftovers();
        // `self.netns` is deleted when the field drops, after the processes inside it are gone.
    }
}

/// [`PrivateDockerd::stop`] on the two fields it needs, so that
/// [`DaemonProcess::wait_until`] can run it too.
fn stop_gracefully(dockerd: &mut DaemonProcess, socket_path: &Path) -> anyhow::Result<()> {
    let was_running = dockerd.signal_and_wait(STOP_TIMEOUT, |pid, error| {
        tracing::warn!(pid, signal = "TERM", error = %format!("{error:#}"), "failed to signal");
    })?;
    if !was_running {
        return Ok(());
    }
    finish_stop(dockerd.dir(), socket_path)
}

/// After dockerd is gone: wait for its managed containerd, then make sure the socket is.
fn finish_stop(dir: &Path, socket_path: &Path) -> anyhow::Result<()> {
    // Only containerd's own command line names its config; shims name its socket, and must
    // survive a crash like they would in production.
    let containerd_marker = format!("{}/exec/containerd/containerd.toml", dir.display());
    let deadline = Instant::now() + CONTAINERD_EXIT_TIMEOUT;
    while !leftovers::processes_mentioning(&containerd_marker)?.is_empty() {
        if Instant::now() >= deadline {
            tracing::warn!("managed containerd outlived dockerd; killing it");
            leftovers::kill_processes_mentioning(&containerd_marker)?;
            break;
        }
        thread::sleep(daemon::POLL_INTERVAL);
    }
    if socket_path.exists() {
        // Left by a SIGKILL: nothing listens on it any more.
        fs::remove_file(socket_path).context("failed to remove the stale docker socket")?;
    }
    Ok(())
}
