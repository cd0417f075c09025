//! Unit tests for every check in the catalogue: a fail, a pass and an `unknown` case each, plus
//! the edge cases operators rely on (capability names, sensitive paths, ports, restart limits).

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
// 4.1 container user
// ---------------------------------------------------------------------------------------------

#[test]
fn user_4_1_root_fails() {
    for user in ["root", "0", "root:root", "0:0", " root "] {
        let container = with(|container| container.user = Some(user.to_string()));
        assert_outcome("4.1", &container, CheckResult::Fail, "runs as");
    }
}

#[test]
fn user_4_1_unset_fails() {
    let container = with(|container| container.user = Some(String::new()));
    assert_outcome("4.1", &container, CheckResult::Fail, "no user set");
    let group_only = with(|container| container.user = Some(":1000".to_string()));
    assert_eq!(result_of("4.1", &group_only), CheckResult::Fail);
}

#[test]
fn user_4_1_named_or_numeric_user_passes() {
    for user in ["app", "1000", "1000:1000", "app:app", "rootless"] {
        let container = with(|container| container.user = Some(user.to_string()));
        assert_outcome("4.1", &container, CheckResult::Pass, "runs as");
    }
}

#[test]
fn user_4_1_unknown() {
    let container = with(|container| container.user = None);
    assert_outcome("4.1", &container, CheckResult::Unknown, "user");
}

// ---------------------------------------------------------------------------------------------
// 5.2 AppArmor
// ---------------------------------------------------------------------------------------------

#[test]
fn apparmor_5_2_none_or_unconfined_fails() {
    let none = with(|container| container.security.apparmor_profile = Some(String::new()));
    assert_outcome("5.2", &none, CheckResult::Fail, "no apparmor profile");
    let unconfined =
        with(|container| container.security.apparmor_profile = Some("unconfined".to_string()));
    assert_outcome("5.2", &unconfined, CheckResult::Fail, "unconfined");
}

#[test]
fn apparmor_5_2_profile_passes() {
    assert_outcome("5.2", &hardened(), CheckResult::Pass, "docker-default");
    let custom =
        with(|container| container.security.apparmor_profile = Some("my-profile".to_string()));
    assert_outcome("5.2", &custom, CheckResult::Pass, "my-profile");
}

#[test]
fn apparmor_5_2_unknown() {
    let container = with(|container| container.security.apparmor_profile = None);
    assert_outcome("5.2", &container, CheckResult::Unknown, "apparmor");
}

// ---------------------------------------------------------------------------------------------
// 5.3 SELinux
// ---------------------------------------------------------------------------------------------

#[test]
fn selinux_5_3_no_labels_fails() {
    let container = with(|container| container.security.selinux_labels = Some(vec![]));
    assert_outcome("5.3", &container, CheckResult::Fail, "no selinux");
}

#[test]
fn selinux_5_3_disabled_fails() {
    let container = with(|container| {
        container.security.selinux_labels = Some(vec!["label=disable".to_string()]);
    });
    assert_outcome("5.3", &container, CheckResult::Fail, "disabled");
    let mixed = with(|container| {
        container.security.selinux_labels = Some(vec![
            "label=type:svirt_lxc_net_t".to_string(),
            "label=disable".to_string(),
        ]);
    });
    assert_eq!(result_of("5.3", &mixed), CheckResult::Fail);
}

#[test]
fn selinux_5_3_labels_pass() {
    assert_outcome("5.3", &hardened(), CheckResult::Pass, "svirt_lxc_net_t");
}

#[test]
fn selinux_5_3_unknown() {
    let container = with(|container| container.security.selinux_labels = None);
    assert_outcome("5.3", &container, CheckResult::Unknown, "selinux");
}

// ---------------------------------------------------------------------------------------------
// 5.4 added capabilities
// ---------------------------------------------------------------------------------------------

