//! The judge's decisions: which policy's actions win, audit mode, exemptions, the issue's
//! example end to end.

use super::{ISSUE_EXAMPLE, container, load, verdict_for, verdict_with_exemptions};
use crate::Severity;
use crate::policy::PolicyMode;
use crate::quarantine::Action;

#[test]
fn the_issue_example_means_what_it_says() {
    let set = load(ISSUE_EXAMPLE);
    let mut admin = container("admin");
    admin.labels.insert("env".into(), "prod".into());
    admin.cap_add = Some(vec!["NET_ADMIN".into()]);
    let verdict = verdict_for(&set, &admin);
    assert_eq!(
        verdict.enforcing_policy.as_deref(),
        Some("no-sys-admin-in-prod")
    );
    assert_eq!(verdict.actions, [Action::NetworkCut, Action::Pause]);
    assert_eq!(verdict.ttl, Some(std::time::Duration::from_secs(86_400)));
    assert_eq!(&*verdict.findings[0].why, "adds NET_ADMIN");

    let mut root_from_registry = container("root");
    root_from_registry
        .labels
        .insert("env".into(), "prod".into());
    root_from_registry.user = Some(String::new());
    let verdict = verdict_for(&set, &root_from_registry);
    assert_eq!(verdict.findings.len(), 1);
    assert!(verdict.findings[0].rule.starts_with("expr "));

    let mut outside_prod = admin.clone();
    outside_prod.labels.insert("env".into(), "dev".into());
    assert!(!verdict_for(&set, &outside_prod).is_violation());

    let mut harmless_caps = admin.clone();
    harmless_caps.cap_add = Some(vec!["SYS_PTRACE".into()]);
    assert!(
        !verdict_for(&set, &harmless_caps).is_violation(),
        "5.4 narrowed to SYS_ADMIN, NET_ADMIN"
    );
}

fn policy(name: &str, mode: &str, severity: &str, actions: &str) -> String {
    format!(
        "apiVersion: lazaret.dev/v1\nkind: Policy\nname: {name}\nmode: {mode}\nseverity: {severity}\nrules: [{{check: privileged}}]\nactions: {actions}\n"
    )
}

fn privileged() -> crate::ContainerInfo {
    let mut subject = container("risky");
    subject.privileged = Some(true);
    subject
}

#[test]
fn the_strongest_action_set_wins_whatever_the_order() {
    let documents = [
        policy("alert-critical", "enforce", "critical", "[alert]"),
        policy("pause-low", "enforce", "low", "[network-cut, pause]"),
        policy("kill-audit", "audit", "critical", "[kill]"),
    ];
    let forward = load(&documents.join("---\n"));
    let mut reversed_documents = documents.clone();
    reversed_documents.reverse();
    let backward = load(&reversed_documents.join("---\n"));
    for set in [forward, backward] {
        let verdict = verdict_for(&set, &privileged());
        assert_eq!(verdict.enforcing_policy.as_deref(), Some("pause-low"));
        assert_eq!(verdict.actions, [Action::NetworkCut, Action::Pause]);
        assert_eq!(
            verdict.would_have,
            [crate::policy::WouldHave {
                policy: "kill-audit".into(),
                actions: vec![Action::Kill]
            }]
        );
        assert_eq!(verdict.findings.len(), 3);
        assert_eq!(
            verdict.findings[0].severity,
            Severity::Critical,
            "strongest severity first"
        );
        assert!(
            verdict
                .findings
                .iter()
                .any(|finding| finding.mode == PolicyMode::Audit)
        );
    }
}

#[test]
fn ties_go_to_severity_then_length_then_name() {
    let set = load(
        &[
            policy("b-high", "enforce", "high", "[pause]"),
            policy("a-low", "enforce", "low", "[pause]"),
        ]
        .join("---\n"),
    );
    assert_eq!(
        verdict_for(&set, &privileged()).enforcing_policy.as_deref(),
        Some("b-high")
    );
    let set = load(
        &[
            policy("b-long", "enforce", "high", "[network-cut, pause]"),
            policy("a-short", "enforce", "high", "[pause]"),
        ]
        .join("---\n"),
    );
    assert_eq!(
        verdict_for(&set, &privileged()).enforcing_policy.as_deref(),
        Some("b-long")
    );
    let set = load(
        &[
            policy("b-same", "enforce", "high", "[pause]"),
            policy("a-same", "enforce", "high", "[pause]"),
        ]
        .join("---\n"),
    );
    assert_eq!(
        verdict_for(&set, &privileged()).enforcing_policy.as_deref(),
        Some("a-same")
    );
}

#[test]
fn exempted_policies_are_reported_but_do_not_act() {
    let set = load(
        &[
            policy("strict", "enforce", "high", "[kill]"),
            policy("soft", "enforce", "low", "[pause]"),
        ]
        .join("---\n"),
    );
    let verdict = verdict_with_exemptions(&set, &privileged(), &|name| name == "strict");
    assert_eq!(verdict.enforcing_policy.as_deref(), Some("soft"));
    assert!(
        verdict
            .findings
            .iter()
            .any(|finding| &*finding.policy == "strict" && finding.exempt)
    );
    let verdict = verdict_with_exemptions(&set, &privileged(), &|_| true);
    assert!(verdict.actions.is_empty());
    assert!(verdict.is_violation());
}

#[test]
fn a_clean_container_has_an_empty_verdict() {
    let set = load(ISSUE_EXAMPLE);
    assert_eq!(
        verdict_for(&set, &container("clean")),
        crate::policy::Verdict::default()
    );
}
