//! Posture tests for the catalogue as a whole and whole containers, plus the shared helpers.

mod identity_and_privilege;
mod mounts_and_devices;
mod namespaces;
mod ports;
mod resources_and_lifecycle;
mod security_profiles;

use super::*;
use crate::container::*;

const EVERY_CHECK: [&str; 26] = [
    "4.1", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7", "5.8", "5.10", "5.11", "5.12", "5.13", "5.14",
    "5.15", "5.16", "5.17", "5.18", "5.20", "5.21", "5.22", "5.25", "5.26", "5.27", "5.29", "5.31",
    "5.32",
];

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn unknown_container() -> ContainerInfo {
    ContainerInfo::unknown(ContainerId::new("c1"), RuntimeKind::Fake)
}

/// A container with every field the checks read filled in with a passing value.
fn hardened() -> ContainerInfo {
    let mut container = unknown_container();
    container.user = Some("app".to_string());
    container.privileged = Some(false);
    container.cap_add = Some(vec![]);
    container.cap_drop = Some(vec!["ALL".to_string()]);
    container.host_namespaces = HostNamespaces {
        network: Some(false),
        pid: Some(false),
        ipc: Some(false),
        uts: Some(false),
        user: Some(false),
    };
    container.mounts = Some(vec![]);
    container.devices = Some(vec![]);
    container.security = SecurityOptions {
        seccomp: Some(SeccompProfile::Default),
        apparmor_profile: Some("docker-default".to_string()),
        selinux_labels: Some(vec!["label=type:svirt_lxc_net_t".to_string()]),
        no_new_privileges: Some(true),
    };
    container.cgroup_parent = Some(String::new());
    container.read_only_rootfs = Some(true);
    container.limits = Limits {
        memory_bytes: Some(256 * 1024 * 1024),
        cpu_shares: Some(512),
        nano_cpus: Some(500_000_000),
        cpu_quota: Some(50_000),
        pids_limit: Some(100),
    };
    container.restart_policy = Some(RestartPolicy {
        name: "no".to_string(),
        max_retries: 0,
    });
    container.ports = Some(vec![]);
    container.health_check = Some(HealthCheck::Command(vec![
        "CMD-SHELL".to_string(),
        "curl -f localhost".to_string(),
    ]));
    container
}

/// Runs one check and returns its full outcome, asserting the detail is never empty.
fn outcome_of(check: &str, container: &ContainerInfo) -> Outcome {
    let definition = definition(check).unwrap_or_else(|| panic!("no check {check}"));
    let outcome = (definition.evaluate)(container);
    assert!(
        !outcome.detail.trim().is_empty(),
        "check {check} returned {:?} with an empty detail",
        outcome.result
    );
    outcome
}

fn result_of(check: &str, container: &ContainerInfo) -> CheckResult {
    outcome_of(check, container).result
}

/// Asserts the check's result and that its detail mentions `keyword` (case-insensitive).
fn assert_outcome(check: &str, container: &ContainerInfo, expected: CheckResult, keyword: &str) {
    let outcome = outcome_of(check, container);
    assert_eq!(
        outcome.result, expected,
        "check {check}: detail {:?}",
        outcome.detail
    );
    assert!(
        outcome
            .detail
            .to_lowercase()
            .contains(&keyword.to_lowercase()),
        "check {check}: detail {:?} lacks {keyword:?}",
        outcome.detail
    );
}

fn with(mutate: impl FnOnce(&mut ContainerInfo)) -> ContainerInfo {
    let mut container = hardened();
    mutate(&mut container);
    container
}

fn mount(kind: &str, source: &str, destination: &str, read_write: bool) -> Mount {
    Mount {
        kind: kind.to_string(),
        source: source.to_string(),
        destination: destination.to_string(),
        read_write,
        propagation: String::new(),
    }
}

fn bind(source: &str, read_write: bool) -> Mount {
    mount("bind", source, "/mnt/data", read_write)
}

fn with_mounts(mounts: Vec<Mount>) -> ContainerInfo {
    with(|container| container.mounts = Some(mounts))
}

fn port(host_ip: &str, host_port: u16, container_port: u16) -> PublishedPort {
    PublishedPort {
        container_port,
        protocol: "tcp".to_string(),
        host_ip: host_ip.to_string(),
        host_port,
    }
}