#[test]
fn capabilities_5_4_beyond_defaults_fail() {
    assert_outcome(
        "5.4",
        &with_cap_add(&["SYS_ADMIN"]),
        CheckResult::Fail,
        "SYS_ADMIN",
    );
    assert_outcome(
        "5.4",
        &with_cap_add(&["NET_ADMIN"]),
        CheckResult::Fail,
        "NET_ADMIN",
    );
}

#[test]
fn capabilities_5_4_names_are_normalised() {
    assert_outcome(
        "5.4",
        &with_cap_add(&["cap_sys_admin"]),
        CheckResult::Fail,
        "SYS_ADMIN",
    );
    assert_outcome(
        "5.4",
        &with_cap_add(&["CAP_CHOWN"]),
        CheckResult::Pass,
        "defaults",
    );
    assert_eq!(
        result_of("5.4", &with_cap_add(&["chown"])),
        CheckResult::Pass
    );
    assert_eq!(
        result_of("5.4", &with_cap_add(&[" Cap_Kill "])),
        CheckResult::Pass
    );
}

#[test]
fn capabilities_5_4_all_fails() {
    assert_outcome("5.4", &with_cap_add(&["ALL"]), CheckResult::Fail, "ALL");
}

#[test]
fn capabilities_5_4_only_non_defaults_are_listed() {
    let outcome = outcome_of(
        "5.4",
        &with_cap_add(&["CHOWN", "SYS_PTRACE", "KILL", "SYS_MODULE"]),
    );
    assert_eq!(outcome.result, CheckResult::Fail);
    assert!(outcome.detail.contains("SYS_PTRACE"), "{}", outcome.detail);
    assert!(outcome.detail.contains("SYS_MODULE"), "{}", outcome.detail);
    assert!(!outcome.detail.contains("CHOWN"), "{}", outcome.detail);
    assert!(!outcome.detail.contains("KILL"), "{}", outcome.detail);
}

#[test]
fn capabilities_5_4_defaults_pass() {
    assert_outcome("5.4", &hardened(), CheckResult::Pass, "defaults");
    let every_default = with_cap_add(&super::checks::DEFAULT_CAPABILITIES);
    assert_eq!(result_of("5.4", &every_default), CheckResult::Pass);
}

#[test]
fn capabilities_5_4_unknown() {
    let container = with(|container| container.cap_add = None);
    assert_outcome("5.4", &container, CheckResult::Unknown, "capabilities");
}

// ---------------------------------------------------------------------------------------------
// 5.5 privileged
// ---------------------------------------------------------------------------------------------

#[test]
fn privileged_5_5_fails() {
    let container = with(|container| container.privileged = Some(true));
    assert_outcome("5.5", &container, CheckResult::Fail, "privileged");
}

#[test]
fn privileged_5_5_passes() {
    assert_outcome("5.5", &hardened(), CheckResult::Pass, "not privileged");
}

#[test]
fn privileged_5_5_unknown() {
    let container = with(|container| container.privileged = None);
    assert_outcome("5.5", &container, CheckResult::Unknown, "privileged");
}

// ---------------------------------------------------------------------------------------------
// 5.6 sensitive host directories
// ---------------------------------------------------------------------------------------------

#[test]
fn sensitive_mounts_5_6_etc_read_write_fails() {
    let container = with_mounts(vec![bind("/etc", true)]);
    assert_outcome("5.6", &container, CheckResult::Fail, "/etc");
}

#[test]
fn sensitive_mounts_5_6_etc_read_only_passes() {
    let container = with_mounts(vec![bind("/etc", false)]);
    assert_outcome("5.6", &container, CheckResult::Pass, "no sensitive");
}

#[test]
fn sensitive_mounts_5_6_below_a_sensitive_directory_fails() {
    let container = with_mounts(vec![bind("/etc/nginx", true)]);
    assert_outcome("5.6", &container, CheckResult::Fail, "/etc/nginx");
}

