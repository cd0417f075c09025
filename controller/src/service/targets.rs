//! Which containers a fleet-wide call is about (pure): filters for listings, and the targets of
//! quarantine and release (an id, a unique id prefix or a name fleet-wide; a label selector; the
//! quarantines a policy caused).

use std::collections::HashMap;

use lazaret_proto::v1::{
    CheckResult, ContainerFilter, FleetTarget, NodeContainer, Severity, Unreachable,
};
use tonic::Status;

/// A parsed label selector: `key=value` pairs, all of which must match.
pub type Selector = lazaret_core::label_selector::LabelSelector;

/// Parses `app=web,tier=front`; empty text selects everything.
pub fn selector(text: &str) -> Result<Selector, Status> {
    lazaret_core::label_selector::parse_label_selector(text).map_err(Status::invalid_argument)
}

fn labels_match(labels: &HashMap<String, String>, selector: &Selector) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

fn quarantined(container: &NodeContainer) -> bool {
    container
        .view
        .as_ref()
        .and_then(|view| view.quarantine.as_ref())
        .is_some_and(|record| !matches!(record.state.as_str(), "released" | "gone"))
}

/// A [`ContainerFilter`], parsed: what [`Filter::passes`] checks.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    selector: Selector,
    quarantined: bool,
    /// A check id, `*` for any, empty for no condition.
    finding: String,
    /// The lowest severity of a failed check that counts (the proto enum's number).
    min_severity: Option<i32>,
}

impl Filter {
    /// Parses `filter`; a bad selector or severity is `INVALID_ARGUMENT` naming it.
    pub fn parse(filter: &ContainerFilter) -> Result<Filter, Status> {
        let min_severity = match filter.severity.trim() {
            "" => None,
            text => Some(
                Severity::from_str_name(&format!("SEVERITY_{}", text.to_ascii_uppercase()))
                    .filter(|severity| *severity != Severity::Unspecified)
                    .ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "severity {text:?}: expected info, low, medium, high or critical"
                        ))
                    })? as i32,
            ),
        };
        Ok(Filter {
            selector: selector(&filter.selector)?,
            quarantined: filter.quarantined,
            finding: filter.finding.trim().to_string(),
            min_severity,
        })
    }

    /// Whether `container` passes (its node is checked by the caller).
    pub fn passes(&self, container: &NodeContainer) -> bool {
        let Some(inner) = container
            .view
            .as_ref()
            .and_then(|view| view.container.as_ref())
        else {
            return false;
        };
        let failed = || {
            inner
                .findings
                .iter()
                .filter(|finding| finding.result == CheckResult::Fail as i32)
        };
        let fails_check =
            |check: &str| failed().any(|finding| check == "*" || finding.check == check);
        let fails_severity = |minimum: i32| failed().any(|finding| finding.severity >= minimum);
        labels_match(&inner.labels, &self.selector)
            && (!self.quarantined || quarantined(container))
            && (self.finding.is_empty() || fails_check(&self.finding))
            && self.min_severity.is_none_or(fails_severity)
    }
}

/// The containers `target` names among `all` (every live agent's). One of `target`, `selector`
/// and (for release) `policy` must be set; an id prefix must be unique fleet-wide.
pub fn pick(all: Vec<NodeContainer>, target: &FleetTarget) -> Result<Vec<NodeContainer>, Status> {
    let set = [&target.target, &target.selector, &target.policy]
        .iter()
        .filter(|text| !text.trim().is_empty())
        .count();
    if set != 1 {
        return Err(Status::invalid_argument(
            "name exactly one of: a container (id, id prefix or name), --selector, --policy",
        ));
    }
    let id_and_name = |container: &NodeContainer| {
        container
            .view
            .as_ref()
            .and_then(|view| view.container.as_ref())
            .map(|inner| (inner.id.clone(), inner.name.clone()))
            .unwrap_or_default()
    };
    if !target.policy.trim().is_empty() {
        let source = format!("policy:{}", target.policy.trim());
        return Ok(all
            .into_iter()
            .filter(|container| {
                quarantined(container)
                    && container
                        .view
                        .as_ref()
                        .and_then(|view| view.quarantine.as_ref())
                        .is_some_and(|record| record.source == source)
            })
            .collect());
    }
    if !target.selector.trim().is_empty() {
        let filter = Filter::parse(&ContainerFilter {
            selector: target.selector.clone(),
            ..ContainerFilter::default()
        })?;
        return Ok(all
            .into_iter()
            .filter(|container| filter.passes(container))
            .collect());
    }
    let wanted = target.target.trim();
    let exact: Vec<NodeContainer> = all
        .iter()
        .filter(|container| {
            let (id, name) = id_and_name(container);
            id == wanted || name == wanted
        })
        .cloned()
        .collect();
    let candidates = match exact.is_empty() {
        false => exact,
        true => all
            .into_iter()
            .filter(|container| id_and_name(container).0.starts_with(wanted))
            .collect(),
    };
    match candidates.len() {
        0 => Err(Status::not_found(format!(
            "no container {wanted:?} (id, id prefix or name) on any agent that answered"
        ))),
        1 => Ok(candidates),
        _ => {
            let names: Vec<String> = candidates
                .iter()
                .map(|container| format!("{} on {}", id_and_name(container).0, container.node))
                .collect();
            Err(Status::invalid_argument(format!(
                "{wanted:?} matches {} containers ({}); give more of the id",
                names.len(),
                names.join(", ")
            )))
        }
    }
}

