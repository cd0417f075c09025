//! Tests for the mount and device checks: 5.6, 5.13 (read-only root), 5.18, 5.20 and 5.32.

use super::*;

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