#[test]
fn sensitive_mounts_5_6_sibling_with_common_prefix_passes() {
    let container = with_mounts(vec![bind("/etcetera", true)]);
    assert_eq!(result_of("5.6", &container), CheckResult::Pass);
    let usr_local_like = with_mounts(vec![bind("/usrdata", true), bind("/library", true)]);
    assert_eq!(result_of("5.6", &usr_local_like), CheckResult::Pass);
}

#[test]
fn sensitive_mounts_5_6_host_root_read_write_fails() {
    let container = with_mounts(vec![bind("/", true)]);
    assert_outcome("5.6", &container, CheckResult::Fail, "mounts read-write");
}

#[test]
fn sensitive_mounts_5_6_ordinary_directory_passes() {
    let container = with_mounts(vec![bind("/home/x", true)]);
    assert_eq!(result_of("5.6", &container), CheckResult::Pass);
}

#[test]
fn sensitive_mounts_5_6_volume_kind_is_ignored() {
    let container = with_mounts(vec![mount("volume", "/etc", "/data", true)]);
    assert_eq!(result_of("5.6", &container), CheckResult::Pass);
    let tmpfs = with_mounts(vec![mount("tmpfs", "/dev", "/scratch", true)]);
    assert_eq!(result_of("5.6", &tmpfs), CheckResult::Pass);
}

#[test]
fn sensitive_mounts_5_6_lists_only_offending_sources() {
    let container = with_mounts(vec![
        bind("/home/x", true),
        bind("/proc", true),
        bind("/usr", false),
        bind("/sys/fs/cgroup", true),
    ]);
    let outcome = outcome_of("5.6", &container);
    assert_eq!(outcome.result, CheckResult::Fail);
    assert!(outcome.detail.contains("/proc"), "{}", outcome.detail);
    assert!(
        outcome.detail.contains("/sys/fs/cgroup"),
        "{}",
        outcome.detail
    );
    assert!(!outcome.detail.contains("/home/x"), "{}", outcome.detail);
    assert!(!outcome.detail.contains("/usr"), "{}", outcome.detail);
}

#[test]
fn sensitive_mounts_5_6_no_mounts_passes() {
    assert_outcome("5.6", &hardened(), CheckResult::Pass, "no sensitive");
}

#[test]
fn sensitive_mounts_5_6_unknown() {
    let container = with(|container| container.mounts = None);
    assert_outcome("5.6", &container, CheckResult::Unknown, "mounts");
}

#[test]
fn sensitive_path_matching() {
    let is_sensitive = super::checks::sensitive_path_for_tests;
    for directory in super::checks::SENSITIVE_HOST_DIRECTORIES {
        assert!(is_sensitive(directory), "{directory} should be sensitive");
    }
    for path in [
        "/",
        "//",
        "/etc/",
        "/etc/nginx",
        "/etc/nginx/",
        "/usr/lib/x",
        "/dev/sda",
    ] {
        assert!(is_sensitive(path), "{path} should be sensitive");
    }
    for path in [
        "/etcetera",
        "/home/x",
        "/var/lib/data",
        "/devices",
        "/usrdata",
        "/srv",
    ] {
        assert!(!is_sensitive(path), "{path} should not be sensitive");
    }
}

// ---------------------------------------------------------------------------------------------
// 5.7 sshd
// ---------------------------------------------------------------------------------------------

#[test]
fn sshd_5_7_is_unknown_without_a_process_scan() {
    assert_outcome("5.7", &hardened(), CheckResult::Unknown, "process");
    assert_outcome("5.7", &unknown_container(), CheckResult::Unknown, "process");
    let worst = with(|container| {
        container.privileged = Some(true);
        container.user = Some("root".to_string());
        container.ports = Some(vec![port("0.0.0.0", 22, 22)]);
    });
    assert_eq!(result_of("5.7", &worst), CheckResult::Unknown);
}

// ---------------------------------------------------------------------------------------------
// 5.8 privileged host ports
// ---------------------------------------------------------------------------------------------

