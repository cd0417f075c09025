//! Tests for the security-profile checks: 5.2 AppArmor, 5.3 SELinux and 5.22 seccomp.

use super::*;

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
