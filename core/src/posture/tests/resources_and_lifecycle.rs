//! Tests for resource and lifecycle checks: 5.11, 5.12, 5.15, 5.25, 5.27 and 5.29.

use super::*;

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
