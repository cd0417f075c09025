//! Reading `/proc` for the scan: which host processes belong to a container, their names and
//! executables, and the remote addresses in the container's own network namespace tables.
//!
//! - A container's processes are those in its init's **PID namespace** (`/proc/PID/ns/pid`). A
//!   container sharing the host's PID namespace (`--pid host`) is narrowed to the processes in
//!   its init's **cgroup** instead, so the host's own processes are never read as its.
//! - Addresses come from `/proc/<init>/net/{tcp,tcp6,udp,udp6}`: the tables of the init's network
//!   namespace, i.e. the container's view. A container on the host's network has none read (they
//!   would be the host's connections). Reading a TCP table walks the host's whole connection
//!   hash (about 2 ms per table on these machines, measured), so only tables whose protocol has
//!   sockets in the namespace's `sockstat` are read, each in one `read` (a second one, for the
//!   end of file, would walk the hash again).
//! - Only what some indicator needs is read ([`Wanted`]); everything is bounded ([`Limits`]); a
//!   process that exits while being read is skipped.
//!
//! Blocking: called from a blocking thread. Never enters a namespace.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use lazaret_core::ContainerId;
use lazaret_core::indicator::index::IndicatorIndex;
use lazaret_core::indicator::observed::{
    Observed, ObservedProcess, remote_addresses, tables_in_use,
};
use lazaret_core::policy::IndicatorKind;

use super::hashes::ExeHashes;

/// The most of one socket table read (one `read`): about 1,700 sockets.
const MAX_TABLE_BYTES: usize = 256 * 1024;

/// What a look reads besides process names (which are cheap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// Executables' SHA-256.
    pub hashes: bool,
    /// Remote addresses.
    pub addresses: bool,
}

impl Wanted {
    pub const ALL: Wanted = Wanted {
        hashes: true,
        addresses: true,
    };

    /// What the entries of `index` can match.
    pub fn of(index: &IndicatorIndex) -> Wanted {
        Wanted {
            hashes: index.has(IndicatorKind::ExeSha256),
            addresses: index.has(IndicatorKind::Ip),
        }
    }
}

/// Bounds of one look inside one container.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_processes: usize,
    pub max_addresses: usize,
    pub max_exe_bytes: u64,
}

/// A `/proc` to read (the host's, or a fixture's in tests).
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        ProcFs {
            root: PathBuf::from("/proc"),
        }
    }
}

/// What one pass over `/proc` found, shared by every container looked at in that pass.
struct Processes {
    /// Every PID by its PID namespace.
    by_pid_ns: HashMap<String, Vec<u32>>,
    /// Every PID by its cgroup, read only when a container shares the host's PID namespace.
    by_cgroup: Option<HashMap<String, Vec<u32>>>,
}

impl ProcFs {
    pub fn at(root: impl Into<PathBuf>) -> Self {
        ProcFs { root: root.into() }
    }

    /// Looks inside each `(container, init PID)` in `targets`, reading what `wanted` says.
    pub fn look(
        &self,
        targets: &[(ContainerId, u32)],
        limits: Limits,
        wanted: Wanted,
        hashes: &mut ExeHashes,
    ) -> Vec<(ContainerId, Observed)> {
        let own_pid_ns = self.link("self", "ns/pid");
        let own_net_ns = self.link("self", "ns/net");
        let mut processes = Processes {
            by_pid_ns: self.by(|pid| self.link(&pid.to_string(), "ns/pid")),
            by_cgroup: None,
        };
        targets
            .iter()
            .filter_map(|(container, init)| {
                let pid_ns = self.link(&init.to_string(), "ns/pid")?;
                let members = if Some(&pid_ns) == own_pid_ns.as_ref() {
                    let cgroup = self.read(*init, "cgroup")?;
                    processes
                        .by_cgroup
                        .get_or_insert_with(|| self.by(|pid| self.read(pid, "cgroup")))
                        .get(&cgroup)
                } else {
                    processes.by_pid_ns.get(&pid_ns)
                };
                let members = members.map(Vec::as_slice).unwrap_or(&[]);
                let hashes = wanted.hashes.then_some(&mut *hashes);
                let mut observed = self.processes(*init, members, limits, hashes);
                let net_ns = self.link(&init.to_string(), "ns/net");
                if wanted.addresses && net_ns.is_some() && net_ns != own_net_ns {
                    self.addresses(*init, limits, &mut observed);
                }
                Some((container.clone(), observed))
            })
            .collect()
    }

