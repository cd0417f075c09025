//! Policy rules: built-in checks with parameters, indicator matches and CEL expressions, and
//! their evaluation against one container. A rule is *violated*, *clear*, or could not be
//! evaluated (an error the policy's `on_error` decides about).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use super::cel::{CelExpression, ContainerContext};
use crate::container::{ContainerInfo, normalize_capability};
use crate::posture::{self, CheckResult, Finding};
use crate::severity::Severity;

/// Named built-in checks besides the CIS ids.
const NAMED_CHECKS: [&str; 2] = ["privileged", "image-not-from"];

/// A `check:` value: a CIS id from the catalogue or a named check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckName(String);

impl<'de> Deserialize<'de> for CheckName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Number(f64),
        }
        let name = match Written::deserialize(deserializer)? {
            Written::Text(text) => text,
            Written::Number(number) => {
                return Err(serde::de::Error::custom(format!(
                    "check {number} is a number: quote CIS ids, e.g. check: \"5.10\" (unquoted, YAML reads 5.10 as 5.1)"
                )));
            }
        };
        if posture::definition(&name).is_some() || NAMED_CHECKS.contains(&name.as_str()) {
            return Ok(CheckName(name));
        }
        let ids: Vec<&str> = posture::catalogue().iter().map(|check| check.id).collect();
        Err(serde::de::Error::custom(format!(
            "unknown check {name:?}: use a CIS id ({}) or one of: {}",
            ids.join(", "),
            NAMED_CHECKS.join(", ")
        )))
    }
}

/// The indicator types a rule can match (DESIGN.md §3).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum IndicatorKind {
    ImageId,
    ImageDigest,
    ImageRef,
    ProcessName,
    ExeSha256,
    Ip,
}

impl fmt::Display for IndicatorKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            IndicatorKind::ImageId => "image-id",
            IndicatorKind::ImageDigest => "image-digest",
            IndicatorKind::ImageRef => "image-ref",
            IndicatorKind::ProcessName => "process-name",
            IndicatorKind::ExeSha256 => "exe-sha256",
            IndicatorKind::Ip => "ip",
        })
    }
}

/// A matched indicator of compromise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndicatorHit {
    pub indicator_id: String,
    pub kind: IndicatorKind,
    pub value: String,
    pub severity: Severity,
}

/// Looks indicators up for a container. The agent's indicator sets (issue 8/11) implement it;
/// until they exist, [`NoIndicators`] matches nothing.
pub trait IndicatorLookup {
    fn find(&self, kind: IndicatorKind, container: &ContainerInfo) -> Option<IndicatorHit>;

    /// Why the indicators cannot vouch for a container they do not match (the bundle they came
    /// from is past its expiry, say), if they cannot: an `indicator` rule that finds nothing is
    /// then an evaluation error, which the policy's `on_error` decides, instead of clear. A match
    /// still violates.
    fn doubt(&self) -> Option<&str> {
        None
    }
}

/// An empty indicator set.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoIndicators;

impl IndicatorLookup for NoIndicators {
    fn find(&self, _kind: IndicatorKind, _container: &ContainerInfo) -> Option<IndicatorHit> {
        None
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    check: Option<CheckName>,
    capabilities: Option<Vec<String>>,
    registries: Option<Vec<String>>,
    indicator: Option<Vec<IndicatorKind>>,
    /// With `indicator`: only indicators of at least this severity count.
    min_severity: Option<Severity>,
    expr: Option<CelExpression>,
}

/// One rule of a policy. Any rule that is violated makes the policy violated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawRule")]
pub enum Rule {
    /// A CIS check fails. For 5.4, `capabilities` narrows it to these added capabilities.
    Check {
        id: String,
        capabilities: Vec<String>,
    },
    /// The container runs privileged.
    Privileged,
    /// The image comes from none of these registries (or registry paths).
    ImageNotFrom { registries: Vec<String> },
    /// An indicator of one of these kinds (and at least `min_severity`) matches the container.
    Indicator {
        kinds: Vec<IndicatorKind>,
        min_severity: Option<Severity>,
    },
    /// A CEL expression over `container` is true.
    Expr(CelExpression),
}

impl TryFrom<RawRule> for Rule {
    type Error = String;

