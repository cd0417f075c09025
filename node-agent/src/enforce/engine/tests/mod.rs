//! The enforcement task on the fake runtime and cutter.

mod agent;
mod on_error;
mod scanned;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use lazaret_core::policy::PolicySource;
use lazaret_core::{RuntimeKind, posture};
use tempfile::TempDir;

use super::*;
use crate::enforce::netns::CutStatus;
use crate::enforce::policy_files::PolicyFiles;
use crate::enforce::quarantine::{FakeCutter, QuarantineConfig, SystemClock};
use crate::runtime::fake::FakeRuntime;
use crate::store::{Durability, Store};
use crate::watcher::StartSignal;

const POLICY: &str = r#"
apiVersion: lazaret.dev/v1
kind: Policy
name: no-sys-admin
mode: enforce
severity: high
rules:
  - check: "5.4"
    capabilities: [SYS_ADMIN]
actions: [network-cut, pause]
"#;

struct Harness {
    _dir: TempDir,
    store: Store,
    runtime: Arc<FakeRuntime>,
    cutter: Arc<FakeCutter>,
    enforcer: Enforcer,
    version: u64,
}

fn harness(policy: &str, audit_only: bool) -> Harness {
    harness_reloading(policy, audit_only, None)
}

/// With `reload_from`, the enforcer follows the policy files there.
fn harness_reloading(policy: &str, audit_only: bool, reload_from: Option<&Path>) -> Harness {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path(), Durability::Process).unwrap();
    let runtime = Arc::new(FakeRuntime::new());
    let cutter = Arc::new(FakeCutter::new());
    let manager = QuarantineManager::new(
        runtime.clone(),
        cutter.clone(),
        store.clone(),
        Arc::new(SystemClock),
        QuarantineConfig {
            node: "node-a".into(),
            audit_only,
            ..QuarantineConfig::default()
        },
    );
    let policies = PolicySet::load(&[PolicySource::new("test.yaml", policy)]).unwrap();
    let mut enforcer = Enforcer::new(manager, policies, Duration::from_secs(5));
    if let Some(policy_dir) = reload_from {
        let files = PolicyFiles::new(vec![policy_dir.to_path_buf()]);
        enforcer = enforcer.with_policy_reload(files, Duration::from_secs(1));
    }
    Harness {
        _dir: dir,
        store,
        runtime,
        cutter,
        enforcer,
        version: 0,
    }
}

fn container(name: &str, state: ContainerState, caps: &[&str]) -> ContainerInfo {
    let mut info = ContainerInfo::unknown(ContainerId::new(name), RuntimeKind::Fake);
    info.name = name.to_string();
    info.state = state;
    info.netns_path = Some(format!("/fake/netns/{name}"));
    info.host_namespaces.network = Some(false);
    info.cap_add = Some(caps.iter().map(|cap| cap.to_string()).collect());
    info
}

impl Harness {
    /// Puts the runtime's current view of every container into a new snapshot and lets the
    /// enforcer observe it.
    async fn observe(&mut self, names: &[&str]) {
        self.version += 1;
        let mut containers = BTreeMap::new();
        for name in names {
            let info = self.runtime.container(&ContainerId::new(*name)).unwrap();
            let findings = posture::assess(&info);
            containers.insert(
                info.id.clone(),
                Arc::new(InventoryEntry {
                    info,
                    findings,
                    observed_at: SystemTime::now(),
                }),
            );
        }
        let snapshot = InventorySnapshot {
            containers,
            version: self.version,
            ..InventorySnapshot::default()
        };
        self.enforcer.observe(&snapshot).await;
    }

    /// The runtime reports `name` running with SYS_ADMIN added (violating the test policy), and
    /// the enforcer observes it.
    async fn see_running_with_sys_admin(&mut self, name: &str) {
        self.runtime
            .upsert(container(name, ContainerState::Running, &["SYS_ADMIN"]));
        self.observe(&[name]).await;
    }

    /// Whether a quarantine record is stored for `name`.
    fn has_record(&self, name: &str) -> bool {
        self.store
            .quarantine(&ContainerId::new(name))
            .unwrap()
            .is_some()
    }

