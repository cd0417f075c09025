//! Table-driven tests of every built-in rule and of scoping (`match` / `exclude`).

use super::{container, load, verdict_for};
use crate::container::{ContainerInfo, RuntimeKind};
use crate::policy::rules::{IndicatorHit, IndicatorKind, IndicatorLookup, RuleInputs, RuleOutcome};
use crate::posture;

fn policy_with_rule(rule: &str) -> String {
    format!(
        "apiVersion: lazaret.dev/v1\nkind: Policy\nname: p\nmode: enforce\nrules:\n  - {rule}\nactions: [pause]\n"
    )
}

fn violated(rule: &str, container: &ContainerInfo) -> bool {
    verdict_for(&load(&policy_with_rule(rule)), container).is_violation()
}

#[test]
fn builtin_rules_table() {
    let plain = container("plain");
    let mut privileged = container("priv");
    privileged.privileged = Some(true);
    let mut privilege_unknown = container("unknown");
    privilege_unknown.privileged = None;
    let mut admin = container("admin");
    admin.cap_add = Some(vec!["SYS_ADMIN".into()]);
    let mut raw = container("raw");
    raw.cap_add = Some(vec!["NET_RAW".into(), "SYS_PTRACE".into()]);
    let mut all = container("all");
    all.cap_add = Some(vec!["ALL".into()]);
    let mut root = container("root");
    root.user = Some(String::new());
    let mut hub = container("hub");
    hub.image = "busybox:latest".into();
    let mut by_id = container("by-id");
    by_id.image = "sha256:abcdef".into();
    let mut socket = container("socket");
    socket.mounts = Some(vec![crate::container::Mount {
        kind: "bind".into(),
        source: "/var/run/docker.sock".into(),
        destination: "/var/run/docker.sock".into(),
        read_write: true,
        propagation: String::new(),
    }]);

    let cases: Vec<(&str, &ContainerInfo, bool)> = vec![
        ("check: privileged", &plain, false),
        ("check: privileged", &privileged, true),
        ("check: privileged", &privilege_unknown, false), // fail-open by default
        ("check: \"5.5\"", &privileged, true),
        ("check: \"5.4\"", &admin, true),
        ("check: \"5.4\"", &raw, true), // SYS_PTRACE is beyond the defaults
        ("{check: \"5.4\", capabilities: [SYS_ADMIN]}", &admin, true),
        ("{check: \"5.4\", capabilities: [SYS_ADMIN]}", &raw, false),
        (
            "{check: \"5.4\", capabilities: [cap_sys_ptrace]}",
            &raw,
            true,
        ),
        ("{check: \"5.4\", capabilities: [SYS_ADMIN]}", &all, true), // ALL includes it
        ("check: \"4.1\"", &root, true),
        ("check: \"4.1\"", &plain, false),
        ("check: \"5.32\"", &socket, true),
        ("check: \"5.32\"", &plain, false),
        (
            "{check: image-not-from, registries: [registry.example.com]}",
            &plain,
            false,
        ),
        (
            "{check: image-not-from, registries: [registry.example.com]}",
            &hub,
            true,
        ),
        (
            "{check: image-not-from, registries: [docker.io/library]}",
            &hub,
            false,
        ),
        (
            "{check: image-not-from, registries: [registry.example.com/other]}",
            &plain,
            true,
        ),
        (
            "{check: image-not-from, registries: [registry.example.com]}",
            &by_id,
            false,
        ), // unknown origin: fail-open
        ("{indicator: [image-digest]}", &plain, false),
        ("{expr: 'container.user == \"\"'}", &root, true),
        ("{expr: 'container.user == \"\"'}", &plain, false),
        (
            "{expr: 'container.mounts.exists(m, m.source.endsWith(\"docker.sock\") && m.rw)'}",
            &socket,
            true,
        ),
        (
            "{expr: 'container.findings[\"5.4\"] == \"fail\"'}",
            &admin,
            true,
        ),
        ("{expr: '\"SYS_ADMIN\" in container.cap_add'}", &admin, true),
    ];
    for (rule, subject, expected) in cases {
        assert_eq!(
            violated(rule, subject),
            expected,
            "rule {rule} on {}",
            subject.name
        );
    }
}

