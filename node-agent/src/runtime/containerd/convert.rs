//! A containerd container record + its OCI spec + its task + its image → `ContainerInfo`. Pure:
//! no calls to containerd here, so the mapping is tested on recorded records.
//!
//! containerd stores what runc is told to do (the spec), not what the user asked for (Docker's
//! `HostConfig`). So "added capabilities" are computed against Docker's defaults, "privileged"
//! is inferred, and fields containerd has no notion of (published ports, health checks) stay
//! `None`: unknown, never a guessed default. Anything that is not in the record stays `None`
//! too, which is how Docker's records in the `moby` namespace (no image) come out honest.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat};
use containerd_client::services::v1::Container;
use containerd_client::types::v1::{Process, Status};
use lazaret_core::container::{
    Device, HostNamespaces, Limits, Mount, PodInfo, RestartPolicy, SeccompProfile,
};
use lazaret_core::{ContainerId, ContainerInfo, ContainerState, RuntimeKind};

use super::capabilities::{
    AUDIT_READ, DEFAULT_CAPABILITIES, KERNEL_CAPABILITIES, granted_capabilities,
};
use super::spec::{self, Spec};

/// containerd's restart monitor reads this label (`always`, `on-failure:N`, `unless-stopped`).
pub const RESTART_POLICY_LABEL: &str = "containerd.io/restart.policy";
/// The CRI label telling a pod's sandbox (`sandbox`) from its containers (`container`).
const CRI_KIND_LABEL: &str = "io.cri-containerd.kind";
/// The CRI label naming the container inside its pod.
const CRI_CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// Kernel filesystems every runtime mounts by itself; listing them would only bury the mounts
/// someone chose. Matched on (type, destination), so a bind onto `/proc` is still reported.
const RUNTIME_MOUNTS: [(&str, &str); 8] = [
    ("proc", "/proc"),
    ("sysfs", "/sys"),
    ("devpts", "/dev/pts"),
    ("mqueue", "/dev/mqueue"),
    ("cgroup", "/sys/fs/cgroup"),
    ("cgroup2", "/sys/fs/cgroup"),
    ("tmpfs", "/dev"),
    ("tmpfs", "/dev/shm"),
];

const PROPAGATION_OPTIONS: [&str; 8] = [
    "shared",
    "rshared",
    "slave",
    "rslave",
    "private",
    "rprivate",
    "unbindable",
    "runbindable",
];

/// A seccomp profile that denies by default and allows at least this many syscalls by name has
/// the shape of Docker's and containerd's default profiles (~350 names); the spec never names
/// the profile, so anything else is reported as custom.
const DEFAULT_PROFILE_MIN_ALLOWED: usize = 250;

/// What the image record says about the container's image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageView {
    /// The image's target digest (its manifest or index), containerd's identity for it.
    pub id: String,
    /// `repo@sha256:…`, only when it is known to be a registry digest (see `records.rs`).
    pub registry_digest: Option<String>,
}

/// What the conversion needs to know about the host, injected so it stays pure.
pub struct Host<'a> {
    /// The capabilities a privileged container gets here: containerd's and Docker's
    /// `--privileged` grant every capability their own process holds, not a fixed list. Empty
    /// means unknown, and then all of the kernel's capability list up to `AUDIT_READ` are required.
    pub capabilities: &'a [String],
    /// Whether a namespace file (type, path) is the host's own; `None`: cannot tell. The
    /// runtime compares inodes with `/proc/1/ns/*` (or its own namespaces).
    pub is_host_namespace: &'a dyn Fn(&str, &str) -> Option<bool>,
}

