//! The container model every runtime backend fills in and every check, policy and action reads.
//!
//! Convention: a field the runtime could not tell us is `None` ("unknown"), never a guessed
//! default. Checks turn `None` into `unknown`, not `pass`: containerd's `moby` namespace, for
//! example, hides mounts and privilege, and pretending they are absent would hide risk.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A runtime's container id (Docker's 64-hex id, containerd's container id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContainerId(pub String);

impl ContainerId {
    pub fn new(id: impl Into<String>) -> Self {
        ContainerId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-character form people read in `docker ps` and logs.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Which runtime API a container was seen through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Docker,
    Containerd,
    /// The in-memory runtime used by tests and benches.
    Fake,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::Containerd => "containerd",
            RuntimeKind::Fake => "fake",
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Life-cycle state as the runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    Unknown,
}

impl ContainerState {
    pub const ALL: [ContainerState; 8] = [
        ContainerState::Created,
        ContainerState::Running,
        ContainerState::Paused,
        ContainerState::Restarting,
        ContainerState::Removing,
        ContainerState::Exited,
        ContainerState::Dead,
        ContainerState::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Restarting => "restarting",
            ContainerState::Removing => "removing",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
            ContainerState::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Which of the host's namespaces the container shares. `Some(true)` means it runs in the host's
/// namespace (e.g. `--network host`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostNamespaces {
    pub network: Option<bool>,
    pub pid: Option<bool>,
    pub ipc: Option<bool>,
    pub uts: Option<bool>,
    pub user: Option<bool>,
}

/// A filesystem mount into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// `bind`, `volume`, `tmpfs`, … as the runtime names it.
    pub kind: String,
    /// Host path for binds; the volume's path on the host for volumes.
    pub source: String,
    pub destination: String,
    pub read_write: bool,
    /// `private`, `rprivate`, `shared`, `rshared`, `slave`, `rslave`, or empty when unset.
    pub propagation: String,
}

/// A host device made available inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub host_path: String,
    pub container_path: String,
    /// cgroup permissions, e.g. `rwm`.
    pub permissions: String,
}

/// The seccomp profile in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "name")]
pub enum SeccompProfile {
    /// The runtime's default profile.
    Default,
    /// Seccomp explicitly disabled (`seccomp=unconfined`).
    Unconfined,
    /// A custom profile (its name or a hint of its content).
    Custom(String),
}

/// Linux security modules and privilege settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityOptions {
    pub seccomp: Option<SeccompProfile>,
    /// The AppArmor profile name; `Some("")` when none is applied.
    pub apparmor_profile: Option<String>,
    /// SELinux label options (`label=…` security options), empty when none are set.
    pub selinux_labels: Option<Vec<String>>,
    pub no_new_privileges: Option<bool>,
}

/// Resource limits. For numbers, `Some(0)` means "set to unlimited / not set" as Docker reports
/// it; `None` means the runtime did not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_bytes: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_quota: Option<i64>,
    /// `Some(None)`-like cases collapse: a missing, zero or negative pids limit is "unlimited".
    pub pids_limit: Option<i64>,
}

/// What the runtime does when the container exits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// `no`, `always`, `unless-stopped`, `on-failure`.
    pub name: String,
    pub max_retries: i64,
}

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub container_port: u16,
    pub protocol: String,
    /// The host address it is bound to; empty, `0.0.0.0` or `::` mean every interface.
    pub host_ip: String,
    /// 0 when the runtime picks a port at start.
    pub host_port: u16,
}

/// The container's health check as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "test")]
pub enum HealthCheck {
    /// No health check (none configured, or `NONE`).
    None,
    /// The configured test, e.g. `["CMD-SHELL", "curl -f localhost"]`.
    Command(Vec<String>),
}

/// Kubernetes identity taken from CRI labels, when the container belongs to a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    pub container_name: String,
    pub sandbox_id: String,
}

impl PodInfo {
    /// Reads the CRI labels Kubernetes puts on every container (`io.kubernetes.pod.name`,
    /// `.namespace`, `io.kubernetes.container.name`, `io.kubernetes.sandbox.id`); `None` when
    /// the container is not part of a pod.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Option<PodInfo> {
        let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
        let name = labels.get("io.kubernetes.pod.name")?.clone();
        Some(PodInfo {
            name,
            namespace: label("io.kubernetes.pod.namespace"),
            container_name: label("io.kubernetes.container.name"),
            sandbox_id: label("io.kubernetes.sandbox.id"),
        })
    }
}

