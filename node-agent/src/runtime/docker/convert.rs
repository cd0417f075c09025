//! Docker's inspect document → `ContainerInfo`. Pure: no calls to the engine here, so the
//! mapping is tested on recorded documents.
//!
//! Docker reports every configuration field, so nothing is `unknown` for a Docker container
//! except what the engine leaves out entirely (then the whole section is `None`).

use std::collections::BTreeMap;

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, HostConfig, PortMap};
use lazaret_core::container::{
    Device, HealthCheck, HostNamespaces, Limits, Mount, PodInfo, PublishedPort, RestartPolicy,
    SeccompProfile, SecurityOptions, normalize_capability,
};
use lazaret_core::{ContainerId, ContainerInfo, ContainerState, RuntimeKind};

/// Builds the container model from an inspect response; `image_digest` comes from the image's
/// `RepoDigests` (looked up separately, cached by image id).
pub fn container_info(
    inspect: &ContainerInspectResponse,
    image_digest: Option<String>,
) -> ContainerInfo {
    let id = ContainerId::new(inspect.id.clone().unwrap_or_default());
    let mut info = ContainerInfo::unknown(id, RuntimeKind::Docker);
    info.name = inspect
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    info.image_id = inspect.image.clone().unwrap_or_default();
    info.image_digest = image_digest;
    info.created = inspect.created.clone();
    if let Some(state) = inspect.state.as_ref() {
        info.state = state
            .status
            .and_then(container_state)
            .unwrap_or(ContainerState::Unknown);
        info.pid = state
            .pid
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|pid| *pid > 0);
    }
    if let Some(config) = inspect.config.as_ref() {
        info.image = config.image.clone().unwrap_or_default();
        info.user = Some(config.user.clone().unwrap_or_default());
        info.labels = config
            .labels
            .as_ref()
            .map(|labels| labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_else(BTreeMap::new);
        info.health_check = Some(health_check(
            config.healthcheck.as_ref().and_then(|h| h.test.as_ref()),
        ));
    }
    info.pod = PodInfo::from_labels(&info.labels);
    if let Some(host) = inspect.host_config.as_ref() {
        apply_host_config(&mut info, host);
        info.security.apparmor_profile =
            Some(inspect.app_armor_profile.clone().unwrap_or_default());
    }
    info.mounts = inspect.mounts.as_ref().map(|mounts| {
        mounts
            .iter()
            .map(|mount| Mount {
                kind: mount.typ.clone().unwrap_or_default(),
                source: mount.source.clone().unwrap_or_default(),
                destination: mount.destination.clone().unwrap_or_default(),
                read_write: mount.rw.unwrap_or(true),
                propagation: mount.propagation.clone().unwrap_or_default(),
            })
            .collect()
    });
    if let Some(network) = inspect.network_settings.as_ref() {
        info.netns_path = network.sandbox_key.clone().filter(|key| !key.is_empty());
        // A running container reports the ports actually bound (random ones resolved); the
        // configuration is the fallback for containers that are not running.
        if let Some(bound) = network
            .ports
            .as_ref()
            .map(published_ports)
            .filter(|ports| !ports.is_empty())
        {
            info.ports = Some(bound);
        }
    }
    info
}

fn container_state(status: ContainerStateStatusEnum) -> Option<ContainerState> {
    Some(match status {
        ContainerStateStatusEnum::CREATED => ContainerState::Created,
        // `stopping` (newer engines): still running until it has stopped.
        ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::STOPPING => {
            ContainerState::Running
        }
        ContainerStateStatusEnum::PAUSED => ContainerState::Paused,
        ContainerStateStatusEnum::RESTARTING => ContainerState::Restarting,
        ContainerStateStatusEnum::REMOVING => ContainerState::Removing,
        ContainerStateStatusEnum::EXITED => ContainerState::Exited,
        ContainerStateStatusEnum::DEAD => ContainerState::Dead,
        ContainerStateStatusEnum::EMPTY => return None,
    })
}

fn health_check(test: Option<&Vec<String>>) -> HealthCheck {
    match test {
        None => HealthCheck::None,
        Some(test) if test.is_empty() || test.first().is_some_and(|first| first == "NONE") => {
            HealthCheck::None
        }
        Some(test) => HealthCheck::Command(test.clone()),
    }
}

fn is_host_mode(mode: Option<&String>) -> bool {
    mode.is_some_and(|mode| mode == "host")
}

