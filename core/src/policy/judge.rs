//! The judge: one container against the policy set, giving a [`Verdict`] that says what was
//! violated, why, and what to do.
//!
//! **Which actions win.** Every applicable policy is evaluated and every violation reported.
//! Among the violated `enforce` policies that are not exempted for this container, one policy
//! decides the actions: the one whose strongest action is strongest (alert < network-cut <
//! pause < stop < kill); ties go to the higher severity, then to the longer action list, then
//! to the alphabetically first name. Its actions are taken in its order, with its TTL.
//! Violated `audit` policies are listed under `would_have`. The result depends only on the
//! inputs, never on file or evaluation order.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::cel::ContainerContext;
use super::rules::{IndicatorLookup, RuleInputs, RuleOutcome};
use super::set::{EnforcementScope, Policy, PolicyMode, PolicySet, RuleErrorPolicy};
use crate::container::ContainerInfo;
use crate::posture::Finding;
use crate::quarantine::Action;
use crate::severity::Severity;

/// What the judge needs about one container.
pub struct JudgeInput<'a> {
    pub container: &'a ContainerInfo,
    /// The container's CIS findings (`posture::assess`).
    pub posture: &'a [Finding],
    pub indicators: &'a dyn IndicatorLookup,
    /// True for a policy an operator exempted this container from (a recent release).
    pub is_exempt: &'a dyn Fn(&str) -> bool,
}

/// One violated rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyFinding {
    pub policy: Arc<str>,
    pub rule: Arc<str>,
    pub severity: Severity,
    pub why: Arc<str>,
    pub mode: PolicyMode,
    /// The policy is exempted for this container: reported, not acted on.
    pub exempt: bool,
}

/// A rule that could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvaluationError {
    pub policy: Arc<str>,
    pub rule: Arc<str>,
    pub error: String,
    /// `fail-closed` counted it as a violation.
    pub counted_as_violation: bool,
}

/// A violated audit-mode policy and what it would have done in enforce mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WouldHave {
    pub policy: Arc<str>,
    pub actions: Vec<Action>,
}

fn human_duration<S: serde::Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => {
            serializer.serialize_str(&humantime::format_duration(*duration).to_string())
        }
        None => serializer.serialize_none(),
    }
}

/// The judge's decision on one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Every violated rule, strongest severity first, then by policy name and rule order.
    pub findings: Vec<PolicyFinding>,
    /// The enforce-mode policy whose actions are taken (see the module docs for the rule).
    pub enforcing_policy: Option<Arc<str>>,
    pub actions: Vec<Action>,
    /// The enforcing policy's `scope`: whether a cut may take a pod's shared namespace.
    pub scope: EnforcementScope,
    #[serde(serialize_with = "human_duration")]
    pub ttl: Option<Duration>,
    pub severity: Option<Severity>,
    /// Violated audit-mode policies and what they would have done.
    pub would_have: Vec<WouldHave>,
    pub errors: Vec<EvaluationError>,
}

impl Verdict {
    pub fn is_violation(&self) -> bool {
        !self.findings.is_empty()
    }
}

fn strongest_action(policy: &Policy) -> u8 {
    policy
        .actions
        .iter()
        .map(|action| action.strength())
        .max()
        .unwrap_or(0)
}

/// Evaluates every policy of `set` on one container.
pub fn judge(set: &PolicySet, input: &JudgeInput<'_>) -> Verdict {
    let rule_inputs = RuleInputs {
        container: input.container,
        posture: input.posture,
        indicators: input.indicators,
    };
    let mut cel_context: Option<ContainerContext> = None;
    let mut verdict = Verdict::default();
    let mut enforcing: Vec<&Policy> = Vec::new();
    for policy in set
        .policies
        .iter()
        .filter(|policy| policy.applies_to(input.container))
    {
        if policy.uses_cel() && cel_context.is_none() {
            cel_context = Some(ContainerContext::new(
                input.container,
                input.posture,
                set.cel_fields(),
            ));
        }
        let exempt = (input.is_exempt)(&policy.name);
        let mut violated = false;
        for (rule, label) in policy.labelled_rules() {
            let why = match rule.evaluate(&rule_inputs, cel_context.as_ref()) {
                RuleOutcome::Clear => continue,
                RuleOutcome::Violated(why) => why,
                RuleOutcome::Error(error) => {
                    let counted = policy.on_error == RuleErrorPolicy::FailClosed;
                    let why = counted.then(|| {
                        Arc::from(format!(
                            "could not be evaluated (on_error: fail-closed): {error}"
                        ))
                    });
                    verdict.errors.push(EvaluationError {
                        policy: policy.shared_name().clone(),
                        rule: label.clone(),
                        error,
                        counted_as_violation: counted,
                    });
                    match why {
                        Some(why) => why,
                        None => continue,
                    }
                }
            };
            violated = true;
            verdict.findings.push(PolicyFinding {
                policy: policy.shared_name().clone(),
                rule: label.clone(),
                severity: policy.severity,
                why,
                mode: policy.mode,
                exempt,
            });
        }
        if !violated || exempt {
            continue;
        }
        match policy.mode {
            PolicyMode::Enforce => enforcing.push(policy),
            PolicyMode::Audit => verdict.would_have.push(WouldHave {
                policy: policy.shared_name().clone(),
                actions: policy.actions.clone(),
            }),
        }
    }
    // Policies are sorted by name, and the sort is stable: the name is the last tie-break.
    verdict
        .findings
        .sort_by_key(|finding| Reverse(finding.severity));
    let winner = enforcing.into_iter().min_by_key(|policy| {
        (
            Reverse(strongest_action(policy)),
            Reverse(policy.severity),
            Reverse(policy.actions.len()),
            policy.shared_name().clone(),
        )
    });
    if let Some(policy) = winner {
        verdict.enforcing_policy = Some(policy.shared_name().clone());
        verdict.actions = policy.actions.clone();
        verdict.ttl = policy.ttl;
        verdict.scope = policy.scope;
        verdict.severity = Some(policy.severity);
    }
    verdict
}
