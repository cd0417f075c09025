//! Micro-benchmarks of the pure posture code: all CIS checks on one container, and runtime
//! advisories. Run: `cargo bench -p lazaret-benches --bench posture`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lazaret_core::advisory::{self, RuntimeVersions};
use lazaret_core::container::{HealthCheck, Mount, PublishedPort, SeccompProfile};
use lazaret_core::{ContainerId, ContainerInfo, ContainerState, RuntimeKind, posture};

fn typical_container() -> ContainerInfo {
    let mut info = ContainerInfo::unknown(ContainerId::new("0".repeat(64)), RuntimeKind::Docker);
    info.name = "web".into();
    info.state = ContainerState::Running;
    info.user = Some(String::new());
    info.privileged = Some(false);
    info.cap_add = Some(vec!["NET_ADMIN".into()]);
    info.cap_drop = Some(vec![]);
    info.mounts = Some(vec![
        Mount {
            kind: "bind".into(),
            source: "/etc/nginx".into(),
            destination: "/etc/nginx".into(),
            read_write: false,
            propagation: "rprivate".into(),
        },
        Mount {
            kind: "volume".into(),
            source: "/var/lib/docker/volumes/data/_data".into(),
            destination: "/data".into(),
            read_write: true,
            propagation: String::new(),
        },
    ]);
    info.devices = Some(vec![]);
    info.security.seccomp = Some(SeccompProfile::Default);
    info.security.apparmor_profile = Some("docker-default".into());
    info.security.selinux_labels = Some(vec![]);
    info.security.no_new_privileges = Some(false);
    info.host_namespaces.network = Some(false);
    info.host_namespaces.pid = Some(false);
    info.host_namespaces.ipc = Some(false);
    info.host_namespaces.uts = Some(false);
    info.host_namespaces.user = Some(false);
    info.cgroup_parent = Some(String::new());
    info.read_only_rootfs = Some(false);
    info.limits.memory_bytes = Some(0);
    info.limits.cpu_shares = Some(0);
    info.limits.nano_cpus = Some(0);
    info.limits.cpu_quota = Some(0);
    info.limits.pids_limit = Some(0);
    info.ports = Some(vec![PublishedPort {
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
        host_port: 8080,
    }]);
    info.health_check = Some(HealthCheck::None);
    info
}

fn bench_posture(criterion: &mut Criterion) {
    let container = typical_container();
    criterion.bench_function("posture/assess_all_checks", |bencher| {
        bencher.iter(|| posture::assess(black_box(&container)))
    });
    let versions = RuntimeVersions {
        docker: Some("20.10.24+dfsg1".into()),
        containerd: Some("1.6.20~ds1".into()),
        runc: Some("1.1.5+ds1".into()),
    };
    criterion.bench_function("advisory/advisories_for", |bencher| {
        bencher.iter(|| advisory::advisories_for(black_box(&versions)))
    });
}

criterion_group!(benches, bench_posture);
criterion_main!(benches);