fn with_ports(ports: Vec<PublishedPort>) -> ContainerInfo {
    with(|container| container.ports = Some(ports))
}

fn with_cap_add(capabilities: &[&str]) -> ContainerInfo {
    with(|container| {
        container.cap_add = Some(capabilities.iter().map(|name| name.to_string()).collect());
    })
}

fn with_restart(name: &str, max_retries: i64) -> ContainerInfo {
    with(|container| {
        container.restart_policy = Some(RestartPolicy {
            name: name.to_string(),
            max_retries,
        });
    })
}

fn with_cpu(
    cpu_shares: Option<i64>,
    nano_cpus: Option<i64>,
    cpu_quota: Option<i64>,
) -> ContainerInfo {
    with(|container| {
        container.limits.cpu_shares = cpu_shares;
        container.limits.nano_cpus = nano_cpus;
        container.limits.cpu_quota = cpu_quota;
    })
}

fn with_propagation(propagation: &str) -> ContainerInfo {
    let mut data = mount("bind", "/srv/data", "/data", false);
    data.propagation = propagation.to_string();
    with_mounts(vec![data])
}

// ---------------------------------------------------------------------------------------------
// The catalogue as a whole
// ---------------------------------------------------------------------------------------------

/// Parses `"5.10"` into `(5, 10)` so ids compare in CIS order, not string order.
fn cis_order_key(id: &str) -> (u32, u32) {
    let (section, item) = id.split_once('.').expect("id has a section and an item");
    (
        section.parse().expect("numeric section"),
        item.parse().expect("numeric item"),
    )
}

#[test]
fn catalogue_holds_exactly_the_documented_checks() {
    let ids: Vec<&str> = catalogue().iter().map(|check| check.id).collect();
    assert_eq!(ids, EVERY_CHECK);
}

#[test]
fn catalogue_ids_are_unique() {
    let mut ids: Vec<&str> = catalogue().iter().map(|check| check.id).collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "duplicate check ids");
}