#[test]
fn privileged_ports_5_8_low_host_port_fails() {
    let container = with_ports(vec![port("127.0.0.1", 80, 8080)]);
    assert_outcome("5.8", &container, CheckResult::Fail, "80->8080/tcp");
    let edge = with_ports(vec![port("127.0.0.1", 1023, 1023)]);
    assert_eq!(result_of("5.8", &edge), CheckResult::Fail);
    let lowest = with_ports(vec![port("127.0.0.1", 1, 1)]);
    assert_eq!(result_of("5.8", &lowest), CheckResult::Fail);
}

#[test]
fn privileged_ports_5_8_high_host_port_passes() {
    let container = with_ports(vec![port("127.0.0.1", 8080, 80)]);
    assert_outcome("5.8", &container, CheckResult::Pass, "1024");
    let edge = with_ports(vec![port("127.0.0.1", 1024, 80)]);
    assert_eq!(result_of("5.8", &edge), CheckResult::Pass);
}

#[test]
fn privileged_ports_5_8_runtime_assigned_port_is_ignored() {
    let container = with_ports(vec![port("127.0.0.1", 0, 80)]);
    assert_eq!(result_of("5.8", &container), CheckResult::Pass);
}

#[test]
fn privileged_ports_5_8_lists_only_low_ports() {
    let container = with_ports(vec![
        port("127.0.0.1", 8080, 80),
        port("127.0.0.1", 443, 8443),
        port("127.0.0.1", 0, 53),
    ]);
    let outcome = outcome_of("5.8", &container);
    assert_eq!(outcome.result, CheckResult::Fail);
    assert!(
        outcome.detail.contains("443->8443/tcp"),
        "{}",
        outcome.detail
    );
    assert!(!outcome.detail.contains("8080"), "{}", outcome.detail);
    assert!(!outcome.detail.contains("0->53"), "{}", outcome.detail);
}

#[test]
fn privileged_ports_5_8_no_ports_passes() {
    assert_eq!(result_of("5.8", &hardened()), CheckResult::Pass);
}

#[test]
fn privileged_ports_5_8_unknown() {
    let container = with(|container| container.ports = None);
    assert_outcome("5.8", &container, CheckResult::Unknown, "ports");
}

// ---------------------------------------------------------------------------------------------
// 5.10, 5.16, 5.17, 5.21, 5.31 host namespaces
// ---------------------------------------------------------------------------------------------

/// Reaches the one `HostNamespaces` field a namespace check reads.
type NamespaceField = fn(&mut HostNamespaces) -> &mut Option<bool>;

/// Each namespace check with the field it reads and the word its detail uses.
fn namespace_checks() -> [(&'static str, NamespaceField, &'static str); 5] {
    [
        ("5.10", |namespaces| &mut namespaces.network, "network"),
        ("5.16", |namespaces| &mut namespaces.pid, "PID"),
        ("5.17", |namespaces| &mut namespaces.ipc, "IPC"),
        ("5.21", |namespaces| &mut namespaces.uts, "UTS"),
        ("5.31", |namespaces| &mut namespaces.user, "user"),
    ]
}

#[test]
fn host_namespaces_shared_fail() {
    for (check, field, word) in namespace_checks() {
        let container = with(|container| *field(&mut container.host_namespaces) = Some(true));
        assert_outcome(
            check,
            &container,
            CheckResult::Fail,
            &format!("host's {word} namespace"),
        );
    }
}

#[test]
fn host_namespaces_own_pass() {
    for (check, _field, word) in namespace_checks() {
        assert_outcome(
            check,
            &hardened(),
            CheckResult::Pass,
            &format!("own {word} namespace"),
        );
    }
}

#[test]
fn host_namespaces_unknown() {
    for (check, field, word) in namespace_checks() {
        let container = with(|container| *field(&mut container.host_namespaces) = None);
        assert_outcome(check, &container, CheckResult::Unknown, word);
    }
}

