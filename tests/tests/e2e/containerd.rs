//! The containerd backend end to end: a private containerd (namespaces, CRI-like pods, joined
//! network namespaces, posture), its events, its restarts, and Docker's own containerd read
//! without touching it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::stream::BoxStream;
use lazaret_agent::runtime::containerd::ContainerdRuntime;
use lazaret_agent::runtime::{ContainerRuntime, EventKind, RuntimeEvent, RuntimeResult};
use lazaret_core::posture::CheckResult;
use lazaret_core::{ContainerId, ContainerState, RuntimeKind};
use lazaret_tests::agent::TestAgent;
use lazaret_tests::private_containerd::BUSYBOX_REFERENCE;
use lazaret_tests::{
    BUSYBOX_IMAGE, NetNs, PrivateContainerd, TestContainers, ensure_busybox_image,
};
use tokio::sync::mpsc;

/// Docker's managed containerd: read here, never written.
const DOCKER_CONTAINERD_SOCKET: &str = "/var/run/docker/containerd/containerd.sock";
const WAIT: Duration = Duration::from_secs(30);

pub(crate) async fn start_containerd() -> PrivateContainerd {
    tokio::task::spawn_blocking(PrivateContainerd::start)
        .await
        .unwrap()
        .unwrap()
}

/// Drops the harness pieces (blocking CLI calls) off the async runtime.
pub(crate) async fn drop_blocking<T: Send + 'static>(value: T) {
    tokio::task::spawn_blocking(move || drop(value))
        .await
        .unwrap();
}

pub(crate) fn runtime_for(
    containerd: &PrivateContainerd,
    namespaces: &[&str],
) -> Arc<ContainerdRuntime> {
    Arc::new(ContainerdRuntime::new(
        containerd.socket(),
        namespaces
            .iter()
            .map(|namespace| namespace.to_string())
            .collect(),
    ))
}

pub(crate) fn result_of(findings: &[lazaret_core::posture::Finding], check: &str) -> CheckResult {
    findings
        .iter()
        .find(|finding| finding.check == check)
        .unwrap_or_else(|| panic!("no check {check}"))
        .result
}

/// An event and when the test's reader task received it.
type Stamped = (RuntimeResult<RuntimeEvent>, SystemTime);

/// Reads the stream in a task of its own and stamps each event on arrival, so a test busy with
/// other calls neither delays the stream nor distorts the measured delay.
fn stamped(
    mut events: BoxStream<'static, RuntimeResult<RuntimeEvent>>,
) -> mpsc::UnboundedReceiver<Stamped> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if sender.send((event, SystemTime::now())).is_err() {
                return;
            }
        }
    });
    receiver
}

