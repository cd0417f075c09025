//! The quarantine manager (`lazaret_agent::enforce::quarantine`) against the real Docker engine
//! and real nftables: `[network-cut, pause]` leaves the container paused with the cut intact, an
//! unpause behind the manager's back is re-paused by a re-check, a release undoes both, and a
//! protected container is refused without force. Deadlines are generous and nothing here
//! measures time.

use std::time::Duration;

use lazaret_agent::enforce::netns::{self, CutStatus, NetnsHandle};
use lazaret_agent::enforce::quarantine::{PROTECTED_LABEL, QuarantineError};
use lazaret_core::ContainerState;
use lazaret_core::quarantine::{DEFAULT_QUARANTINE_ACTIONS, QuarantineState};
use lazaret_tests::{BUSYBOX_IMAGE, TestContainers, ensure_busybox_image, init_tracing};

use super::quarantine_docker::{inspect, request, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_pause_hold_on_docker_and_a_release_undoes_both() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let target = containers
        .run("quarantined", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let protected_label = format!("{PROTECTED_LABEL}=true");
    let protected = containers
        .run(
            "protected",
            &["--label", &protected_label, BUSYBOX_IMAGE, "sleep", "600"],
        )
        .unwrap();

    let mut setup = setup(false).await;
    let (runtime, store) = (setup.runtime.clone(), setup.store.clone());
    let manager = &mut setup.manager;

    let info = inspect(&runtime, &target).await;
    let netns_path = info.netns_path.clone().expect("a sandbox key");
    let record = manager
        .quarantine(request(&info, &DEFAULT_QUARANTINE_ACTIONS), &info, false)
        .await
        .unwrap();
    assert_eq!(record.state, QuarantineState::Applied);
    assert_eq!(
        inspect(&runtime, &target).await.state,
        ContainerState::Paused
    );
    let handle = NetnsHandle::open(&netns_path).unwrap();
    assert_eq!(netns::cut_status(&handle).await.unwrap(), CutStatus::Intact);
    // A re-check of an intact quarantine changes nothing.
    assert!(
        manager
            .recheck(&inspect(&runtime, &target).await)
            .await
            .unwrap()
            .is_none()
    );

    // `docker unpause` behind the manager's back: the re-check pauses it again.
    containers.docker(&["unpause", &target]).unwrap();
    let repaired = manager
        .recheck(&inspect(&runtime, &target).await)
        .await
        .unwrap()
        .expect("an unpaused quarantine is tampering");
    assert_eq!(repaired.state, QuarantineState::Applied);
    assert_eq!(
        inspect(&runtime, &target).await.state,
        ContainerState::Paused
    );
    assert_eq!(netns::cut_status(&handle).await.unwrap(), CutStatus::Intact);

    let released = manager
        .release(&info.id, "CN=e2e", "test over", Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(released.state, QuarantineState::Released);
    assert_eq!(
        inspect(&runtime, &target).await.state,
        ContainerState::Running
    );
    assert_eq!(netns::cut_status(&handle).await.unwrap(), CutStatus::Absent);
    assert!(
        store
            .exemptions()
            .unwrap()
            .records
            .is_exempt(&info.id, "e2e-policy", i64::MIN)
    );

    let protected_info = inspect(&runtime, &protected).await;
    let refusal = manager
        .quarantine(
            request(&protected_info, &DEFAULT_QUARANTINE_ACTIONS),
            &protected_info,
            false,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refusal, QuarantineError::Protected { .. }),
        "{refusal}"
    );
    assert_eq!(
        inspect(&runtime, &protected).await.state,
        ContainerState::Running
    );
    store.verify_audit(None).unwrap().unwrap();
}
