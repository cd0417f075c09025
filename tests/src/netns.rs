//! Named network namespaces (`ip netns`) that a test owns and deletes on drop.
//!
//! Used to isolate anything that would otherwise touch the host's network: a private dockerd,
//! processes playing a partitioned node. This module must never change the host's own
//! namespace; it only adds and deletes `lzt-*` namespaces it created.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};

use crate::command::run_checked;

const NETNS_DIR: &str = "/var/run/netns";
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// The addresses of a veth pair made by [`NetNs::link_to`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethPair {
    /// The address in the namespace `link_to` was called on.
    pub address: String,
    /// The address in the peer namespace.
    pub peer_address: String,
}

/// A network namespace `lzt-<prefix>-<unique>` with `lo` up; deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates the namespace and brings its loopback up. `prefix` (letters, digits, `-`) only
    /// makes leftovers recognisable in `ip netns list`.
    pub fn create(prefix: &str) -> anyhow::Result<Self> {
        ensure!(
            !prefix.is_empty()
                && prefix
                    .chars()
                    .all(|character| character.is_ascii_alphanumeric() || character == '-'),
            "netns prefix {prefix:?} must be [a-zA-Z0-9-]+"
        );
        let name = unique_name(prefix);
        run_ip(&["netns", "add", &name])
            .with_context(|| format!("failed to create network namespace {name}"))?;
        // From here on, dropping `netns` deletes the namespace, also if `lo` cannot be raised.
        let netns = Self { name };
        run_ip(&["-n", &netns.name, "link", "set", "lo", "up"])
            .with_context(|| format!("failed to bring lo up in {}", netns.name))?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file, for `nsenter --net=…` and `setns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// Links this namespace to `peer` with a veth pair carrying a /30 that exists only in the two
    /// namespaces: `10.231.<subnet>.1` here, `.2` in `peer`. Both ends go away with the
    /// namespaces; `subnet` keeps the addresses of concurrent tests apart.
    pub fn link_to(&self, peer: &NetNs, subnet: u8) -> anyhow::Result<VethPair> {
        let pair = VethPair {
            address: format!("10.231.{subnet}.1"),
            peer_address: format!("10.231.{subnet}.2"),
        };
        let (here, there) = ("lzv-here", "lzv-peer");
        run_ip(&[
            "-n", &self.name, "link", "add", here, "type", "veth", "peer", "name", there, "netns",
            &peer.name,
        ])
        .with_context(|| format!("failed to link {} to {}", self.name, peer.name))?;
        let here_cidr = format!("{}/30", pair.address);
        let there_cidr = format!("{}/30", pair.peer_address);
        run_ip(&["-n", &self.name, "addr", "add", &here_cidr, "dev", here])?;
        run_ip(&["-n", &peer.name, "addr", "add", &there_cidr, "dev", there])?;
        run_ip(&["-n", &self.name, "link", "set", here, "up"])?;
        run_ip(&["-n", &peer.name, "link", "set", there, "up"])?;
        Ok(pair)
    }

    /// An `nsenter` command that runs `program` inside this namespace (network only: unlike
    /// `ip netns exec`, it leaves `/sys` and the mount namespace alone).
    pub fn command(&self, program: &str) -> Command {
        command_in(Some(&self.path()), program)
    }
}

/// `program` as a command, run inside the network namespace at `netns` when given (`nsenter
/// --net=…`, which execs it: the child's PID is the program's), else as is.
pub fn command_in(
    netns: Option<&std::path::Path>,
    program: impl AsRef<std::ffi::OsStr>,
) -> Command {
    match netns {
        Some(netns) => {
            let mut command = Command::new("nsenter");
            command
                .arg(format!("--net={}", netns.display()))
                .arg("--")
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(error) = run_ip(&["netns", "del", &self.name]) {
            tracing::warn!(netns = %self.name, error = %format!("{error:#}"), "failed to delete network namespace");
        }
    }
}

fn run_ip(args: &[&str]) -> anyhow::Result<String> {
    run_checked(Command::new("ip").args(args), IP_TIMEOUT)
}

/// `lzt-<prefix>-<pid>-<counter>-<time>`: the time part keeps a reused pid from colliding
/// with a namespace a crashed run left behind.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let sequence = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or_default();
    format!(
        "lzt-{prefix}-{}-{sequence}-{:x}",
        std::process::id(),
        millis % (1 << 24)
    )
}
