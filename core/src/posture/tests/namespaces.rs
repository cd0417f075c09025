//! Tests for the host-namespace checks 5.10, 5.16, 5.17, 5.21 and 5.31.

use super::*;

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
