//! The record → `ContainerInfo` mapping on containers recorded with `ctr containers info`
//! from containerd 1.6.20 (three made with `ctr`, one Docker 20.10 container read from Docker's
//! own containerd), and the envelope → event mapping.

use std::collections::HashMap;

use containerd_client::events::{ContainerCreate, ContainerDelete, TaskExit, TaskStart};
use containerd_client::services::v1::Container;
use containerd_client::types::Envelope;
use containerd_client::types::v1::{Process, Status};
use lazaret_core::container::SeccompProfile;
use lazaret_core::posture::{CheckResult, assess};
use lazaret_core::{ContainerInfo, ContainerState, RuntimeKind};
use prost::Message;
use serde::Deserialize;

use super::capabilities::{DEFAULT_CAPABILITIES, KERNEL_CAPABILITIES, capabilities_from_mask};
use super::convert::cgroup_parent_for_tests;
use super::records::repository_of;
use super::{Host, ImageView, container_info, event_from_envelope};
use crate::runtime::EventKind;

/// The shape `ctr containers info` prints (the spec decoded inline).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Recorded {
    #[serde(rename = "ID")]
    id: String,
    labels: Option<HashMap<String, String>>,
    image: String,
    created_at: String,
    spec: serde_json::Value,
}

fn recorded_json(name: &str) -> &'static str {
    match name {
        "plain" => include_str!("fixtures/plain.json"),
        "hardened-and-risky" => include_str!("fixtures/hardened-and-risky.json"),
        "privileged-host" => include_str!("fixtures/privileged-host.json"),
        "moby-docker" => include_str!("fixtures/moby-docker.json"),
        other => panic!("no fixture {other}"),
    }
}

/// Rebuilds the gRPC record containerd sent `ctr`: the spec travels as JSON inside an Any.
fn recorded(name: &str) -> Container {
    let recorded: Recorded = serde_json::from_str(recorded_json(name)).expect("fixture parses");
    let created = chrono::DateTime::parse_from_rfc3339(&recorded.created_at).unwrap();
    Container {
        id: recorded.id,
        labels: recorded.labels.unwrap_or_default(),
        image: recorded.image,
        spec: Some(prost_types::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: serde_json::to_vec(&recorded.spec).unwrap(),
        }),
        created_at: Some(prost_types::Timestamp {
            seconds: created.timestamp(),
            nanos: i32::try_from(created.timestamp_subsec_nanos()).unwrap(),
        }),
        ..Container::default()
    }
}

fn task(status: Status, pid: u32) -> Process {
    Process {
        id: "ignored".into(),
        pid,
        status: status as i32,
        ..Process::default()
    }
}

/// Test stand-in for the inode comparison: only `/proc/1/ns/*` is the host's.
fn host_if_pid_one(_kind: &str, path: &str) -> Option<bool> {
    Some(path.starts_with("/proc/1/ns/"))
}

/// The recording machine's bounding set (`CapBnd: 000001fffeffffff`: no SYS_RESOURCE), which is
/// what its containerd gave `--privileged`.
fn recording_host_capabilities() -> Vec<String> {
    capabilities_from_mask(0x0000_01ff_feff_ffff)
}

fn convert_with(
    namespace: &str,
    name: &str,
    task: Option<&Process>,
    image: Option<&ImageView>,
    is_host_namespace: &dyn Fn(&str, &str) -> Option<bool>,
) -> ContainerInfo {
    let capabilities = recording_host_capabilities();
    let host = Host {
        capabilities: &capabilities,
        is_host_namespace,
    };
    container_info(namespace, &recorded(name), task, image, &host)
}

fn convert(namespace: &str, name: &str, task: Option<&Process>) -> ContainerInfo {
    let image = ImageView {
        id: "sha256:b6e5b9e7dee1aed765acebdceb1c0f71a8b70f7e7d8fbac594bd9d93c4163683".into(),
        registry_digest: None,
    };
    convert_with(namespace, name, task, Some(&image), &host_if_pid_one)
}

fn result_of(info: &ContainerInfo, check: &str) -> CheckResult {
    assess(info)
        .into_iter()
        .find(|finding| finding.check == check)
        .unwrap_or_else(|| panic!("no check {check}"))
        .result
}

