//! Applying a quarantine: order, storage, guards (protected, audit-only, twice), host networking and failed cuts.

use lazaret_core::policy::EnforcementScope;

use super::*;

#[tokio::test]
async fn cut_and_pause_are_applied_in_order_and_stored() {
    let mut harness = harness();
    let info = harness.container("web");
    let record = harness
        .manager
        .quarantine(
            request("web", &DEFAULT_QUARANTINE_ACTIONS, policy()),
            &info,
            false,
        )
        .await
        .unwrap();
    assert_eq!(record.state, QuarantineState::Applied);
    assert_eq!(harness.stored("web"), record);
    assert_eq!(harness.current("web").state, ContainerState::Paused);
    assert_eq!(
        harness.cutter.status_of(&netns_of("web")),
        CutStatus::Intact
    );
    assert_eq!(
        harness.audit(),
        [
            "quarantine requested",
            "network-cut applied",
            "pause applied",
            "quarantine applied"
        ]
    );
}

#[tokio::test]
async fn an_active_quarantine_is_not_requested_twice() {
    let mut harness = harness();
    let info = harness.container("web");
    let first = request("web", &DEFAULT_QUARANTINE_ACTIONS, policy());
    harness
        .manager
        .quarantine(first.clone(), &info, false)
        .await
        .unwrap();
    let error = harness
        .manager
        .quarantine(first, &harness.current("web"), false)
        .await
        .unwrap_err();
    assert!(
        matches!(error, QuarantineError::AlreadyQuarantined { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_protected_container_is_refused_unless_forced() {
    let mut harness = harness();
    let mut info = harness.container("agent");
    info.labels.insert(PROTECTED_LABEL.into(), "true".into());
    harness.runtime.upsert(info.clone());
    let ask = request(
        "agent",
        &DEFAULT_QUARANTINE_ACTIONS,
        QuarantineSource::Operator,
    );
    let error = harness
        .manager
        .quarantine(ask.clone(), &info, false)
        .await
        .unwrap_err();
    assert!(
        matches!(error, QuarantineError::Protected { .. }),
        "{error}"
    );
    assert_eq!(harness.current("agent").state, ContainerState::Running);
    assert!(harness.cutter.calls().is_empty());
    assert!(harness.store.quarantine(&info.id).unwrap().is_none());
    assert_eq!(
        harness.audit(),
        ["quarantine refused: protected (label lazaret.io/protected=true)"]
    );

    let forced = harness.manager.quarantine(ask, &info, true).await.unwrap();
    assert_eq!(forced.state, QuarantineState::Applied);
    assert_eq!(harness.current("agent").state, ContainerState::Paused);
}

#[tokio::test]
async fn audit_only_records_what_would_have_been_done_and_does_nothing() {
    let mut harness = harness();
    harness.manager.set_audit_only(true);
    let info = harness.container("web");
    let error = harness
        .manager
        .quarantine(request("web", &[Action::Kill], policy()), &info, false)
        .await
        .unwrap_err();
    assert!(
        matches!(error, QuarantineError::AuditOnly { .. }),
        "{error}"
    );
    assert_eq!(harness.current("web").state, ContainerState::Running);
    assert!(harness.store.quarantine(&info.id).unwrap().is_none());
    assert_eq!(
        harness.audit(),
        ["quarantine would-have: kill (audit-only)"]
    );
}

#[tokio::test]
async fn host_network_skips_the_cut_as_a_gap_and_still_pauses() {
    let mut harness = harness();
    let mut info = harness.container("hostnet");
    info.host_namespaces.network = Some(true);
    info.netns_path = Some("/var/run/docker/netns/default".into());
    harness.runtime.upsert(info.clone());
    let record = harness.quarantine_by_policy(&info).await;
    assert_eq!(record.state, QuarantineState::Applied);
    assert!(
        harness.cutter.calls().is_empty(),
        "the host must never be cut"
    );
    assert_eq!(harness.current("hostnet").state, ContainerState::Paused);
    let audit = harness.audit();
    assert!(
        audit[1].starts_with("network-cut skipped: host network"),
        "{audit:?}"
    );
    assert!(
        audit[2].starts_with("enforcement-gap network-cut"),
        "{audit:?}"
    );
    assert_eq!(audit[3], "pause applied");
    assert!(
        audit[4].starts_with("quarantine applied with gaps"),
        "{audit:?}"
    );

    // A re-check does not call an untouched host network tampering.
    assert!(
        harness
            .manager
            .recheck(&harness.current("hostnet"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_namespace_the_cutter_finds_to_be_the_hosts_is_skipped_too() {
    let mut harness = harness();
    let info = harness.container("sneaky");
    harness.cutter.mark_host(&netns_of("sneaky"));
    let record = harness
        .manager
        .quarantine(
            request("sneaky", &DEFAULT_QUARANTINE_ACTIONS, policy()),
            &info,
            false,
        )
        .await
        .unwrap();
    assert_eq!(record.state, QuarantineState::Applied);
    assert_eq!(harness.current("sneaky").state, ContainerState::Paused);
    assert!(
        harness
            .audit()
            .iter()
            .any(|line| line.starts_with("enforcement-gap"))
    );
}

#[tokio::test]
async fn a_cut_alone_on_host_network_holds_nothing_and_fails() {
    let mut harness = harness();
    let mut info = harness.container("hostnet");
    info.host_namespaces.network = Some(true);
    let record = harness
        .manager
        .quarantine(
            request("hostnet", &[Action::NetworkCut], policy()),
            &info,
            false,
        )
        .await
        .unwrap();
    assert_eq!(record.state, QuarantineState::Failed);
}

#[tokio::test]
async fn a_failed_cut_is_a_gap_the_pause_still_runs_and_the_quarantine_fails() {
    let mut harness = harness();
    let info = harness.container("web");
    harness.cutter.set_failing(true);
    let record = harness
        .manager
        .quarantine(
            request("web", &DEFAULT_QUARANTINE_ACTIONS, policy()),
            &info,
            false,
        )
        .await
        .unwrap();
    assert_eq!(record.state, QuarantineState::Failed);
    assert_eq!(harness.stored("web").state, QuarantineState::Failed);
    assert_eq!(harness.current("web").state, ContainerState::Paused);
    let audit = harness.audit();
    assert!(
        audit
            .iter()
            .any(|line| line.starts_with("enforcement-gap network-cut"))
    );
    assert!(
        audit
            .last()
            .unwrap()
            .starts_with("quarantine failed: network-cut")
    );
}

#[tokio::test]
async fn configured_names_id_prefixes_and_the_agents_own_container_are_protected() {
    let harness = harness_with(QuarantineConfig {
        protected: vec!["ingress".into(), "0123456789ab".into(), "short".into()],
        own_container: Some(ContainerId::new("own-container-id")),
        ..QuarantineConfig::default()
    });
    let named = |id: &str, name: &str| {
        let mut info = ContainerInfo::unknown(ContainerId::new(id), RuntimeKind::Fake);
        info.name = name.into();
        info
    };
    let why = |info: &ContainerInfo| harness.manager.protection(info);
    assert_eq!(
        why(&named("aaaa", "ingress")).as_deref(),
        Some("listed as protected: ingress")
    );
    assert_eq!(
        why(&named("0123456789abcdef", "web")).as_deref(),
        Some("listed as protected: 0123456789ab")
    );
    assert_eq!(
        why(&named("own-container-id", "lazaret")).as_deref(),
        Some("the agent's own container")
    );
    // Too short to be an id prefix (it would match by accident); names match whole.
    assert_eq!(why(&named("shortcake", "web")), None);
    assert_eq!(why(&named("bbbb", "ingress-2")), None);
}

#[test]
fn only_the_value_true_protects() {
    let mut info = ContainerInfo::unknown(ContainerId::new("x"), RuntimeKind::Fake);
    assert!(!is_protected(&info));
    info.labels.insert(PROTECTED_LABEL.into(), "false".into());
    assert!(!is_protected(&info));
    info.labels.insert(PROTECTED_LABEL.into(), "true".into());
    assert!(is_protected(&info));
}

#[tokio::test]
async fn a_request_for_another_container_than_the_inspected_one_is_refused() {
    let mut harness = harness();
    let info = harness.container("web");
    let error = harness
        .manager
        .quarantine(request("db", &[Action::Pause], policy()), &info, false)
        .await
        .unwrap_err();
    assert!(
        matches!(error, QuarantineError::ContainerMismatch { .. }),
        "{error}"
    );
    assert_eq!(harness.current("web").state, ContainerState::Running);
}

#[tokio::test]
async fn a_cut_of_a_net_admin_container_is_backed_by_a_pause() {
    let mut harness = harness();
    let mut info = harness.container("admin");
    info.cap_add = Some(vec!["NET_ADMIN".into()]);
    harness.runtime.upsert(info.clone());
    let record = harness
        .manager
        .quarantine(
            request("admin", &[Action::NetworkCut], policy()),
            &info,
            false,
        )
        .await
        .unwrap();
    assert_eq!(record.actions, [Action::NetworkCut, Action::Pause]);
    assert_eq!(record.state, QuarantineState::Applied);
    assert_eq!(harness.current("admin").state, ContainerState::Paused);
    assert_eq!(
        harness.cutter.status_of(&netns_of("admin")),
        CutStatus::Intact
    );
    let audit = harness.audit();
    assert!(
        audit[0].starts_with("quarantine requested; pause added: the container has NET_ADMIN"),
        "{audit:?}"
    );
}

/// A container `name` that joined `owner`'s network namespace (Docker `--network container:`).
fn joined(harness: &Harness, name: &str, owner: &str) -> ContainerInfo {
    let mut info = harness.container(name);
    info.netns_path = None;
    info.netns_owner = Some(owner.into());
    harness.runtime.upsert(info.clone());
    info
}

#[tokio::test]
async fn a_shared_namespace_is_cut_only_with_pod_scope() {
    let mut harness = harness();
    harness.container("pod-owner");
    let info = joined(&harness, "sidecar", "pod-owner");
    let record = harness.quarantine_by_policy(&info).await;
    // Container scope: the pod's namespace is left alone, the pause still holds.
    assert_eq!(record.state, QuarantineState::Applied);
    assert!(
        harness.cutter.calls().is_empty(),
        "{:?}",
        harness.cutter.calls()
    );
    assert_eq!(harness.current("sidecar").state, ContainerState::Paused);
    assert!(
        harness.audit()[1]
            .starts_with("network-cut skipped: shares the network namespace of pod-owner"),
        "{:?}",
        harness.audit()
    );
    harness
        .manager
        .release(&info.id, "operator", "test", Duration::ZERO)
        .await
        .unwrap();

    // Pod scope: the owner's namespace is cut (the whole pod), released again with it.
    let mut ask = request(
        "sidecar",
        &DEFAULT_QUARANTINE_ACTIONS,
        QuarantineSource::Operator,
    );
    ask.scope = EnforcementScope::Pod;
    let record = harness.manager.quarantine(ask, &info, false).await.unwrap();
    assert_eq!(record.state, QuarantineState::Applied);
    assert_eq!(
        harness.cutter.status_of(&netns_of("pod-owner")),
        CutStatus::Intact
    );
    assert!(
        harness
            .manager
            .recheck(&harness.current("sidecar"))
            .await
            .unwrap()
            .is_none()
    );
    harness
        .manager
        .release(&info.id, "operator", "test", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        harness.cutter.status_of(&netns_of("pod-owner")),
        CutStatus::Absent
    );
}