fn apply_host_config(info: &mut ContainerInfo, host: &HostConfig) {
    let privileged = host.privileged.unwrap_or(false);
    info.privileged = Some(privileged);
    let capabilities = |list: Option<&Vec<String>>| {
        list.map(|caps| caps.iter().map(|cap| normalize_capability(cap)).collect())
            .unwrap_or_default()
    };
    info.cap_add = Some(capabilities(host.cap_add.as_ref()));
    info.cap_drop = Some(capabilities(host.cap_drop.as_ref()));
    info.netns_owner = host
        .network_mode
        .as_deref()
        .and_then(|mode| mode.strip_prefix("container:"))
        .map(str::to_string);
    info.host_namespaces = HostNamespaces {
        network: Some(is_host_mode(host.network_mode.as_ref())),
        pid: Some(is_host_mode(host.pid_mode.as_ref())),
        ipc: Some(is_host_mode(host.ipc_mode.as_ref())),
        uts: Some(is_host_mode(host.uts_mode.as_ref())),
        user: Some(is_host_mode(host.userns_mode.as_ref())),
    };
    info.devices = Some(
        host.devices
            .iter()
            .flatten()
            .map(|device| Device {
                host_path: device.path_on_host.clone().unwrap_or_default(),
                container_path: device.path_in_container.clone().unwrap_or_default(),
                permissions: device.cgroup_permissions.clone().unwrap_or_default(),
            })
            .collect(),
    );
    info.security = security_options(host.security_opt.as_deref().unwrap_or_default(), privileged);
    info.cgroup_parent = Some(host.cgroup_parent.clone().unwrap_or_default());
    info.read_only_rootfs = Some(host.readonly_rootfs.unwrap_or(false));
    info.limits = Limits {
        memory_bytes: Some(host.memory.unwrap_or(0)),
        cpu_shares: Some(host.cpu_shares.unwrap_or(0)),
        nano_cpus: Some(host.nano_cpus.unwrap_or(0)),
        cpu_quota: Some(host.cpu_quota.unwrap_or(0)),
        pids_limit: Some(host.pids_limit.unwrap_or(0)),
    };
    info.restart_policy = Some(match host.restart_policy.as_ref() {
        Some(policy) => RestartPolicy {
            name: policy.name.map(|name| name.to_string()).unwrap_or_default(),
            max_retries: policy.maximum_retry_count.unwrap_or(0),
        },
        None => RestartPolicy {
            name: String::new(),
            max_retries: 0,
        },
    });
    info.ports = Some(
        host.port_bindings
            .as_ref()
            .map(published_ports)
            .unwrap_or_default(),
    );
}

/// Parses Docker's `SecurityOpt` strings (`seccomp=unconfined`, `label=disable`,
/// `no-new-privileges`, in `=` or legacy `:` form). A privileged container runs without seccomp
/// whatever its options say.
fn security_options(options: &[String], privileged: bool) -> SecurityOptions {
    let mut seccomp = SeccompProfile::Default;
    let mut selinux_labels = Vec::new();
    let mut no_new_privileges = false;
    for option in options {
        let (key, value) = option
            .split_once(['=', ':'])
            .map_or((option.as_str(), ""), |(key, value)| (key, value));
        match key {
            "seccomp" if value == "unconfined" => seccomp = SeccompProfile::Unconfined,
            "seccomp" => seccomp = SeccompProfile::Custom(summarize_profile(value)),
            "label" => selinux_labels.push(option.clone()),
            "no-new-privileges" => no_new_privileges = value.is_empty() || value == "true",
            _ => {}
        }
    }
    if privileged {
        seccomp = SeccompProfile::Unconfined;
    }
    SecurityOptions {
        seccomp: Some(seccomp),
        apparmor_profile: None,
        selinux_labels: Some(selinux_labels),
        no_new_privileges: Some(no_new_privileges),
    }
}

/// Docker inlines a custom seccomp profile's whole JSON into `SecurityOpt`; keep a readable hint.
fn summarize_profile(value: &str) -> String {
    const LIMIT: usize = 40;
    if value.len() <= LIMIT {
        return value.to_string();
    }
    let cut = (0..=LIMIT)
        .rev()
        .find(|index| value.is_char_boundary(*index))
        .unwrap_or(0);
    format!("{}…", &value[..cut])
}

fn published_ports(ports: &PortMap) -> Vec<PublishedPort> {
    let mut published = Vec::new();
    for (key, bindings) in ports {
        let (port, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        for binding in bindings.iter().flatten() {
            published.push(PublishedPort {
                container_port,
                protocol: protocol.to_string(),
                host_ip: binding.host_ip.clone().unwrap_or_default(),
                host_port: binding
                    .host_port
                    .as_deref()
                    .and_then(|port| port.parse().ok())
                    .unwrap_or(0),
            });
        }
    }
    published.sort_by(|a, b| (a.container_port, &a.host_ip).cmp(&(b.container_port, &b.host_ip)));
    published
}
