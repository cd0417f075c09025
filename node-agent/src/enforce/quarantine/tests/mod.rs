//! The manager's rules on [`FakeRuntime`] and [`FakeCutter`], with a store in a tempdir and a
//! clock the test moves. Real nftables and a real engine: `tests/tests/e2e/quarantine.rs`.

use lazaret_core::quarantine::DEFAULT_QUARANTINE_ACTIONS;
use lazaret_core::{ContainerState, RuntimeKind};
use tempfile::TempDir;

use super::*;
use crate::clock::ManualClock;
use crate::enforce::netns::CutStatus;
use crate::runtime::fake::FakeRuntime;
use crate::store::Durability;

const START: i64 = 1_700_000_000_000;

struct Harness {
    _dir: TempDir,
    store: Store,
    runtime: Arc<FakeRuntime>,
    cutter: Arc<FakeCutter>,
    clock: Arc<ManualClock>,
    manager: QuarantineManager,
}

fn harness_with(config: QuarantineConfig) -> Harness {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path(), Durability::Process).unwrap();
    let runtime = Arc::new(FakeRuntime::new());
    let cutter = Arc::new(FakeCutter::new());
    let clock = Arc::new(ManualClock::stopped_at(START));
    let manager = QuarantineManager::new(
        runtime.clone(),
        cutter.clone(),
        store.clone(),
        clock.clone(),
        config,
    );
    Harness {
        _dir: dir,
        store,
        runtime,
        cutter,
        clock,
        manager,
    }
}

fn harness() -> Harness {
    harness_with(QuarantineConfig {
        node: "node-a".into(),
        ..QuarantineConfig::default()
    })
}

fn netns_of(name: &str) -> String {
    format!("/fake/netns/{name}")
}

impl Harness {
    /// A running container `name` with its own network namespace.
    fn container(&self, name: &str) -> ContainerInfo {
        let mut info = ContainerInfo::unknown(ContainerId::new(name), RuntimeKind::Fake);
        info.name = name.to_string();
        info.state = ContainerState::Running;
        info.netns_path = Some(netns_of(name));
        info.host_namespaces.network = Some(false);
        self.runtime.upsert(info.clone());
        info
    }

    /// A running container `name`, quarantined by a policy with the default actions.
    async fn quarantined(&mut self, name: &str) -> ContainerInfo {
        let info = self.container(name);
        self.quarantine_by_policy(&info).await;
        info
    }

    /// A running container `name` quarantined by a policy with the default actions for `ttl`.
    async fn quarantined_for(&mut self, name: &str, ttl: Duration) -> ContainerInfo {
        let info = self.container(name);
        let mut ask = request(name, &DEFAULT_QUARANTINE_ACTIONS, policy());
        ask.ttl = Some(ttl);
        self.manager.quarantine(ask, &info, false).await.unwrap();
        info
    }

    /// Stores `name`'s quarantine as being undone by `pending`: what a crash half-way through a
    /// release or an expiry leaves.
    fn left_under_way(&self, name: &str, pending: lazaret_core::quarantine::PendingRelease) {
        let record = self.stored(name).undoing(pending);
        self.store.put_quarantine(&record).unwrap();
    }

    /// Quarantines `info`'s container by a policy with the default actions.
    async fn quarantine_by_policy(&mut self, info: &ContainerInfo) -> QuarantineRecord {
        let ask = request(info.id.as_str(), &DEFAULT_QUARANTINE_ACTIONS, policy());
        self.manager.quarantine(ask, info, false).await.unwrap()
    }

    fn current(&self, name: &str) -> ContainerInfo {
        self.runtime.container(&ContainerId::new(name)).unwrap()
    }

    fn stored(&self, name: &str) -> QuarantineRecord {
        self.store
            .quarantine(&ContainerId::new(name))
            .unwrap()
            .unwrap()
    }

    /// A new manager over the same store, runtime and cutter: the agent restarted.
    fn restarted(&self) -> QuarantineManager {
        QuarantineManager::new(
            self.runtime.clone(),
            self.cutter.clone(),
            self.store.clone(),
            self.clock.clone(),
            QuarantineConfig::default(),
        )
    }

    /// The `lazaret_releases_total` samples of this harness's manager, without the metric name.
    fn releases_counted(&self) -> Vec<String> {
        releases_counted_by(&self.manager)
    }

    /// Every audit record as `action outcome`, after checking the chain verifies.
    fn audit(&self) -> Vec<String> {
        self.store.audit_lines()
    }
}

fn request(name: &str, actions: &[Action], source: QuarantineSource) -> QuarantineRequest {
    QuarantineRequest {
        container: ContainerId::new(name),
        node: "node-a".into(),
        actions: actions.to_vec(),
        ttl: None,
        reason: "privileged container".into(),
        actor: "agent".into(),
        source,
        scope: Default::default(),
    }
}

fn policy() -> QuarantineSource {
    QuarantineSource::Policy("no-privileged".into())
}

mod applying;
mod lifecycle;
mod recheck;
mod release;
mod routing;

/// The `lazaret_releases_total` samples `manager` counted, without the metric name.
fn releases_counted_by(manager: &QuarantineManager) -> Vec<String> {
    manager
        .metrics
        .encode()
        .lines()
        .filter_map(|line| line.strip_prefix("lazaret_releases_total{"))
        .map(str::to_string)
        .collect()
}
