//! What the agent saw inside a running container (DESIGN.md §2, `scan`): its processes (name as
//! the kernel keeps it, the executable's SHA-256) and the remote addresses of its sockets, as
//! read from the container's own network namespace tables. This module holds the plain values,
//! the parser of those tables (`/proc/<pid>/net/{tcp,tcp6,udp,udp6}`) and [`WithObserved`], the
//! lookup that lets policies' `indicator` rules match what was seen; the agent does the reading.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::index::IndicatorIndex;
use crate::container::ContainerInfo;
use crate::policy::{IndicatorHit, IndicatorKind, IndicatorLookup};

/// One process seen in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedProcess {
    /// On the host's PID namespace.
    pub pid: u32,
    /// The kernel's name for it (`/proc/PID/comm`: the executable's file name, at most 15 bytes).
    pub name: String,
    /// SHA-256 of its executable, lowercase hex; `None` when it could not be read (or was too
    /// large to hash).
    pub exe_sha256: Option<String>,
}

/// Everything one look inside a container saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub processes: Vec<ObservedProcess>,
    /// Remote ends of the container's sockets (listening sockets and unspecified remotes left
    /// out), IPv4-mapped IPv6 addresses as IPv4, each once.
    pub remote_addresses: BTreeSet<IpAddr>,
    /// The look stopped at a bound (processes or sockets) before seeing everything.
    pub truncated: bool,
}

impl Observed {
    /// Whether any indicator of `index` matches something seen (before any policy decides).
    pub fn matches_any(&self, index: &IndicatorIndex) -> bool {
        [
            IndicatorKind::ProcessName,
            IndicatorKind::ExeSha256,
            IndicatorKind::Ip,
        ]
        .into_iter()
        .any(|kind| hit(index, kind, self).is_some())
    }
}

/// The socket tables of a network namespace (`/proc/<pid>/net/<table>`).
pub const SOCKET_TABLES: [&str; 4] = ["tcp", "tcp6", "udp", "udp6"];

/// The tables of [`SOCKET_TABLES`] worth reading, from the namespace's `sockstat` and
/// `sockstat6` (which count its sockets in O(1)). Reading a TCP table walks the host's whole
/// connection hash (milliseconds on a large host, whatever the namespace holds), so a table is
/// skipped when its protocol has no socket in use and no connection in TIME_WAIT. Counts that
/// cannot be read mean every table.
pub fn tables_in_use(sockstat: &str, sockstat6: &str) -> Vec<&'static str> {
    let count = |text: &str, protocol: &str, field: &str| -> Option<u64> {
        let line = text
            .lines()
            .find_map(|line| line.strip_prefix(protocol)?.strip_prefix(':'))?;
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            let value = words.next()?;
            if word == field {
                return value.parse().ok();
            }
        }
        None
    };
    let time_wait = count(sockstat, "TCP", "tw");
    let busy = |text: &str, protocol: &str, waits: bool| {
        let in_use = count(text, protocol, "inuse");
        !matches!(
            (in_use, waits.then_some(time_wait)),
            (Some(0), None | Some(Some(0)))
        )
    };
    let in_use = [
        busy(sockstat, "TCP", true),
        busy(sockstat6, "TCP6", true),
        busy(sockstat, "UDP", false),
        busy(sockstat6, "UDP6", false),
    ];
    SOCKET_TABLES
        .into_iter()
        .zip(in_use)
        .filter_map(|(table, busy)| busy.then_some(table))
        .collect()
}

/// The socket state `LISTEN` in `/proc/net/tcp` (`0A`).
const TCP_LISTEN: u8 = 0x0A;

/// The remote addresses in one `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` table (the header line and
/// lines that do not parse are skipped). Addresses are printed by the kernel as 32-bit words in
/// the host's byte order, so this reads them in the host's order too.
pub fn remote_addresses(table: &str) -> impl Iterator<Item = IpAddr> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let remote = fields.nth(2)?;
        let state = u8::from_str_radix(fields.next()?, 16).ok()?;
        let (address, _port) = remote.split_once(':')?;
        let address = parse_address(address)?;
        (state != TCP_LISTEN && !address.is_unspecified()).then_some(address)
    })
}

fn parse_address(hex: &str) -> Option<IpAddr> {
    let word = |at: usize| -> Option<[u8; 4]> {
        let text = hex.get(at..at + 8)?;
        Some(u32::from_str_radix(text, 16).ok()?.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for (index, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(index * 8)?);
            }
            let address = Ipv6Addr::from(bytes);
            Some(match address.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(address),
            })
        }
        _ => None,
    }
}

/// An indicator of `kind` matching what was seen, if any.
fn hit(index: &IndicatorIndex, kind: IndicatorKind, observed: &Observed) -> Option<IndicatorHit> {
    let found = match kind {
        IndicatorKind::ProcessName => observed
            .processes
            .iter()
            .find_map(|process| index.lookup(kind, &process.name)),
        IndicatorKind::ExeSha256 => observed
            .processes
            .iter()
            .filter_map(|process| process.exe_sha256.as_deref())
            .find_map(|hash| index.lookup(kind, hash)),
        IndicatorKind::Ip => observed
            .remote_addresses
            .iter()
            .find_map(|address| index.address(*address)),
        IndicatorKind::ImageId | IndicatorKind::ImageDigest | IndicatorKind::ImageRef => None,
    };
    found.map(super::index::hit)
}

/// The indicators of an index, matched against a container's runtime view (image id, digest,
/// reference) and against what was seen inside it.
pub struct WithObserved<'a> {
    pub index: &'a IndicatorIndex,
    pub observed: &'a Observed,
}