    fn processes(
        &self,
        init: u32,
        members: &[u32],
        limits: Limits,
        mut hashes: Option<&mut ExeHashes>,
    ) -> Observed {
        let mut observed = Observed {
            truncated: members.len() > limits.max_processes,
            ..Observed::default()
        };
        // The init first, then the lowest PIDs (the longest-lived, mostly).
        let mut pids: Vec<u32> = members.iter().copied().filter(|pid| *pid != init).collect();
        pids.sort_unstable();
        pids.insert(0, init);
        for pid in pids.into_iter().take(limits.max_processes) {
            let Some(name) = self.read(pid, "comm") else {
                continue;
            };
            let exe = self.root.join(pid.to_string()).join("exe");
            observed.processes.push(ObservedProcess {
                pid,
                name: name.trim_end_matches('\n').to_string(),
                exe_sha256: hashes
                    .as_deref_mut()
                    .and_then(|hashes| hashes.sha256(&exe, limits.max_exe_bytes)),
            });
        }
        observed
    }

    fn addresses(&self, init: u32, limits: Limits, observed: &mut Observed) {
        let sockstat = self.read(init, "net/sockstat").unwrap_or_default();
        let sockstat6 = self.read(init, "net/sockstat6").unwrap_or_default();
        for table in tables_in_use(&sockstat, &sockstat6) {
            let path = self.root.join(init.to_string()).join("net").join(table);
            let Some((text, whole)) = read_once(&path) else {
                continue;
            };
            observed.truncated |= !whole;
            for address in remote_addresses(&text) {
                if observed.remote_addresses.len() >= limits.max_addresses {
                    observed.truncated = true;
                    return;
                }
                observed.remote_addresses.insert(address);
            }
        }
    }

    /// Every process's PID grouped by `key` (processes without one left out).
    fn by(&self, key: impl Fn(u32) -> Option<String>) -> HashMap<String, Vec<u32>> {
        let mut groups: HashMap<String, Vec<u32>> = HashMap::new();
        let Ok(entries) = fs::read_dir(&self.root) else {
            return groups;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse().ok())
            else {
                continue;
            };
            if let Some(key) = key(pid) {
                groups.entry(key).or_default().push(pid);
            }
        }
        groups
    }

    fn link(&self, process: &str, name: &str) -> Option<String> {
        fs::read_link(self.root.join(process).join(name))
            .ok()
            .map(|target| target.to_string_lossy().into_owned())
    }

    fn read(&self, pid: u32, name: &str) -> Option<String> {
        fs::read_to_string(self.root.join(pid.to_string()).join(name)).ok()
    }
}