    fn state(&self, name: &str) -> ContainerState {
        self.runtime
            .container(&ContainerId::new(name))
            .unwrap()
            .state
    }

    fn audit(&self) -> Vec<String> {
        self.store.audit_lines()
    }
}

#[tokio::test]
async fn violating_container_is_quarantined_when_it_starts_and_others_are_left_alone() {
    let mut h = harness(POLICY, false);
    assert!(h.enforcer.roll_forward().await);
    h.runtime
        .upsert(container("bad", ContainerState::Created, &["SYS_ADMIN"]));
    h.runtime
        .upsert(container("good", ContainerState::Running, &[]));
    h.observe(&["bad", "good"]).await;
    assert_eq!(
        h.state("bad"),
        ContainerState::Created,
        "acts only once started"
    );
    assert!(!h.has_record("bad"));

    h.runtime
        .upsert(container("bad", ContainerState::Running, &["SYS_ADMIN"]));
    h.observe(&["bad", "good"]).await;
    assert_eq!(h.state("bad"), ContainerState::Paused);
    assert_eq!(h.state("good"), ContainerState::Running);
    assert_eq!(h.cutter.status_of("/fake/netns/bad"), CutStatus::Intact);
    let record = h
        .store
        .quarantine(&ContainerId::new("bad"))
        .unwrap()
        .unwrap();
    assert_eq!(record.state, QuarantineState::Applied);
    assert_eq!(
        record.source,
        QuarantineSource::Policy("no-sys-admin".into())
    );
    assert_eq!(record.actor, AGENT_ACTOR);
    assert!(!h.has_record("good"));
}

#[tokio::test]
async fn tampering_is_repaired_on_change_and_on_sweep_and_removal_marks_gone() {
    let mut h = harness(POLICY, false);
    let counted = Metrics::new();
    h.enforcer.manager.set_metrics(counted.clone());
    h.enforcer.metrics = counted.clone();
    h.see_running_with_sys_admin("bad").await;
    assert_eq!(h.state("bad"), ContainerState::Paused);

    // Someone unpauses it: the change is seen and the pause re-applied.
    h.see_running_with_sys_admin("bad").await;
    assert_eq!(h.state("bad"), ContainerState::Paused);

    // The table is deleted without any inventory change: the sweep repairs it.
    h.cutter.delete_table("/fake/netns/bad");
    h.enforcer.sweep().await;
    assert_eq!(h.cutter.status_of("/fake/netns/bad"), CutStatus::Intact);
    let audit = h.audit();
    assert_eq!(
        audit
            .iter()
            .filter(|line| line.starts_with("tamper "))
            .count(),
        2,
        "{audit:#?}"
    );
    let metrics = counted.encode();
    assert!(metrics.contains("lazaret_tampering_total 2"), "{metrics}");
    assert!(
        metrics.contains("lazaret_quarantines_total{action=\"pause\",source=\"policy\"} 1"),
        "{metrics}"
    );

    h.runtime.remove(&ContainerId::new("bad"));
    h.observe(&[]).await;
    let record = h
        .store
        .quarantine(&ContainerId::new("bad"))
        .unwrap()
        .unwrap();
    assert_eq!(record.state, QuarantineState::Gone);
}

#[tokio::test]
async fn audit_only_records_would_have_and_does_nothing() {
    let mut h = harness(POLICY, true);
    h.see_running_with_sys_admin("bad").await;
    assert_eq!(h.state("bad"), ContainerState::Running);
    assert!(
        h.audit().iter().any(|line| line.contains("would-have")),
        "{:#?}",
        h.audit()
    );
}

#[tokio::test]
async fn audit_mode_policy_does_nothing_and_records_what_it_would_have_done_once() {
    let mut h = harness(&POLICY.replace("mode: enforce", "mode: audit"), false);
    h.see_running_with_sys_admin("bad").await;
    // Judged again (another inspect of it): no second record.
    h.see_running_with_sys_admin("bad").await;
    assert_eq!(h.state("bad"), ContainerState::Running);
    assert!(!h.has_record("bad"));
    assert_eq!(
        h.audit(),
        ["quarantine would-have: network-cut, pause (audit mode)"]
    );
    let record = &h.store.audit_records(1, 10).unwrap()[0];
    assert_eq!(record.source, "policy:no-sys-admin");
    assert_eq!(record.target, "bad");
    assert!(record.reason.contains("SYS_ADMIN"), "{}", record.reason);
}

