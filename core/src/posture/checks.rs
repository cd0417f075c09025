//! The check functions and their catalogue. Each function reads only `ContainerInfo` and says
//! why it decided what it decided.

use super::{CheckDefinition, Outcome};
use crate::container::{ContainerInfo, HealthCheck, SeccompProfile, normalize_capability};
use crate::severity::Severity;

/// Docker's default capability set (moby `oci/caps/defaults.go`); adding anything else is 5.4.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Host directories that must not be mounted read-write (5.6).
pub const SENSITIVE_HOST_DIRECTORIES: [&str; 8] = [
    "/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr",
];

pub(super) static CATALOGUE: &[CheckDefinition] = &[
    CheckDefinition {
        id: "4.1",
        title: "container runs as a non-root user",
        severity: Severity::Medium,
        evaluate: container_user,
    },
    CheckDefinition {
        id: "5.2",
        title: "AppArmor profile is applied",
        severity: Severity::Low,
        evaluate: apparmor_profile,
    },
    CheckDefinition {
        id: "5.3",
        title: "SELinux security options are set",
        severity: Severity::Low,
        evaluate: selinux_options,
    },
    CheckDefinition {
        id: "5.4",
        title: "no capabilities added beyond the defaults",
        severity: Severity::High,
        evaluate: added_capabilities,
    },
    CheckDefinition {
        id: "5.5",
        title: "container is not privileged",
        severity: Severity::Critical,
        evaluate: privileged,
    },
    CheckDefinition {
        id: "5.6",
        title: "sensitive host directories are not mounted read-write",
        severity: Severity::High,
        evaluate: sensitive_mounts,
    },
    CheckDefinition {
        id: "5.7",
        title: "sshd does not run inside the container",
        severity: Severity::Medium,
        evaluate: sshd_running,
    },
    CheckDefinition {
        id: "5.8",
        title: "no privileged host ports (below 1024) are published",
        severity: Severity::Medium,
        evaluate: privileged_ports,
    },
    CheckDefinition {
        id: "5.10",
        title: "host network namespace is not shared",
        severity: Severity::High,
        evaluate: host_network,
    },
    CheckDefinition {
        id: "5.11",
        title: "memory usage is limited",
        severity: Severity::Low,
        evaluate: memory_limit,
    },
    CheckDefinition {
        id: "5.12",
        title: "CPU priority or limit is set",
        severity: Severity::Low,
        evaluate: cpu_limit,
    },
    CheckDefinition {
        id: "5.13",
        title: "root filesystem is mounted read-only",
        severity: Severity::Low,
        evaluate: read_only_rootfs,
    },
    CheckDefinition {
        id: "5.14",
        title: "published ports are bound to a specific host interface",
        severity: Severity::Low,
        evaluate: ports_on_all_interfaces,
    },
    CheckDefinition {
        id: "5.15",
        title: "on-failure restart attempts are limited to 5",
        severity: Severity::Low,
        evaluate: restart_attempts,
    },
    CheckDefinition {
        id: "5.16",
        title: "host PID namespace is not shared",
        severity: Severity::High,
        evaluate: host_pid,
    },
    CheckDefinition {
        id: "5.17",
        title: "host IPC namespace is not shared",
        severity: Severity::Medium,
        evaluate: host_ipc,
    },
    CheckDefinition {
        id: "5.18",
        title: "host devices are not exposed directly",
        severity: Severity::Medium,
        evaluate: host_devices,
    },
    CheckDefinition {
        id: "5.20",
        title: "mount propagation is not shared",
        severity: Severity::Medium,
        evaluate: shared_propagation,
    },
    CheckDefinition {
        id: "5.21",
        title: "host UTS namespace is not shared",
        severity: Severity::Low,
        evaluate: host_uts,
    },
    CheckDefinition {
        id: "5.22",
        title: "seccomp profile is not disabled",
        severity: Severity::High,
        evaluate: seccomp_unconfined,
    },
    CheckDefinition {
        id: "5.25",
        title: "cgroup usage is confirmed (default cgroup parent)",
        severity: Severity::Low,
        evaluate: cgroup_parent,
    },
    CheckDefinition {
        id: "5.26",
        title: "container cannot acquire new privileges (no-new-privileges)",
        severity: Severity::Medium,
        evaluate: no_new_privileges,
    },
    CheckDefinition {
        id: "5.27",
        title: "container health is checked at run time",
        severity: Severity::Low,
        evaluate: health_check,
    },
    CheckDefinition {
        id: "5.29",
        title: "PIDs limit is set",
        severity: Severity::Medium,
        evaluate: pids_limit,
    },
    CheckDefinition {
        id: "5.31",
        title: "host user namespace is not shared",
        severity: Severity::Medium,
        evaluate: host_userns,
    },
    CheckDefinition {
        id: "5.32",
        title: "Docker socket is not mounted inside the container",
        severity: Severity::Critical,
        evaluate: docker_socket_mounted,
    },
];