/// Everything Lazaret knows about one container's configuration and state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: ContainerId,
    /// Without Docker's leading `/`.
    pub name: String,
    pub runtime: RuntimeKind,
    /// The runtime namespace (containerd's `moby`, `k8s.io`, `default`; empty for Docker).
    pub namespace: String,
    /// The image reference the container was created from, e.g. `busybox:latest`.
    pub image: String,
    /// The local image id (`sha256:…`).
    pub image_id: String,
    /// The registry digest (`repo@sha256:…`); `None` for locally built or imported images.
    pub image_digest: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    /// Main process PID on the host while running.
    pub pid: Option<u32>,
    /// The configured user; `Some("")` when unset (the image default, usually root).
    pub user: Option<String>,
    pub privileged: Option<bool>,
    /// Capabilities added, upper case without the `CAP_` prefix.
    pub cap_add: Option<Vec<String>>,
    /// Capabilities dropped, upper case without the `CAP_` prefix.
    pub cap_drop: Option<Vec<String>>,
    pub host_namespaces: HostNamespaces,
    pub mounts: Option<Vec<Mount>>,
    pub devices: Option<Vec<Device>>,
    pub security: SecurityOptions,
    /// `Some("")` when the runtime's default cgroup parent is used.
    pub cgroup_parent: Option<String>,
    pub read_only_rootfs: Option<bool>,
    pub limits: Limits,
    pub restart_policy: Option<RestartPolicy>,
    pub ports: Option<Vec<PublishedPort>>,
    pub health_check: Option<HealthCheck>,
    /// The network namespace path the runtime exposes (Docker's sandbox key).
    pub netns_path: Option<String>,
    /// The container whose network namespace this one joined and shares: Docker's
    /// `--network container:<id>`, or a Kubernetes pod's sandbox. `None`: its own (or unknown).
    /// A network cut takes a shared namespace only when the policy's `scope` is `pod`.
    #[serde(default)]
    pub netns_owner: Option<String>,
    pub pod: Option<PodInfo>,
    /// Creation time, RFC 3339 as the runtime reported it.
    pub created: Option<String>,
}

impl ContainerInfo {
    /// A container with every configurable field unknown; backends and tests fill in what they
    /// know. Useful because "unknown" is the honest default.
    pub fn unknown(id: ContainerId, runtime: RuntimeKind) -> Self {
        ContainerInfo {
            id,
            name: String::new(),
            runtime,
            namespace: String::new(),
            image: String::new(),
            image_id: String::new(),
            image_digest: None,
            labels: BTreeMap::new(),
            state: ContainerState::Unknown,
            pid: None,
            user: None,
            privileged: None,
            cap_add: None,
            cap_drop: None,
            host_namespaces: HostNamespaces::default(),
            mounts: None,
            devices: None,
            security: SecurityOptions::default(),
            cgroup_parent: None,
            read_only_rootfs: None,
            limits: Limits::default(),
            restart_policy: None,
            ports: None,
            health_check: None,
            netns_path: None,
            netns_owner: None,
            pod: None,
            created: None,
        }
    }
}

/// Normalises a capability name to upper case without the `CAP_` prefix (`cap_sys_admin` →
/// `SYS_ADMIN`), the one form stored in `ContainerInfo` and written in policies.
pub fn normalize_capability(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    match upper.strip_prefix("CAP_") {
        Some(stripped) => stripped.to_string(),
        None => upper,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_normalise_to_one_form() {
        assert_eq!(normalize_capability("cap_sys_admin"), "SYS_ADMIN");
        assert_eq!(normalize_capability(" NET_ADMIN "), "NET_ADMIN");
        assert_eq!(normalize_capability("ALL"), "ALL");
    }

    #[test]
    fn pod_identity_comes_from_cri_labels() {
        let mut labels = BTreeMap::new();
        assert_eq!(PodInfo::from_labels(&labels), None);
        labels.insert("io.kubernetes.pod.name".into(), "web-0".into());
        labels.insert("io.kubernetes.pod.namespace".into(), "shop".into());
        labels.insert("io.kubernetes.container.name".into(), "nginx".into());
        let pod = PodInfo::from_labels(&labels).unwrap();
        assert_eq!(pod.namespace, "shop");
        assert_eq!(pod.container_name, "nginx");
        assert_eq!(pod.sandbox_id, "");
    }

    #[test]
    fn short_id_is_twelve_characters_or_whole() {
        assert_eq!(ContainerId::new("0123456789abcdef").short(), "0123456789ab");
        assert_eq!(ContainerId::new("abc").short(), "abc");
    }
}