#[test]
fn plain_ctr_container_is_judged_from_its_spec() {
    let info = convert("lzt-x", "plain", None);
    assert_eq!(info.runtime, RuntimeKind::Containerd);
    assert_eq!(info.namespace, "lzt-x");
    assert_eq!(info.name, "lzfix-plain");
    assert_eq!(info.image, "docker.io/lazaret-test/busybox:latest");
    assert!(info.image_id.starts_with("sha256:"));
    assert_eq!(info.image_digest, None);
    assert_eq!(info.state, ContainerState::Created);
    assert_eq!(info.pid, None);
    assert_eq!(
        info.created.as_deref(),
        Some("2026-11-28T18:30:14.608607093Z")
    );
    assert_eq!(info.user.as_deref(), Some("0"));
    assert_eq!(info.cap_add, Some(vec![]));
    assert_eq!(info.cap_drop, Some(vec![]));
    assert_eq!(info.privileged, Some(false));
    assert_eq!(info.host_namespaces.network, Some(false));
    assert_eq!(info.host_namespaces.pid, Some(false));
    assert_eq!(
        info.host_namespaces.user, None,
        "no user namespace is not a verdict"
    );
    assert_eq!(info.security.seccomp, Some(SeccompProfile::Unconfined));
    assert_eq!(info.security.no_new_privileges, Some(true));
    assert_eq!(info.security.apparmor_profile.as_deref(), Some(""));
    assert_eq!(info.read_only_rootfs, Some(false));
    assert_eq!(info.cgroup_parent.as_deref(), Some(""));
    assert_eq!(info.devices, Some(vec![]));
    let mounts = info.mounts.as_ref().unwrap();
    assert_eq!(
        mounts
            .iter()
            .map(|mount| mount.destination.as_str())
            .collect::<Vec<_>>(),
        ["/run"],
        "kernel filesystems are left out"
    );
    assert_eq!(info.limits.memory_bytes, Some(0));
    assert_eq!(info.limits.cpu_shares, Some(0));
    assert_eq!(info.limits.pids_limit, Some(0));
    assert_eq!(
        (info.ports.clone(), info.health_check.clone()),
        (None, None)
    );
    assert_eq!(info.restart_policy, None);
    assert_eq!(
        info.netns_path, None,
        "no task, no namespace of its own yet"
    );

    let running = convert("lzt-x", "plain", Some(&task(Status::Running, 4242)));
    assert_eq!(running.state, ContainerState::Running);
    assert_eq!(running.pid, Some(4242));
    assert_eq!(running.netns_path.as_deref(), Some("/proc/4242/ns/net"));

    for (check, expected) in [
        ("4.1", CheckResult::Fail),
        ("5.4", CheckResult::Pass),
        ("5.5", CheckResult::Pass),
        ("5.6", CheckResult::Pass),
        ("5.8", CheckResult::Unknown),
        ("5.10", CheckResult::Pass),
        ("5.15", CheckResult::Unknown),
        ("5.22", CheckResult::Fail),
        ("5.25", CheckResult::Pass),
        ("5.26", CheckResult::Pass),
        ("5.27", CheckResult::Unknown),
        ("5.31", CheckResult::Unknown),
    ] {
        assert_eq!(result_of(&info, check), expected, "check {check}");
    }
}

