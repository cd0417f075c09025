//! Actions go to the runtime that reports the container, with two fake runtimes posing as Docker
//! and containerd.

use super::*;
use crate::enforce::runtimes::Runtimes;

struct Two {
    _dir: TempDir,
    docker: Arc<FakeRuntime>,
    containerd: Arc<FakeRuntime>,
    manager: QuarantineManager,
}

fn two_runtimes() -> Two {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path(), Durability::Process).unwrap();
    let docker = Arc::new(FakeRuntime::with_kind(RuntimeKind::Docker));
    let containerd = Arc::new(FakeRuntime::with_kind(RuntimeKind::Containerd));
    // containerd first on purpose: Runtimes puts Docker first anyway.
    let runtimes = Runtimes::new(vec![containerd.clone(), docker.clone()]);
    assert_eq!(
        runtimes.kinds(),
        vec![RuntimeKind::Docker, RuntimeKind::Containerd]
    );
    let manager = QuarantineManager::with_runtimes(
        runtimes,
        Arc::new(FakeCutter::new()),
        store,
        Arc::new(SystemClock),
        QuarantineConfig::default(),
    );
    Two {
        _dir: dir,
        docker,
        containerd,
        manager,
    }
}

fn running(name: &str, kind: RuntimeKind) -> ContainerInfo {
    let mut info = ContainerInfo::unknown(ContainerId::new(name), kind);
    info.state = ContainerState::Running;
    info.netns_path = Some(netns_of(name));
    info.host_namespaces.network = Some(false);
    info
}

#[tokio::test]
async fn each_container_is_paused_and_released_through_its_own_runtime() {
    let mut two = two_runtimes();
    let only_containerd = running("ctr-only", RuntimeKind::Containerd);
    two.containerd.upsert(only_containerd.clone());
    // A Docker container containerd also sees (its `moby` namespace): Docker's.
    let shared = running("shared", RuntimeKind::Docker);
    two.docker.upsert(shared.clone());
    two.containerd
        .upsert(running("shared", RuntimeKind::Containerd));

    for info in [&only_containerd, &shared] {
        let record = two
            .manager
            .quarantine(
                request(info.id.as_str(), &DEFAULT_QUARANTINE_ACTIONS, policy()),
                info,
                false,
            )
            .await
            .unwrap();
        assert_eq!(record.state, QuarantineState::Applied);
    }
    let state = |runtime: &FakeRuntime, name: &str| {
        runtime.container(&ContainerId::new(name)).unwrap().state
    };
    assert_eq!(state(&two.containerd, "ctr-only"), ContainerState::Paused);
    assert_eq!(state(&two.docker, "shared"), ContainerState::Paused);
    assert_eq!(state(&two.containerd, "shared"), ContainerState::Running);

    for name in ["ctr-only", "shared"] {
        two.manager
            .release(
                &ContainerId::new(name),
                "operator",
                "checked",
                Duration::from_secs(60),
            )
            .await
            .unwrap();
    }
    assert_eq!(state(&two.containerd, "ctr-only"), ContainerState::Running);
    assert_eq!(state(&two.docker, "shared"), ContainerState::Running);
}

#[tokio::test]
async fn a_container_of_a_runtime_not_acted_through_is_a_failed_quarantine() {
    let mut two = two_runtimes();
    let stranger = running("stranger", RuntimeKind::Fake);
    let record = two
        .manager
        .quarantine(
            request("stranger", &[Action::Pause], policy()),
            &stranger,
            false,
        )
        .await
        .unwrap();
    assert_eq!(record.state, QuarantineState::Failed);
}