#[test]
fn host_namespaces_are_independent() {
    for (check, field, _word) in namespace_checks() {
        let container = with(|container| *field(&mut container.host_namespaces) = Some(true));
        for (other, _other_field, _other_word) in namespace_checks() {
            let expected = if other == check {
                CheckResult::Fail
            } else {
                CheckResult::Pass
            };
            assert_eq!(
                result_of(other, &container),
                expected,
                "{check} shared, {other} read"
            );
        }
    }
}

#[test]
fn host_network_5_10_shared_fails() {
    let container = with(|container| container.host_namespaces.network = Some(true));
    assert_eq!(result_of("5.10", &container), CheckResult::Fail);
}

#[test]
fn host_pid_5_16_shared_fails() {
    let container = with(|container| container.host_namespaces.pid = Some(true));
    assert_eq!(result_of("5.16", &container), CheckResult::Fail);
}

#[test]
fn host_ipc_5_17_shared_fails() {
    let container = with(|container| container.host_namespaces.ipc = Some(true));
    assert_eq!(result_of("5.17", &container), CheckResult::Fail);
}

#[test]
fn host_uts_5_21_shared_fails() {
    let container = with(|container| container.host_namespaces.uts = Some(true));
    assert_eq!(result_of("5.21", &container), CheckResult::Fail);
}

#[test]
fn host_userns_5_31_shared_fails() {
    let container = with(|container| container.host_namespaces.user = Some(true));
    assert_eq!(result_of("5.31", &container), CheckResult::Fail);
}

// ---------------------------------------------------------------------------------------------
// 5.11 memory
// ---------------------------------------------------------------------------------------------

#[test]
fn memory_5_11_unlimited_fails() {
    for bytes in [0, -1] {
        let container = with(|container| container.limits.memory_bytes = Some(bytes));
        assert_outcome("5.11", &container, CheckResult::Fail, "no memory limit");
    }
}

#[test]
fn memory_5_11_limit_passes() {
    let container = with(|container| container.limits.memory_bytes = Some(1024));
    assert_outcome("5.11", &container, CheckResult::Pass, "1024 bytes");
}

#[test]
fn memory_5_11_unknown() {
    let container = with(|container| container.limits.memory_bytes = None);
    assert_outcome("5.11", &container, CheckResult::Unknown, "memory");
}

// ---------------------------------------------------------------------------------------------
// 5.12 CPU
// ---------------------------------------------------------------------------------------------

#[test]
fn cpu_5_12_nothing_set_fails() {
    let container = with_cpu(Some(0), Some(0), Some(0));
    assert_outcome("5.12", &container, CheckResult::Fail, "no CPU");
}

#[test]
fn cpu_5_12_default_shares_count_as_unset() {
    let container = with_cpu(Some(1024), Some(0), Some(0));
    assert_eq!(result_of("5.12", &container), CheckResult::Fail);
}

#[test]
fn cpu_5_12_shares_pass() {
    let container = with_cpu(Some(512), Some(0), Some(0));
    assert_outcome("5.12", &container, CheckResult::Pass, "shares 512");
}

#[test]
fn cpu_5_12_nano_cpus_pass() {
    let container = with_cpu(Some(0), Some(1_500_000_000), Some(0));
    assert_outcome("5.12", &container, CheckResult::Pass, "--cpus");
    let default_shares = with_cpu(Some(1024), Some(1_000_000_000), Some(0));
    assert_eq!(result_of("5.12", &default_shares), CheckResult::Pass);
}

#[test]
fn cpu_5_12_quota_passes() {
    let container = with_cpu(Some(0), Some(0), Some(50_000));
    assert_outcome("5.12", &container, CheckResult::Pass, "quota");
}

#[test]
fn cpu_5_12_unknown() {
    let container = with_cpu(None, None, None);
    assert_outcome("5.12", &container, CheckResult::Unknown, "CPU");
}

// ---------------------------------------------------------------------------------------------
// 5.13 read-only root filesystem
// ---------------------------------------------------------------------------------------------

