//! The quarantine manager acting through containerd while Docker is watched too: a container in
//! a containerd namespace of the test's own (not `moby`, so Docker does not know it) is cut and
//! paused through containerd, traffic across a veth pair to a peer namespace stops, and a release
//! brings both back. Deadlines are generous and nothing here measures time.

use std::process::Command;
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
use lazaret_tests::NetNs;
use lazaret_tests::agent::DEFAULT_DOCKER_SOCKET;
use lazaret_tests::command::run_checked;

use super::containerd::{drop_blocking, runtime_for, start_containerd};

const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
const CONTAINER_ADDRESS: &str = "10.232.0.1";

fn ip(args: &[&str]) {
    run_checked(Command::new("ip").args(args), COMMAND_TIMEOUT).unwrap();
}

/// A veth pair from the container's namespace to the peer's (names and addresses of its own, so
/// it never collides with the zoo's pair in the same test process).
fn wire(container_side: &NetNs, peer_side: &NetNs) {
    let suffix = std::process::id() % 100_000;
    let (inside, outside) = (format!("lzqa{suffix}"), format!("lzqb{suffix}"));
    let (container_ns, peer_ns) = (container_side.name(), peer_side.name());
    ip(&[
        "-n",
        container_ns,
        "link",
        "add",
        &inside,
        "type",
        "veth",
        "peer",
        "name",
        &outside,
        "netns",
        peer_ns,
    ]);
    let inside_address = format!("{CONTAINER_ADDRESS}/30");
    ip(&[
        "-n",
        container_ns,
        "addr",
        "add",
        &inside_address,
        "dev",
        &inside,
    ]);
    ip(&[
        "-n",
        peer_ns,
        "addr",
        "add",
        "10.232.0.2/30",
        "dev",
        &outside,
    ]);
    ip(&["-n", container_ns, "link", "set", &inside, "up"]);
    ip(&["-n", peer_ns, "link", "set", &outside, "up"]);
}

/// Whether one ping from the peer namespace reaches the container's namespace.
async fn peer_reaches_container(peer: &NetNs) -> bool {
    let mut command = peer.command("busybox");
    command.args(["ping", "-c", "1", "-W", "2", CONTAINER_ADDRESS]);
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
    wire(&container_netns, &peer_netns);
    let joined = format!("network:{}", container_netns.path().display());
    containerd
        .run(&namespace, "ctr-quarantined", &[], &["--with-ns", &joined])
        .unwrap();
    assert!(
        peer_reaches_container(&peer_netns).await,
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
        !peer_reaches_container(&peer_netns).await,
        "the peer still reaches a cut container"
    );

    let released = manager
        .release(&id, "CN=e2e", "test over", Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(released.state, QuarantineState::Released);
    assert_eq!(state().await, ContainerState::Running);
    assert!(
        peer_reaches_container(&peer_netns).await,
        "no traffic after the release"
    );
    store.verify_audit(None).unwrap().unwrap();

    drop_blocking(containerd).await;
    drop(container_netns);
    drop(peer_netns);
}
