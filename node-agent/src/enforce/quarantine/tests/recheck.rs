//! Tampering and crashes: re-checks re-apply what was undone; roll-forward finishes what a crash interrupted.

use super::*;

#[tokio::test]
async fn an_unpaused_container_is_tampering_and_is_paused_again() {
    let mut harness = harness();
    let info = harness.quarantined("web").await;
    // `docker unpause` behind the agent's back.
    harness.runtime.resume(&info.id).await.unwrap();
    harness.clock.advance(Duration::from_secs(1));
    let repaired = harness
        .manager
        .recheck(&harness.current("web"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(repaired.state, QuarantineState::Applied);
    assert_eq!(repaired.since_unix_ms, START + 1_000);
    assert_eq!(harness.current("web").state, ContainerState::Paused);
    let audit = harness.audit();
    assert!(
        audit.contains(&"tamper container is running but should be paused".to_string()),
        "{audit:?}"
    );
    assert_eq!(audit.last().unwrap(), "quarantine applied");

    // Now intact: nothing to do.
    assert!(
        harness
            .manager
            .recheck(&harness.current("web"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_vanished_table_is_tampering_and_is_cut_again() {
    let mut harness = harness();
    harness.quarantined("netadmin").await;
    harness.cutter.delete_table(&netns_of("netadmin"));
    let repaired = harness
        .manager
        .recheck(&harness.current("netadmin"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(repaired.state, QuarantineState::Applied);
    assert_eq!(
        harness.cutter.status_of(&netns_of("netadmin")),
        CutStatus::Intact
    );
    let audit = harness.audit();
    assert!(
        audit.contains(&"tamper network cut table vanished".to_string()),
        "{audit:?}"
    );
    // The pause still held: only the cut was redone.
    assert!(
        audit.contains(&"pause already in force".to_string()),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_killed_container_that_restarts_is_killed_again() {
    let mut harness = harness();
    let info = harness.container("restarter");
    harness
        .manager
        .quarantine(
            request("restarter", &[Action::Kill], policy()),
            &info,
            false,
        )
        .await
        .unwrap();
    assert_eq!(harness.current("restarter").state, ContainerState::Exited);
    // `--restart always` brings it back.
    harness.container("restarter");
    let repaired = harness
        .manager
        .recheck(&harness.current("restarter"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(repaired.state, QuarantineState::Applied);
    assert_eq!(harness.current("restarter").state, ContainerState::Exited);
}

#[tokio::test]
async fn roll_forward_finishes_requested_rechecks_applied_and_marks_gone() {
    let mut harness = harness();
    // A crash right after storing `requested`: nothing was done yet.
    let half_done = harness.container("half-done");
    let requested = QuarantineRecord::requested(
        request("half-done", &DEFAULT_QUARANTINE_ACTIONS, policy()),
        START,
    );
    harness.store.put_quarantine(&requested).unwrap();
    // An applied one unpaused while the agent was down.
    let unpaused = harness.container("unpaused");
    harness
        .manager
        .quarantine(
            request("unpaused", &DEFAULT_QUARANTINE_ACTIONS, policy()),
            &unpaused,
            false,
        )
        .await
        .unwrap();
    harness.runtime.resume(&unpaused.id).await.unwrap();
    // An applied one whose container was removed.
    let removed = harness.container("removed");
    harness
        .manager
        .quarantine(
            request("removed", &[Action::Pause], policy()),
            &removed,
            false,
        )
        .await
        .unwrap();
    harness.runtime.remove(&removed.id);
    // An intact one.
    let intact = harness.container("intact");
    harness
        .manager
        .quarantine(
            request("intact", &DEFAULT_QUARANTINE_ACTIONS, policy()),
            &intact,
            false,
        )
        .await
        .unwrap();

    // A new manager over the same store: the agent restarted.
    let mut restarted = harness.restarted();
    let changed = restarted.roll_forward().await.unwrap();
    let mut changed: Vec<(String, QuarantineState)> = changed
        .into_iter()
        .map(|record| (record.container.to_string(), record.state))
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            ("half-done".to_string(), QuarantineState::Applied),
            ("removed".to_string(), QuarantineState::Gone),
            ("unpaused".to_string(), QuarantineState::Applied),
        ]
    );
    assert_eq!(harness.current("half-done").state, ContainerState::Paused);
    assert_eq!(
        harness.cutter.status_of(&netns_of("half-done")),
        CutStatus::Intact
    );
    assert_eq!(harness.current("unpaused").state, ContainerState::Paused);
    assert_eq!(harness.stored("removed").state, QuarantineState::Gone);
    assert_eq!(harness.stored("intact").state, QuarantineState::Applied);
    assert_eq!(half_done.state, ContainerState::Running);
    harness.audit();
}