#[test]
fn read_only_rootfs_5_13_writable_fails() {
    let container = with(|container| container.read_only_rootfs = Some(false));
    assert_outcome("5.13", &container, CheckResult::Fail, "writable");
}

#[test]
fn read_only_rootfs_5_13_passes() {
    assert_outcome("5.13", &hardened(), CheckResult::Pass, "read-only");
}

#[test]
fn read_only_rootfs_5_13_unknown() {
    let container = with(|container| container.read_only_rootfs = None);
    assert_outcome("5.13", &container, CheckResult::Unknown, "root filesystem");
}

// ---------------------------------------------------------------------------------------------
// 5.14 ports bound to every interface
// ---------------------------------------------------------------------------------------------

#[test]
fn interfaces_5_14_wildcard_addresses_fail() {
    for host_ip in ["", "0.0.0.0", "::", "[::]"] {
        let container = with_ports(vec![port(host_ip, 8080, 80)]);
        assert_outcome("5.14", &container, CheckResult::Fail, "every interface");
    }
}

#[test]
fn interfaces_5_14_specific_address_passes() {
    for host_ip in ["127.0.0.1", "10.0.0.5", "::1"] {
        let container = with_ports(vec![port(host_ip, 8080, 80)]);
        assert_outcome("5.14", &container, CheckResult::Pass, "specific address");
    }
}

#[test]
fn interfaces_5_14_one_wildcard_among_many_fails() {
    let container = with_ports(vec![
        port("127.0.0.1", 8080, 80),
        port("0.0.0.0", 8443, 443),
    ]);
    let outcome = outcome_of("5.14", &container);
    assert_eq!(outcome.result, CheckResult::Fail);
    assert!(outcome.detail.contains("443/tcp"), "{}", outcome.detail);
    assert!(!outcome.detail.contains("80/tcp"), "{}", outcome.detail);
}

#[test]
fn interfaces_5_14_no_ports_passes() {
    assert_eq!(result_of("5.14", &hardened()), CheckResult::Pass);
}

#[test]
fn interfaces_5_14_unknown() {
    let container = with(|container| container.ports = None);
    assert_outcome("5.14", &container, CheckResult::Unknown, "ports");
}

// ---------------------------------------------------------------------------------------------
// 5.15 restart attempts
// ---------------------------------------------------------------------------------------------

#[test]
fn restart_5_15_unlimited_on_failure_fails() {
    assert_outcome(
        "5.15",
        &with_restart("on-failure", 0),
        CheckResult::Fail,
        "retry limit",
    );
}

#[test]
fn restart_5_15_too_many_retries_fail() {
    assert_outcome(
        "5.15",
        &with_restart("on-failure", 6),
        CheckResult::Fail,
        "6 retries",
    );
    assert_eq!(
        result_of("5.15", &with_restart("on-failure", 100)),
        CheckResult::Fail
    );
}

#[test]
fn restart_5_15_few_retries_pass() {
    assert_outcome(
        "5.15",
        &with_restart("on-failure", 5),
        CheckResult::Pass,
        "5 retries",
    );
    assert_eq!(
        result_of("5.15", &with_restart("on-failure", 1)),
        CheckResult::Pass
    );
}

#[test]
fn restart_5_15_other_policies_pass() {
    assert_outcome(
        "5.15",
        &with_restart("always", 0),
        CheckResult::Pass,
        "always",
    );
    assert_outcome(
        "5.15",
        &with_restart("unless-stopped", 0),
        CheckResult::Pass,
        "unless-stopped",
    );
    assert_outcome("5.15", &with_restart("no", 0), CheckResult::Pass, "\"no\"");
    assert_outcome("5.15", &with_restart("", 0), CheckResult::Pass, "\"no\"");
}

#[test]
fn restart_5_15_unknown() {
    let container = with(|container| container.restart_policy = None);
    assert_outcome("5.15", &container, CheckResult::Unknown, "restart policy");
}