/// Builds the container model. `task` is the container's init process (none: never started, or
/// its task was deleted), `image` the image record when the container names one.
pub fn container_info(
    namespace: &str,
    container: &Container,
    task: Option<&Process>,
    image: Option<&ImageView>,
    host: &Host<'_>,
) -> ContainerInfo {
    let id = ContainerId::new(container.id.clone());
    let mut info = ContainerInfo::unknown(id, RuntimeKind::Containerd);
    info.namespace = namespace.to_string();
    info.labels = container
        .labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect::<BTreeMap<_, _>>();
    info.name = info
        .labels
        .get(CRI_CONTAINER_NAME_LABEL)
        .cloned()
        .unwrap_or_else(|| container.id.clone());
    info.image = container.image.clone();
    if let Some(image) = image {
        info.image_id = image.id.clone();
        info.image_digest = image.registry_digest.clone();
    }
    info.pod = PodInfo::from_labels(&info.labels);
    // A pod's containers join its sandbox's network namespace; the sandbox owns it.
    if info.labels.get(CRI_KIND_LABEL).map(String::as_str) != Some("sandbox") {
        info.netns_owner = info
            .pod
            .as_ref()
            .map(|pod| pod.sandbox_id.clone())
            .filter(|sandbox| !sandbox.is_empty() && *sandbox != container.id);
    }
    info.created = container.created_at.as_ref().and_then(|created| {
        let nanos = u32::try_from(created.nanos).ok()?;
        DateTime::from_timestamp(created.seconds, nanos)
            .map(|time| time.to_rfc3339_opts(SecondsFormat::Nanos, true))
    });
    info.restart_policy = info
        .labels
        .get(RESTART_POLICY_LABEL)
        .map(|policy| restart_policy(policy));
    (info.state, info.pid) = task_state(task);
    // Published ports belong to CNI and health checks to the orchestrator: containerd knows
    // neither, so both stay unknown.
    let parsed = container
        .spec
        .as_ref()
        .and_then(|any| spec::parse(&any.value));
    if let Some(spec) = parsed {
        apply_spec(&mut info, namespace, &spec, host);
    }
    info
}

fn task_state(task: Option<&Process>) -> (ContainerState, Option<u32>) {
    let Some(task) = task else {
        // A container without a task has never run (or was stopped and its task deleted):
        // containerd can start it again, like Docker's `created`.
        return (ContainerState::Created, None);
    };
    let state = match Status::try_from(task.status).unwrap_or(Status::Unknown) {
        Status::Created => ContainerState::Created,
        Status::Running => ContainerState::Running,
        Status::Paused | Status::Pausing => ContainerState::Paused,
        Status::Stopped => ContainerState::Exited,
        Status::Unknown => ContainerState::Unknown,
    };
    let alive = matches!(state, ContainerState::Running | ContainerState::Paused);
    (state, Some(task.pid).filter(|pid| alive && *pid > 0))
}

/// `always`, `unless-stopped`, `no`, `on-failure`, `on-failure:N`.
fn restart_policy(label: &str) -> RestartPolicy {
    let (name, retries) = label.split_once(':').unwrap_or((label, ""));
    RestartPolicy {
        name: name.trim().to_string(),
        max_retries: retries.trim().parse().unwrap_or(0),
    }
}

fn apply_spec(info: &mut ContainerInfo, namespace: &str, spec: &Spec, host: &Host<'_>) {
    if let Some(process) = spec.process.as_ref() {
        info.user = Some(user(&process.user));
        let capabilities = granted_capabilities(process.capabilities.as_ref());
        info.cap_add = Some(
            capabilities
                .iter()
                .filter(|capability| !DEFAULT_CAPABILITIES.contains(&capability.as_str()))
                .cloned()
                .collect(),
        );
        info.cap_drop = Some(
            DEFAULT_CAPABILITIES
                .iter()
                .filter(|default| !capabilities.iter().any(|granted| granted == *default))
                .map(|default| default.to_string())
                .collect(),
        );
        info.security.no_new_privileges = Some(process.no_new_privileges);
        info.security.apparmor_profile = Some(process.apparmor_profile.clone());
        let mut selinux_labels = Vec::new();
        if !process.selinux_label.is_empty() {
            selinux_labels.push(format!("label={}", process.selinux_label));
        }
        info.security.selinux_labels = Some(selinux_labels);
    }
    info.read_only_rootfs = spec.root.as_ref().map(|root| root.readonly);
    info.mounts = Some(
        spec.mounts
            .iter()
            .filter(|mount| !RUNTIME_MOUNTS.contains(&(mount.kind.as_str(), &mount.destination)))
            .map(mount)
            .collect(),
    );
    let Some(linux) = spec.linux.as_ref() else {
        return;
    };
    info.privileged = spec.process.as_ref().map(|process| {
        let granted = granted_capabilities(process.capabilities.as_ref());
        let holds = |capability: &str| granted.iter().any(|granted| granted == capability);
        let every_capability = if host.capabilities.is_empty() {
            KERNEL_CAPABILITIES[..=AUDIT_READ]
                .iter()
                .all(|capability| holds(capability))
        } else {
            host.capabilities.iter().all(|capability| holds(capability))
        };
        every_capability && linux.masked_paths.is_empty() && linux.readonly_paths.is_empty()
    });
    info.host_namespaces = host_namespaces(linux, host.is_host_namespace);
    info.netns_path = netns_path(linux, info.pid);
    info.devices = Some(
        linux
            .devices
            .iter()
            .map(|device| self::device(linux, device))
            .collect(),
    );
    info.security.seccomp = Some(seccomp(linux.seccomp.as_ref()));
    if !linux.mount_label.is_empty()
        && let Some(labels) = info.security.selinux_labels.as_mut()
    {
        labels.push(format!("mount-label={}", linux.mount_label));
    }
    info.limits = limits(linux);
    info.cgroup_parent = linux
        .cgroups_path
        .as_deref()
        .and_then(|path| cgroup_parent(path, namespace, &info.id));
}

