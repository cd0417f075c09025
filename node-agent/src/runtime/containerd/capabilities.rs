//! Capability sets: Docker's defaults (the baseline for added and dropped capabilities), the
//! kernel's numbering, and what a spec grants. Pure tables and functions.

use lazaret_core::container::normalize_capability;

use super::spec;

/// Docker's default capability set, the baseline `cap_add`/`cap_drop` are computed against
/// (check 5.4's baseline too).
pub use lazaret_core::posture::DEFAULT_CAPABILITIES;

/// Capability names in kernel numbering (bit N of a `/proc/<pid>/status` mask is entry N), as
/// far as containerd 1.6 knows them.
pub const KERNEL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capability names set in a `CapBnd`-style mask.
pub fn capabilities_from_mask(mask: u64) -> Vec<String> {
    KERNEL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

/// Index of `AUDIT_READ` (Linux 3.16) in [`KERNEL_CAPABILITIES`].
pub const AUDIT_READ: usize = 37;

/// Every capability the process holds or can gain: the union of the bounding, effective and
/// permitted sets. The bounding set matters as much as the effective one: a setuid or
/// file-capability binary inside the container gains anything in it.
pub fn granted_capabilities(capabilities: Option<&spec::Capabilities>) -> Vec<String> {
    let Some(capabilities) = capabilities else {
        return Vec::new();
    };
    let mut granted: Vec<String> = capabilities
        .bounding
        .iter()
        .chain(&capabilities.effective)
        .chain(&capabilities.permitted)
        .map(|capability| normalize_capability(capability))
        .collect();
    granted.sort();
    granted.dedup();
    granted
}