#[test]
fn unknown_data_follows_on_error() {
    let mut unknown = container("unknown");
    unknown.privileged = None;
    let open = load(&policy_with_rule("check: privileged"));
    let verdict = verdict_for(&open, &unknown);
    assert!(!verdict.is_violation());
    assert_eq!(verdict.errors.len(), 1);
    assert!(!verdict.errors[0].counted_as_violation);

    let closed = load(&format!(
        "{}on_error: fail-closed\n",
        policy_with_rule("check: privileged")
    ));
    let verdict = verdict_for(&closed, &unknown);
    assert!(verdict.is_violation());
    assert!(verdict.findings[0].why.contains("fail-closed"));
    assert_eq!(verdict.actions, [crate::quarantine::Action::Pause]);
}

#[test]
fn cel_runtime_errors_are_reported_never_panics() {
    // A missing map key is a CEL runtime error, not a false.
    let set = load(&policy_with_rule(
        "expr: 'container.labels[\"team\"] == \"x\"'",
    ));
    let verdict = verdict_for(&set, &container("no-team"));
    assert!(!verdict.is_violation());
    assert!(
        verdict.errors[0].error.contains("failed"),
        "{:?}",
        verdict.errors
    );
    // A non-boolean result is an error too.
    let set = load(&policy_with_rule("expr: 'container.name'"));
    let verdict = verdict_for(&set, &container("x"));
    assert!(
        verdict.errors[0].error.contains("not true or false"),
        "{:?}",
        verdict.errors
    );
}

struct OneBadDigest;

impl IndicatorLookup for OneBadDigest {
    fn find(&self, kind: IndicatorKind, container: &ContainerInfo) -> Option<IndicatorHit> {
        (kind == IndicatorKind::ImageDigest
            && container.image_digest.as_deref() == Some("repo@sha256:bad"))
        .then(|| IndicatorHit {
            indicator_id: "ioc-1".into(),
            kind,
            value: "repo@sha256:bad".into(),
            severity: crate::Severity::Critical,
        })
    }
}

#[test]
fn indicator_rules_consult_the_lookup() {
    let set = load(&policy_with_rule("{indicator: [image-digest, ip]}"));
    let rule = &set.policies[0].rules[0];
    let mut bad = container("bad");
    bad.image_digest = Some("repo@sha256:bad".into());
    let findings = posture::assess(&bad);
    let inputs = RuleInputs {
        container: &bad,
        posture: &findings,
        indicators: &OneBadDigest,
    };
    match rule.evaluate(&inputs, None) {
        RuleOutcome::Violated(why) => assert!(why.contains("ioc-1"), "{why}"),
        other => panic!("expected a violation, got {other:?}"),
    }
    let clean = container("clean");
    let findings = posture::assess(&clean);
    let inputs = RuleInputs {
        container: &clean,
        posture: &findings,
        indicators: &OneBadDigest,
    };
    assert_eq!(rule.evaluate(&inputs, None), RuleOutcome::Clear);
}

/// [`OneBadDigest`] from a bundle that is past its expiry.
struct StaleBadDigest;

impl IndicatorLookup for StaleBadDigest {
    fn find(&self, kind: IndicatorKind, container: &ContainerInfo) -> Option<IndicatorHit> {
        OneBadDigest.find(kind, container)
    }

    fn doubt(&self) -> Option<&str> {
        Some("indicators bundle v3 expired")
    }
}