/// The name when the spec has one, else `uid` (`uid:gid` when the group is not root's), so
/// root is `"0"`, which check 4.1 fails.
fn user(user: &spec::User) -> String {
    if !user.username.is_empty() {
        return user.username.clone();
    }
    if user.gid == 0 {
        return user.uid.to_string();
    }
    format!("{}:{}", user.uid, user.gid)
}

/// A namespace type missing from the spec is the host's. The user namespace is the exception:
/// without one the container is simply not remapped, which is containerd's (and Docker's)
/// normal case; CIS 5.31 is about opting *out* of a remapping the engine applies, which a
/// containerd spec cannot express. So a missing user namespace is unknown, not a failure and
/// not a pass.
fn host_namespaces(
    linux: &spec::Linux,
    is_host_namespace: &dyn Fn(&str, &str) -> Option<bool>,
) -> HostNamespaces {
    // `None` when the spec has no namespace of that type.
    let shares_host = |kind: &str| -> Option<Option<bool>> {
        let namespace = linux
            .namespaces
            .iter()
            .find(|namespace| namespace.kind == kind)?;
        if namespace.path.is_empty() {
            return Some(Some(false));
        }
        // Joining an existing namespace: the host's own, if someone pointed at it.
        Some(is_host_namespace(kind, &namespace.path))
    };
    let shares_host_unless_own = |kind: &str| shares_host(kind).unwrap_or(Some(true));
    HostNamespaces {
        network: shares_host_unless_own("network"),
        pid: shares_host_unless_own("pid"),
        ipc: shares_host_unless_own("ipc"),
        uts: shares_host_unless_own("uts"),
        user: shares_host("user").flatten(),
    }
}

/// The namespace file the spec joins (a pod sandbox's `/var/run/netns/cni-…`), else the task's
/// own while it runs. `None` for the host's network namespace and for stopped containers.
fn netns_path(linux: &spec::Linux, pid: Option<u32>) -> Option<String> {
    let network = linux
        .namespaces
        .iter()
        .find(|namespace| namespace.kind == "network")?;
    if !network.path.is_empty() {
        return Some(network.path.clone());
    }
    pid.map(|pid| format!("/proc/{pid}/ns/net"))
}

fn mount(mount: &spec::Mount) -> Mount {
    let is_bind = mount
        .options
        .iter()
        .any(|option| option == "bind" || option == "rbind");
    let read_only = mount.options.iter().any(|option| option == "ro");
    let propagation = mount
        .options
        .iter()
        .rev()
        .find(|option| PROPAGATION_OPTIONS.contains(&option.as_str()))
        .cloned()
        .unwrap_or_default();
    Mount {
        kind: if is_bind {
            "bind".to_string()
        } else {
            mount.kind.clone()
        },
        source: mount.source.clone(),
        destination: mount.destination.clone(),
        read_write: !read_only,
        propagation,
    }
}