fn unknown_field(field: &str) -> Outcome {
    Outcome::unknown(format!("the runtime does not report {field}"))
}

fn container_user(container: &ContainerInfo) -> Outcome {
    let Some(user) = container.user.as_deref() else {
        return unknown_field("the user");
    };
    let name = user.split(':').next().unwrap_or_default().trim();
    match name {
        "" => Outcome::fail("no user set: the image default (usually root) applies"),
        "root" | "0" => Outcome::fail(format!("runs as {user:?}")),
        _ => Outcome::pass(format!("runs as {user:?}")),
    }
}

fn apparmor_profile(container: &ContainerInfo) -> Outcome {
    let Some(profile) = container.security.apparmor_profile.as_deref() else {
        return unknown_field("the AppArmor profile");
    };
    match profile {
        "" => Outcome::fail("no AppArmor profile applied"),
        "unconfined" => Outcome::fail("AppArmor explicitly unconfined"),
        _ => Outcome::pass(format!("AppArmor profile {profile:?}")),
    }
}

fn selinux_options(container: &ContainerInfo) -> Outcome {
    let Some(labels) = container.security.selinux_labels.as_ref() else {
        return unknown_field("SELinux options");
    };
    if labels.iter().any(|label| label.contains("disable")) {
        return Outcome::fail("SELinux labelling disabled");
    }
    if labels.is_empty() {
        return Outcome::fail("no SELinux label options set");
    }
    Outcome::pass(format!("SELinux options: {}", labels.join(", ")))
}

fn added_capabilities(container: &ContainerInfo) -> Outcome {
    let Some(added) = container.cap_add.as_ref() else {
        return unknown_field("added capabilities");
    };
    let beyond_defaults: Vec<String> = added
        .iter()
        .map(|capability| normalize_capability(capability))
        .filter(|capability| !DEFAULT_CAPABILITIES.contains(&capability.as_str()))
        .collect();
    if beyond_defaults.is_empty() {
        Outcome::pass("no capabilities added beyond Docker's defaults")
    } else {
        Outcome::fail(format!("adds {}", beyond_defaults.join(", ")))
    }
}

fn privileged(container: &ContainerInfo) -> Outcome {
    match container.privileged {
        None => unknown_field("privileged mode"),
        Some(true) => Outcome::fail("runs privileged: every capability and every host device"),
        Some(false) => Outcome::pass("not privileged"),
    }
}

/// True when `source` is one of the sensitive directories or below one (except `/`, which is
/// sensitive only as itself: everything is below `/`).
fn is_sensitive_host_path(source: &str) -> bool {
    if !source.starts_with('/') {
        return false;
    }
    let trimmed = source.trim_end_matches('/');
    let normalized = if trimmed.is_empty() { "/" } else { trimmed };
    SENSITIVE_HOST_DIRECTORIES.iter().any(|directory| {
        normalized == *directory
            || (*directory != "/"
                && normalized
                    .strip_prefix(directory)
                    .is_some_and(|rest| rest.starts_with('/')))
    })
}

fn sensitive_mounts(container: &ContainerInfo) -> Outcome {
    let Some(mounts) = container.mounts.as_ref() else {
        return unknown_field("mounts");
    };
    let offending: Vec<&str> = mounts
        .iter()
        .filter(|mount| mount.kind == "bind" && mount.read_write)
        .filter(|mount| is_sensitive_host_path(&mount.source))
        .map(|mount| mount.source.as_str())
        .collect();
    if offending.is_empty() {
        Outcome::pass("no sensitive host directory mounted read-write")
    } else {
        Outcome::fail(format!("mounts read-write: {}", offending.join(", ")))
    }
}