#[test]
fn every_option_of_a_risky_cri_like_container_is_mapped() {
    let info = convert(
        "k8s.io",
        "hardened-and-risky",
        Some(&task(Status::Paused, 77)),
    );
    assert_eq!(info.state, ContainerState::Paused);
    assert_eq!(info.pid, Some(77));
    assert_eq!(
        info.name, "nginx",
        "CRI containers are named by their container name"
    );
    let pod = info.pod.as_ref().unwrap();
    assert_eq!(
        (
            pod.name.as_str(),
            pod.namespace.as_str(),
            pod.container_name.as_str()
        ),
        ("web-0", "shop", "nginx")
    );
    assert_eq!(pod.sandbox_id, "0123abcd");
    // It shares the sandbox's network namespace: cut only with `scope: pod`.
    assert_eq!(info.netns_owner.as_deref(), Some("0123abcd"));
    assert_eq!(
        info.netns_path.as_deref(),
        Some("/var/run/netns/cni-0f1e2d3c-fixture"),
        "the joined namespace wins over the task's"
    );
    assert_eq!(info.host_namespaces.network, Some(false));
    assert_eq!(
        info.cap_add,
        Some(vec!["NET_ADMIN".into(), "SYS_ADMIN".into()])
    );
    assert_eq!(info.cap_drop, Some(vec!["MKNOD".into()]));
    assert_eq!(info.privileged, Some(false));
    assert_eq!(info.read_only_rootfs, Some(true));
    assert_eq!(info.security.seccomp, Some(SeccompProfile::Default));
    assert_eq!(
        info.security.apparmor_profile.as_deref(),
        Some("lazaret-test")
    );
    assert_eq!(info.limits.memory_bytes, Some(64 * 1024 * 1024));
    assert_eq!(info.limits.cpu_quota, Some(50_000));
    assert_eq!(info.limits.nano_cpus, Some(500_000_000));
    let restart = info.restart_policy.as_ref().unwrap();
    assert_eq!(
        (restart.name.as_str(), restart.max_retries),
        ("on-failure", 7)
    );
    let devices = info.devices.as_ref().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].host_path, "/dev/char/1:3");
    assert_eq!(devices[0].container_path, "/dev/null");
    assert_eq!(devices[0].permissions, "rwm");
    crate::runtime::expectations::assert_risky_mounts(&info);
    for (check, expected) in [
        ("5.2", CheckResult::Pass),
        ("5.4", CheckResult::Fail),
        ("5.6", CheckResult::Fail),
        ("5.11", CheckResult::Pass),
        ("5.12", CheckResult::Pass),
        ("5.13", CheckResult::Pass),
        ("5.15", CheckResult::Fail),
        ("5.18", CheckResult::Fail),
        ("5.20", CheckResult::Fail),
        ("5.22", CheckResult::Pass),
        ("5.32", CheckResult::Fail),
    ] {
        assert_eq!(result_of(&info, check), expected, "check {check}");
    }
}

#[test]
fn privileged_and_host_namespaces_are_inferred_from_the_spec() {
    let info = convert("lzt-x", "privileged-host", None);
    assert_eq!(info.privileged, Some(true));
    assert_eq!(
        info.host_namespaces.network,
        Some(true),
        "no network namespace"
    );
    assert_eq!(info.host_namespaces.pid, Some(true), "joins /proc/1/ns/pid");
    assert_eq!(info.host_namespaces.ipc, Some(false));
    assert_eq!(info.netns_path, None);
    assert!(
        info.devices.as_ref().unwrap().len() > 50,
        "every host device"
    );
    for (check, expected) in [
        ("5.4", CheckResult::Fail),
        ("5.5", CheckResult::Fail),
        ("5.10", CheckResult::Fail),
        ("5.16", CheckResult::Fail),
        ("5.18", CheckResult::Fail),
    ] {
        assert_eq!(result_of(&info, check), expected, "check {check}");
    }

    // A joined namespace that cannot be examined is unknown, never "not the host's".
    let unreadable = convert_with("lzt-x", "privileged-host", None, None, &|_kind, _path| None);
    assert_eq!(unreadable.host_namespaces.pid, None);
    assert_eq!(unreadable.image_id, "", "no image record, no image id");
}

#[test]
fn docker_containers_in_the_moby_namespace_keep_only_what_containerd_knows() {
    let info = convert_with("moby", "moby-docker", None, None, &host_if_pid_one);
    assert_eq!(info.namespace, "moby");
    assert_eq!(
        info.image, "",
        "Docker leaves the image out of containerd's record"
    );
    assert_eq!(info.image_id, "");
    assert_eq!(info.user.as_deref(), Some("1000:1000"));
    assert_eq!(info.cap_add, Some(vec!["SYS_ADMIN".into()]));
    assert_eq!(info.cap_drop, Some(vec!["MKNOD".into()]));
    assert_eq!(info.privileged, Some(false));
    assert_eq!(info.limits.memory_bytes, Some(64 * 1024 * 1024));
    assert_eq!(info.limits.pids_limit, Some(50));
    assert_eq!(info.security.no_new_privileges, Some(true));
    assert_eq!(info.security.seccomp, Some(SeccompProfile::Default));
    assert_eq!(
        info.cgroup_parent.as_deref(),
        Some(""),
        "/docker is Docker's default"
    );
    let etc = info
        .mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|mount| mount.source == "/etc")
        .expect("Docker's spec carries its bind mounts");
    assert!(!etc.read_write);
}