/// A target `pick` did not find (`not_found`) while some agents did not answer, or answered
/// without all their containers: `UNAVAILABLE` (it may be on one of them: asking again later can
/// find it), naming them and why.
pub fn not_found_yet(not_found: &Status, unreachable: &[Unreachable]) -> Status {
    let silent: Vec<String> = unreachable
        .iter()
        .map(|agent| format!("{} ({})", agent.node, agent.error))
        .collect();
    Status::unavailable(format!(
        "{}; not searched in full: {}",
        not_found.message(),
        silent.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use lazaret_proto::v1::{Container, ContainerView, Finding, QuarantineRecord};

    use super::*;

    #[test]
    fn a_target_not_found_while_agents_are_missing_is_unavailable_and_names_them() {
        let not_found = pick(
            fleet(),
            &FleetTarget {
                target: "nope".into(),
                ..FleetTarget::default()
            },
        )
        .unwrap_err();
        assert_eq!(not_found.code(), tonic::Code::NotFound);
        let status = not_found_yet(
            &not_found,
            &[Unreachable {
                node: "node-3".into(),
                error: "Service was not ready: its docker containers are not listed yet".into(),
            }],
        );
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status
                .message()
                .contains("node-3 (Service was not ready: its docker"),
            "{status:?}"
        );
        assert!(status.message().contains("\"nope\""), "{status:?}");
    }

    fn container(node: &str, id: &str, name: &str, labels: &[(&str, &str)]) -> NodeContainer {
        NodeContainer {
            node: node.into(),
            view: Some(ContainerView {
                container: Some(Container {
                    id: id.into(),
                    name: name.into(),
                    labels: labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    findings: vec![Finding {
                        check: "5.4".into(),
                        result: CheckResult::Fail as i32,
                        severity: Severity::High as i32,
                        ..Finding::default()
                    }],
                    ..Container::default()
                }),
                quarantine: None,
            }),
        }
    }

    fn fleet() -> Vec<NodeContainer> {
        let mut quarantined = container("node-2", "abc999", "db", &[("app", "db")]);
        quarantined.view.as_mut().unwrap().quarantine = Some(QuarantineRecord {
            state: "applied".into(),
            source: "policy:no-root".into(),
            ..QuarantineRecord::default()
        });
        vec![
            container("node-1", "abc123", "web-1", &[("app", "web")]),
            container(
                "node-2",
                "abd456",
                "web-2",
                &[("app", "web"), ("tier", "front")],
            ),
            quarantined,
        ]
    }

    fn target(target: &str, selector: &str, policy: &str) -> FleetTarget {
        FleetTarget {
            target: target.into(),
            selector: selector.into(),
            policy: policy.into(),
            node: String::new(),
        }
    }

    fn ids(picked: Vec<NodeContainer>) -> Vec<String> {
        picked
            .into_iter()
            .map(|c| c.view.unwrap().container.unwrap().id)
            .collect()
    }

    #[test]
    fn targets_by_id_prefix_name_selector_and_policy() {
        assert_eq!(
            ids(pick(fleet(), &target("web-2", "", "")).unwrap()),
            ["abd456"]
        );
        assert_eq!(
            ids(pick(fleet(), &target("abc1", "", "")).unwrap()),
            ["abc123"]
        );
        let ambiguous = pick(fleet(), &target("ab", "", "")).unwrap_err();
        assert!(
            ambiguous.message().contains("3 containers"),
            "{ambiguous:?}"
        );
        assert_eq!(
            pick(fleet(), &target("zzz", "", "")).unwrap_err().code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            ids(pick(fleet(), &target("", "app=web", "")).unwrap()),
            ["abc123", "abd456"]
        );
        assert_eq!(
            ids(pick(fleet(), &target("", "app=web,tier=front", "")).unwrap()),
            ["abd456"]
        );
        assert_eq!(
            ids(pick(fleet(), &target("", "", "no-root")).unwrap()),
            ["abc999"]
        );
        assert!(pick(fleet(), &target("", "", "")).is_err());
        assert!(pick(fleet(), &target("a", "app=web", "")).is_err());
        assert!(selector("app").is_err());
    }

    #[test]
    fn filters() {
        let all = fleet();
        let count = |quarantined: bool, finding: &str, severity: &str| {
            let filter = Filter::parse(&ContainerFilter {
                quarantined,
                finding: finding.into(),
                severity: severity.into(),
                ..ContainerFilter::default()
            })
            .unwrap();
            all.iter().filter(|c| filter.passes(c)).count()
        };
        assert_eq!(count(true, "", ""), 1);
        assert_eq!(count(false, "5.4", ""), 3);
        assert_eq!(count(false, "5.9", ""), 0);
        assert_eq!(count(false, "*", ""), 3);
        assert_eq!(count(false, "", "high"), 3);
        assert_eq!(count(false, "", "critical"), 0);
        let bad = Filter::parse(&ContainerFilter {
            severity: "urgent".into(),
            ..ContainerFilter::default()
        });
        assert!(bad.unwrap_err().message().contains("critical"));
    }
}
