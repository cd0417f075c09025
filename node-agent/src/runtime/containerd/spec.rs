//! The parts of an OCI runtime spec (the JSON in a containerd container's `spec` Any) that the
//! posture checks read, parsed leniently.
//!
//! Every enum-like value (capability names, namespace types, seccomp actions) stays a string and
//! every field defaults when absent. `oci_spec::runtime::Spec` refuses a whole document over one
//! value it does not know (a capability newer than the crate, a made-up `CAP_FOO` that runc
//! ignores with a warning), which would turn a privileged container into an all-`unknown` one:
//! an evasion this model must never allow. Nothing here interprets the values; see `convert.rs`.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Spec {
    pub process: Option<Process>,
    pub root: Option<Root>,
    pub mounts: Vec<Mount>,
    pub linux: Option<Linux>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Process {
    pub user: User,
    pub capabilities: Option<Capabilities>,
    pub no_new_privileges: bool,
    pub apparmor_profile: String,
    pub selinux_label: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Only Windows specs set it; kept because a name, when present, says more than a number.
    pub username: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub permitted: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Root {
    pub readonly: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Linux {
    pub namespaces: Vec<Namespace>,
    pub devices: Vec<Device>,
    pub resources: Option<Resources>,
    pub cgroups_path: Option<String>,
    pub seccomp: Option<Seccomp>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub mount_label: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Device {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: i64,
    pub minor: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub devices: Vec<DeviceRule>,
    pub memory: Option<Memory>,
    pub cpu: Option<Cpu>,
    pub pids: Option<Pids>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DeviceRule {
    pub allow: bool,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Memory {
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Cpu {
    pub shares: Option<u64>,
    pub quota: Option<i64>,
    pub period: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Pids {
    pub limit: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Seccomp {
    pub default_action: String,
    pub syscalls: Vec<SeccompRule>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SeccompRule {
    pub names: Vec<String>,
    pub action: String,
}

/// Parses the spec JSON; `None` when it is not JSON of the expected shape at all.
pub fn parse(json: &[u8]) -> Option<Spec> {
    match serde_json::from_slice(json) {
        Ok(spec) => Some(spec),
        Err(error) => {
            tracing::warn!(%error, "unreadable OCI runtime spec; its fields stay unknown");
            None
        }
    }
}
