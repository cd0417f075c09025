//! The inspect → `ContainerInfo` mapping on documents recorded from Docker 20.10.24.

use bollard::models::ContainerInspectResponse;
use lazaret_core::container::{HealthCheck, SeccompProfile};
use lazaret_core::posture::{CheckResult, assess};
use lazaret_core::{ContainerState, RuntimeKind};

use super::container_info;

fn recorded(name: &str) -> ContainerInspectResponse {
    let text = match name {
        "hardened-and-risky" => include_str!("fixtures/hardened-and-risky.json"),
        "privileged-host" => include_str!("fixtures/privileged-host.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).expect("fixture parses as an inspect response")
}

#[test]
fn maps_every_security_relevant_field() {
    let info = container_info(&recorded("hardened-and-risky"), None);
    assert_eq!(info.runtime, RuntimeKind::Docker);
    assert_eq!(info.name, "lzfix");
    assert_eq!(info.image, "lazaret-test/busybox:fixture");
    assert!(info.image_id.starts_with("sha256:"));
    assert_eq!(info.image_digest, None);
    assert_eq!(info.state, ContainerState::Created);
    assert_eq!(info.user.as_deref(), Some("1000:1000"));
    assert_eq!(info.privileged, Some(false));
    let mut added = info.cap_add.clone().unwrap();
    added.sort();
    assert_eq!(added, ["NET_ADMIN", "SYS_ADMIN"]);
    assert_eq!(info.cap_drop, Some(vec!["MKNOD".into()]));
    assert_eq!(info.security.seccomp, Some(SeccompProfile::Unconfined));
    assert_eq!(info.security.no_new_privileges, Some(true));
    assert_eq!(info.security.apparmor_profile.as_deref(), Some(""));
    assert_eq!(info.limits.memory_bytes, Some(64 * 1024 * 1024));
    assert_eq!(info.limits.cpu_shares, Some(512));
    assert_eq!(info.limits.pids_limit, Some(50));
    assert_eq!(info.read_only_rootfs, Some(true));
    assert_eq!(info.cgroup_parent.as_deref(), Some("/custom"));
    let restart = info.restart_policy.as_ref().unwrap();
    assert_eq!(
        (restart.name.as_str(), restart.max_retries),
        ("on-failure", 7)
    );
    assert_eq!(
        info.health_check,
        Some(HealthCheck::Command(vec![
            "CMD-SHELL".into(),
            "true".into()
        ]))
    );
    let devices = info.devices.as_ref().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].host_path, "/dev/null");
    crate::runtime::expectations::assert_risky_mounts(&info);
    let ports = info.ports.as_ref().unwrap();
    assert_eq!(ports.len(), 2);
    assert!(
        ports
            .iter()
            .any(|port| port.host_port == 80 && port.host_ip.is_empty())
    );
    assert!(ports.iter().any(|port| port.host_port == 8080
        && port.host_ip == "127.0.0.1"
        && port.protocol == "udp"));
    assert_eq!(
        info.pod.as_ref().map(|pod| pod.name.as_str()),
        Some("web-0")
    );
    assert_eq!(info.host_namespaces.network, Some(false));
}

#[test]
fn privileged_host_namespace_container_is_judged_from_its_configuration() {
    let info = container_info(&recorded("privileged-host"), Some("repo@sha256:00".into()));
    assert_eq!(info.privileged, Some(true));
    assert_eq!(info.image_digest.as_deref(), Some("repo@sha256:00"));
    assert_eq!(info.host_namespaces.network, Some(true));
    assert_eq!(info.host_namespaces.pid, Some(true));
    assert_eq!(info.host_namespaces.ipc, Some(true));
    assert_eq!(info.host_namespaces.uts, Some(true));
    assert_eq!(info.host_namespaces.user, Some(false));
    // Privileged containers run without seccomp whatever SecurityOpt says.
    assert_eq!(info.security.seccomp, Some(SeccompProfile::Unconfined));
    assert_eq!(info.limits.pids_limit, Some(0));
    assert_eq!(info.user.as_deref(), Some(""));
    assert_eq!(info.health_check, Some(HealthCheck::None));
}

#[test]
fn nothing_is_unknown_for_docker_except_the_process_scan() {
    for fixture in ["hardened-and-risky", "privileged-host"] {
        let info = container_info(&recorded(fixture), None);
        for finding in assess(&info) {
            let expected_unknown = finding.check == "5.7";
            assert_eq!(
                finding.result == CheckResult::Unknown,
                expected_unknown,
                "{fixture}: check {} gave {:?} ({})",
                finding.check,
                finding.result,
                finding.detail
            );
        }
    }
}
