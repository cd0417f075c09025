//! `on_error` in the whole agent ([`crate::app::start`] on a [`FakeRuntime`]): rules that cannot
//! be evaluated and a runtime that refuses actions, under a `fail-open` and a `fail-closed`
//! policy side by side; each gap is audited as `enforcement-gap`.

use lazaret_core::policy::PolicySource;

use super::*;
use crate::app;
use crate::runtime::fake::FakeRuntime;
use crate::store::{Durability, Store};

/// Two policies alike but for `on_error`, each for its own team's containers.
fn policies(rule: &str) -> PolicySet {
    let policy = |team: &str, on_error: &str| {
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: {team}\nmode: enforce\n\
             match:\n  labels: {{team: {team}}}\nrules:\n  - {rule}\nactions: [pause]\n\
             on_error: {on_error}\n"
        )
    };
    PolicySet::load(&[
        PolicySource::new("open.yaml", policy("open", "fail-open")),
        PolicySource::new("closed.yaml", policy("closed", "fail-closed")),
    ])
    .unwrap()
}

struct Started {
    runtime: Arc<FakeRuntime>,
    state: TempDir,
    shutdown: CancellationToken,
    agent: app::RunningAgent,
}

async fn start(policies: PolicySet) -> Started {
    let (runtime, state, shutdown, agent) = start_on_fake(policies).await;
    Started {
        runtime,
        state,
        shutdown,
        agent,
    }
}

impl Started {
    fn run(&self, team: &str, edit: impl FnOnce(&mut ContainerInfo)) -> ContainerId {
        let id = ContainerId::new(team);
        let mut info = ContainerInfo::unknown(id.clone(), RuntimeKind::Fake);
        info.state = ContainerState::Running;
        info.labels.insert("team".into(), team.into());
        edit(&mut info);
        self.runtime.upsert(info);
        id
    }

    async fn wait_until(&self, what: &str, done: impl Fn(&FakeRuntime) -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(20), async {
            while !done(&self.runtime) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "never: {what}");
    }

    fn state_of(&self, id: &ContainerId) -> Option<ContainerState> {
        self.runtime.container(id).map(|info| info.state)
    }

    /// Stops the agent; its store, and `(action, target, outcome)` of every audit record.
    async fn stop(self) -> (Store, Vec<(String, String, String)>, TempDir) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.agent.drain())
            .await
            .unwrap();
        let store = Store::open(self.state.path(), Durability::Process).unwrap();
        store.verify_audit(None).unwrap().unwrap();
        let audit = store
            .audit_records(1, 1000)
            .unwrap()
            .into_iter()
            .map(|record| (record.action, record.target, record.outcome))
            .collect();
        (store, audit, self.state)
    }
}

fn gaps_of<'a>(audit: &'a [(String, String, String)], target: &str) -> Vec<&'a str> {
    audit
        .iter()
        .filter(|(action, of, _)| action == "enforcement-gap" && of == target)
        .map(|(_, _, outcome)| outcome.as_str())
        .collect()
}

#[tokio::test]
async fn a_rule_that_cannot_be_evaluated_is_a_gap_either_way_and_fail_closed_quarantines() {
    // The fake reports no privileged flag: the rule cannot be evaluated.
    let agent = start(policies("check: privileged")).await;
    let open = agent.run("open", |_| {});
    let closed = agent.run("closed", |_| {});
    agent
        .wait_until("the fail-closed container paused", |runtime| {
            runtime.container(&closed).map(|info| info.state) == Some(ContainerState::Paused)
        })
        .await;
    // The open one had the same chance: judged in the same pass, and again at each sweep.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(agent.state_of(&open), Some(ContainerState::Running));
    let (_store, audit, _dir) = agent.stop().await;
    let open_gaps = gaps_of(&audit, "open");
    assert_eq!(open_gaps.len(), 1, "once per container and rule: {audit:?}");
    assert!(open_gaps[0].starts_with("fail-open"), "{open_gaps:?}");
    let closed_gaps = gaps_of(&audit, "closed");
    assert_eq!(closed_gaps.len(), 1, "{audit:?}");
    assert!(closed_gaps[0].starts_with("fail-closed"), "{closed_gaps:?}");
}

#[tokio::test]
async fn a_refused_pause_is_retried_for_a_fail_closed_policy_and_left_for_fail_open() {
    let agent = start(policies("check: \"5.4\"\n    capabilities: [SYS_ADMIN]")).await;
    // The runtime refuses the first two pauses: one for each container.
    agent.runtime.fail_pauses(2);
    let with_sys_admin = |info: &mut ContainerInfo| info.cap_add = Some(vec!["SYS_ADMIN".into()]);
    let open = agent.run("open", with_sys_admin);
    let closed = agent.run("closed", with_sys_admin);
    agent
        .wait_until("the fail-closed container paused on a retry", |runtime| {
            runtime.container(&closed).map(|info| info.state) == Some(ContainerState::Paused)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        agent.state_of(&open),
        Some(ContainerState::Running),
        "fail-open: left failed for an operator"
    );
    let (store, audit, _dir) = agent.stop().await;
    assert_eq!(
        store.quarantine(&closed).unwrap().unwrap().state,
        QuarantineState::Applied
    );
    assert_eq!(
        store.quarantine(&open).unwrap().unwrap().state,
        QuarantineState::Failed
    );
    for target in ["open", "closed"] {
        let gaps = gaps_of(&audit, target);
        assert!(
            gaps.iter()
                .any(|outcome| outcome.contains("injected failure")),
            "{target}: {audit:?}"
        );
    }
    assert!(
        audit
            .iter()
            .any(|(action, target, _)| action == "retry" && target == "closed"),
        "{audit:?}"
    );
}
