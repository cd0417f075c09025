//! Tests for the port and service checks: 5.7 sshd, 5.8 privileged host ports and 5.14 interfaces.

use super::*;

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
