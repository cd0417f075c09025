//! Property test: the judge never panics, whatever the container looks like.

use proptest::prelude::*;

use super::{ISSUE_EXAMPLE, load, verdict_for};
use crate::container::{ContainerId, ContainerInfo, Mount, PublishedPort, RuntimeKind};

const EVERYTHING: &str = r#"apiVersion: lazaret.dev/v1
kind: Policy
name: everything
mode: enforce
on_error: fail-closed
rules:
  - check: privileged
  - {check: "5.4", capabilities: [SYS_ADMIN]}
  - {check: image-not-from, registries: [registry.example.com]}
  - {check: "5.6"}
  - {check: "4.1"}
  - {indicator: [image-digest, ip]}
  - expr: 'container.user == "" || container.labels["team"] == "x"'
  - expr: 'container.mounts.exists(m, m.rw && m.source.startsWith("/etc"))'
  - expr: 'container.ports.all(p, p.host_port < 1024)'
  - expr: 'size(container.cap_add) > 2 && container.privileged'
actions: [network-cut, pause]
"#;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-zA-Z0-9/:._@-]{0,24}",
        any::<String>()
    ]
}

prop_compose! {
    fn arbitrary_container()(
        name in text(),
        image in text(),
        user in proptest::option::of(text()),
        privileged in proptest::option::of(any::<bool>()),
        caps in proptest::option::of(proptest::collection::vec(text(), 0..4)),
        labels in proptest::collection::btree_map(text(), text(), 0..4),
        mounts in proptest::option::of(proptest::collection::vec((text(), text(), any::<bool>()), 0..3)),
        ports in proptest::option::of(proptest::collection::vec((any::<u16>(), text(), any::<u16>()), 0..3)),
        digest in proptest::option::of(text()),
    ) -> ContainerInfo {
        let mut info = ContainerInfo::unknown(ContainerId::new(name.clone()), RuntimeKind::Docker);
        info.name = name;
        info.image = image;
        info.user = user;
        info.privileged = privileged;
        info.cap_add = caps;
        info.labels = labels;
        info.image_digest = digest;
        info.mounts = mounts.map(|mounts| mounts.into_iter().map(|(source, destination, read_write)| Mount {
            kind: "bind".into(), source, destination, read_write, propagation: String::new(),
        }).collect());
        info.ports = ports.map(|ports| ports.into_iter().map(|(container_port, host_ip, host_port)| PublishedPort {
            container_port, protocol: "tcp".into(), host_ip, host_port,
        }).collect());
        info
    }
}

proptest! {
    #[test]
    fn the_judge_never_panics(container in arbitrary_container()) {
        let set = load(&format!("{EVERYTHING}---\n{ISSUE_EXAMPLE}"));
        let verdict = verdict_for(&set, &container);
        // fail-closed: every rule either cleared, was violated, or became a violation.
        for error in &verdict.errors {
            prop_assert!(error.counted_as_violation || &*error.policy != "everything");
        }
    }
}
