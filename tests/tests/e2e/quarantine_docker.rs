//! What a quarantine looks like from the network and from the engine on real Docker: after
//! `[network-cut, pause]` a second container cannot reach the target while the target's own
//! loopback still accepts connections, and a release brings the probe back; `kill` leaves it
//! exited 137; audit-only leaves it running with the would-have record. Generous deadlines, no
//! timing asserts.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use lazaret_tests::agent::DEFAULT_DOCKER_SOCKET;
use lazaret_tests::command::run_with_timeout;
use lazaret_tests::{BUSYBOX_IMAGE, TestContainers, ensure_busybox_image, init_tracing};

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

fn field(containers: &TestContainers, container: &str, template: &str) -> String {
    containers
        .docker(&["inspect", "--format", template, container])
        .unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_and_paused_container_is_unreachable_but_keeps_its_loopback_until_released() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let script = format!(
        "mkdir -p /www && echo target > /www/index.html && exec httpd -f -p {HTTP_PORT} -h /www"
    );
    let target = containers
        .run("probed", &[BUSYBOX_IMAGE, "sh", "-c", &script])
        .unwrap();
    let prober = containers
        .run("prober", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let address = field(&containers, &target, "{{.NetworkSettings.IPAddress}}");
    let prober_netns = field(&containers, &prober, "{{.NetworkSettings.SandboxKey}}");
    wait_until_served(&containers, &prober, &address);

    let mut setup = setup(false).await;
    let info = inspect(&setup.runtime, &target).await;
    let target_netns = info.netns_path.clone().expect("a sandbox key");
    let record = setup
        .manager
        .quarantine(request(&info, &DEFAULT_QUARANTINE_ACTIONS), &info, false)
        .await
        .unwrap();
    assert_eq!(record.state, QuarantineState::Applied);
    assert_eq!(
        inspect(&setup.runtime, &target).await.state,
        ContainerState::Paused
    );
    assert_eq!(fetch(&containers, &prober, &address), None);
    assert!(
        !connects(&prober_netns, &address),
        "a second container still connects to the cut target"
    );
    assert!(
        connects(&target_netns, "127.0.0.1"),
        "the target's own loopback was cut"
    );

    setup
        .manager
        .release(&info.id, "CN=e2e", "test over", Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(
        inspect(&setup.runtime, &target).await.state,
        ContainerState::Running
    );
    wait_until_served(&containers, &prober, &address);
    setup.store.verify_audit(None).unwrap().unwrap();
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
    assert_eq!(field(&containers, &target, "{{.State.ExitCode}}"), "137");
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
