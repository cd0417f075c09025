//! Validated policies and the set in force. A set is built from sources whole or not at all:
//! one bad document anywhere rejects the set, and the caller keeps the one it had.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::cel::CelFields;
use super::document::{Document, optional_duration, parse_file};
use super::response::ResponseRule;
use super::rules::Rule;
use super::selector::Selector;
use super::{PolicyError, PolicyErrors, PolicySource};
use crate::container::ContainerInfo;
use crate::quarantine::Action;
use crate::severity::Severity;

/// `enforce` takes the actions; `audit` only records what it would have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    Enforce,
    /// The default: a new policy is observed before it acts.
    #[default]
    Audit,
}

impl PolicyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "enforce",
            PolicyMode::Audit => "audit",
        }
    }
}

/// What happens when a rule cannot be evaluated (an unknown field, an expression error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleErrorPolicy {
    /// Treat the rule as not violated (and report the error). The default.
    #[default]
    FailOpen,
    /// Treat the rule as violated (and report the error).
    FailClosed,
}

/// What a network cut applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnforcementScope {
    /// The container only; a shared namespace falls back to the next action.
    #[default]
    Container,
    /// The whole pod's shared network namespace.
    Pod,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    mode: PolicyMode,
    #[serde(default = "default_severity")]
    severity: Severity,
    #[serde(default, rename = "match")]
    selector: Selector,
    #[serde(default)]
    exclude: Option<Selector>,
    rules: Vec<Rule>,
    #[serde(default)]
    actions: Option<Vec<Action>>,
    #[serde(default, deserialize_with = "optional_duration")]
    ttl: Option<Duration>,
    #[serde(default)]
    on_error: RuleErrorPolicy,
    #[serde(default)]
    scope: EnforcementScope,
}

fn default_severity() -> Severity {
    Severity::Medium
}

/// A validated `kind: Policy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawPolicy")]
pub struct Policy {
    pub name: String,
    pub description: Option<String>,
    pub mode: PolicyMode,
    pub severity: Severity,
    pub selector: Selector,
    pub exclude: Option<Selector>,
    pub rules: Vec<Rule>,
    /// In order; `[alert]` when the policy names none.
    pub actions: Vec<Action>,
    /// How long a quarantine it causes lasts; `None`: until released.
    pub ttl: Option<Duration>,
    pub on_error: RuleErrorPolicy,
    pub scope: EnforcementScope,
    /// The name and rule labels as shared strings: verdicts point at them instead of copying.
    shared_name: Arc<str>,
    rule_labels: Vec<Arc<str>>,
}

/// Names are used in gossip keys, metrics labels and CLI arguments: keep them simple.
pub(super) fn validate_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1-63 lowercase letters, digits, '-' or '.', starting with a letter or digit"
        ))
    }
}

pub(super) fn validate_actions(actions: &[Action]) -> Result<(), String> {
    if actions.is_empty() {
        return Err(
            "`actions` is empty: leave it out for [alert], or list e.g. [network-cut, pause]"
                .into(),
        );
    }
    for (index, action) in actions.iter().enumerate() {
        if actions[..index].contains(action) {
            return Err(format!("action {action} is listed twice"));
        }
    }
    Ok(())
}

impl TryFrom<RawPolicy> for Policy {
    type Error = String;

    fn try_from(raw: RawPolicy) -> Result<Self, Self::Error> {
        validate_name(&raw.name)?;
        if raw.rules.is_empty() {
            return Err(format!(
                "policy {:?} has no rules: add at least one under `rules:`",
                raw.name
            ));
        }
        let actions = raw.actions.unwrap_or_else(|| vec![Action::Alert]);
        validate_actions(&actions)?;
        let rule_labels = raw
            .rules
            .iter()
            .map(|rule| Arc::from(rule.label()))
            .collect();
        Ok(Policy {
            shared_name: Arc::from(raw.name.as_str()),
            rule_labels,
            name: raw.name,
            description: raw.description,
            mode: raw.mode,
            severity: raw.severity,
            selector: raw.selector,
            exclude: raw.exclude.filter(|exclude| !exclude.is_empty()),
            rules: raw.rules,
            actions,
            ttl: raw.ttl,
            on_error: raw.on_error,
            scope: raw.scope,
        })
    }
}

impl Policy {
    /// Whether the policy applies to this container at all (`match` and not `exclude`).
    pub fn applies_to(&self, container: &ContainerInfo) -> bool {
        self.selector.matches(container)
            && !self
                .exclude
                .as_ref()
                .is_some_and(|exclude| exclude.matches(container))
    }

    pub fn uses_cel(&self) -> bool {
        self.rules.iter().any(Rule::uses_cel)
    }

    /// The name, shared (cheap to clone into verdicts).
    pub fn shared_name(&self) -> &Arc<str> {
        &self.shared_name
    }

    /// Each rule with its label (`check 5.4 [SYS_ADMIN]`, `expr …`).
    pub fn labelled_rules(&self) -> impl Iterator<Item = (&Rule, &Arc<str>)> {
        self.rules.iter().zip(&self.rule_labels)
    }
}

/// The policies and responses in force, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
    pub responses: Vec<ResponseRule>,
    /// The `container` fields any CEL expression of the set reads.
    cel_fields: CelFields,
}

impl PolicySet {
    /// Parses and validates every source; any problem anywhere rejects the whole set, and every
    /// problem found is reported. Duplicate names (policies or responses) are problems.
    pub fn load(sources: &[PolicySource]) -> Result<PolicySet, PolicyErrors> {
        let mut errors = Vec::new();
        let mut policies: BTreeMap<String, (String, Policy)> = BTreeMap::new();
        let mut responses: BTreeMap<String, (String, ResponseRule)> = BTreeMap::new();
        for source in sources {
            let (documents, problems) = parse_file(&source.name, &source.text);
            errors.extend(problems);
            for document in documents {
                let (name, kind) = match &document {
                    Document::Policy(policy) => (policy.name.clone(), "policy"),
                    Document::Response(response) => (response.name.clone(), "response"),
                };
                let first_file = match &document {
                    Document::Policy(_) => policies.get(&name).map(|(file, _)| file.clone()),
                    Document::Response(_) => responses.get(&name).map(|(file, _)| file.clone()),
                };
                if let Some(first_file) = first_file {
                    errors.push(PolicyError {
                        file: source.name.clone(),
                        line: None,
                        column: None,
                        policy: Some(name.clone()),
                        message: format!("a {kind} named {name:?} is already defined in {first_file}: names must be unique"),
                    });
                    continue;
                }
                match document {
                    Document::Policy(policy) => {
                        policies.insert(name, (source.name.clone(), *policy));
                    }
                    Document::Response(response) => {
                        responses.insert(name, (source.name.clone(), *response));
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(PolicyErrors { errors });
        }
        let policies: Vec<Policy> = policies.into_values().map(|(_, policy)| policy).collect();
        let mut cel_fields = CelFields::None;
        for rule in policies.iter().flat_map(|policy| &policy.rules) {
            if let Rule::Expr(expression) = rule {
                cel_fields.merge(expression.fields());
            }
        }
        Ok(PolicySet {
            policies,
            responses: responses
                .into_values()
                .map(|(_, response)| response)
                .collect(),
            cel_fields,
        })
    }

    /// The `container` fields the set's CEL expressions read (the judge builds only those).
    pub fn cel_fields(&self) -> &CelFields {
        &self.cel_fields
    }

    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|policy| policy.name == name)
    }
}