/// Next event for `id` of `kind` (skipping everything else), with its arrival time.
async fn next_event_for(
    events: &mut mpsc::UnboundedReceiver<Stamped>,
    id: &ContainerId,
    kind: EventKind,
) -> (RuntimeEvent, SystemTime) {
    tokio::time::timeout(WAIT, async {
        while let Some((event, received)) = events.recv().await {
            let event = event.expect("event stream healthy");
            if &event.id == id && event.kind == kind {
                return (event, received);
            }
        }
        panic!("event stream ended");
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} event for {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_covers_namespaces_pods_joined_netns_and_posture() {
    lazaret_tests::init_tracing();
    let containerd = start_containerd().await;
    let pods = containerd.unique_namespace("pods");
    let plain = containerd.unique_namespace("plain");
    containerd.import_busybox(&pods).unwrap();
    containerd.import_busybox(&plain).unwrap();
    let pod_netns = NetNs::create("cni").unwrap();
    let pod_netns_path = pod_netns.path().display().to_string();

    // One container exists before the agent starts (found by the list), the rest are made
    // while it runs (found through events).
    containerd
        .run(&plain, "caps", &[], &["--cap-add", "CAP_SYS_ADMIN"])
        .unwrap();
    let agent = TestAgent::start_runtimes(vec![runtime_for(&containerd, &[&pods, &plain])])
        .await
        .unwrap();
    let cri_labels = [
        ("io.kubernetes.pod.name", "web-0"),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.container.name", "nginx"),
        ("io.kubernetes.sandbox.id", "sandbox-0123"),
    ];
    // What CRI records for every pull: the image under its repository digest too. Only then
    // is the target digest known to be a registry's.
    let target = containerd
        .ctr(&pods, &["image", "ls"])
        .unwrap()
        .lines()
        .find(|line| line.starts_with(BUSYBOX_REFERENCE))
        .and_then(|line| line.split_whitespace().nth(2))
        .expect("the imported image's digest")
        .to_owned();
    let digest_reference = format!("docker.io/lazaret-test/busybox@{target}");
    containerd
        .ctr(
            &pods,
            &["image", "tag", BUSYBOX_REFERENCE, &digest_reference],
        )
        .unwrap();
    let with_netns = format!("network:{pod_netns_path}");
    containerd
        .run(&pods, "web", &cri_labels, &["--with-ns", &with_netns])
        .unwrap();
    containerd
        .create(&plain, "privileged", &[], &["--privileged"])
        .unwrap();
    // Joining the host's network namespace by path is host networking too (5.10).
    let host_netns = format!("network:/proc/{}/ns/net", std::process::id());
    containerd
        .create(&plain, "joins-host", &[], &["--with-ns", &host_netns])
        .unwrap();

    let (web, caps, privileged, joins_host) = (
        ContainerId::new("web"),
        ContainerId::new("caps"),
        ContainerId::new("privileged"),
        ContainerId::new("joins-host"),
    );
    let snapshot = agent
        .wait_for_inventory("the four containers in their states", |snapshot| {
            let state = |id: &ContainerId| snapshot.get(id).map(|entry| entry.info.state);
            state(&web) == Some(ContainerState::Running)
                && state(&caps) == Some(ContainerState::Running)
                && state(&privileged) == Some(ContainerState::Created)
                && state(&joins_host) == Some(ContainerState::Created)
        })
        .await
        .unwrap();

    let web_entry = snapshot.get(&web).unwrap();
    assert_eq!(web_entry.info.runtime, RuntimeKind::Containerd);
    assert_eq!(web_entry.info.namespace, pods);
    assert_eq!(web_entry.info.image, BUSYBOX_REFERENCE);
    assert!(web_entry.info.image_id.starts_with("sha256:"));
    assert_eq!(web_entry.info.image_id, target);
    assert_eq!(
        web_entry.info.image_digest.as_deref(),
        Some(digest_reference.as_str())
    );
    let pod = web_entry
        .info
        .pod
        .as_ref()
        .expect("pod info from CRI labels");
    assert_eq!(
        (
            pod.name.as_str(),
            pod.namespace.as_str(),
            pod.container_name.as_str()
        ),
        ("web-0", "shop", "nginx")
    );
    assert_eq!(pod.sandbox_id, "sandbox-0123");
    assert_eq!(
        web_entry.info.netns_path.as_deref(),
        Some(pod_netns_path.as_str())
    );
    assert_eq!(web_entry.info.host_namespaces.network, Some(false));
    assert!(web_entry.info.pid.is_some());

    let caps_entry = snapshot.get(&caps).unwrap();
    assert_eq!(caps_entry.info.namespace, plain);
    assert_eq!(
        caps_entry.info.image_id, target,
        "same image, other namespace"
    );
    assert_eq!(
        caps_entry.info.image_digest, None,
        "an imported image has no registry digest"
    );
    let pid = caps_entry.info.pid.expect("a running container has a pid");
    assert_eq!(
        caps_entry.info.netns_path,
        Some(format!("/proc/{pid}/ns/net"))
    );
    assert_eq!(result_of(&caps_entry.findings, "5.4"), CheckResult::Fail);
    assert_eq!(result_of(&caps_entry.findings, "5.5"), CheckResult::Pass);
    // containerd knows nothing of ports, health checks or user-namespace remapping.
    for unknown in ["5.8", "5.14", "5.27", "5.31"] {
        assert_eq!(
            result_of(&caps_entry.findings, unknown),
            CheckResult::Unknown,
            "{unknown}"
        );
    }

    let privileged_entry = snapshot.get(&privileged).unwrap();
    assert_eq!(privileged_entry.info.privileged, Some(true));
    assert_eq!(
        result_of(&privileged_entry.findings, "5.5"),
        CheckResult::Fail
    );
    assert_eq!(result_of(&web_entry.findings, "5.5"), CheckResult::Pass);
    let joins_host_entry = snapshot.get(&joins_host).unwrap();
    assert_eq!(joins_host_entry.info.host_namespaces.network, Some(true));
    assert_eq!(
        result_of(&joins_host_entry.findings, "5.10"),
        CheckResult::Fail
    );
    assert_eq!(result_of(&web_entry.findings, "5.10"), CheckResult::Pass);

    let metrics = agent.metrics_text();
    assert!(
        metrics.contains("lazaret_runtime_connected{runtime=\"containerd\"} 1"),
        "{metrics}"
    );
    agent.stop().await;
    drop_blocking(containerd).await;
    drop(pod_netns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_create_start_pause_stop_and_remove() {
    lazaret_tests::init_tracing();
    let containerd = start_containerd().await;
    let namespace = containerd.unique_namespace("events");
    containerd.import_busybox(&namespace).unwrap();
    let runtime = runtime_for(&containerd, &[&namespace]);

    let connect_started = Instant::now();
    runtime.connect().await.unwrap();
    tracing::info!(elapsed = ?connect_started.elapsed(), "connect, subscription confirmed");
    // The watcher lists before it asks for events: nothing made in between may be missed.
    assert!(runtime.list().await.unwrap().is_empty());
    let id = ContainerId::new("later");
    containerd.create(&namespace, "later", &[], &[]).unwrap();
    let mut events = stamped(runtime.events(0));
    let (created, _) = next_event_for(&mut events, &id, EventKind::Changed).await;
    assert_eq!(created.action, "/containers/create");
    assert_eq!(
        runtime.inspect(&id).await.unwrap().unwrap().state,
        ContainerState::Created
    );

    containerd.start_task(&namespace, "later").unwrap();
    let (started, received) = loop {
        let (event, received) = next_event_for(&mut events, &id, EventKind::Started).await;
        if event.action == "/tasks/start" {
            break (event, received);
        }
    };
    // The start event carries the task's PID: the fast path cuts its namespace without inspect.
    assert!(started.pid.is_some(), "{started:?}");
    assert_eq!(
        started.pid,
        runtime.inspect(&id).await.unwrap().unwrap().pid
    );
    let received_nanos = received.duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let delay = Duration::from_nanos(
        u64::try_from(received_nanos).unwrap() - u64::try_from(started.time_nanos).unwrap(),
    );
    tracing::info!(
        ?delay,
        "task start event received (containerd's timestamp → reader task)"
    );
    assert_eq!(
        runtime.inspect(&id).await.unwrap().unwrap().state,
        ContainerState::Running
    );

    // Pause/resume latency through Tasks, measured on the private containerd.
    let mut pauses = Vec::new();
    let mut resumes = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        runtime.pause(&id).await.unwrap();
        pauses.push(started.elapsed());
        let started = Instant::now();
        runtime.resume(&id).await.unwrap();
        resumes.push(started.elapsed());
    }
    pauses.sort();
    resumes.sort();
    tracing::info!(pause_p50 = ?pauses[10], pause_p95 = ?pauses[18], resume_p50 = ?resumes[10], resume_p95 = ?resumes[18], "Tasks.Pause / Tasks.Resume latency");
    runtime.pause(&id).await.unwrap();
    assert_eq!(
        runtime.inspect(&id).await.unwrap().unwrap().state,
        ContainerState::Paused
    );

    // `sleep` as PID 1 ignores SIGTERM: stop escalates to SIGKILL after the grace period,
    // also for a paused container.
    let stop_started = Instant::now();
    runtime.stop(&id, Duration::from_secs(1)).await.unwrap();
    let stop_elapsed = stop_started.elapsed();
    tracing::info!(elapsed = ?stop_elapsed, "stop of a paused container ignoring SIGTERM");
    assert!(stop_elapsed >= Duration::from_secs(1), "{stop_elapsed:?}");
    assert_eq!(
        runtime.inspect(&id).await.unwrap().unwrap().state,
        ContainerState::Exited
    );
    runtime.stop(&id, Duration::from_secs(1)).await.unwrap();

    // A container that handles SIGTERM stops well within its grace period.
    let polite = ContainerId::new("polite");
    containerd
        .ctr(
            &namespace,
            &[
                "run",
                "-d",
                "--null-io",
                BUSYBOX_REFERENCE,
                "polite",
                "sh",
                "-c",
                "trap 'exit 0' TERM; while :; do sleep 0.1; done",
            ],
        )
        .unwrap();
    let stop_started = Instant::now();
    runtime
        .stop(&polite, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(stop_started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        runtime.inspect(&polite).await.unwrap().unwrap().state,
        ContainerState::Exited
    );

    // The subscription is handed out once per connection; a reconnect replaces it and ends
    // the old stream with an error (its forwarding task is gone).
    let mut second = runtime.events(0);
    assert!(matches!(second.next().await, Some(Err(_))));
    runtime.connect().await.unwrap();
    let old_stream_ended = tokio::time::timeout(WAIT, async {
        while let Some((event, _)) = events.recv().await {
            if event.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        old_stream_ended.is_ok(),
        "the old stream outlived the reconnect"
    );
    let mut events = stamped(runtime.events(0));

    containerd.remove(&namespace, "later").unwrap();
    next_event_for(&mut events, &id, EventKind::Removed).await;
    assert_eq!(runtime.inspect(&id).await.unwrap(), None);
    assert!(matches!(
        runtime.kill(&id).await,
        Err(lazaret_agent::runtime::RuntimeError::NotFound { .. })
    ));
    drop(events);
    drop_blocking(containerd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reconnects_after_containerd_restarts_and_resyncs() {
    lazaret_tests::init_tracing();
    let containerd = start_containerd().await;
    let namespace = containerd.unique_namespace("restart");
    containerd.import_busybox(&namespace).unwrap();
    let runtime = runtime_for(&containerd, &[&namespace]);
    let agent = TestAgent::start_runtimes(vec![runtime.clone()])
        .await
        .unwrap();
    agent
        .wait_for_runtime("the first connection", |status| status.connected)
        .await
        .unwrap();
    containerd.run(&namespace, "before", &[], &[]).unwrap();
    let before = ContainerId::new("before");
    agent
        .wait_for_inventory("the container made before the outage", |snapshot| {
            snapshot
                .get(&before)
                .is_some_and(|entry| entry.info.state == ContainerState::Running)
        })
        .await
        .unwrap();

    let mut containerd = tokio::task::spawn_blocking(move || {
        let mut containerd = containerd;
        containerd.stop().unwrap();
        containerd
    })
    .await
    .unwrap();
    agent.expect_outage(Duration::from_secs(1)).await.unwrap();

    containerd = tokio::task::spawn_blocking(move || {
        containerd.start_again().unwrap();
        containerd
    })
    .await
    .unwrap();
    containerd.create(&namespace, "after", &[], &[]).unwrap();
    containerd.run(&namespace, "started", &[], &[]).unwrap();
    let status = agent
        .wait_for_runtime("the reconnect", |status| {
            status.connected && status.reconnects >= 1
        })
        .await
        .unwrap();
    assert_eq!(
        status
            .version
            .as_ref()
            .and_then(|version| version.containerd.clone()),
        status
            .version
            .as_ref()
            .map(|version| version.version.clone())
    );
    let (after, started) = (ContainerId::new("after"), ContainerId::new("started"));
    agent
        .wait_for_inventory("old and new containers after the resync", |snapshot| {
            let state = |id: &ContainerId| snapshot.get(id).map(|entry| entry.info.state);
            // The shim outlived containerd: the old container still runs.
            state(&before) == Some(ContainerState::Running)
                && state(&after) == Some(ContainerState::Created)
                && state(&started) == Some(ContainerState::Running)
        })
        .await
        .unwrap();
    // Events flow again on the new subscription.
    containerd.remove(&namespace, "after").unwrap();
    agent
        .wait_for_inventory("the removal after the reconnect", |snapshot| {
            snapshot.get(&after).is_none()
        })
        .await
        .unwrap();
    let metrics = agent.metrics_text();
    assert!(
        !metrics.contains("lazaret_runtime_reconnects_total{runtime=\"containerd\"} 0\n"),
        "{metrics}"
    );
    agent.stop().await;
    drop(runtime);
    drop_blocking(containerd).await;
}

/// Docker's own containerd, read-only: a container the test makes through Docker shows up in
/// the `moby` namespace under Docker's id, with the configuration runc was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockers_containerd_shows_docker_containers_under_dockers_id() {
    lazaret_tests::init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let runtime = ContainerdRuntime::new(DOCKER_CONTAINERD_SOCKET, vec!["moby".to_string()]);
    let version = runtime.connect().await.unwrap();
    assert_eq!(version.api_version, "v1");
    let id = ContainerId::new(
        containers
            .run(
                "moby",
                &[
                    "--stop-timeout",
                    "1",
                    "--cap-add",
                    "SYS_ADMIN",
                    "-v",
                    "/etc:/host-etc:ro",
                    BUSYBOX_IMAGE,
                    "sleep",
                    "600",
                ],
            )
            .unwrap(),
    );
    let mut events = stamped(runtime.events(0));
    next_event_for(&mut events, &id, EventKind::Changed).await;
    assert!(runtime.list().await.unwrap().contains(&id));
    let info = runtime.inspect(&id).await.unwrap().expect("seen in moby");
    assert_eq!(info.namespace, "moby");
    assert_eq!(info.state, ContainerState::Running);
    let docker_pid: u32 = containers
        .docker(&["inspect", "-f", "{{.State.Pid}}", id.as_str()])
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(info.pid, Some(docker_pid));
    assert_eq!(info.image, "", "Docker does not tell containerd the image");
    assert!(
        info.cap_add
            .as_ref()
            .unwrap()
            .contains(&"SYS_ADMIN".to_string())
    );
    assert!(
        info.mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|mount| mount.source == "/etc" && !mount.read_write)
    );

    // A Docker pause shows up as a containerd task event and state.
    containers.docker(&["pause", id.as_str()]).unwrap();
    let paused = loop {
        let (event, _) = next_event_for(&mut events, &id, EventKind::Changed).await;
        if event.action == "/tasks/paused" {
            break event;
        }
    };
    assert_eq!(paused.kind, EventKind::Changed);
    assert_eq!(
        runtime.inspect(&id).await.unwrap().unwrap().state,
        ContainerState::Paused
    );
    containers.docker(&["unpause", id.as_str()]).unwrap();
    drop(events);
    drop_blocking(containers).await;
}

/// The harness itself: a private containerd stopped while its containers run (shims alive, as
/// after a crash) leaves nothing behind once dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_containerd_leaves_nothing_behind() {
    lazaret_tests::init_tracing();
    let containerd = start_containerd().await;
    let namespace = containerd.unique_namespace("cleanup");
    let dir = containerd.dir().to_owned();
    let leftovers = tokio::task::spawn_blocking(move || {
        let mut containerd = containerd;
        containerd.import_busybox(&namespace).unwrap();
        containerd.run(&namespace, "orphan", &[], &[]).unwrap();
        let pid: u32 = containerd
            .ctr(&namespace, &["task", "ls"])
            .unwrap()
            .lines()
            .find(|line| line.starts_with("orphan "))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|pid| pid.parse().ok())
            .expect("the task's pid");
        containerd.stop().unwrap();
        let marker = format!("{}/", dir.display());
        assert!(
            !lazaret_tests::leftovers::processes_mentioning(&marker)
                .unwrap()
                .is_empty(),
            "the shim survives containerd, as in production"
        );
        drop(containerd);
        let processes = lazaret_tests::leftovers::processes_mentioning(&marker).unwrap();
        // SIGKILLed by `runc delete -f`; reaped by PID 1 a moment later.
        let deadline = Instant::now() + Duration::from_secs(5);
        let container_alive = loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let dead = state.is_empty() || state.contains(") Z ") || state.contains(") X ");
            if dead || Instant::now() >= deadline {
                break !dead;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let runc_state = std::path::Path::new("/run/containerd/runc").join(&namespace);
        let cgroup = std::path::Path::new("/sys/fs/cgroup/pids").join(&namespace);
        (
            processes,
            container_alive,
            dir.exists(),
            runc_state.exists(),
            cgroup.exists(),
        )
    })
    .await
    .unwrap();
    assert_eq!(leftovers, (Vec::new(), false, false, false, false));
}
