//! Finding a just-started container's process from its cgroup, without asking the runtime: the
//! enforcement fast path (DESIGN.md §2) cuts a container's network at its `start` event, and
//! Docker's start event carries no PID (containerd's does).
//!
//! The runtime puts the container's processes in a cgroup named after its id, under the
//! container's cgroup parent (default `/docker` with the `cgroupfs` driver, `system.slice` with
//! `systemd`), in cgroup v1 (under a controller's hierarchy) or v2 (unified). [`started_pid`]
//! tries each layout, reads the first PID of `cgroup.procs`, and confirms from the process's own
//! `/proc/<pid>/cgroup` that it is in the container's cgroup, so a PID that ended and was reused
//! meanwhile is never taken. Anything unexpected gives `None`: the caller then inspects.

use std::path::{Path, PathBuf};

use lazaret_core::ContainerId;

/// Where cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Where processes are seen.
pub const PROC_ROOT: &str = "/proc";

/// cgroup v1 hierarchies that hold every process (tried in order).
const V1_CONTROLLERS: [&str; 3] = ["pids", "memory", "systemd"];

/// The candidate `cgroup.procs` files of a container: each layout, v1 and v2.
fn candidates(cgroup_root: &Path, id: &ContainerId, cgroup_parent: &str) -> Vec<PathBuf> {
    let parents: Vec<&str> = match cgroup_parent.trim_matches('/') {
        "" => vec!["docker", "system.slice"],
        parent => vec![parent],
    };
    let leaves = [id.as_str().to_string(), format!("docker-{}.scope", id)];
    let mut paths = Vec::new();
    for parent in &parents {
        for leaf in &leaves {
            for controller in V1_CONTROLLERS {
                paths.push(
                    cgroup_root
                        .join(controller)
                        .join(parent)
                        .join(leaf)
                        .join("cgroup.procs"),
                );
            }
            paths.push(cgroup_root.join(parent).join(leaf).join("cgroup.procs"));
        }
    }
    paths
}

/// The first process of the container `id`'s cgroup, confirmed to be in it. `cgroup_parent` as
/// the runtime reported it at create (`""` for the default).
pub fn started_pid(
    cgroup_root: &Path,
    proc_root: &Path,
    id: &ContainerId,
    cgroup_parent: &str,
) -> Option<u32> {
    candidates(cgroup_root, id, cgroup_parent)
        .iter()
        .find_map(|procs| std::fs::read_to_string(procs).ok())
        .and_then(|procs| procs.lines().find_map(|line| line.trim().parse().ok()))
        .filter(|pid: &u32| {
            std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup"))
                .is_ok_and(|membership| membership.contains(id.as_str()))
        })
}

/// The id of the container a process runs in, from its `/proc/<pid>/cgroup` text: the last
/// 64-hex-digit path segment (`/docker/<id>`, `docker-<id>.scope`, `cri-containerd-<id>.scope`).
pub fn container_id_in_cgroup(membership: &str) -> Option<ContainerId> {
    membership
        .lines()
        .flat_map(|line| line.rsplit('/'))
        .map(|segment| {
            let segment = segment.strip_suffix(".scope").unwrap_or(segment);
            segment.rsplit('-').next().unwrap_or(segment)
        })
        .find(|segment| segment.len() == 64 && segment.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .map(ContainerId::new)
}

/// The container the agent itself runs in, if any (it must never quarantine itself).
pub fn own_container_id() -> Option<ContainerId> {
    std::fs::read_to_string(Path::new(PROC_ROOT).join("self/cgroup"))
        .ok()
        .and_then(|membership| container_id_in_cgroup(&membership))
}

/// The network namespace path of process `pid`.
pub fn netns_of_pid(pid: u32) -> String {
    format!("{PROC_ROOT}/{pid}/ns/net")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "e55d1dbc35258382f2c65922c513f2dbe7e823d252229de7d85457321035237d";

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn fixture(procs_at: &str, member_of: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cgroup = dir.path().join("cgroup");
        let proc_root = dir.path().join("proc");
        write(&cgroup.join(procs_at).join("cgroup.procs"), "4242\n4243\n");
        write(&proc_root.join("4242/cgroup"), member_of);
        (dir, cgroup, proc_root)
    }

    #[test]
    fn finds_the_first_process_in_each_layout() {
        let layouts = [
            (format!("pids/docker/{ID}"), ""),
            (format!("docker/{ID}"), ""),
            (format!("system.slice/docker-{ID}.scope"), ""),
            (format!("memory/custom/parent/{ID}"), "/custom/parent"),
        ];
        for (procs_at, parent) in layouts {
            let (_dir, cgroup, proc_root) = fixture(&procs_at, &format!("8:pids:/docker/{ID}\n"));
            assert_eq!(
                started_pid(&cgroup, &proc_root, &ContainerId::new(ID), parent),
                Some(4242),
                "{procs_at}"
            );
        }
    }

    #[test]
    fn a_process_outside_the_container_is_never_taken() {
        // The PID was reused by a process of another cgroup between the two reads.
        let (_dir, cgroup, proc_root) = fixture(&format!("pids/docker/{ID}"), "8:pids:/other\n");
        assert_eq!(
            started_pid(&cgroup, &proc_root, &ContainerId::new(ID), ""),
            None
        );
    }

    #[test]
    fn the_agent_finds_its_own_container_in_its_cgroup() {
        let layouts = [
            format!("12:pids:/docker/{ID}\n0::/\n"),
            format!("0::/system.slice/docker-{ID}.scope\n"),
            format!("0::/kubepods/besteffort/pod1/cri-containerd-{ID}.scope\n"),
        ];
        for membership in layouts {
            assert_eq!(
                container_id_in_cgroup(&membership),
                Some(ContainerId::new(ID)),
                "{membership}"
            );
        }
        assert_eq!(
            container_id_in_cgroup("0::/user.slice/session-3.scope\n"),
            None
        );
    }

    #[test]
    fn no_cgroup_or_an_empty_one_gives_none() {
        let (_dir, cgroup, proc_root) = fixture("pids/docker/another", "");
        let id = ContainerId::new(ID);
        assert_eq!(started_pid(&cgroup, &proc_root, &id, ""), None);
        write(&cgroup.join(format!("docker/{ID}/cgroup.procs")), "");
        assert_eq!(started_pid(&cgroup, &proc_root, &id, ""), None);
    }
}
