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

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::command::{run_with_timeout, wait_with_deadline};
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
const READY_POLL_INTERVAL: Duration = Duration::from_millis(50);
const INFO_TIMEOUT: Duration = Duration::from_secs(5);
const CONTAINERD_EXIT_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 40;

/// A dockerd of our own; stopped, emptied and deleted on drop.
#[derive(Debug)]
pub struct PrivateDockerd {
    dir: PathBuf,
    /// `dir/docker.sock`.
    socket_path: PathBuf,
    netns: NetNs,
    /// Set when a system containerd is shared: unique names instead of `moby`.
    unique_containerd_namespace: Option<String>,
    dockerd: Option<Child>,
    /// Where the current run's output starts in `dockerd.log`.
    log_offset: u64,
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
            dir,
            netns,
            unique_containerd_namespace,
            dockerd: None,
            log_offset: 0,
        };
        fs::write(private_dockerd.dir.join("daemon.json"), "{}\n")
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
        &self.dir
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
        self.dir.join("exec/containerd/containerd.sock")
    }

    /// The dockerd process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.dockerd.as_ref().map(Child::id)
    }

    /// Whether dockerd is still alive (reaps it if it has exited on its own).
    pub fn is_running(&mut self) -> bool {
        let Some(dockerd) = self.dockerd.as_mut() else {
            return false;
        };
        match dockerd.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                tracing::warn!(%status, dir = %self.dir.display(), "private dockerd exited on its own");
                self.dockerd = None;
                false
            }
            Err(error) => {
                tracing::warn!(%error, "failed to poll the private dockerd");
                true
            }
        }
    }

    /// Graceful shutdown: SIGTERM, up to [`STOP_TIMEOUT`], then SIGKILL. Afterwards neither
    /// dockerd nor its containerd runs and the socket is gone.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut dockerd) = self.dockerd.take() else {
            return Ok(());
        };
        let started = Instant::now();
        send_signal(dockerd.id(), "TERM");
        let status = wait_with_deadline(&mut dockerd, STOP_TIMEOUT)
            .context("failed to wait for the private dockerd")?;
        match status {
            Some(status) => {
                tracing::info!(%status, elapsed = ?started.elapsed(), "private dockerd stopped")
            }
            None => {
                tracing::warn!(timeout = ?STOP_TIMEOUT, "private dockerd ignored SIGTERM; killed")
            }
        }
        self.finish_stop()
    }

    /// Crash: SIGKILL dockerd right away. Its containerd dies with it, but shims and running
    /// containers stay (as after a real crash) until [`Self::start_again`] or drop.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let Some(mut dockerd) = self.dockerd.take() else {
            return Ok(());
        };
        if let Err(error) = dockerd.kill() {
            tracing::debug!(%error, "private dockerd was already gone");
        }
        wait_with_deadline(&mut dockerd, CONTAINERD_EXIT_TIMEOUT)
            .context("failed to reap the killed private dockerd")?;
        self.finish_stop()
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
        let deadline = Instant::now() + START_TIMEOUT;
        let started = Instant::now();
        loop {
            if !self.is_running() {
                bail!(
                    "private dockerd exited during startup; log tail:\n{}",
                    self.log_tail()
                );
            }
            if self.socket_path().exists() && engine_answers(self.docker_host(), INFO_TIMEOUT) {
                tracing::info!(elapsed = ?started.elapsed(), host = %self.host(), "private dockerd ready");
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log_tail = self.log_tail();
                if let Err(error) = self.stop() {
                    tracing::warn!(error = %format!("{error:#}"), "failed to stop a private dockerd that never became ready");
                }
                bail!("private dockerd not ready after {START_TIMEOUT:?}; log tail:\n{log_tail}");
            }
            thread::sleep(READY_POLL_INTERVAL);
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log_path = self.dir.join("dockerd.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("failed to open {}", log_path.display()))?;
        self.log_offset = log.metadata().map(|metadata| metadata.len()).unwrap_or(0);
        let mut command = self.netns.command("dockerd");
        command
            .args(self.dockerd_args())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .context("failed to duplicate the log handle")?,
            )
            .stderr(log);
        let dockerd = command
            .spawn()
            .context("failed to spawn nsenter … dockerd")?;
        tracing::info!(pid = dockerd.id(), dir = %self.dir.display(), netns = %self.netns.name(), "private dockerd spawned");
        self.dockerd = Some(dockerd);
        Ok(())
    }

    fn dockerd_args(&self) -> Vec<String> {
        let dir = self.dir.display();
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

    /// After dockerd is gone: wait for its managed containerd, then make sure the socket is.
    fn finish_stop(&mut self) -> anyhow::Result<()> {
        // Only containerd's own command line names its config; shims name its socket, and must
        // survive a crash like they would in production.
        let containerd_marker = format!("{}/exec/containerd/containerd.toml", self.dir.display());
        let deadline = Instant::now() + CONTAINERD_EXIT_TIMEOUT;
        while !leftovers::processes_mentioning(&containerd_marker)?.is_empty() {
            if Instant::now() >= deadline {
                tracing::warn!("managed containerd outlived dockerd; killing it");
                leftovers::kill_processes_mentioning(&containerd_marker)?;
                break;
            }
            thread::sleep(READY_POLL_INTERVAL);
        }
        if self.socket_path.exists() {
            // Left by a SIGKILL: nothing listens on it any more.
            fs::remove_file(&self.socket_path)
                .context("failed to remove the stale docker socket")?;
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        read_log_tail(&self.dir.join("dockerd.log"), self.log_offset)
            .unwrap_or_else(|error| format!("(cannot read dockerd.log: {error:#})"))
    }

    /// Last resort after dockerd is gone: containers, shims, mounts, files. Each step runs even
    /// if an earlier one failed, so one stuck piece does not leave all the others behind.
    fn remove_leftovers(&self) {
        let deleted = leftovers::delete_runc_containers(&self.dir.join("exec/runtime-runc"))
            .unwrap_or_else(|error| {
                warn_cleanup_failed(&self.dir, "delete runc containers", &error);
                Vec::new()
            });
        // Shims name the directory in their command line; so does anything else of ours.
        if let Err(error) =
            leftovers::kill_processes_mentioning(&format!("{}/", self.dir.display()))
        {
            warn_cleanup_failed(&self.dir, "kill leftover processes", &error);
        }
        for container in &deleted {
            if let Err(error) =
                leftovers::remove_shim_socket(&self.containerd_socket_path(), container)
            {
                warn_cleanup_failed(&self.dir, "remove a shim socket", &error);
            }
        }
        if let Err(error) = leftovers::remove_directory(&self.dir) {
            warn_cleanup_failed(&self.dir, "remove the directory", &error);
        }
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

fn send_signal(pid: u32, signal: &str) {
    let mut command = Command::new("kill");
    command.args(["-s", signal, "--", &pid.to_string()]);
    if let Err(error) = run_with_timeout(&mut command, INFO_TIMEOUT) {
        tracing::warn!(pid, signal, error = %format!("{error:#}"), "failed to signal");
    }
}

fn warn_cleanup_failed(dir: &Path, step: &str, error: &anyhow::Error) {
    tracing::warn!(dir = %dir.display(), step, error = %format!("{error:#}"), "private dockerd cleanup step failed");
}

fn read_log_tail(log_path: &Path, offset: u64) -> anyhow::Result<String> {
    let mut log = File::open(log_path)?;
    log.seek(SeekFrom::Start(offset))?;
    let mut raw_text = Vec::new();
    log.read_to_end(&mut raw_text)?;
    let text = String::from_utf8_lossy(&raw_text);
    // grpc connection chatter crowds out the lines that explain a failure.
    let useful_lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.contains("module=grpc"))
        .collect();
    let first_kept = useful_lines.len().saturating_sub(LOG_TAIL_LINES);
    Ok(useful_lines[first_kept..].join("\n"))
}
