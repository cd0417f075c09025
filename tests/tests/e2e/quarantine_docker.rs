//! What a quarantine looks like from the network and from the engine on real Docker: a
//! violating container started under an in-process agent is quarantined at its start (the fast
//! path), after `[network-cut, pause]` a second container cannot reach it while its own loopback
//! still accepts connections, a release through the agent brings the probe back and the
//! exemption keeps it released through later re-checks; a namespace shared with
//! `--network container:` is cut only with `scope: pod`; `kill` leaves a container exited 137;
//! audit-only leaves it running with the would-have record. Generous deadlines, no timing
//! asserts.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lazaret_agent::enforce::engine::Enforced;
use lazaret_agent::enforce::netns::CutStatus;
use lazaret_agent::enforce::quarantine::{
    NetnsCutter, QuarantineConfig, QuarantineError, QuarantineManager, SystemClock,
};
use lazaret_agent::runtime::ContainerRuntime;
use lazaret_agent::runtime::docker::DockerRuntime;
use lazaret_agent::store::{Durability, Store};
use lazaret_core::quarantine::{
    Action, DEFAULT_QUARANTINE_ACTIONS, QuarantineRequest, QuarantineSource, QuarantineState,
};
use lazaret_core::{ContainerId, ContainerInfo, ContainerState};
use lazaret_tests::agent::{DEFAULT_DOCKER_SOCKET, TestAgent};
use lazaret_tests::command::run_with_timeout;
use lazaret_tests::inside::cut_status;
use lazaret_tests::{BUSYBOX_IMAGE, TestContainers, ensure_busybox_image, init_tracing};
use tokio::sync::broadcast;

const HTTP_PORT: u16 = 8080;
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
const REACH_DEADLINE: Duration = Duration::from_secs(60);

/// A quarantine manager over the machine's Docker engine and real nftables, with a store in a
/// temporary directory. Shared with `quarantine.rs`.
pub(crate) struct Setup {
    _state_dir: tempfile::TempDir,
    pub(crate) store: Store,
    pub(crate) runtime: Arc<DockerRuntime>,
    pub(crate) manager: QuarantineManager,
}

pub(crate) async fn setup(audit_only: bool) -> Setup {
    let state_dir = tempfile::TempDir::new().unwrap();
    let store = Store::open(state_dir.path(), Durability::Process).unwrap();
    let runtime = Arc::new(DockerRuntime::new(DEFAULT_DOCKER_SOCKET));
    runtime.connect().await.unwrap();
    let manager = QuarantineManager::new(
        runtime.clone(),
        Arc::new(NetnsCutter::new()),
        store.clone(),
        Arc::new(SystemClock),
        QuarantineConfig {
            audit_only,
            ..QuarantineConfig::default()
        },
    );
    Setup {
        _state_dir: state_dir,
        store,
        runtime,
        manager,
    }
}

pub(crate) async fn inspect(runtime: &DockerRuntime, id: &str) -> ContainerInfo {
    runtime
        .inspect(&ContainerId::new(id))
        .await
        .unwrap()
        .expect("the container exists")
}

pub(crate) fn request(container: &ContainerInfo, actions: &[Action]) -> QuarantineRequest {
    QuarantineRequest {
        container: container.id.clone(),
        node: "e2e".into(),
        actions: actions.to_vec(),
        ttl: None,
        reason: "e2e quarantine".into(),
        actor: "agent".into(),
        source: QuarantineSource::Policy("e2e-policy".into()),
        scope: Default::default(),
    }
}

/// Whether a TCP connection to `address:HTTP_PORT` is established from inside the network
/// namespace at `netns`. Only the handshake: a paused listener still completes it (the kernel
/// does), so this sees the cut, not the pause.
fn connects(netns: &str, address: &str) -> bool {
    let script = format!(
        "import socket; socket.create_connection(('{address}', {HTTP_PORT}), timeout=3).close()"
    );
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net={netns}"))
        .args(["--", "python3", "-c", &script]);
    run_with_timeout(&mut command, TOOL_TIMEOUT)
        .unwrap()
        .success()
}

