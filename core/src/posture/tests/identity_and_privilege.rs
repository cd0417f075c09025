//! Tests for checks 4.1 (user), 5.4 (capabilities), 5.5 (privileged) and 5.26 (no-new-privs).

use super::*;

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