    fn try_from(raw: RawRule) -> Result<Self, Self::Error> {
        let given = [
            raw.check.is_some(),
            raw.indicator.is_some(),
            raw.expr.is_some(),
        ];
        if given.iter().filter(|given| **given).count() != 1 {
            return Err("a rule needs exactly one of `check`, `indicator` or `expr`".into());
        }
        if raw.min_severity.is_some() && raw.indicator.is_none() {
            return Err("`min_severity` goes with `indicator` only".into());
        }
        if let Some(expr) = raw.expr {
            return no_parameters(&raw.capabilities, &raw.registries, "expr")
                .map(|()| Rule::Expr(expr));
        }
        if let Some(kinds) = raw.indicator {
            if kinds.is_empty() {
                return Err("`indicator` needs at least one type: image-id, image-digest, image-ref, process-name, exe-sha256, ip".into());
            }
            return no_parameters(&raw.capabilities, &raw.registries, "indicator").map(|()| {
                Rule::Indicator {
                    kinds,
                    min_severity: raw.min_severity,
                }
            });
        }
        let Some(CheckName(id)) = raw.check else {
            return Err("a rule needs exactly one of `check`, `indicator` or `expr`".into());
        };
        match id.as_str() {
            "image-not-from" => {
                if raw.capabilities.is_some() {
                    return Err(
                        "check image-not-from takes `registries`, not `capabilities`".into(),
                    );
                }
                match raw.registries {
                    Some(registries) if !registries.is_empty() => Ok(Rule::ImageNotFrom {
                        registries: registries
                            .into_iter()
                            .map(|entry| entry.trim_end_matches('/').to_string())
                            .collect(),
                    }),
                    _ => Err(
                        "check image-not-from needs `registries: [registry.example.com, …]`".into(),
                    ),
                }
            }
            "privileged" => no_parameters(&raw.capabilities, &raw.registries, "check privileged")
                .map(|()| Rule::Privileged),
            "5.4" => {
                if raw.registries.is_some() {
                    return Err("check 5.4 takes `capabilities`, not `registries`".into());
                }
                let capabilities: Vec<String> = raw
                    .capabilities
                    .unwrap_or_default()
                    .iter()
                    .map(|cap| normalize_capability(cap))
                    .collect();
                if let Some(bad) = capabilities.iter().find(|cap| {
                    cap.is_empty() || !cap.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                }) {
                    return Err(format!(
                        "{bad:?} is not a capability name (e.g. SYS_ADMIN, NET_ADMIN)"
                    ));
                }
                Ok(Rule::Check { id, capabilities })
            }
            _ => no_parameters(&raw.capabilities, &raw.registries, &format!("check {id}")).map(
                |()| Rule::Check {
                    id,
                    capabilities: Vec::new(),
                },
            ),
        }
    }
}

fn no_parameters(
    capabilities: &Option<Vec<String>>,
    registries: &Option<Vec<String>>,
    what: &str,
) -> Result<(), String> {
    if capabilities.is_some() {
        return Err(format!(
            "{what} takes no `capabilities` (only check 5.4 does)"
        ));
    }
    if registries.is_some() {
        return Err(format!(
            "{what} takes no `registries` (only check image-not-from does)"
        ));
    }
    Ok(())
}

/// What a rule says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOutcome {
    /// Why, for people. Shared: the same text is often reported for many containers.
    Violated(Arc<str>),
    Clear,
    /// Could not be evaluated (unknown data, expression error): `on_error` decides.
    Error(String),
}

/// What evaluation needs besides the rule itself.
pub struct RuleInputs<'a> {
    pub container: &'a ContainerInfo,
    pub posture: &'a [Finding],
    pub indicators: &'a dyn IndicatorLookup,
}

impl Rule {
    /// A short label for findings and reports.
    pub fn label(&self) -> String {
        match self {
            Rule::Check { id, capabilities } if !capabilities.is_empty() => {
                format!("check {id} [{}]", capabilities.join(", "))
            }
            Rule::Check { id, .. } => format!("check {id}"),
            Rule::Privileged => "check privileged".into(),
            Rule::ImageNotFrom { .. } => "check image-not-from".into(),
            Rule::Indicator {
                kinds,
                min_severity,
            } => {
                let kinds: Vec<String> = kinds.iter().map(ToString::to_string).collect();
                match min_severity {
                    Some(severity) => format!("indicator [{}] >= {severity}", kinds.join(", ")),
                    None => format!("indicator [{}]", kinds.join(", ")),
                }
            }
            Rule::Expr(expression) => format!("expr {}", expression.source()),
        }
    }

