//! Finding and removing what a crashed or killed private engine leaves behind.
//!
//! After a SIGKILL, a dockerd leaves containerd shims, running containers, a stale socket and
//! bind mounts under its directory. These helpers find them by the private directory's path,
//! which nothing else on the machine mentions, and must never touch anything outside it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::command::{run_checked, run_with_timeout};

const TOOL_TIMEOUT: Duration = Duration::from_secs(20);

/// Where containerd 1.6 shims put their sockets, whichever containerd started them.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// Stacked mounts (one per crashed start) need several passes; more than this is a bug.
const MAX_UNMOUNT_PASSES: usize = 8;

/// Pids of processes (other than this one) whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> anyhow::Result<Vec<u32>> {
    let own_pid = std::process::id();
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").context("failed to list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        // The process may have exited since the listing: skip it.
        let Ok(raw_command_line) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let command_line = String::from_utf8_lossy(&raw_command_line).replace('\0', " ");
        if command_line.contains(needle) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Sends SIGKILL to every process whose command line contains `needle`.
pub fn kill_processes_mentioning(needle: &str) -> anyhow::Result<()> {
    let pids = processes_mentioning(needle)?;
    if pids.is_empty() {
        return Ok(());
    }
    tracing::warn!(?pids, needle, "killing leftover processes");
    let mut command = Command::new("kill");
    command.args(["-s", "KILL", "--"]);
    command.args(pids.iter().map(u32::to_string));
    // A process that exited meanwhile makes `kill` fail; that is what we wanted anyway.
    run_with_timeout(&mut command, TOOL_TIMEOUT)?;
    Ok(())
}

/// Mount points at or below `directory` in this mount namespace, deepest first.
pub fn mounts_under(directory: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").context("failed to read mountinfo")?;
    let mut mount_points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|escaped| PathBuf::from(unescape_mountinfo(escaped)))
        .filter(|mount_point| mount_point.starts_with(directory))
        .collect();
    mount_points.sort_by_key(|mount_point| std::cmp::Reverse(mount_point.components().count()));
    Ok(mount_points)
}

/// Unmounts everything at or below `directory` (lazily if a plain unmount is refused).
pub fn unmount_all_under(directory: &Path) -> anyhow::Result<()> {
    for _ in 0..MAX_UNMOUNT_PASSES {
        let mount_points = mounts_under(directory)?;
        if mount_points.is_empty() {
            return Ok(());
        }
        for mount_point in mount_points {
            let unmounted =
                run_with_timeout(Command::new("umount").arg(&mount_point), TOOL_TIMEOUT)
                    .is_ok_and(|output| output.success());
            if !unmounted {
                run_checked(
                    Command::new("umount").arg("-l").arg(&mount_point),
                    TOOL_TIMEOUT,
                )
                .with_context(|| format!("failed to unmount {}", mount_point.display()))?;
            }
        }
    }
    anyhow::bail!(
        "mounts remain under {} after {MAX_UNMOUNT_PASSES} passes",
        directory.display()
    )
}

/// A runc container found under a runc root (named after its containerd namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuncContainer {
    pub namespace: String,
    pub id: String,
}

/// Force-deletes every runc container whose state lives under `runc_roots` (one runc root per
/// containerd namespace, e.g. `<exec-root>/runtime-runc/moby`): kills its processes and
/// removes its cgroups. Returns what it deleted.
pub fn delete_runc_containers(runc_roots: &Path) -> anyhow::Result<Vec<RuncContainer>> {
    let Ok(namespaces) = fs::read_dir(runc_roots) else {
        return Ok(Vec::new());
    };
    let mut deleted = Vec::new();
    for namespace in namespaces.flatten() {
        let runc_root = namespace.path();
        let listing = run_checked(
            Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["list", "-q"]),
            TOOL_TIMEOUT,
        )
        .with_context(|| format!("failed to list runc containers in {}", runc_root.display()))?;
        for container_id in listing.lines().filter(|line| !line.is_empty()) {
            tracing::warn!(container_id, "deleting leftover runc container");
            run_checked(
                Command::new("runc").arg("--root").arg(&runc_root).args([
                    "delete",
                    "-f",
                    container_id,
                ]),
                TOOL_TIMEOUT,
            )?;
            deleted.push(RuncContainer {
                namespace: namespace.file_name().to_string_lossy().into_owned(),
                id: container_id.to_owned(),
            });
        }
    }
    Ok(deleted)
}

/// Removes the socket file a SIGKILLed containerd 1.6 shim leaves in the machine-wide
/// `/run/containerd/s`, named `sha256(<containerd address>/<namespace>/<id>)`. Only that
/// exact file is touched.
pub fn remove_shim_socket(
    containerd_address: &Path,
    container: &RuncContainer,
) -> anyhow::Result<()> {
    let shim_key = containerd_address
        .join(&container.namespace)
        .join(&container.id);
    let digest_line = run_checked(
        Command::new("sh")
            .args(["-c", r#"printf %s "$1" | sha256sum"#, "sh"])
            .arg(&shim_key),
        TOOL_TIMEOUT,
    )
    .context("failed to hash the shim key")?;
    let digest = digest_line.split_whitespace().next().unwrap_or_default();
    anyhow::ensure!(
        digest.len() == 64
            && digest
                .chars()
                .all(|character| character.is_ascii_hexdigit()),
        "sha256sum printed {digest_line:?}"
    );
    let socket = Path::new(SHIM_SOCKET_DIR).join(digest);
    match fs::remove_file(&socket) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("failed to remove {}", socket.display())),
    }
}

/// Removes `directory` after unmounting anything left inside it.
pub fn remove_directory(directory: &Path) -> anyhow::Result<()> {
    if !directory.exists() {
        return Ok(());
    }
    unmount_all_under(directory)?;
    fs::remove_dir_all(directory)
        .with_context(|| format!("failed to remove {}", directory.display()))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut unescaped = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4);
        let decoded = octal
            .filter(|_| bytes[index] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match decoded {
            Some(byte) => {
                unescaped.push(byte);
                index += 4;
            }
            None => {
                unescaped.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&unescaped).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/odd\"), r"/odd\");
    }

    #[test]
    fn this_process_is_never_reported() {
        let own_command_line = std::env::args().next().unwrap();
        let pids = processes_mentioning(&own_command_line).unwrap();
        assert!(!pids.contains(&std::process::id()));
    }
}