#[tokio::test]
async fn roll_forward_at_start_repairs_what_changed_while_the_agent_was_down() {
    let mut h = harness(POLICY, false);
    h.see_running_with_sys_admin("bad").await;
    assert_eq!(h.state("bad"), ContainerState::Paused);
    // "Agent down": unpaused behind its back, then a new enforcer on the same store.
    h.runtime
        .upsert_without_event(container("bad", ContainerState::Running, &["SYS_ADMIN"]));
    let manager = QuarantineManager::new(
        h.runtime.clone(),
        h.cutter.clone(),
        h.store.clone(),
        Arc::new(SystemClock),
        QuarantineConfig::default(),
    );
    let policies = PolicySet::load(&[PolicySource::new("test.yaml", POLICY)]).unwrap();
    let mut restarted = Enforcer::new(manager, policies, Duration::from_secs(5));
    assert!(restarted.roll_forward().await);
    assert_eq!(h.state("bad"), ContainerState::Paused);
    assert!(h.audit().iter().any(|line| line.starts_with("tamper ")));
}

fn start_signal(name: &str) -> StartSignal {
    StartSignal {
        runtime: RuntimeKind::Fake,
        id: ContainerId::new(name),
        pid: None,
        received: tokio::time::Instant::now(),
        handled: None,
    }
}

#[tokio::test]
async fn the_fast_path_acts_on_the_create_verdict_at_start_without_an_inspect() {
    let mut h = harness(POLICY, false);
    let mut enforced = h.enforcer.subscribe();
    h.runtime
        .upsert(container("bad", ContainerState::Created, &["SYS_ADMIN"]));
    h.runtime
        .upsert(container("good", ContainerState::Created, &[]));
    h.observe(&["bad", "good"]).await;
    assert!(!h.has_record("bad"), "nothing happens at create");

    h.runtime.start(&ContainerId::new("bad")).unwrap();
    h.runtime.start(&ContainerId::new("good")).unwrap();
    let inspects = h.runtime.inspects();
    h.enforcer.started(start_signal("bad")).await;
    h.enforcer.started(start_signal("good")).await;
    assert_eq!(h.runtime.inspects(), inspects, "the fast path inspected");
    assert_eq!(h.state("bad"), ContainerState::Paused);
    assert_eq!(h.cutter.status_of("/fake/netns/bad"), CutStatus::Intact);
    assert_eq!(h.state("good"), ContainerState::Running);
    let event = enforced.try_recv().expect("an Enforced event");
    assert_eq!(event.record.container.as_str(), "bad");
    assert_eq!(event.record.state, QuarantineState::Applied);
    assert!(event.since_start_event.is_some());
    assert!(enforced.try_recv().is_err(), "only the violating one");

    // The inspect that follows the start finds the quarantine in force: nothing more is done.
    h.observe(&["bad", "good"]).await;
    assert_eq!(h.state("bad"), ContainerState::Paused);
    assert_eq!(
        h.audit()
            .iter()
            .filter(|line| line.starts_with("tamper"))
            .count(),
        0,
        "{:#?}",
        h.audit()
    );
}

