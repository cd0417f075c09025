//! Quarantines through containerd while Docker is watched too, on a container in a containerd
//! namespace of the test's own (not `moby`, so Docker does not know it), joined to a network
//! namespace the test made with a veth pair to a peer:
//! - the quarantine manager cuts and pauses it through containerd, traffic to the peer stops, and
//!   a release brings both back;
//! - the agent binary quarantines it when it starts, and again after a `kill -9` of the agent
//!   during which the task was resumed (audited `tamper`).
//!
//! Deadlines are generous and nothing here measures time.

use std::sync::Arc;
use std::time::Duration;

use lazaret_agent::enforce::quarantine::{
    NetnsCutter, QuarantineConfig, QuarantineManager, SystemClock,
};
use lazaret_agent::enforce::runtimes::Runtimes;
use lazaret_agent::runtime::ContainerRuntime;
use lazaret_agent::runtime::docker::DockerRuntime;
use lazaret_agent::store::{Durability, Store};
use lazaret_core::quarantine::{
    DEFAULT_QUARANTINE_ACTIONS, QuarantineRequest, QuarantineSource, QuarantineState,
};
use lazaret_core::{ContainerId, ContainerState, RuntimeKind};
use lazaret_tests::agent::DEFAULT_DOCKER_SOCKET;
use lazaret_tests::agent_process::{AgentProcess, describe_audit, has_audit_record};
use lazaret_tests::command::run_checked;
use lazaret_tests::{NetNs, PrivateContainerd};

use super::containerd::{drop_blocking, runtime_for, start_containerd};