#[test]
fn catalogue_is_in_cis_order() {
    let keys: Vec<(u32, u32)> = catalogue()
        .iter()
        .map(|check| cis_order_key(check.id))
        .collect();
    for pair in keys.windows(2) {
        assert!(
            pair[0] < pair[1],
            "{:?} is not before {:?}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn catalogue_titles_are_non_empty() {
    for check in catalogue() {
        assert!(
            !check.title.trim().is_empty(),
            "check {} has no title",
            check.id
        );
    }
}

#[test]
fn definition_finds_a_check_by_id() {
    let check = definition("5.4").expect("5.4 exists");
    assert_eq!(check.id, "5.4");
    assert_eq!(check.title, "no capabilities added beyond the defaults");
    assert_eq!(check.severity, Severity::High);
}

#[test]
fn definition_of_an_unknown_id_is_none() {
    assert!(definition("5.9").is_none());
    assert!(definition("").is_none());
    assert!(definition("5.4 ").is_none());
}

#[test]
fn critical_checks_are_privileged_and_docker_socket() {
    let critical: Vec<&str> = catalogue()
        .iter()
        .filter(|check| check.severity == Severity::Critical)
        .map(|check| check.id)
        .collect();
    assert_eq!(critical, ["5.5", "5.32"]);
}

#[test]
fn hardened_container_passes_every_check_but_sshd() {
    let findings = assess(&hardened());
    assert_eq!(findings.len(), catalogue().len());
    for finding in &findings {
        let expected = if finding.check == "5.7" {
            CheckResult::Unknown
        } else {
            CheckResult::Pass
        };
        assert_eq!(
            finding.result, expected,
            "check {}: {}",
            finding.check, finding.detail
        );
        assert!(
            !finding.detail.is_empty(),
            "check {} has no detail",
            finding.check
        );
    }
}

#[test]
fn unknown_container_is_unknown_for_every_check() {
    let findings = assess(&unknown_container());
    assert_eq!(findings.len(), catalogue().len());
    for finding in &findings {
        assert_eq!(
            finding.result,
            CheckResult::Unknown,
            "check {} decided without data: {}",
            finding.check,
            finding.detail
        );
        assert!(
            !finding.detail.is_empty(),
            "check {} has no detail",
            finding.check
        );
    }
}

#[test]
fn assess_copies_id_title_and_severity_from_the_catalogue() {
    let findings = assess(&hardened());
    for (finding, check) in findings.iter().zip(catalogue()) {
        assert_eq!(finding.check, check.id);
        assert_eq!(finding.title, check.title);
        assert_eq!(finding.severity, check.severity);
    }
}

#[test]
fn check_result_names_are_lowercase() {
    let names: Vec<&str> = CheckResult::ALL
        .iter()
        .map(|result| result.as_str())
        .collect();
    assert_eq!(names, ["fail", "pass", "unknown"]);
}

// ---------------------------------------------------------------------------------------------
// Every check: breaking one setting fails exactly that check
// ---------------------------------------------------------------------------------------------

#[test]
fn every_check_has_a_fail_case_here() {
    // Guards the catalogue: a new check added without a failing container here fails this test.
    let failing: Vec<(&str, ContainerInfo)> = vec![
        (
            "4.1",
            with(|container| container.user = Some("root".to_string())),
        ),
        (
            "5.2",
            with(|container| container.security.apparmor_profile = Some(String::new())),
        ),
        (
            "5.3",
            with(|container| container.security.selinux_labels = Some(vec![])),
        ),
        ("5.4", with_cap_add(&["SYS_ADMIN"])),
        ("5.5", with(|container| container.privileged = Some(true))),
        ("5.6", with_mounts(vec![bind("/etc", true)])),
        ("5.8", with_ports(vec![port("127.0.0.1", 22, 22)])),
        (
            "5.10",
            with(|container| container.host_namespaces.network = Some(true)),
        ),
        (
            "5.11",
            with(|container| container.limits.memory_bytes = Some(0)),
        ),
        ("5.12", with_cpu(Some(0), Some(0), Some(0))),
        (
            "5.13",
            with(|container| container.read_only_rootfs = Some(false)),
        ),
        ("5.14", with_ports(vec![port("0.0.0.0", 8080, 80)])),
        ("5.15", with_restart("on-failure", 0)),
        (
            "5.16",
            with(|container| container.host_namespaces.pid = Some(true)),
        ),
        (
            "5.17",
            with(|container| container.host_namespaces.ipc = Some(true)),
        ),
        (
            "5.18",
            with(|container| {
                container.devices = Some(vec![Device {
                    host_path: "/dev/kmsg".to_string(),
                    container_path: "/dev/kmsg".to_string(),
                    permissions: "r".to_string(),
                }]);
            }),
        ),
        ("5.20", with_propagation("rshared")),
        (
            "5.21",
            with(|container| container.host_namespaces.uts = Some(true)),
        ),
        (
            "5.22",
            with(|container| container.security.seccomp = Some(SeccompProfile::Unconfined)),
        ),
        (
            "5.25",
            with(|container| container.cgroup_parent = Some("/x".to_string())),
        ),
        (
            "5.26",
            with(|container| container.security.no_new_privileges = Some(false)),
        ),
        (
            "5.27",
            with(|container| container.health_check = Some(HealthCheck::None)),
        ),
        (
            "5.29",
            with(|container| container.limits.pids_limit = Some(0)),
        ),
        (
            "5.31",
            with(|container| container.host_namespaces.user = Some(true)),
        ),
        (
            "5.32",
            with_mounts(vec![bind("/var/run/docker.sock", false)]),
        ),
    ];
    let covered: Vec<&str> = failing.iter().map(|(check, _)| *check).collect();
    let expected: Vec<&str> = catalogue()
        .iter()
        .map(|check| check.id)
        .filter(|id| *id != "5.7")
        .collect();
    assert_eq!(covered, expected);
    for (check, container) in &failing {
        let findings = assess(container);
        for finding in &findings {
            let expected = if finding.check == *check {
                CheckResult::Fail
            } else if finding.check == "5.7" {
                CheckResult::Unknown
            } else {
                CheckResult::Pass
            };
            assert_eq!(
                finding.result, expected,
                "breaking {check} changed {}: {}",
                finding.check, finding.detail
            );
        }
    }
}