/// A file's text from one `read` of at most [`MAX_TABLE_BYTES`], and whether that was all of it.
fn read_once(path: &Path) -> Option<(String, bool)> {
    let mut buffer = vec![0u8; MAX_TABLE_BYTES];
    let read = fs::File::open(path).ok()?.read(&mut buffer).ok()?;
    buffer.truncate(read);
    // A cut line at the end does not parse and is skipped.
    Some((
        String::from_utf8_lossy(&buffer).into_owned(),
        read < MAX_TABLE_BYTES,
    ))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::path::Path;

    use super::*;

    const LIMITS: Limits = Limits {
        max_processes: 2,
        max_addresses: 10,
        max_exe_bytes: 1 << 20,
    };

    /// A fake process: its namespaces (symlinks, as the kernel shows them), name, cgroup and
    /// executable.
    fn process(root: &Path, pid: &str, pid_ns: &str, net_ns: &str, name: &str, cgroup: &str) {
        let dir = root.join(pid);
        fs::create_dir_all(dir.join("ns")).unwrap();
        fs::create_dir_all(dir.join("net")).unwrap();
        symlink(format!("pid:[{pid_ns}]"), dir.join("ns/pid")).unwrap();
        symlink(format!("net:[{net_ns}]"), dir.join("ns/net")).unwrap();
        fs::write(dir.join("comm"), format!("{name}\n")).unwrap();
        fs::write(dir.join("cgroup"), cgroup).unwrap();
        let exe = root.join(format!("bin-{name}"));
        fs::write(&exe, name).unwrap();
        symlink(&exe, dir.join("exe")).unwrap();
    }

    #[test]
    fn a_container_is_its_pid_namespace_or_on_the_host_its_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // The agent (self) and a host process share namespace 1.
        process(root, "1", "1", "1", "systemd", "0::/init.scope\n");
        symlink("1", root.join("self")).unwrap();
        // Container a: its own namespaces; three processes, the bound is two.
        process(root, "100", "2", "2", "sh", "0::/docker/a\n");
        process(root, "105", "2", "2", "xmrig", "0::/docker/a\n");
        process(root, "103", "2", "2", "sleep", "0::/docker/a\n");
        let tcp = "  sl  local_address rem_address   st\n   0: 030011AC:A9F8 020011AC:1F90 01 0\n";
        fs::write(root.join("100/net/tcp"), tcp).unwrap();
        // Container b: the host's PID and network namespaces, its own cgroup.
        process(root, "200", "1", "1", "top", "0::/docker/b\n");
        process(root, "201", "1", "1", "nc", "0::/docker/b\n");
        fs::write(root.join("200/net/tcp"), tcp).unwrap();
        // Container c: its namespace counts no TCP socket, so its table is not read.
        process(root, "300", "3", "3", "sleep", "0::/docker/c\n");
        fs::write(root.join("300/net/tcp"), tcp).unwrap();
        fs::write(
            root.join("300/net/sockstat"),
            "TCP: inuse 0 orphan 0 tw 0\n",
        )
        .unwrap();
        fs::write(root.join("300/net/sockstat6"), "TCP6: inuse 0\n").unwrap();

        let targets = [
            (ContainerId::new("a"), 100),
            (ContainerId::new("b"), 200),
            (ContainerId::new("c"), 300),
            (ContainerId::new("gone"), 999),
        ];
        let mut hashes = ExeHashes::default();
        let procfs = ProcFs::at(root);
        let seen = procfs.look(&targets, LIMITS, Wanted::ALL, &mut hashes);
        assert_eq!(seen.len(), 3, "an exited container is left out: {seen:?}");
        assert!(seen[2].1.remote_addresses.is_empty(), "no socket in use");
        let (a, b) = (&seen[0].1, &seen[1].1);
        let names = |observed: &Observed| -> Vec<String> {
            observed.processes.iter().map(|p| p.name.clone()).collect()
        };
        assert_eq!(
            names(a),
            ["sh", "sleep"],
            "init first, then the lowest PIDs"
        );
        assert!(a.truncated);
        assert_eq!(
            a.remote_addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            if cfg!(target_endian = "little") {
                vec!["172.17.0.2".to_string()]
            } else {
                vec![]
            }
        );
        assert!(a.processes[0].exe_sha256.is_some());
        assert_eq!(
            names(b),
            ["top", "nc"],
            "its cgroup, not the host's processes"
        );
        assert!(
            b.remote_addresses.is_empty(),
            "the host's network is not read as its"
        );

        // Only what is wanted is read.
        let names_only = Wanted {
            hashes: false,
            addresses: false,
        };
        let seen = procfs.look(&targets[..1], LIMITS, names_only, &mut hashes);
        assert!(seen[0].1.remote_addresses.is_empty());
        assert!(seen[0].1.processes.iter().all(|p| p.exe_sha256.is_none()));
    }
}