impl IndicatorLookup for WithObserved<'_> {
    fn find(&self, kind: IndicatorKind, container: &ContainerInfo) -> Option<IndicatorHit> {
        self.index
            .find(kind, container)
            .or_else(|| hit(self.index, kind, self.observed))
    }

    fn doubt(&self) -> Option<&str> {
        self.index.doubt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicator::{Indicator, IndicatorSet};
    use crate::severity::Severity;
    use crate::{ContainerId, RuntimeKind};

    /// A real table (kernel 6.1, x86-64): a listener on 0.0.0.0:8080, a connection from
    /// 172.17.0.3:43512 to 172.17.0.2:8080, and one in TIME_WAIT to 10.0.0.1:443.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41283 1 0000000000000000 100 0 0 10 0
   1: 030011AC:A9F8 020011AC:1F90 01 00000000:00000000 00:00000000 00000000     0        0 41301 1 0000000000000000 20 4 30 10 -1
   2: 030011AC:A9FA 0100000A:01BB 06 00000000:00000000 03:00000F2A 00000000     0        0 0 3 0000000000000000
";

    /// A listener on [::]:80, a connection to 2001:db8::1 port 443 and one from an
    /// IPv4-mapped peer ::ffff:172.17.0.9.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0
   1: 00000000000000000000000001000000:C350 B80D0120000000000000000001000000:01BB 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0
   2: 0000000000000000FFFF0000020011AC:0050 0000000000000000FFFF0000090011AC:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0
";

    #[test]
    fn remote_addresses_skip_listeners_and_read_both_families() {
        if cfg!(target_endian = "big") {
            return;
        }
        let v4: Vec<IpAddr> = remote_addresses(TCP).collect();
        assert_eq!(
            v4,
            vec![
                "172.17.0.2".parse::<IpAddr>().unwrap(),
                "10.0.0.1".parse().unwrap()
            ]
        );
        let v6: Vec<IpAddr> = remote_addresses(TCP6).collect();
        assert_eq!(
            v6,
            vec![
                "2001:db8::1".parse::<IpAddr>().unwrap(),
                "172.17.0.9".parse().unwrap()
            ]
        );
        assert_eq!(remote_addresses("header\ngarbage line\n").count(), 0);
    }

    #[test]
    fn only_tables_with_sockets_are_read() {
        let sockstat = |tcp: u32, tw: u32, udp: u32| {
            format!(
                "sockets: used 2\nTCP: inuse {tcp} orphan 0 tw {tw} alloc 9 mem 131\n\
                 UDP: inuse {udp} mem 0\nRAW: inuse 0\n"
            )
        };
        let sockstat6 = |tcp: u32, udp: u32| format!("TCP6: inuse {tcp}\nUDP6: inuse {udp}\n");
        assert!(tables_in_use(&sockstat(0, 0, 0), &sockstat6(0, 0)).is_empty());
        assert_eq!(
            tables_in_use(&sockstat(0, 0, 0), &sockstat6(1, 0)),
            ["tcp6"]
        );
        assert_eq!(
            tables_in_use(&sockstat(0, 2, 1), &sockstat6(0, 0)),
            ["tcp", "tcp6", "udp"],
            "TIME_WAIT may be either family's"
        );
        assert_eq!(
            tables_in_use("", "").len(),
            4,
            "unknown counts: every table"
        );
    }

    fn index() -> IndicatorIndex {
        let entry = |id: &str, kind, value: &str| Indicator {
            id: id.into(),
            kind,
            value: value.into(),
            severity: Severity::Critical,
            source: "test".into(),
            valid_until: None,
        };
        let set = IndicatorSet {
            indicators: vec![
                entry("miner", IndicatorKind::ProcessName, "xmrig"),
                entry("tool", IndicatorKind::ExeSha256, &"ab".repeat(32)),
                entry("pool", IndicatorKind::Ip, "10.0.0.0/8"),
            ],
        };
        IndicatorIndex::build(&set, 0)
    }

    fn process(name: &str, hash: Option<String>) -> ObservedProcess {
        ObservedProcess {
            pid: 7,
            name: name.into(),
            exe_sha256: hash,
        }
    }

    #[test]
    fn what_was_seen_matches_by_kind() {
        let index = index();
        let container = ContainerInfo::unknown(ContainerId::new("c"), RuntimeKind::Docker);
        let clean = Observed {
            processes: vec![process("sh", Some("cd".repeat(32)))],
            remote_addresses: ["192.0.2.1".parse().unwrap()].into(),
            truncated: false,
        };
        assert!(!clean.matches_any(&index));
        let lookup = WithObserved {
            index: &index,
            observed: &clean,
        };
        assert!(
            lookup
                .find(IndicatorKind::ProcessName, &container)
                .is_none()
        );

        let dirty = Observed {
            processes: vec![process("sh", None), process("xmrig", Some("AB".repeat(32)))],
            remote_addresses: ["10.1.2.3".parse().unwrap()].into(),
            truncated: false,
        };
        assert!(dirty.matches_any(&index));
        let lookup = WithObserved {
            index: &index,
            observed: &dirty,
        };
        let found = |kind| lookup.find(kind, &container).map(|hit| hit.indicator_id);
        assert_eq!(found(IndicatorKind::ProcessName).as_deref(), Some("miner"));
        assert_eq!(found(IndicatorKind::ExeSha256).as_deref(), Some("tool"));
        assert_eq!(found(IndicatorKind::Ip).as_deref(), Some("pool"));
        assert_eq!(found(IndicatorKind::ImageId), None);
    }
}
