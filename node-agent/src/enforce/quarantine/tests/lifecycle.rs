//! Time and budgets: TTL expiry, the blast-radius budget, retries of failed quarantines.

use super::*;

#[tokio::test]
async fn expiry_releases_at_the_ttl_and_not_before() {
    let mut harness = harness();
    harness
        .quarantined_for("web", Duration::from_secs(600))
        .await;

    harness.clock.advance(Duration::from_secs(599));
    assert!(harness.manager.expire_due().await.unwrap().is_empty());
    assert_eq!(harness.current("web").state, ContainerState::Paused);

    harness.clock.advance(Duration::from_secs(1));
    let expired = harness.manager.expire_due().await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(harness.stored("web").state, QuarantineState::Released);
    assert_eq!(harness.current("web").state, ContainerState::Running);
    assert_eq!(
        harness.cutter.status_of(&netns_of("web")),
        CutStatus::Absent
    );
    assert!(harness.store.exemptions().unwrap().records.is_empty());
    assert_eq!(
        harness.audit().last().unwrap(),
        "expire released: ttl ran out"
    );
}

#[tokio::test]
async fn the_blast_radius_budget_refuses_automated_quarantines_loudly() {
    let mut harness = harness_with(QuarantineConfig {
        blast_radius_per_minute: 2,
        ..QuarantineConfig::default()
    });
    for name in ["a", "b"] {
        let info = harness.container(name);
        harness
            .manager
            .quarantine(request(name, &[Action::Pause], policy()), &info, false)
            .await
            .unwrap();
    }
    let third = harness.container("c");
    let error = harness
        .manager
        .quarantine(request("c", &[Action::Pause], policy()), &third, false)
        .await
        .unwrap_err();
    assert!(
        matches!(error, QuarantineError::BlastRadius { limit: 2, .. }),
        "{error}"
    );
    assert_eq!(harness.current("c").state, ContainerState::Running);
    assert!(
        harness
            .audit()
            .last()
            .unwrap()
            .starts_with("quarantine alert: blast radius exceeded")
    );

    // Operators are not counted.
    harness
        .manager
        .quarantine(
            request("c", &[Action::Pause], QuarantineSource::Operator),
            &third,
            false,
        )
        .await
        .unwrap();

    // A minute later the budget is back.
    harness.clock.advance(BLAST_RADIUS_WINDOW);
    let fourth = harness.container("d");
    harness
        .manager
        .quarantine(request("d", &[Action::Pause], policy()), &fourth, false)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_quarantine_is_retried_only_from_failed() {
    let mut harness = harness();
    let info = harness.container("web");
    harness.cutter.set_failing(true);
    let ask = request("web", &DEFAULT_QUARANTINE_ACTIONS, policy());
    let failed = harness.manager.quarantine(ask, &info, false).await.unwrap();
    assert_eq!(failed.state, QuarantineState::Failed);
    // Roll-forward leaves a failed quarantine for an operator.
    assert!(harness.manager.roll_forward().await.unwrap().is_empty());

    harness.cutter.set_failing(false);
    let retried = harness
        .manager
        .retry(&harness.current("web"), "CN=alice")
        .await
        .unwrap();
    assert_eq!(retried.state, QuarantineState::Applied);
    assert_eq!(
        harness.cutter.status_of(&netns_of("web")),
        CutStatus::Intact
    );
    assert_eq!(harness.current("web").state, ContainerState::Paused);

    let error = harness
        .manager
        .retry(&harness.current("web"), "CN=alice")
        .await
        .unwrap_err();
    assert!(matches!(error, QuarantineError::Transition(_)), "{error}");
}