/// The spec names a device by its path inside the container and its numbers, not by a host
/// path; `/dev/char/M:m` (or `/dev/block/M:m`) is the host's own name for exactly that node.
fn device(linux: &spec::Linux, device: &spec::Device) -> Device {
    let class = if device.kind == "b" { "block" } else { "char" };
    let permissions = linux
        .resources
        .iter()
        .flat_map(|resources| &resources.devices)
        .filter(|rule| rule.allow)
        .filter(|rule| {
            rule.kind
                .as_deref()
                .is_none_or(|kind| kind == "a" || kind == device.kind)
        })
        .filter(|rule| {
            rule.major
                .is_none_or(|major| major < 0 || major == device.major)
        })
        .filter(|rule| {
            rule.minor
                .is_none_or(|minor| minor < 0 || minor == device.minor)
        })
        .map(|rule| rule.access.clone())
        .next_back()
        .unwrap_or_default();
    Device {
        host_path: format!("/dev/{class}/{}:{}", device.major, device.minor),
        container_path: device.path.clone(),
        permissions,
    }
}

fn seccomp(profile: Option<&spec::Seccomp>) -> SeccompProfile {
    let Some(profile) = profile else {
        return SeccompProfile::Unconfined;
    };
    let denies_by_default = matches!(
        profile.default_action.as_str(),
        "SCMP_ACT_ERRNO"
            | "SCMP_ACT_KILL"
            | "SCMP_ACT_KILL_PROCESS"
            | "SCMP_ACT_KILL_THREAD"
            | "SCMP_ACT_TRAP"
    );
    let allowed: usize = profile
        .syscalls
        .iter()
        .filter(|rule| rule.action == "SCMP_ACT_ALLOW")
        .map(|rule| rule.names.len())
        .sum();
    if denies_by_default && allowed >= DEFAULT_PROFILE_MIN_ALLOWED {
        return SeccompProfile::Default;
    }
    SeccompProfile::Custom(format!(
        "default action {}, {} rules",
        profile.default_action,
        profile.syscalls.len()
    ))
}

/// Limits as Docker reports them: 0 means "not set". containerd has no `--cpus` of its own: a
/// CPU limit is a CFS quota over a period, converted to nano-CPUs the way Docker derives one.
fn limits(linux: &spec::Linux) -> Limits {
    let resources = linux.resources.clone().unwrap_or_default();
    let cpu = resources.cpu.unwrap_or_default();
    let quota = cpu.quota.unwrap_or(0).max(0);
    let period = i64::try_from(cpu.period.unwrap_or(0)).unwrap_or(0);
    let nano_cpus = if quota > 0 && period > 0 {
        quota.saturating_mul(1_000_000_000) / period
    } else {
        0
    };
    Limits {
        memory_bytes: Some(
            resources
                .memory
                .and_then(|memory| memory.limit)
                .unwrap_or(0)
                .max(0),
        ),
        cpu_shares: Some(
            cpu.shares
                .and_then(|shares| i64::try_from(shares).ok())
                .unwrap_or(0),
        ),
        nano_cpus: Some(nano_cpus),
        cpu_quota: Some(quota),
        pids_limit: Some(resources.pids.map(|pids| pids.limit).unwrap_or(0).max(0)),
    }
}

/// The parent part of `cgroupsPath`, with the engines' own defaults reported as `""` (default):
/// containerd's `/<namespace>/<id>`, Docker's `/docker/<id>` and `system.slice:docker:<id>`.
/// `None` when the path is not of a form whose parent can be told apart from the leaf.
fn cgroup_parent(path: &str, namespace: &str, id: &ContainerId) -> Option<String> {
    let parent = if !path.starts_with('/') && path.matches(':').count() == 2 {
        // systemd form: `slice:prefix:name`.
        path.split(':').next()?.to_string()
    } else {
        let parent = path.strip_suffix(id.as_str())?.strip_suffix('/')?;
        if parent.is_empty() { "/" } else { parent }.to_string()
    };
    let engine_default = parent == format!("/{namespace}")
        || (namespace == "moby" && (parent == "/docker" || parent == "system.slice"));
    Some(if engine_default {
        String::new()
    } else {
        parent
    })
}

#[cfg(test)]
pub(super) fn cgroup_parent_for_tests(path: &str, namespace: &str, id: &str) -> Option<String> {
    cgroup_parent(path, namespace, &ContainerId::new(id))
}