    pub fn uses_cel(&self) -> bool {
        matches!(self, Rule::Expr(_))
    }

    /// Evaluates the rule; `cel` is the container's CEL context, built by the caller only when
    /// some rule needs it.
    pub fn evaluate(&self, inputs: &RuleInputs<'_>, cel: Option<&ContainerContext>) -> RuleOutcome {
        match self {
            Rule::Check { id, capabilities } => evaluate_check(id, capabilities, inputs),
            Rule::Privileged => match inputs.container.privileged {
                Some(true) => RuleOutcome::Violated(Arc::from("runs privileged")),
                Some(false) => RuleOutcome::Clear,
                None => RuleOutcome::Error("the runtime does not report privileged mode".into()),
            },
            Rule::ImageNotFrom { registries } => {
                evaluate_image_origin(&inputs.container.image, registries)
            }
            Rule::Indicator {
                kinds,
                min_severity,
            } => kinds
                .iter()
                .filter_map(|kind| inputs.indicators.find(*kind, inputs.container))
                .find(|hit| min_severity.is_none_or(|minimum| hit.severity >= minimum))
                .map_or_else(
                    || match inputs.indicators.doubt() {
                        Some(doubt) => {
                            RuleOutcome::Error(format!("the indicators are in doubt: {doubt}"))
                        }
                        None => RuleOutcome::Clear,
                    },
                    |hit| {
                        RuleOutcome::Violated(Arc::from(format!(
                            "{} {} matches indicator {}",
                            hit.kind, hit.value, hit.indicator_id
                        )))
                    },
                ),
            Rule::Expr(expression) => match cel.map(|context| expression.evaluate(context)) {
                Some(Ok(true)) => RuleOutcome::Violated(expression.why_true()),
                Some(Ok(false)) => RuleOutcome::Clear,
                Some(Err(error)) => RuleOutcome::Error(error),
                None => RuleOutcome::Error("no CEL context was built".into()),
            },
        }
    }
}

fn evaluate_check(id: &str, capabilities: &[String], inputs: &RuleInputs<'_>) -> RuleOutcome {
    let Some(finding) = inputs.posture.iter().find(|finding| finding.check == id) else {
        return RuleOutcome::Error(format!("no result for check {id}"));
    };
    match finding.result {
        CheckResult::Pass => RuleOutcome::Clear,
        CheckResult::Unknown => {
            RuleOutcome::Error(format!("check {id} is unknown: {}", finding.detail))
        }
        CheckResult::Fail if capabilities.is_empty() => {
            RuleOutcome::Violated(Arc::from(finding.detail.as_str()))
        }
        CheckResult::Fail => {
            // `cap_add` is normalised by the backends (upper case, no `CAP_`), as are the
            // policy's capabilities at load: no allocation unless something is violated.
            let listed = |cap: &&String| {
                cap.as_str() == "ALL" || capabilities.iter().any(|wanted| wanted == *cap)
            };
            let mut added = inputs
                .container
                .cap_add
                .iter()
                .flatten()
                .filter(listed)
                .peekable();
            if added.peek().is_none() {
                return RuleOutcome::Clear;
            }
            let names: Vec<&str> = added.map(String::as_str).collect();
            RuleOutcome::Violated(Arc::from(format!("adds {}", names.join(", "))))
        }
    }
}

/// `registry/path:tag` with Docker's defaults filled in (`busybox` → `docker.io/library/busybox`).
pub fn normalized_image_location(image: &str) -> Option<Cow<'_, str>> {
    if image.is_empty() || image.starts_with("sha256:") {
        return None;
    }
    let Some((first, _rest)) = image.split_once('/') else {
        return Some(Cow::Owned(format!("docker.io/library/{image}")));
    };
    if first.contains('.') || first.contains(':') || first == "localhost" {
        Some(Cow::Borrowed(image))
    } else {
        Some(Cow::Owned(format!("docker.io/{image}")))
    }
}

fn evaluate_image_origin(image: &str, registries: &[String]) -> RuleOutcome {
    let Some(location) = normalized_image_location(image) else {
        return RuleOutcome::Error(format!("image {image:?} does not name a registry"));
    };
    let allowed = registries.iter().any(|entry| {
        location
            .strip_prefix(entry.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if allowed {
        RuleOutcome::Clear
    } else {
        RuleOutcome::Violated(Arc::from(format!(
            "image {image} is not from {}",
            registries.join(", ")
        )))
    }
}
