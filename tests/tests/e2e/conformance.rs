//! One conformance suite for every `ContainerRuntime` backend: the in-memory fake must behave
//! like the real engine in everything the agent relies on (list, inspect, events with replay,
//! pause/resume/kill, not-found errors). Run against the real Docker engine, a private
//! containerd and the fake.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use lazaret_agent::runtime::containerd::ContainerdRuntime;
use lazaret_agent::runtime::docker::DockerRuntime;
use lazaret_agent::runtime::fake::FakeRuntime;
use lazaret_agent::runtime::{ContainerRuntime, EventKind, RuntimeError};
use lazaret_core::{ContainerId, ContainerInfo, ContainerState, RuntimeKind};
use lazaret_tests::agent::DEFAULT_DOCKER_SOCKET;
use lazaret_tests::{BUSYBOX_IMAGE, PrivateContainerd, TestContainers, ensure_busybox_image};

const WAIT: Duration = Duration::from_secs(20);

/// How a suite makes and removes containers on the backend under test.
trait Driver {
    fn runtime(&self) -> Arc<dyn ContainerRuntime>;
    fn create_running(&self, name: &str) -> ContainerId;
    fn remove(&self, id: &ContainerId);
}

struct DockerDriver {
    runtime: Arc<DockerRuntime>,
    containers: TestContainers,
}

impl Driver for DockerDriver {
    fn runtime(&self) -> Arc<dyn ContainerRuntime> {
        self.runtime.clone()
    }

    fn create_running(&self, name: &str) -> ContainerId {
        ContainerId::new(
            self.containers
                .run(
                    name,
                    &["--stop-timeout", "1", BUSYBOX_IMAGE, "sleep", "600"],
                )
                .unwrap(),
        )
    }

    fn remove(&self, id: &ContainerId) {
        self.containers.docker(&["rm", "-f", id.as_str()]).unwrap();
    }
}

struct ContainerdDriver {
    runtime: Arc<ContainerdRuntime>,
    containerd: PrivateContainerd,
    namespace: String,
}

impl Driver for ContainerdDriver {
    fn runtime(&self) -> Arc<dyn ContainerRuntime> {
        self.runtime.clone()
    }

    fn create_running(&self, name: &str) -> ContainerId {
        let id = format!("{}-{name}", self.namespace);
        self.containerd.run(&self.namespace, &id, &[], &[]).unwrap();
        ContainerId::new(id)
    }

    fn remove(&self, id: &ContainerId) {
        self.containerd
            .remove(&self.namespace, id.as_str())
            .unwrap();
    }
}

struct FakeDriver {
    runtime: Arc<FakeRuntime>,
}

impl Driver for FakeDriver {
    fn runtime(&self) -> Arc<dyn ContainerRuntime> {
        self.runtime.clone()
    }

    fn create_running(&self, name: &str) -> ContainerId {
        let id = ContainerId::new(format!("fake-{name}"));
        let mut info = ContainerInfo::unknown(id.clone(), RuntimeKind::Fake);
        info.name = name.to_string();
        info.state = ContainerState::Running;
        self.runtime.upsert(info);
        id
    }

    fn remove(&self, id: &ContainerId) {
        self.runtime.remove(id);
    }
}

async fn state_of(runtime: &dyn ContainerRuntime, id: &ContainerId) -> Option<ContainerState> {
    runtime.inspect(id).await.unwrap().map(|info| info.state)
}

async fn wait_for_state(runtime: &dyn ContainerRuntime, id: &ContainerId, wanted: ContainerState) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while state_of(runtime, id).await != Some(wanted) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never reached {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run_conformance(driver: &dyn Driver, name: &str) {
    let runtime = driver.runtime();
    runtime.connect().await.expect("connect");
    let since = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
        - 1;

    let id = driver.create_running(name);
    assert!(
        runtime.list().await.unwrap().contains(&id),
        "list shows the new container"
    );
    let info = runtime
        .inspect(&id)
        .await
        .unwrap()
        .expect("inspect finds it");
    assert!(info.name.ends_with(name), "name {:?}", info.name);
    assert_eq!(info.state, ContainerState::Running);
    assert_eq!(
        runtime
            .inspect(&ContainerId::new("no-such-container"))
            .await
            .unwrap(),
        None
    );

    // Events from before the subscription are replayed (list-then-subscribe misses nothing).
    let mut events = runtime.events(since);
    tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            let event = event.expect("event stream healthy");
            if event.id == id && event.kind == EventKind::Changed {
                return;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("a Changed event for the new container");

    runtime.pause(&id).await.unwrap();
    wait_for_state(runtime.as_ref(), &id, ContainerState::Paused).await;
    runtime.resume(&id).await.unwrap();
    wait_for_state(runtime.as_ref(), &id, ContainerState::Running).await;
    runtime.kill(&id).await.unwrap();
    wait_for_state(runtime.as_ref(), &id, ContainerState::Exited).await;

    driver.remove(&id);
    tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            let event = event.expect("event stream healthy");
            if event.id == id && event.kind == EventKind::Removed {
                return;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("a Removed event after removal");
    assert_eq!(runtime.inspect(&id).await.unwrap(), None);
    match runtime.pause(&id).await {
        Err(RuntimeError::NotFound { id: missing }) => assert_eq!(missing, id),
        other => panic!("pause of a removed container: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_backend_conforms() {
    ensure_busybox_image(None).unwrap();
    let driver = DockerDriver {
        runtime: Arc::new(DockerRuntime::new(DEFAULT_DOCKER_SOCKET)),
        containers: TestContainers::new(None),
    };
    run_conformance(&driver, "conformance").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_backend_conforms() {
    lazaret_tests::init_tracing();
    let containerd = tokio::task::spawn_blocking(PrivateContainerd::start)
        .await
        .unwrap()
        .unwrap();
    let namespace = containerd.unique_namespace("conformance");
    containerd.import_busybox(&namespace).unwrap();
    let driver = ContainerdDriver {
        runtime: Arc::new(ContainerdRuntime::new(
            containerd.socket(),
            vec!["default".to_string(), namespace.clone()],
        )),
        containerd,
        namespace,
    };
    run_conformance(&driver, "conformance").await;
    tokio::task::spawn_blocking(move || drop(driver))
        .await
        .unwrap();
}

#[tokio::test]
async fn fake_backend_conforms() {
    let driver = FakeDriver {
        runtime: Arc::new(FakeRuntime::new()),
    };
    run_conformance(&driver, "conformance").await;
}
