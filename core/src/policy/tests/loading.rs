//! Loading: the issue's example, multi-document files, and every kind of malformed policy
//! rejected with its location.

use super::{ISSUE_EXAMPLE, load};
use crate::policy::{PolicyMode, PolicySet, PolicySource, Rule};
use crate::quarantine::Action;

#[test]
fn the_issue_example_loads_as_written() {
    let set = load(ISSUE_EXAMPLE);
    let policy = set.policy("no-sys-admin-in-prod").unwrap();
    assert_eq!(policy.mode, PolicyMode::Enforce);
    assert_eq!(policy.actions, [Action::NetworkCut, Action::Pause]);
    assert_eq!(policy.ttl, Some(std::time::Duration::from_secs(24 * 3600)));
    assert_eq!(policy.rules.len(), 2);
    assert_eq!(
        policy.rules[0],
        Rule::Check {
            id: "5.4".into(),
            capabilities: vec!["SYS_ADMIN".into(), "NET_ADMIN".into()]
        }
    );
}

#[test]
fn defaults_are_audit_mode_medium_severity_and_alert() {
    let set =
        load("apiVersion: lazaret.dev/v1\nkind: Policy\nname: p\nrules: [{check: privileged}]\n");
    let policy = set.policy("p").unwrap();
    assert_eq!(policy.mode, PolicyMode::Audit);
    assert_eq!(policy.severity, crate::Severity::Medium);
    assert_eq!(policy.actions, [Action::Alert]);
    assert_eq!(policy.ttl, None);
}

#[test]
fn several_documents_in_one_file_and_responses() {
    let text = format!(
        "{ISSUE_EXAMPLE}---\napiVersion: lazaret.dev/v1\nkind: Response\nname: falco-shell\nmatch:\n  rules: [\"Terminal shell*\"]\n  min_severity: high\nactions: [pause]\n"
    );
    let set = load(&text);
    assert_eq!(set.policies.len(), 1);
    assert_eq!(set.responses.len(), 1);
    assert_eq!(set.responses[0].actions, [Action::Pause]);
}

struct Malformed {
    what: &'static str,
    text: &'static str,
    message: &'static str,
    line: Option<usize>,
}

const HEADER: &str = "apiVersion: lazaret.dev/v1\nkind: Policy\nname: p\n";

fn malformed_cases() -> Vec<Malformed> {
    vec![
        Malformed {
            what: "yaml syntax",
            text: "rules: [{check: privileged}\n",
            message: "did not find expected",
            line: Some(5),
        },
        Malformed {
            what: "unknown field",
            text: "rulez: []\n",
            message: "unknown field `rulez`",
            line: Some(4),
        },
        Malformed {
            what: "unknown check",
            text: "rules:\n  - check: \"5.99\"\n",
            message: "unknown check \"5.99\"",
            line: Some(5),
        },
        Malformed {
            what: "unquoted check id",
            text: "rules:\n  - check: 5.10\n",
            message: "quote CIS ids",
            line: Some(5),
        },
        Malformed {
            what: "parameter on the wrong check",
            text: "rules:\n  - check: \"5.6\"\n    capabilities: [SYS_ADMIN]\n",
            message: "takes no `capabilities`",
            line: Some(5),
        },
        Malformed {
            what: "missing registries",
            text: "rules:\n  - check: image-not-from\n",
            message: "needs `registries",
            line: Some(5),
        },
        Malformed {
            what: "bad capability",
            text: "rules:\n  - check: \"5.4\"\n    capabilities: [\"sys admin\"]\n",
            message: "not a capability",
            line: Some(5),
        },
        Malformed {
            what: "two rule kinds at once",
            text: "rules:\n  - check: privileged\n    expr: 'true'\n",
            message: "exactly one of",
            line: Some(5),
        },
        Malformed {
            what: "CEL that does not compile",
            text: "rules:\n  - expr: 'container.user =='\n",
            message: "does not compile",
            line: Some(5),
        },
        Malformed {
            what: "CEL on an unknown variable",
            text: "rules:\n  - expr: 'user == \"\"'\n",
            message: "unknown variable `user`",
            line: Some(5),
        },
        Malformed {
            what: "CEL on an unknown field",
            text: "rules:\n  - expr: 'container.usr == \"\"'\n",
            message: "no field `usr`",
            line: Some(5),
        },
        Malformed {
            what: "unknown action",
            text: "rules: [{check: privileged}]\nactions: [netwrok-cut]\n",
            message: "netwrok-cut",
            line: Some(5),
        },
        Malformed {
            what: "bad TTL",
            text: "rules: [{check: privileged}]\nttl: soon\n",
            message: "not a duration",
            line: Some(5),
        },
        Malformed {
            what: "bad mode",
            text: "rules: [{check: privileged}]\nmode: block\n",
            message: "block",
            line: Some(5),
        },
        Malformed {
            what: "no rules",
            text: "rules: []\n",
            message: "no rules",
            line: None,
        },
        Malformed {
            what: "bad glob",
            text: "match:\n  images: [\"[\"]\nrules: [{check: privileged}]\n",
            message: "not a valid glob",
            line: None,
        },
        Malformed {
            what: "duplicate action",
            text: "rules: [{check: privileged}]\nactions: [pause, pause]\n",
            message: "listed twice",
            line: None,
        },
    ]
}