const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent process may take to act: generous, nothing here measures time.
const AGENT_DEADLINE: Duration = Duration::from_secs(60);
/// Whether one ping from the peer namespace reaches `address` (the container's end).
async fn peer_reaches_container(peer: &NetNs, address: &str) -> bool {
    let mut command = peer.command("busybox");
    command.args(["ping", "-c", "1", "-W", "2", address]);
    tokio::task::spawn_blocking(move || run_checked(&mut command, COMMAND_TIMEOUT).is_ok())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containerd_only_container_is_cut_and_paused_through_containerd_with_docker_watched() {
    lazaret_tests::init_tracing();
    let containerd = start_containerd().await;
    let namespace = containerd.unique_namespace("quarantine");
    containerd.import_busybox(&namespace).unwrap();
    let container_netns = NetNs::create("qpod").unwrap();
    let peer_netns = NetNs::create("qpeer").unwrap();
    let veth = container_netns.link_to(&peer_netns, 8).unwrap();
    let joined = format!("network:{}", container_netns.path().display());
    containerd
        .run(&namespace, "ctr-quarantined", &[], &["--with-ns", &joined])
        .unwrap();
    assert!(
        peer_reaches_container(&peer_netns, &veth.address).await,
        "no traffic before the cut"
    );

    let docker = Arc::new(DockerRuntime::new(DEFAULT_DOCKER_SOCKET));
    docker.connect().await.unwrap();
    let containerd_runtime = runtime_for(&containerd, &[&namespace]);
    containerd_runtime.connect().await.unwrap();
    let state_dir = tempfile::TempDir::new().unwrap();
    let store = Store::open(state_dir.path(), Durability::Process).unwrap();
    let mut manager = QuarantineManager::with_runtimes(
        Runtimes::new(vec![docker.clone(), containerd_runtime.clone()]),
        Arc::new(NetnsCutter::new()),
        store.clone(),
        Arc::new(SystemClock),
        QuarantineConfig::default(),
    );

    let id = ContainerId::new("ctr-quarantined");
    let info = manager
        .runtimes()
        .inspect(&id)
        .await
        .unwrap()
        .expect("containerd reports the container");
    assert_eq!(info.runtime, RuntimeKind::Containerd);
    let request = QuarantineRequest {
        container: id.clone(),
        node: "e2e".into(),
        actions: DEFAULT_QUARANTINE_ACTIONS.to_vec(),
        ttl: None,
        reason: "e2e quarantine".into(),
        actor: "agent".into(),
        source: QuarantineSource::Policy("e2e-policy".into()),
        scope: Default::default(),
    };
    let record = manager.quarantine(request, &info, false).await.unwrap();
    assert_eq!(record.state, QuarantineState::Applied);
    let state = || async {
        containerd_runtime
            .inspect(&id)
            .await
            .unwrap()
            .expect("the container exists")
            .state
    };
    assert_eq!(state().await, ContainerState::Paused);
    let tasks = containerd.ctr(&namespace, &["task", "ls"]).unwrap();
    assert!(
        tasks
            .lines()
            .any(|line| line.starts_with("ctr-quarantined") && line.contains("PAUSED")),
        "ctr task ls: {tasks}"
    );
    assert!(
        !peer_reaches_container(&peer_netns, &veth.address).await,
        "the peer still reaches a cut container"
    );

    let released = manager
        .release(&id, "CN=e2e", "test over", Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(released.state, QuarantineState::Released);
    assert_eq!(state().await, ContainerState::Running);
    assert!(
        peer_reaches_container(&peer_netns, &veth.address).await,
        "no traffic after the release"
    );
    store.verify_audit(None).unwrap().unwrap();

    drop_blocking(containerd).await;
    drop(container_netns);
    drop(peer_netns);
}

/// Whether `ctr task ls` shows `id`'s task in `status` (`PAUSED`, `RUNNING`).
fn task_is(containerd: &PrivateContainerd, namespace: &str, id: &str, status: &str) -> bool {
    containerd
        .ctr(namespace, &["task", "ls"])
        .is_ok_and(|tasks| {
            tasks
                .lines()
                .any(|line| line.starts_with(id) && line.contains(status))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_quarantines_a_containerd_only_container_at_start_and_again_after_a_crash() {
    lazaret_tests::init_tracing();
    let containerd = start_containerd().await;
    let namespace = containerd.unique_namespace("agent");
    containerd.import_busybox(&namespace).unwrap();
    let container_netns = NetNs::create("apod").unwrap();
    let peer_netns = NetNs::create("apeer").unwrap();
    let veth = container_netns.link_to(&peer_netns, 9).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policies");
    std::fs::create_dir(&policy_dir).unwrap();
    // Only this test's namespace: the agent watches the machine's Docker too, where other
    // tests' containers carry the same label.
    std::fs::write(
        policy_dir.join("e2e.yaml"),
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: e2e-containerd\nmode: enforce\n\
             match:\n  namespaces: [\"{namespace}\"]\n  labels: {{lazaret.e2e: violate}}\n\
             rules:\n  - expr: 'container.labels[\"lazaret.e2e\"] == \"violate\"'\n\
             actions: [network-cut, pause]\n"
        ),
    )
    .unwrap();
    // Docker is watched too: the container is containerd's alone and acted on through it.
    let config = format!(
        "[metrics]\nlisten = \"\"\n[containerd]\nenabled = true\nsocket = \"{}\"\n\
         namespaces = [\"{namespace}\"]\n[enforcement]\nrecheck_interval = \"1s\"\n",
        containerd.socket()
    );
    let mut agent = AgentProcess::start(dir.path(), &config, &policy_dir).unwrap();
    let id = "ctr-agent-quarantined";
    let joined = format!("network:{}", container_netns.path().display());
    containerd
        .create(
            &namespace,
            id,
            &[("lazaret.e2e", "violate")],
            &["--with-ns", &joined],
        )
        .unwrap();
    containerd.start_task(&namespace, id).unwrap();
    agent
        .wait_for("paused by the agent", AGENT_DEADLINE, || {
            task_is(&containerd, &namespace, id, "PAUSED")
        })
        .unwrap();
    assert!(
        !peer_reaches_container(&peer_netns, &veth.address).await,
        "the peer still reaches a cut container"
    );

    agent.kill().unwrap();
    containerd.ctr(&namespace, &["task", "resume", id]).unwrap();
    assert!(task_is(&containerd, &namespace, id, "RUNNING"));
    agent.restart().unwrap();
    agent
        .wait_for("paused again after the crash", AGENT_DEADLINE, || {
            task_is(&containerd, &namespace, id, "PAUSED")
        })
        .unwrap();
    assert!(!peer_reaches_container(&peer_netns, &veth.address).await);
    agent.kill().unwrap();
    let audit = agent.verified_audit().unwrap();
    for (action, outcome) in [
        ("network-cut", "applied"),
        ("pause", "applied"),
        ("tamper", ""),
    ] {
        assert!(
            has_audit_record(&audit, id, action, outcome),
            "no {action} {outcome}:\n{}",
            describe_audit(&audit)
        );
    }

    drop(agent);
    drop_blocking(containerd).await;
    drop(container_netns);
    drop(peer_netns);
}