// ---------------------------------------------------------------------------------------------
// 5.18 host devices
// ---------------------------------------------------------------------------------------------

#[test]
fn devices_5_18_host_device_fails() {
    let container = with(|container| {
        container.devices = Some(vec![Device {
            host_path: "/dev/sda".to_string(),
            container_path: "/dev/xvda".to_string(),
            permissions: "rwm".to_string(),
        }]);
    });
    assert_outcome("5.18", &container, CheckResult::Fail, "/dev/sda");
}

#[test]
fn devices_5_18_none_passes() {
    assert_outcome("5.18", &hardened(), CheckResult::Pass, "no host devices");
}

#[test]
fn devices_5_18_unknown() {
    let container = with(|container| container.devices = None);
    assert_outcome("5.18", &container, CheckResult::Unknown, "devices");
}

// ---------------------------------------------------------------------------------------------
// 5.20 mount propagation
// ---------------------------------------------------------------------------------------------

fn with_propagation(propagation: &str) -> ContainerInfo {
    let mut data = mount("bind", "/srv/data", "/data", false);
    data.propagation = propagation.to_string();
    with_mounts(vec![data])
}

#[test]
fn propagation_5_20_shared_fails() {
    assert_outcome(
        "5.20",
        &with_propagation("rshared"),
        CheckResult::Fail,
        "/data",
    );
    assert_outcome(
        "5.20",
        &with_propagation("shared"),
        CheckResult::Fail,
        "shared",
    );
}

#[test]
fn propagation_5_20_private_or_slave_passes() {
    for propagation in ["", "private", "rprivate", "slave", "rslave"] {
        let container = with_propagation(propagation);
        assert_outcome("5.20", &container, CheckResult::Pass, "no mount");
    }
}

#[test]
fn propagation_5_20_no_mounts_passes() {
    assert_eq!(result_of("5.20", &hardened()), CheckResult::Pass);
}

#[test]
fn propagation_5_20_unknown() {
    let container = with(|container| container.mounts = None);
    assert_outcome("5.20", &container, CheckResult::Unknown, "mounts");
}

// ---------------------------------------------------------------------------------------------
// 5.22 seccomp
// ---------------------------------------------------------------------------------------------

#[test]
fn seccomp_5_22_unconfined_fails() {
    let container = with(|container| container.security.seccomp = Some(SeccompProfile::Unconfined));
    assert_outcome("5.22", &container, CheckResult::Fail, "unconfined");
}

#[test]
fn seccomp_5_22_default_or_custom_passes() {
    assert_outcome("5.22", &hardened(), CheckResult::Pass, "default");
    let custom = with(|container| {
        container.security.seccomp = Some(SeccompProfile::Custom("strict.json".to_string()));
    });
    assert_outcome("5.22", &custom, CheckResult::Pass, "strict.json");
}

#[test]
fn seccomp_5_22_unknown() {
    let container = with(|container| container.security.seccomp = None);
    assert_outcome("5.22", &container, CheckResult::Unknown, "seccomp");
}

// ---------------------------------------------------------------------------------------------
// 5.25 cgroup parent
// ---------------------------------------------------------------------------------------------

#[test]
fn cgroup_5_25_custom_parent_fails() {
    let container = with(|container| container.cgroup_parent = Some("/custom".to_string()));
    assert_outcome("5.25", &container, CheckResult::Fail, "/custom");
}

#[test]
fn cgroup_5_25_default_parent_passes() {
    assert_outcome(
        "5.25",
        &hardened(),
        CheckResult::Pass,
        "default cgroup parent",
    );
}

#[test]
fn cgroup_5_25_unknown() {
    let container = with(|container| container.cgroup_parent = None);
    assert_outcome("5.25", &container, CheckResult::Unknown, "cgroup parent");
}

// ---------------------------------------------------------------------------------------------
// 5.26 no-new-privileges
// ---------------------------------------------------------------------------------------------

