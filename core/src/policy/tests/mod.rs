//! Tests of the policy language: loading and its errors, built-in rules, scoping, CEL, the
//! judge's decisions, and a property test that the judge never panics.

mod decisions;
mod docs;
mod loading;
mod properties;
mod rules;

use std::collections::BTreeMap;

use crate::container::{ContainerId, ContainerInfo, ContainerState, RuntimeKind};
use crate::policy::{JudgeInput, NoIndicators, PolicySet, PolicySource, Verdict, judge};
use crate::posture;

/// The example from the issue, which must stay valid and mean what it says.
pub(super) const ISSUE_EXAMPLE: &str = r#"apiVersion: lazaret.dev/v1
kind: Policy
name: no-sys-admin-in-prod
mode: enforce
severity: high
match:
  labels: {env: prod}
rules:                                # any rule that matches is a violation
  - check: "5.4"                      # these added capabilities are violations
    capabilities: [SYS_ADMIN, NET_ADMIN]
  - expr: 'container.user == "" && container.image.startsWith("registry.example.com/")'
actions: [network-cut, pause]
ttl: 24h
"#;

pub(super) fn load(text: &str) -> PolicySet {
    PolicySet::load(&[PolicySource::new("test.yaml", text)])
        .unwrap_or_else(|errors| panic!("{errors}"))
}

/// A Docker-like container: non-root, nothing risky, every field known.
pub(super) fn container(name: &str) -> ContainerInfo {
    let mut info =
        ContainerInfo::unknown(ContainerId::new(format!("id-{name}")), RuntimeKind::Docker);
    info.name = name.to_string();
    info.state = ContainerState::Running;
    info.image = "registry.example.com/app:1".into();
    info.image_id = "sha256:00".into();
    info.user = Some("app".into());
    info.privileged = Some(false);
    info.cap_add = Some(vec![]);
    info.cap_drop = Some(vec![]);
    info.mounts = Some(vec![]);
    info.devices = Some(vec![]);
    info.ports = Some(vec![]);
    info.read_only_rootfs = Some(true);
    for shared in [
        &mut info.host_namespaces.network,
        &mut info.host_namespaces.pid,
        &mut info.host_namespaces.ipc,
        &mut info.host_namespaces.uts,
        &mut info.host_namespaces.user,
    ] {
        *shared = Some(false);
    }
    info.labels = BTreeMap::new();
    info
}

pub(super) fn verdict_for(set: &PolicySet, container: &ContainerInfo) -> Verdict {
    verdict_with_exemptions(set, container, &|_| false)
}

pub(super) fn verdict_with_exemptions(
    set: &PolicySet,
    container: &ContainerInfo,
    is_exempt: &dyn Fn(&str) -> bool,
) -> Verdict {
    let findings = posture::assess(container);
    judge(
        set,
        &JudgeInput {
            container,
            posture: &findings,
            indicators: &NoIndicators,
            is_exempt,
        },
    )
}

#[test]
fn policy_sets_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PolicySet>();
}