#[test]
fn indicators_in_doubt_still_condemn_but_cannot_clear() {
    let set = load(&policy_with_rule("{indicator: [image-digest]}"));
    let rule = &set.policies[0].rules[0];
    let mut bad = container("bad");
    bad.image_digest = Some("repo@sha256:bad".into());
    let clean = container("clean");
    let outcome = |subject: &ContainerInfo| {
        let findings = posture::assess(subject);
        rule.evaluate(
            &RuleInputs {
                container: subject,
                posture: &findings,
                indicators: &StaleBadDigest,
            },
            None,
        )
    };
    assert!(matches!(outcome(&bad), RuleOutcome::Violated(_)));
    match outcome(&clean) {
        RuleOutcome::Error(error) => {
            assert!(
                error.contains("in doubt: indicators bundle v3 expired"),
                "{error}"
            )
        }
        other => panic!("expected an evaluation error, got {other:?}"),
    }
}

fn scoped(selectors: &str) -> String {
    format!(
        "apiVersion: lazaret.dev/v1\nkind: Policy\nname: p\nmode: enforce\n{selectors}rules: [{{check: \"5.4\"}}]\n"
    )
}

#[test]
fn scoping_table() {
    let mut subject = container("web-1");
    subject.cap_add = Some(vec!["SYS_ADMIN".into()]);
    subject.labels.insert("env".into(), "prod".into());
    subject.labels.insert("team".into(), "payments".into());
    subject.image = "registry.example.com/payments/api:2.1".into();
    let cases = [
        ("", true),
        ("match:\n  labels: {env: prod}\n", true),
        ("match:\n  labels: {env: dev}\n", false),
        ("match:\n  labels: {env: prod, team: payments}\n", true),
        ("match:\n  labels: {env: prod, team: search}\n", false),
        ("match:\n  labels: {team: \"*\"}\n", true),
        ("match:\n  labels: {owner: \"*\"}\n", false),
        ("match:\n  images: [\"registry.example.com/*\"]\n", true),
        (
            "match:\n  images: [\"docker.io/*\", \"registry.example.com/payments/*\"]\n",
            true,
        ),
        ("match:\n  images: [\"docker.io/*\"]\n", false),
        ("match:\n  names: [\"web-*\"]\n", true),
        ("match:\n  names: [\"db-*\"]\n", false),
        ("match:\n  runtimes: [docker]\n", true),
        ("match:\n  runtimes: [containerd]\n", false),
        ("match:\n  namespaces: [k8s.io]\n", false),
        (
            "match:\n  labels: {env: prod}\n  names: [\"db-*\"]\n",
            false,
        ),
        ("exclude:\n  names: [\"web-*\"]\n", false),
        ("exclude:\n  labels: {env: dev}\n", true),
        (
            "match:\n  labels: {env: prod}\nexclude:\n  images: [\"*:2.1\"]\n",
            false,
        ),
    ];
    for (selectors, expected) in cases {
        let set = load(&scoped(selectors));
        assert_eq!(
            verdict_for(&set, &subject).is_violation(),
            expected,
            "selectors:\n{selectors}"
        );
    }
    let mut containerd = subject.clone();
    containerd.runtime = RuntimeKind::Containerd;
    containerd.namespace = "k8s.io".into();
    let set = load(&scoped(
        "match:\n  runtimes: [containerd]\n  namespaces: [k8s.io]\n",
    ));
    assert!(verdict_for(&set, &containerd).is_violation());
}

#[test]
fn the_set_knows_which_container_fields_its_expressions_read() {
    use crate::policy::CelFields;
    let set = load(&policy_with_rule(
        "expr: 'container.user == \"\" && container.mounts.exists(m, m.rw)'",
    ));
    assert_eq!(
        set.cel_fields(),
        &CelFields::Only(["mounts", "user"].into_iter().collect())
    );
    let whole = load(&policy_with_rule("expr: 'size(container) > 0'"));
    assert_eq!(whole.cel_fields(), &CelFields::All);
    let none = load(&policy_with_rule("check: privileged"));
    assert_eq!(none.cel_fields(), &CelFields::None);
    // A comprehension variable named like the variable does not count as the container.
    let shadowed = load(&policy_with_rule(
        "expr: 'container.cap_add.exists(container, container == \"SYS_ADMIN\")'",
    ));
    assert_eq!(
        shadowed.cel_fields(),
        &CelFields::Only(["cap_add"].into_iter().collect())
    );
}