fn sshd_running(_container: &ContainerInfo) -> Outcome {
    Outcome::unknown("needs a look at the container's processes (process scan)")
}

fn privileged_ports(container: &ContainerInfo) -> Outcome {
    let Some(ports) = container.ports.as_ref() else {
        return unknown_field("published ports");
    };
    let low: Vec<String> = ports
        .iter()
        .filter(|port| port.host_port != 0 && port.host_port < 1024)
        .map(|port| {
            format!(
                "{}->{}/{}",
                port.host_port, port.container_port, port.protocol
            )
        })
        .collect();
    if low.is_empty() {
        Outcome::pass("no host port below 1024")
    } else {
        Outcome::fail(format!("publishes {}", low.join(", ")))
    }
}

fn host_namespace(shared: Option<bool>, namespace: &str) -> Outcome {
    match shared {
        None => unknown_field(&format!("the {namespace} namespace")),
        Some(true) => Outcome::fail(format!("shares the host's {namespace} namespace")),
        Some(false) => Outcome::pass(format!("own {namespace} namespace")),
    }
}

fn host_network(container: &ContainerInfo) -> Outcome {
    host_namespace(container.host_namespaces.network, "network")
}

fn host_pid(container: &ContainerInfo) -> Outcome {
    host_namespace(container.host_namespaces.pid, "PID")
}

fn host_ipc(container: &ContainerInfo) -> Outcome {
    host_namespace(container.host_namespaces.ipc, "IPC")
}

fn host_uts(container: &ContainerInfo) -> Outcome {
    host_namespace(container.host_namespaces.uts, "UTS")
}

fn host_userns(container: &ContainerInfo) -> Outcome {
    host_namespace(container.host_namespaces.user, "user")
}

fn memory_limit(container: &ContainerInfo) -> Outcome {
    match container.limits.memory_bytes {
        None => unknown_field("the memory limit"),
        Some(bytes) if bytes > 0 => Outcome::pass(format!("memory limited to {bytes} bytes")),
        Some(_) => Outcome::fail("no memory limit"),
    }
}

fn cpu_limit(container: &ContainerInfo) -> Outcome {
    let limits = &container.limits;
    // Docker reports 0 (or 1024, the default weight) for "no shares set".
    if let Some(shares) = limits
        .cpu_shares
        .filter(|shares| *shares > 0 && *shares != 1024)
    {
        return Outcome::pass(format!("CPU shares {shares}"));
    }
    if limits.nano_cpus.is_some_and(|nano_cpus| nano_cpus > 0) {
        return Outcome::pass("CPU limited (--cpus)");
    }
    if limits.cpu_quota.is_some_and(|quota| quota > 0) {
        return Outcome::pass("CPU quota set");
    }
    if limits.cpu_shares.is_none() || limits.nano_cpus.is_none() || limits.cpu_quota.is_none() {
        return unknown_field("CPU shares or limits");
    }
    Outcome::fail("no CPU shares, quota or limit set")
}

fn read_only_rootfs(container: &ContainerInfo) -> Outcome {
    match container.read_only_rootfs {
        None => unknown_field("the root filesystem mode"),
        Some(true) => Outcome::pass("root filesystem read-only"),
        Some(false) => Outcome::fail("root filesystem writable"),
    }
}

fn ports_on_all_interfaces(container: &ContainerInfo) -> Outcome {
    let Some(ports) = container.ports.as_ref() else {
        return unknown_field("published ports");
    };
    let wildcard: Vec<String> = ports
        .iter()
        .filter(|port| matches!(port.host_ip.as_str(), "" | "0.0.0.0" | "::" | "[::]"))
        .map(|port| format!("{}/{}", port.container_port, port.protocol))
        .collect();
    if wildcard.is_empty() {
        Outcome::pass("every published port is bound to a specific address")
    } else {
        Outcome::fail(format!("bound to every interface: {}", wildcard.join(", ")))
    }
}