#[test]
fn an_unknown_capability_does_not_blind_the_agent() {
    let mut container = recorded("privileged-host");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&container.spec.as_ref().unwrap().value).unwrap();
    spec["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push("CAP_LAZARET_MADE_UP".into());
    let text = serde_json::to_vec(&spec).unwrap();
    assert!(
        serde_json::from_slice::<oci_spec::runtime::Spec>(&text).is_err(),
        "oci-spec refuses the whole document, which is why spec.rs exists"
    );
    container.spec.as_mut().unwrap().value = text;
    let capabilities = recording_host_capabilities();
    let host = Host {
        capabilities: &capabilities,
        is_host_namespace: &host_if_pid_one,
    };
    let info = container_info("lzt-x", &container, None, None, &host);
    assert_eq!(info.privileged, Some(true));
    assert!(
        info.cap_add
            .unwrap()
            .contains(&"LAZARET_MADE_UP".to_string())
    );
}

#[test]
fn a_container_without_a_readable_spec_is_unknown_not_clean() {
    let mut container = recorded("plain");
    container.spec = Some(prost_types::Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
        value: b"not json".to_vec(),
    });
    let host = Host {
        capabilities: &[],
        is_host_namespace: &host_if_pid_one,
    };
    let info = container_info("lzt-x", &container, None, None, &host);
    assert_eq!(info.privileged, None);
    assert_eq!(info.cap_add, None);
    assert_eq!(info.mounts, None);
    assert_eq!(result_of(&info, "5.5"), CheckResult::Unknown);
}

#[test]
fn task_status_maps_to_container_state() {
    for (status, state, pid) in [
        (Status::Created, ContainerState::Created, None),
        (Status::Running, ContainerState::Running, Some(9)),
        (Status::Paused, ContainerState::Paused, Some(9)),
        (Status::Pausing, ContainerState::Paused, Some(9)),
        (Status::Stopped, ContainerState::Exited, None),
        (Status::Unknown, ContainerState::Unknown, None),
    ] {
        let info = convert("lzt-x", "plain", Some(&task(status, 9)));
        assert_eq!((info.state, info.pid), (state, pid), "{status:?}");
    }
}

/// `DEFAULT_CAPABILITIES` is a copy of core's private baseline for check 5.4: pin the two
/// together on every classic capability.
#[test]
fn default_capabilities_match_the_posture_baseline() {
    for capability in KERNEL_CAPABILITIES {
        let mut info = ContainerInfo::unknown(
            lazaret_core::ContainerId::new("pin"),
            RuntimeKind::Containerd,
        );
        info.cap_add = Some(vec![capability.to_string()]);
        let expected = if DEFAULT_CAPABILITIES.contains(&capability) {
            CheckResult::Pass
        } else {
            CheckResult::Fail
        };
        assert_eq!(result_of(&info, "5.4"), expected, "{capability}");
    }
}

#[test]
fn privileged_means_every_capability_this_host_can_grant() {
    let capabilities = recording_host_capabilities();
    assert_eq!(capabilities.len(), 40);
    assert!(!capabilities.contains(&"SYS_RESOURCE".to_string()));
    // On a host that has SYS_RESOURCE, the same spec lacks one capability: not privileged.
    let full_host = capabilities_from_mask(0x0000_01ff_ffff_ffff);
    let host = Host {
        capabilities: &full_host,
        is_host_namespace: &host_if_pid_one,
    };
    let info = container_info("lzt-x", &recorded("privileged-host"), None, None, &host);
    assert_eq!(info.privileged, Some(false));
    // Without the host's set, every capability up to AUDIT_READ is required.
    let unknown_host = Host {
        capabilities: &[],
        is_host_namespace: &host_if_pid_one,
    };
    let info = container_info(
        "lzt-x",
        &recorded("privileged-host"),
        None,
        None,
        &unknown_host,
    );
    assert_eq!(info.privileged, Some(false));
}

