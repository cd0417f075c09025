//! Releasing: network restored, container resumed, exemptions left and honoured.

use super::*;
use lazaret_core::quarantine::PendingRelease;

#[tokio::test]
async fn release_restores_the_network_resumes_and_leaves_an_exemption() {
    let mut harness = harness();
    let info = harness.quarantined("web").await;
    harness.clock.advance(Duration::from_secs(5));
    let released = harness
        .manager
        .release(
            &info.id,
            "CN=alice",
            "false positive",
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert_eq!(released.state, QuarantineState::Released);
    assert_eq!(harness.stored("web").state, QuarantineState::Released);
    assert_eq!(harness.current("web").state, ContainerState::Running);
    assert_eq!(
        harness.cutter.status_of(&netns_of("web")),
        CutStatus::Absent
    );
    let exemptions = harness.store.exemptions().unwrap().records;
    let exemption = exemptions.get(&info.id, "no-privileged").unwrap();
    assert_eq!(exemption.until_unix_ms, START + 5_000 + 3_600_000);
    assert_eq!(exemption.actor, "CN=alice");
    assert!(
        harness
            .audit()
            .last()
            .unwrap()
            .starts_with("release released; exempt")
    );

    // Released is final: a second release is refused, a new quarantine is a new record.
    let error = harness
        .manager
        .release(&info.id, "CN=alice", "again", Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(error, QuarantineError::NotQuarantined { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn an_operator_quarantine_leaves_no_exemption() {
    let mut harness = harness();
    let info = harness.container("web");
    harness
        .manager
        .quarantine(
            request("web", &[Action::Pause], QuarantineSource::Operator),
            &info,
            false,
        )
        .await
        .unwrap();
    harness
        .manager
        .release(&info.id, "CN=alice", "done", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(harness.store.exemptions().unwrap().records.is_empty());
}

#[tokio::test]
async fn a_release_that_cannot_restore_the_network_keeps_the_quarantine() {
    let mut harness = harness();
    let info = harness.quarantined("web").await;
    harness.cutter.set_failing(true);
    let error = harness
        .manager
        .release(&info.id, "CN=alice", "oops", Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(error, QuarantineError::ReleaseFailed { .. }),
        "{error}"
    );
    assert_eq!(harness.stored("web").state, QuarantineState::Applied);
    assert_eq!(harness.current("web").state, ContainerState::Paused);
    assert_eq!(
        harness.releases_counted(),
        [r#"kind="release",outcome="failed"} 1"#]
    );
}

#[tokio::test]
async fn a_release_exemption_stops_the_next_automated_quarantine_until_it_ends() {
    let mut harness = harness();
    let info = harness.container("web");
    let ask = request("web", &DEFAULT_QUARANTINE_ACTIONS, policy());
    harness
        .manager
        .quarantine(ask.clone(), &info, false)
        .await
        .unwrap();
    harness
        .manager
        .release(&info.id, "CN=alice", "fine", Duration::from_secs(60))
        .await
        .unwrap();

    let error = harness
        .manager
        .quarantine(ask.clone(), &harness.current("web"), false)
        .await
        .unwrap_err();
    assert!(matches!(error, QuarantineError::Exempt { .. }), "{error}");
    assert_eq!(harness.current("web").state, ContainerState::Running);

    // Another source, or an operator, is not covered.
    let other = request("web", &[Action::Pause], QuarantineSource::Operator);
    harness
        .manager
        .quarantine(other, &harness.current("web"), false)
        .await
        .unwrap();
    harness
        .manager
        .release(&info.id, "CN=alice", "fine", Duration::ZERO)
        .await
        .unwrap();

    harness.clock.advance(Duration::from_secs(60));
    let again = harness
        .manager
        .quarantine(ask, &harness.current("web"), false)
        .await
        .unwrap();
    assert_eq!(again.state, QuarantineState::Applied);
}

#[tokio::test]
async fn a_release_a_crash_interrupted_is_finished_at_the_restart_not_taken_for_tampering() {
    let mut harness = harness();
    let pending = |record: QuarantineRecord| QuarantineRecord {
        releasing: Some(Box::new(PendingRelease::release(
            "CN=alice",
            "false positive",
            Duration::from_secs(3600),
        ))),
        ..record
    };
    // A crash right after storing the release: nothing undone yet.
    let untouched = harness.quarantined("untouched").await;
    let record = pending(harness.stored("untouched"));
    harness.store.put_quarantine(&record).unwrap();
    // A crash after the network came back and the container resumed, before `released`.
    let undone = harness.quarantined("undone").await;
    let record = pending(harness.stored("undone"));
    harness.store.put_quarantine(&record).unwrap();
    harness.cutter.delete_table(&netns_of("undone"));
    harness.runtime.resume(&undone.id).await.unwrap();

    let mut restarted = harness.restarted();
    let changed = restarted.roll_forward().await.unwrap();
    assert_eq!(changed.len(), 2, "{changed:?}");
    for info in [&untouched, &undone] {
        let name = info.id.as_str();
        let stored = harness.stored(name);
        assert_eq!(stored.state, QuarantineState::Released, "{name}");
        assert!(stored.releasing.is_none(), "{name}");
        assert_eq!(
            harness.current(name).state,
            ContainerState::Running,
            "{name}"
        );
        assert_eq!(
            harness.cutter.status_of(&netns_of(name)),
            CutStatus::Absent,
            "{name}"
        );
    }
    let audit = harness.audit();
    assert!(
        !audit.iter().any(|line| line.starts_with("tamper")),
        "{audit:?}"
    );
    assert_eq!(
        audit
            .iter()
            .filter(|line| line.starts_with("release released"))
            .count(),
        2,
        "{audit:?}"
    );
    let exemptions = harness.store.exemptions().unwrap().records;
    assert!(exemptions.is_exempt(&untouched.id, "no-privileged", START + 1));
}

#[tokio::test]
async fn an_expiry_a_crash_interrupted_is_finished_as_an_expiry_even_if_the_clock_went_back() {
    // Read back with the clock past the TTL, and by an agent whose clock went back before it
    // since: the expiry was decided, so it is finished either way.
    for advanced in [600, 0] {
        let mut harness = harness();
        harness
            .quarantined_for("web", Duration::from_secs(600))
            .await;
        harness.clock.advance(Duration::from_secs(advanced));
        // A crash after the sweep stored the expiry and restored the network, before `released`.
        harness.left_under_way("web", PendingRelease::expiry("agent"));
        harness.cutter.delete_table(&netns_of("web"));

        let mut restarted = harness.restarted();
        let changed = restarted.roll_forward().await.unwrap();
        assert_eq!(changed.len(), 1, "{changed:?}");
        let stored = harness.stored("web");
        assert_eq!(stored.state, QuarantineState::Released);
        assert!(stored.releasing.is_none());
        assert_eq!(harness.current("web").state, ContainerState::Running);
        // An expiry leaves no exemption, and is audited as one.
        assert!(harness.store.exemptions().unwrap().records.is_empty());
        let audit = harness.audit();
        assert_eq!(audit.last().unwrap(), "expire released: ttl ran out");
        assert_eq!(
            releases_counted_by(&restarted),
            [r#"kind="expiry",outcome="released"} 1"#]
        );
        assert!(
            !audit.iter().any(|line| line.starts_with("tamper")),
            "{audit:?}"
        );
    }
}

#[tokio::test]
async fn a_release_left_under_way_is_finished_by_the_next_recheck() {
    let mut harness = harness();
    let info = harness.quarantined("web").await;
    // As if the end of a release could not be stored: undone, the record still under way.
    harness.left_under_way(
        "web",
        PendingRelease::release("CN=alice", "fine", Duration::from_secs(60)),
    );
    harness.runtime.resume(&info.id).await.unwrap();

    let finished = harness
        .manager
        .recheck(&harness.current("web"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished.state, QuarantineState::Released);
    assert!(harness.stored("web").releasing.is_none());
    let audit = harness.audit();
    assert!(
        !audit.iter().any(|line| line.starts_with("tamper")),
        "{audit:?}"
    );
    assert!(
        audit.last().unwrap().starts_with("release released"),
        "{audit:?}"
    );
}