/// Whether loopback traffic flows in `netns`: a listener of this test's own on 127.0.0.1 there,
/// and a connection to it. (Not the target's server: the fast path may pause the container
/// before its server even listens.)
fn loopback_works(netns: &str) -> bool {
    let script = "import socket\nserver = socket.socket()\nserver.bind(('127.0.0.1', 0))\n\
        server.listen()\nsocket.create_connection(server.getsockname(), timeout=3).close()";
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net={netns}"))
        .args(["--", "python3", "-c", script]);
    run_with_timeout(&mut command, TOOL_TIMEOUT)
        .unwrap()
        .success()
}

/// The page `from` gets over HTTP from `address`, bounded by busybox `timeout` (busybox 1.35's
/// `wget -T` crashes on this image).
fn fetch(containers: &TestContainers, from: &str, address: &str) -> Option<String> {
    let url = format!("http://{address}:{HTTP_PORT}/");
    containers
        .docker(&["exec", from, "timeout", "5", "wget", "-q", "-O-", &url])
        .ok()
        .map(|page| page.trim().to_owned())
}

fn wait_until_served(containers: &TestContainers, from: &str, address: &str) {
    let deadline = Instant::now() + REACH_DEADLINE;
    while fetch(containers, from, address).as_deref() != Some("target") {
        assert!(Instant::now() < deadline, "{from} never reached {address}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// This run's enforce-mode policies: `lazaret.e2e=violate` gets the default quarantine,
/// `lazaret.e2e=pod` the same with `scope: pod`.
fn policies(containers: &TestContainers) -> String {
    let policy = |name: &str, value: &str, scope: &str| {
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: {name}\nmode: enforce\nscope: {scope}\n\
             match:\n  labels: {{lazaret.test: \"{run}\", lazaret.e2e: \"{value}\"}}\n\
             rules:\n  - expr: 'container.labels[\"lazaret.e2e\"] == \"{value}\"'\n\
             actions: [network-cut, pause]\n",
            run = containers.run_id()
        )
    };
    format!(
        "{}---\n{}",
        policy("e2e-violators", "violate", "container"),
        policy("e2e-pods", "pod", "pod")
    )
}

/// The next quarantine the agent carries out on `container`.
async fn enforced_on(events: &mut broadcast::Receiver<Enforced>, container: &str) -> Enforced {
    tokio::time::timeout(REACH_DEADLINE, async {
        loop {
            let event = events.recv().await.expect("the agent is running");
            if event.record.container.as_str() == container {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no quarantine of {container} in {REACH_DEADLINE:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violating_container_is_quarantined_at_start_unreachable_until_released_then_exempt() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let script = format!(
        "mkdir -p /www && echo target > /www/index.html && exec httpd -f -p {HTTP_PORT} -h /www"
    );
    let prober = containers
        .run("prober", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let prober_netns = containers
        .field(&prober, "{{.NetworkSettings.SandboxKey}}")
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let recheck = Duration::from_millis(500);
    let agent = TestAgent::start_enforcing(state.path(), &policies(&containers), recheck)
        .await
        .unwrap();
    let mut enforced = agent.subscribe_enforced();
    agent
        .wait_for_runtime("connected", |status| status.connected)
        .await
        .unwrap();
    // Created once the agent watches: its create is judged live (a container created before
    // would be judged from the replayed create event, whose inspect may already see it started).
    let target = containers
        .create(
            "probed",
            &[
                "--label",
                "lazaret.e2e=violate",
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                &script,
            ],
        )
        .unwrap();
    agent
        .wait_for_inventory("the created target", |snapshot| {
            snapshot.get(&ContainerId::new(target.as_str())).is_some()
        })
        .await
        .unwrap();

    // Judged at create, acted on at start: the fast path, no inspect in between.
    containers.docker(&["start", &target]).unwrap();
    let event = enforced_on(&mut enforced, &target).await;
    assert_eq!(event.record.state, QuarantineState::Applied);
    assert!(
        event.since_start_event.is_some(),
        "not the fast path: {event:?}"
    );
    assert_eq!(
        containers.field(&target, "{{.State.Status}}").unwrap(),
        "paused"
    );
    assert_eq!(
        cut_status(&containers, &target).await.unwrap(),
        CutStatus::Intact
    );
    let address = containers
        .field(&target, "{{.NetworkSettings.IPAddress}}")
        .unwrap();
    let target_netns = containers
        .field(&target, "{{.NetworkSettings.SandboxKey}}")
        .unwrap();
    assert_eq!(fetch(&containers, &prober, &address), None);
    assert!(
        !connects(&prober_netns, &address),
        "a second container still connects to the cut target"
    );
    assert!(
        loopback_works(&target_netns),
        "the target's own loopback was cut"
    );
    assert_eq!(
        containers.field(&prober, "{{.State.Status}}").unwrap(),
        "running"
    );

    let id = ContainerId::new(target.as_str());
    agent
        .enforcer()
        .release(id.clone(), "CN=e2e", "test over", Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(
        containers.field(&target, "{{.State.Status}}").unwrap(),
        "running"
    );
    wait_until_served(&containers, &prober, &address);
    // Re-checks and the release's own events come and go: the exemption keeps it released.
    tokio::time::sleep(recheck * 4).await;
    assert_eq!(
        containers.field(&target, "{{.State.Status}}").unwrap(),
        "running"
    );
    assert_eq!(
        cut_status(&containers, &target).await.unwrap(),
        CutStatus::Absent
    );
    agent.stop().await;

    let store = Store::open(state.path(), Durability::Process).unwrap();
    assert_eq!(
        store.quarantine(&id).unwrap().unwrap().state,
        QuarantineState::Released
    );
    store.verify_audit(None).unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_namespace_is_cut_only_when_the_policy_says_scope_pod() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let owner = containers
        .run("pod-owner", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let joined = format!("container:{owner}");
    let state = tempfile::tempdir().unwrap();
    let agent = TestAgent::start_enforcing(
        state.path(),
        &policies(&containers),
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    let mut enforced = agent.subscribe_enforced();

    // Container scope: the sidecar is paused, the namespace it shares is left alone.
    let sidecar = containers
        .run(
            "sidecar",
            &[
                "--network",
                &joined,
                "--label",
                "lazaret.e2e=violate",
                BUSYBOX_IMAGE,
                "sleep",
                "600",
            ],
        )
        .unwrap();
    let event = enforced_on(&mut enforced, &sidecar).await;
    assert_eq!(event.record.state, QuarantineState::Applied);
    assert_eq!(
        containers.field(&sidecar, "{{.State.Status}}").unwrap(),
        "paused"
    );
    assert_eq!(
        cut_status(&containers, &owner).await.unwrap(),
        CutStatus::Absent
    );

    // Pod scope: the owner's namespace, the whole pod's, is cut; released with the quarantine.
    let member = containers
        .run(
            "member",
            &[
                "--network",
                &joined,
                "--label",
                "lazaret.e2e=pod",
                BUSYBOX_IMAGE,
                "sleep",
                "600",
            ],
        )
        .unwrap();
    let event = enforced_on(&mut enforced, &member).await;
    assert_eq!(event.record.state, QuarantineState::Applied);
    assert_eq!(
        containers.field(&member, "{{.State.Status}}").unwrap(),
        "paused"
    );
    assert_eq!(
        cut_status(&containers, &owner).await.unwrap(),
        CutStatus::Intact
    );
    assert_eq!(
        containers.field(&owner, "{{.State.Status}}").unwrap(),
        "running"
    );
    agent
        .enforcer()
        .release(
            ContainerId::new(member.as_str()),
            "CN=e2e",
            "test over",
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert_eq!(
        cut_status(&containers, &owner).await.unwrap(),
        CutStatus::Absent
    );
    agent.stop().await;

    let store = Store::open(state.path(), Durability::Process).unwrap();
    let audit = store.audit_records(1, 10_000).unwrap();
    assert!(
        audit.iter().any(|record| record.target == sidecar
            && record.action == "enforcement-gap"
            && record.outcome.contains("shares the network namespace")),
        "{audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_leaves_the_container_exited_137() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let target = containers
        .run("killed", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let mut setup = setup(false).await;
    let info = inspect(&setup.runtime, &target).await;
    let record = setup
        .manager
        .quarantine(request(&info, &[Action::Kill]), &info, false)
        .await
        .unwrap();
    assert_eq!(record.state, QuarantineState::Applied);
    assert_eq!(
        inspect(&setup.runtime, &target).await.state,
        ContainerState::Exited
    );
    assert_eq!(
        containers.field(&target, "{{.State.ExitCode}}").unwrap(),
        "137"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_only_leaves_the_container_running_with_the_would_have_record() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let target = containers
        .run("audited", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let mut setup = setup(true).await;
    let info = inspect(&setup.runtime, &target).await;
    let refusal = setup
        .manager
        .quarantine(request(&info, &DEFAULT_QUARANTINE_ACTIONS), &info, false)
        .await
        .unwrap_err();
    assert!(
        matches!(refusal, QuarantineError::AuditOnly { .. }),
        "{refusal}"
    );
    assert_eq!(
        inspect(&setup.runtime, &target).await.state,
        ContainerState::Running
    );
    assert!(setup.store.quarantine(&info.id).unwrap().is_none());
    let records = setup.store.audit_records(1, 100).unwrap();
    assert!(
        records
            .iter()
            .any(|record| record.target == target && record.outcome.starts_with("would-have:")),
        "{records:?}"
    );
    setup.store.verify_audit(None).unwrap().unwrap();
}

/// The agent pauses a Docker container through containerd's Tasks API (Docker's `moby`
/// namespace): Docker's own view follows (`docker inspect` says paused), and a release through
/// Docker thaws it. Without a containerd watching `moby`, Docker's pause is used.
#[tokio::test]
async fn a_docker_container_paused_through_containerd_stays_consistent_in_docker() {
    use lazaret_agent::enforce::runtimes::Runtimes;
    use lazaret_agent::runtime::containerd::{ContainerdRuntime, DOCKER_NAMESPACE, default_socket};
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let Some(socket) = default_socket() else {
        panic!("no containerd socket on this machine: Docker's containerd is expected");
    };
    let containers = TestContainers::new(None);
    let docker = Arc::new(DockerRuntime::new(DEFAULT_DOCKER_SOCKET));
    docker.connect().await.unwrap();
    let containerd = Arc::new(ContainerdRuntime::new(
        socket,
        vec![DOCKER_NAMESPACE.to_string()],
    ));
    containerd.connect().await.unwrap();
    let id = containers
        .run("through-containerd", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let container = ContainerId::new(id.as_str());
    assert!(
        matches!(containerd.pause_docker_task(&container).await, Some(Ok(()))),
        "containerd pauses the Docker container's task"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while containers.field(&id, "{{.State.Status}}").unwrap() != "paused" {
        assert!(Instant::now() < deadline, "Docker never saw the pause");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    docker.resume(&container).await.unwrap();
    assert_eq!(
        containers.field(&id, "{{.State.Status}}").unwrap(),
        "running"
    );

    // Through the runtimes enforcement uses: containerd first, Docker's pause as the fallback.
    let info = docker.inspect(&container).await.unwrap().unwrap();
    let both = Runtimes::new(vec![docker.clone(), containerd.clone()]);
    both.pause(&info).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while containers.field(&id, "{{.State.Status}}").unwrap() != "paused" {
        assert!(Instant::now() < deadline, "Docker never saw the pause");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    docker.resume(&container).await.unwrap();
    let docker_only = Runtimes::one(docker.clone());
    docker_only.pause(&info).await.unwrap();
    assert_eq!(
        containers.field(&id, "{{.State.Status}}").unwrap(),
        "paused"
    );
    docker.resume(&container).await.unwrap();
}
