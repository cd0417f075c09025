//! What the scan saw, judged by the enforcement task: only an enforce-mode policy whose
//! `indicator` rule covers the kind and severity seen acts; once.

use lazaret_core::Severity;
use lazaret_core::indicator::index::IndicatorIndex;
use lazaret_core::indicator::observed::{Observed, ObservedProcess};
use lazaret_core::indicator::{Indicator, IndicatorSet};
use lazaret_core::policy::IndicatorKind;

use super::*;
use crate::enforce::engine::scanned::ScanOutcome;

const POLICIES: &str = r#"
apiVersion: lazaret.dev/v1
kind: Policy
name: miners
mode: enforce
rules:
  - indicator: [process-name]
    min_severity: high
actions: [pause]
---
apiVersion: lazaret.dev/v1
kind: Policy
name: destinations
mode: audit
rules:
  - indicator: [ip]
actions: [network-cut]
"#;

fn index() -> Arc<IndicatorIndex> {
    let entry = |id: &str, kind, value: &str, severity| Indicator {
        id: id.into(),
        kind,
        value: value.into(),
        severity,
        source: "test".into(),
        valid_until: None,
    };
    let set = IndicatorSet {
        indicators: vec![
            entry(
                "miner",
                IndicatorKind::ProcessName,
                "xmrig",
                Severity::Critical,
            ),
            entry(
                "noise",
                IndicatorKind::ProcessName,
                "sleeper",
                Severity::Low,
            ),
            entry("pool", IndicatorKind::Ip, "10.0.0.1", Severity::Critical),
        ],
    };
    Arc::new(IndicatorIndex::build(&set, 0))
}

fn seen(names: &[&str], addresses: &[&str]) -> Observed {
    Observed {
        processes: names
            .iter()
            .map(|name| ObservedProcess {
                pid: 42,
                name: name.to_string(),
                exe_sha256: None,
            })
            .collect(),
        remote_addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        truncated: false,
    }
}

#[tokio::test]
async fn only_an_enforcing_policy_covering_what_was_seen_acts() {
    let mut h = harness(POLICIES, false);
    h.enforcer.indicators = index();
    assert!(h.enforcer.roll_forward().await);
    h.runtime
        .upsert(container("c", ContainerState::Running, &[]));
    h.observe(&["c"]).await;
    let id = ContainerId::new("c");

    let unknown = h
        .enforcer
        .scanned(&ContainerId::new("elsewhere"), &seen(&["xmrig"], &[]))
        .await;
    assert_eq!(unknown, ScanOutcome::Unknown);
    for (names, addresses) in [
        (&["sh"][..], &[][..]),
        (&["sleeper"], &[]),
        (&["sh"], &["10.0.0.1"]),
    ] {
        let outcome = h.enforcer.scanned(&id, &seen(names, addresses)).await;
        assert_eq!(
            outcome,
            ScanOutcome::NoPolicy,
            "{names:?} {addresses:?}: below the minimum severity, or an audit-mode policy"
        );
    }
    assert_eq!(h.state("c"), ContainerState::Running);

    let outcome = h.enforcer.scanned(&id, &seen(&["sh", "xmrig"], &[])).await;
    let ScanOutcome::Quarantined(record) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(record.source, QuarantineSource::Policy("miners".into()));
    assert!(
        record.reason.contains("miner") && record.reason.contains("seen inside by the scan"),
        "{}",
        record.reason
    );
    assert_eq!(h.state("c"), ContainerState::Paused);
    assert_eq!(
        h.enforcer.scanned(&id, &seen(&["xmrig"], &[])).await,
        ScanOutcome::InForce
    );
}