#[test]
fn every_malformed_policy_is_rejected_with_its_location() {
    for case in malformed_cases() {
        let text = format!("{HEADER}{}", case.text);
        let errors = PolicySet::load(&[PolicySource::new("bad.yaml", text.clone())])
            .map(|_| ())
            .expect_err(case.what);
        assert_eq!(errors.errors.len(), 1, "{}: {errors}", case.what);
        let error = &errors.errors[0];
        assert_eq!(error.file, "bad.yaml", "{}", case.what);
        assert!(
            error.message.contains(case.message),
            "{}: {error}",
            case.what
        );
        assert!(
            error.line.is_some(),
            "{}: every error has a line: {error}",
            case.what
        );
        if let Some(line) = case.line {
            assert_eq!(error.line, Some(line), "{}: {error}", case.what);
        }
        let shown = error.to_string();
        assert!(shown.starts_with("bad.yaml:"), "{}: {shown}", case.what);
    }
}

#[test]
fn header_problems_are_named() {
    let cases = [
        (
            "kind: Policy\nname: p\nrules: [{check: privileged}]\n",
            "missing apiVersion",
        ),
        (
            "apiVersion: lazaret.dev/v2\nkind: Policy\nname: p\n",
            "not supported",
        ),
        (
            "apiVersion: lazaret.dev/v1\nkind: Polcy\nname: p\n",
            "kind \"Polcy\" is not known",
        ),
        ("apiVersion: lazaret.dev/v1\nname: p\n", "missing kind"),
    ];
    for (text, message) in cases {
        let errors = PolicySet::load(&[PolicySource::new("h.yaml", text)]).unwrap_err();
        assert!(errors.errors[0].message.contains(message), "{errors}");
    }
}

#[test]
fn errors_in_later_documents_carry_file_lines() {
    let text = format!("{ISSUE_EXAMPLE}---\n{HEADER}rules:\n  - check: \"5.99\"\n");
    let errors = PolicySet::load(&[PolicySource::new("multi.yaml", text)]).unwrap_err();
    // The example has 13 lines, `---` is line 14, the second document starts on line 15 and
    // its bad check is on its 5th line.
    assert_eq!(errors.errors[0].line, Some(19), "{errors}");
    assert_eq!(errors.errors[0].policy.as_deref(), Some("p"));
}

#[test]
fn a_set_loads_whole_or_not_at_all_and_reports_every_problem() {
    let good = PolicySource::new("good.yaml", ISSUE_EXAMPLE);
    let bad_one = PolicySource::new(
        "bad1.yaml",
        format!("{HEADER}rules: [{{check: \"5.99\"}}]\n"),
    );
    let bad_two = PolicySource::new(
        "bad2.yaml",
        format!("{HEADER}rules: [{{check: privileged}}]\nttl: never\n"),
    );
    let errors = PolicySet::load(&[good, bad_one, bad_two]).unwrap_err();
    let files: Vec<&str> = errors
        .errors
        .iter()
        .map(|error| error.file.as_str())
        .collect();
    assert_eq!(files, ["bad1.yaml", "bad2.yaml"]);
    assert!(errors.to_string().contains("nothing was loaded"));
}

#[test]
fn duplicate_names_are_rejected() {
    let errors = PolicySet::load(&[
        PolicySource::new("a.yaml", ISSUE_EXAMPLE),
        PolicySource::new("b.yaml", ISSUE_EXAMPLE),
    ])
    .unwrap_err();
    assert!(
        errors.errors[0]
            .message
            .contains("already defined in a.yaml"),
        "{errors}"
    );
}

#[test]
fn names_must_be_simple() {
    let text =
        "apiVersion: lazaret.dev/v1\nkind: Policy\nname: No Spaces\nrules: [{check: privileged}]\n";
    let errors = PolicySet::load(&[PolicySource::new("n.yaml", text)]).unwrap_err();
    assert!(errors.errors[0].message.contains("lowercase"), "{errors}");
}

#[test]
fn the_shipped_packs_are_valid() {
    let set = PolicySet::load(&[
        PolicySource::new(
            "cis-baseline.yaml",
            include_str!("../../../../deploy/policies/cis-baseline.yaml"),
        ),
        PolicySource::new(
            "strict.yaml",
            include_str!("../../../../deploy/policies/strict.yaml"),
        ),
    ])
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert!(
        set.policies
            .iter()
            .filter(|policy| policy.name.starts_with("cis-"))
            .all(|policy| policy.mode == PolicyMode::Audit)
    );
    assert!(
        set.policy("strict-host-takeover")
            .is_some_and(|policy| policy.mode == PolicyMode::Enforce)
    );
    assert_eq!(set.responses.len(), 1);
}
