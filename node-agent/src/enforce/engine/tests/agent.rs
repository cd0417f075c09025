//! The whole agent in process ([`crate::app::start`] with policies): watcher, inventory and the
//! enforcement task on a [`FakeRuntime`](crate::runtime::fake::FakeRuntime).

use lazaret_core::policy::PolicySource;

use super::*;
use crate::app;
use crate::config::RawConfig;
use crate::runtime::fake::FakeRuntime;
use crate::store::{Durability, Store};

const POLICY: &str = r#"
apiVersion: lazaret.dev/v1
kind: Policy
name: no-sys-admin
mode: enforce
rules:
  - check: "5.4"
    capabilities: [SYS_ADMIN]
actions: [network-cut, pause]
"#;

async fn wait_for(runtime: &FakeRuntime, id: &ContainerId, state: ContainerState) {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while runtime.container(id).map(|info| info.state) != Some(state) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{id} never became {state:?}");
}

#[tokio::test]
async fn started_agent_quarantines_repairs_and_drains() {
    let policies = PolicySet::load(&[PolicySource::new("p.yaml", POLICY)]).unwrap();
    let (runtime, state, shutdown, agent) = start_on_fake(policies).await;

    let id = ContainerId::new("bad");
    let mut info = ContainerInfo::unknown(id.clone(), RuntimeKind::Fake);
    info.state = ContainerState::Running;
    // Host networking: the real cutter skips it (a gap), so no nftables is needed here.
    info.host_namespaces.network = Some(true);
    info.cap_add = Some(vec!["SYS_ADMIN".into()]);
    runtime.upsert(info.clone());
    wait_for(&runtime, &id, ContainerState::Paused).await;

    // Unpaused behind the agent's back, without an event: the periodic re-check repairs it.
    runtime.upsert_without_event(info.clone());
    wait_for(&runtime, &id, ContainerState::Paused).await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), agent.drain())
        .await
        .unwrap();
    let store = Store::open(state.path(), Durability::Process).unwrap();
    let record = store.quarantine(&id).unwrap().unwrap();
    assert_eq!(record.state, QuarantineState::Applied);
    store.verify_audit(None).unwrap().unwrap();
    let actions: Vec<String> = store
        .audit_records(1, 1000)
        .unwrap()
        .into_iter()
        .map(|record| record.action)
        .collect();
    assert!(
        actions.iter().any(|action| action == "tamper"),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|action| action == "enforcement-gap"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn started_agent_pauses_a_container_through_the_runtime_that_reports_it() {
    let state = tempfile::TempDir::new().unwrap();
    let mut raw = RawConfig::default();
    raw.metrics.listen = String::new();
    raw.containerd.enabled = Some(false);
    raw.state.dir = state.path().to_path_buf();
    let config = raw.validate().unwrap();
    let policies = PolicySet::load(&[PolicySource::new("p.yaml", POLICY)]).unwrap();
    let docker = Arc::new(FakeRuntime::with_kind(RuntimeKind::Docker));
    let containerd = Arc::new(FakeRuntime::with_kind(RuntimeKind::Containerd));
    let shutdown = CancellationToken::new();
    let agent = app::start(
        &config,
        vec![docker.clone(), containerd.clone()],
        Some(policies),
        shutdown.clone(),
    )
    .await
    .unwrap();

    // Seen only through containerd (a namespace of its own), while Docker is watched too.
    let id = ContainerId::new("ctr-only");
    let mut info = ContainerInfo::unknown(id.clone(), RuntimeKind::Containerd);
    info.state = ContainerState::Running;
    info.host_namespaces.network = Some(true);
    info.cap_add = Some(vec!["SYS_ADMIN".into()]);
    containerd.upsert(info);
    wait_for(&containerd, &id, ContainerState::Paused).await;
    assert!(docker.container(&id).is_none());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), agent.drain())
        .await
        .unwrap();
}