#[test]
fn no_new_privileges_5_26_unset_fails() {
    let container = with(|container| container.security.no_new_privileges = Some(false));
    assert_outcome("5.26", &container, CheckResult::Fail, "not set");
}

#[test]
fn no_new_privileges_5_26_set_passes() {
    assert_outcome(
        "5.26",
        &hardened(),
        CheckResult::Pass,
        "no-new-privileges set",
    );
}

#[test]
fn no_new_privileges_5_26_unknown() {
    let container = with(|container| container.security.no_new_privileges = None);
    assert_outcome(
        "5.26",
        &container,
        CheckResult::Unknown,
        "no-new-privileges",
    );
}

// ---------------------------------------------------------------------------------------------
// 5.27 health check
// ---------------------------------------------------------------------------------------------

#[test]
fn health_check_5_27_none_fails() {
    let container = with(|container| container.health_check = Some(HealthCheck::None));
    assert_outcome("5.27", &container, CheckResult::Fail, "no health check");
}

#[test]
fn health_check_5_27_command_passes() {
    assert_outcome("5.27", &hardened(), CheckResult::Pass, "curl -f localhost");
}

#[test]
fn health_check_5_27_unknown() {
    let container = with(|container| container.health_check = None);
    assert_outcome("5.27", &container, CheckResult::Unknown, "health check");
}

// ---------------------------------------------------------------------------------------------
// 5.29 PIDs limit
// ---------------------------------------------------------------------------------------------

#[test]
fn pids_5_29_unlimited_fails() {
    for limit in [0, -1] {
        let container = with(|container| container.limits.pids_limit = Some(limit));
        assert_outcome("5.29", &container, CheckResult::Fail, "no PIDs limit");
    }
}

#[test]
fn pids_5_29_limit_passes() {
    assert_outcome("5.29", &hardened(), CheckResult::Pass, "100");
    let one = with(|container| container.limits.pids_limit = Some(1));
    assert_eq!(result_of("5.29", &one), CheckResult::Pass);
}

#[test]
fn pids_5_29_unknown() {
    let container = with(|container| container.limits.pids_limit = None);
    assert_outcome("5.29", &container, CheckResult::Unknown, "PIDs");
}

// ---------------------------------------------------------------------------------------------
// 5.32 Docker socket
// ---------------------------------------------------------------------------------------------

#[test]
fn docker_socket_5_32_mounted_by_source_fails() {
    for source in ["/var/run/docker.sock", "/run/docker.sock"] {
        let container = with_mounts(vec![mount("bind", source, "/tmp/engine", false)]);
        assert_outcome("5.32", &container, CheckResult::Fail, source);
    }
}

#[test]
fn docker_socket_5_32_mounted_by_destination_fails() {
    for destination in ["/var/run/docker.sock", "/run/docker.sock"] {
        let container = with_mounts(vec![mount("bind", "/srv/engine.sock", destination, false)]);
        assert_outcome("5.32", &container, CheckResult::Fail, "/srv/engine.sock");
    }
}

#[test]
fn docker_socket_5_32_read_only_still_fails() {
    let container = with_mounts(vec![bind("/var/run/docker.sock", false)]);
    assert_eq!(result_of("5.32", &container), CheckResult::Fail);
}

#[test]
fn docker_socket_5_32_other_mounts_pass() {
    let container = with_mounts(vec![
        bind("/var/run/docker", true),
        bind("/srv/mydocker.sock.d", true),
        mount(
            "bind",
            "/run/containerd/other.sock",
            "/run/other.sock",
            false,
        ),
    ]);
    assert_outcome("5.32", &container, CheckResult::Pass, "not mounted");
}

#[test]
fn docker_socket_5_32_no_mounts_passes() {
    assert_eq!(result_of("5.32", &hardened()), CheckResult::Pass);
}

#[test]
fn docker_socket_5_32_unknown() {
    let container = with(|container| container.mounts = None);
    assert_outcome("5.32", &container, CheckResult::Unknown, "mounts");
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