#[test]
fn cgroup_parents_are_derived_only_when_the_form_is_clear() {
    assert_eq!(
        cgroup_parent_for_tests("/default/web", "default", "web").as_deref(),
        Some("")
    );
    assert_eq!(
        cgroup_parent_for_tests("/docker/abc", "moby", "abc").as_deref(),
        Some("")
    );
    assert_eq!(
        cgroup_parent_for_tests("system.slice:docker:abc", "moby", "abc").as_deref(),
        Some("")
    );
    assert_eq!(
        cgroup_parent_for_tests("/custom/web", "default", "web").as_deref(),
        Some("/custom")
    );
    assert_eq!(
        cgroup_parent_for_tests("kubepods-pod1.slice:cri-containerd:web", "k8s.io", "web")
            .as_deref(),
        Some("kubepods-pod1.slice")
    );
    assert_eq!(
        cgroup_parent_for_tests("/elsewhere", "default", "web"),
        None
    );
}

#[test]
fn repositories_lose_their_tag_but_keep_a_registry_port() {
    assert_eq!(
        repository_of("docker.io/library/nginx:1.25"),
        "docker.io/library/nginx"
    );
    assert_eq!(repository_of("localhost:5000/app"), "localhost:5000/app");
    assert_eq!(repository_of("localhost:5000/app:v1"), "localhost:5000/app");
}

fn envelope(topic: &str, payload: Vec<u8>) -> Envelope {
    Envelope {
        timestamp: Some(prost_types::Timestamp {
            seconds: 2,
            nanos: 5,
        }),
        namespace: "default".into(),
        topic: topic.into(),
        event: Some(prost_types::Any {
            type_url: "containerd.events.Whatever".into(),
            value: payload,
        }),
    }
}

#[test]
fn envelopes_become_container_events() {
    let create = ContainerCreate {
        id: "web".into(),
        ..ContainerCreate::default()
    };
    let event =
        event_from_envelope(&envelope("/containers/create", create.encode_to_vec())).unwrap();
    assert_eq!((event.id.as_str(), event.kind), ("web", EventKind::Changed));
    assert_eq!(event.time_nanos, 2_000_000_005);
    assert_eq!(event.action, "/containers/create");

    let start = TaskStart {
        container_id: "web".into(),
        pid: 3,
    };
    let event = event_from_envelope(&envelope("/tasks/start", start.encode_to_vec())).unwrap();
    assert_eq!((event.id.as_str(), event.kind), ("web", EventKind::Started));
    assert_eq!(event.pid, Some(3), "the start's PID feeds the fast path");
    assert_eq!(
        event_from_envelope(&envelope("/containers/create", create.encode_to_vec()))
            .unwrap()
            .pid,
        None
    );

    let delete = ContainerDelete { id: "web".into() };
    let event =
        event_from_envelope(&envelope("/containers/delete", delete.encode_to_vec())).unwrap();
    assert_eq!(event.kind, EventKind::Removed);

    let init_exit = TaskExit {
        container_id: "web".into(),
        id: "web".into(),
        ..TaskExit::default()
    };
    assert!(event_from_envelope(&envelope("/tasks/exit", init_exit.encode_to_vec())).is_some());
    let exec_exit = TaskExit {
        container_id: "web".into(),
        id: "exec-1".into(),
        ..TaskExit::default()
    };
    assert!(event_from_envelope(&envelope("/tasks/exit", exec_exit.encode_to_vec())).is_none());
    assert!(event_from_envelope(&envelope("/tasks/exec-added", Vec::new())).is_none());
    assert!(event_from_envelope(&envelope("/images/create", Vec::new())).is_none());
    assert!(
        event_from_envelope(&envelope("/tasks/start", vec![0xff, 0xff])).is_none(),
        "a payload that does not decode is dropped"
    );
}