fn restart_attempts(container: &ContainerInfo) -> Outcome {
    let Some(policy) = container.restart_policy.as_ref() else {
        return unknown_field("the restart policy");
    };
    if policy.name != "on-failure" {
        let shown = if policy.name.is_empty() {
            "no"
        } else {
            &policy.name
        };
        return Outcome::pass(format!("restart policy {shown:?}"));
    }
    match policy.max_retries {
        retries if retries <= 0 => Outcome::fail("on-failure without a retry limit"),
        retries if retries > 5 => Outcome::fail(format!("on-failure with {retries} retries")),
        retries => Outcome::pass(format!("on-failure with {retries} retries")),
    }
}

fn host_devices(container: &ContainerInfo) -> Outcome {
    let Some(devices) = container.devices.as_ref() else {
        return unknown_field("devices");
    };
    if devices.is_empty() {
        return Outcome::pass("no host devices");
    }
    let listed: Vec<&str> = devices
        .iter()
        .map(|device| device.host_path.as_str())
        .collect();
    Outcome::fail(format!("host devices: {}", listed.join(", ")))
}

fn shared_propagation(container: &ContainerInfo) -> Outcome {
    let Some(mounts) = container.mounts.as_ref() else {
        return unknown_field("mounts");
    };
    let shared: Vec<&str> = mounts
        .iter()
        .filter(|mount| matches!(mount.propagation.as_str(), "shared" | "rshared"))
        .map(|mount| mount.destination.as_str())
        .collect();
    if shared.is_empty() {
        Outcome::pass("no mount with shared propagation")
    } else {
        Outcome::fail(format!("shared propagation on {}", shared.join(", ")))
    }
}

fn seccomp_unconfined(container: &ContainerInfo) -> Outcome {
    match container.security.seccomp.as_ref() {
        None => unknown_field("the seccomp profile"),
        Some(SeccompProfile::Unconfined) => Outcome::fail("seccomp disabled (unconfined)"),
        Some(SeccompProfile::Default) => Outcome::pass("default seccomp profile"),
        Some(SeccompProfile::Custom(name)) => Outcome::pass(format!("seccomp profile {name}")),
    }
}

fn cgroup_parent(container: &ContainerInfo) -> Outcome {
    match container.cgroup_parent.as_deref() {
        None => unknown_field("the cgroup parent"),
        Some("") => Outcome::pass("default cgroup parent"),
        Some(parent) => Outcome::fail(format!("custom cgroup parent {parent:?}: confirm it")),
    }
}

fn no_new_privileges(container: &ContainerInfo) -> Outcome {
    match container.security.no_new_privileges {
        None => unknown_field("no-new-privileges"),
        Some(true) => Outcome::pass("no-new-privileges set"),
        Some(false) => Outcome::fail("no-new-privileges not set"),
    }
}

fn health_check(container: &ContainerInfo) -> Outcome {
    match container.health_check.as_ref() {
        None => unknown_field("the health check"),
        Some(HealthCheck::None) => Outcome::fail("no health check"),
        Some(HealthCheck::Command(test)) => Outcome::pass(format!("health check {test:?}")),
    }
}

fn pids_limit(container: &ContainerInfo) -> Outcome {
    match container.limits.pids_limit {
        None => unknown_field("the PIDs limit"),
        Some(limit) if limit > 0 => Outcome::pass(format!("PIDs limited to {limit}")),
        Some(_) => Outcome::fail("no PIDs limit"),
    }
}

/// Socket file names that hand out control of a container engine.
const ENGINE_SOCKETS: [&str; 1] = ["docker.sock"];

fn docker_socket_mounted(container: &ContainerInfo) -> Outcome {
    let Some(mounts) = container.mounts.as_ref() else {
        return unknown_field("mounts");
    };
    let sockets: Vec<&str> = mounts
        .iter()
        .filter(|mount| {
            ENGINE_SOCKETS.iter().any(|socket| {
                mount.source.ends_with(&format!("/{socket}"))
                    || mount.destination.ends_with(&format!("/{socket}"))
            })
        })
        .map(|mount| mount.source.as_str())
        .collect();
    if sockets.is_empty() {
        Outcome::pass("Docker socket not mounted")
    } else {
        Outcome::fail(format!("mounts {}", sockets.join(", ")))
    }
}

#[cfg(test)]
pub(super) fn sensitive_path_for_tests(source: &str) -> bool {
    is_sensitive_host_path(source)
}