#[tokio::test]
async fn the_fast_path_inspects_when_the_namespace_is_unknown_and_a_lost_signal_costs_nothing() {
    let mut h = harness(POLICY, false);
    let mut created = container("bad", ContainerState::Created, &["SYS_ADMIN"]);
    created.netns_path = None;
    h.runtime.upsert(created.clone());
    h.runtime
        .upsert(container("other", ContainerState::Created, &["SYS_ADMIN"]));
    h.observe(&["bad", "other"]).await;
    // Started: the runtime now reports the namespace (the fake's start event has no PID).
    let mut running = created;
    running.state = ContainerState::Running;
    running.netns_path = Some("/fake/netns/bad".into());
    h.runtime.upsert_without_event(running);
    let inspects = h.runtime.inspects();
    h.enforcer.started(start_signal("bad")).await;
    assert_eq!(h.runtime.inspects(), inspects + 1);
    assert_eq!(h.cutter.status_of("/fake/netns/bad"), CutStatus::Intact);
    assert_eq!(h.state("bad"), ContainerState::Paused);

    // `other`'s signal is lost: its inspect (the normal path) quarantines it.
    h.runtime.start(&ContainerId::new("other")).unwrap();
    h.observe(&["bad", "other"]).await;
    assert_eq!(h.state("other"), ContainerState::Paused);
}

#[tokio::test]
async fn a_policy_change_is_enforced_and_a_bad_one_leaves_the_previous_in_force() {
    let dir = TempDir::new().unwrap();
    let policy_file = dir.path().join("policy.yaml");
    let audit_mode = POLICY.replace("mode: enforce", "mode: audit");
    std::fs::write(&policy_file, &audit_mode).unwrap();
    let mut h = harness_reloading(&audit_mode, false, Some(dir.path()));
    h.see_running_with_sys_admin("bad").await;
    assert_eq!(h.state("bad"), ContainerState::Running, "audit mode");
    assert!(!h.enforcer.reload_policies().await, "unchanged");

    // A broken edit: rejected, the audit-mode policy stays.
    std::fs::write(&policy_file, POLICY.replace("pause]", "freeze]")).unwrap();
    assert!(!h.enforcer.reload_policies().await);
    assert_eq!(
        h.enforcer.policies().policies[0].mode,
        lazaret_core::policy::PolicyMode::Audit
    );

    // Switched to enforce: applied, and the running container is judged again.
    std::fs::write(&policy_file, POLICY).unwrap();
    assert!(h.enforcer.reload_policies().await);
    h.observe(&["bad"]).await;
    assert_eq!(h.state("bad"), ContainerState::Paused);
}

#[tokio::test]
async fn a_released_container_is_exempt_from_that_policy_but_not_from_another_it_breaks() {
    let second = POLICY
        .replace("name: no-sys-admin", "name: second")
        .replace("[network-cut, pause]", "[pause]");
    let mut h = harness(&format!("{POLICY}---\n{second}"), false);
    h.see_running_with_sys_admin("bad").await;
    let id = ContainerId::new("bad");
    let first = h.store.quarantine(&id).unwrap().unwrap();
    assert_eq!(
        first.source,
        QuarantineSource::Policy("no-sys-admin".into())
    );
    h.enforcer
        .manager()
        .release(
            &id,
            "CN=operator",
            "false positive",
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert_eq!(h.state("bad"), ContainerState::Running);

    // The next change: the exempt policy does not decide, the other one does.
    h.see_running_with_sys_admin("bad").await;
    let again = h.store.quarantine(&id).unwrap().unwrap();
    assert_eq!(again.source, QuarantineSource::Policy("second".into()));
    assert_eq!(again.state, QuarantineState::Applied);
    assert_eq!(h.state("bad"), ContainerState::Paused);
}

/// The whole agent in process ([`crate::app::start`]) on one fake runtime, enforcing `policies`,
/// re-checking every 100 ms, its state in a temporary directory.
async fn start_on_fake(
    policies: PolicySet,
) -> (
    Arc<FakeRuntime>,
    TempDir,
    CancellationToken,
    crate::app::RunningAgent,
) {
    let state = TempDir::new().unwrap();
    let mut raw = crate::config::RawConfig::default();
    raw.metrics.listen = String::new();
    raw.containerd.enabled = Some(false);
    raw.state.dir = state.path().to_path_buf();
    raw.enforcement.recheck_interval = Duration::from_millis(100);
    let config = raw.validate().unwrap();
    let runtime = Arc::new(FakeRuntime::new());
    let shutdown = CancellationToken::new();
    let agent = crate::app::start(
        &config,
        vec![runtime.clone()],
        Some(policies),
        shutdown.clone(),
    )
    .await
    .unwrap();
    (runtime, state, shutdown, agent)
}
