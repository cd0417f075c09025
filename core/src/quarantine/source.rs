//! What caused a quarantine, in the one textual form the API, the store and gossip share.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a quarantine exists. Written (and serialised) as `policy:<name>`, `indicator:<id>`,
/// `detection:<rule>` or `operator` (DESIGN.md §3, quarantine record).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuarantineSource {
    /// A policy's verdict, by policy name.
    Policy(String),
    /// A threat indicator match, by indicator id.
    Indicator(String),
    /// A response rule fired by a detection (e.g. Falco), by detection rule name.
    Detection(String),
    /// An operator asked for it directly.
    Operator,
}

impl QuarantineSource {
    /// The key an [`super::Exemption`] left by releasing this quarantine is filed under: the
    /// policy name for a policy, the full `kind:value` form for everything else. Policy names
    /// cannot contain `:` (policy validation refuses it), so the two never collide.
    pub fn exemption_key(&self) -> String {
        match self {
            QuarantineSource::Policy(name) => name.clone(),
            other => other.to_string(),
        }
    }
}

impl QuarantineSource {
    /// The kind alone (`policy`, `indicator`, `detection`, `operator`): a label of bounded
    /// cardinality for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            QuarantineSource::Policy(_) => "policy",
            QuarantineSource::Indicator(_) => "indicator",
            QuarantineSource::Detection(_) => "detection",
            QuarantineSource::Operator => "operator",
        }
    }
}

impl fmt::Display for QuarantineSource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuarantineSource::Policy(name) => write!(formatter, "policy:{name}"),
            QuarantineSource::Indicator(id) => write!(formatter, "indicator:{id}"),
            QuarantineSource::Detection(rule) => write!(formatter, "detection:{rule}"),
            QuarantineSource::Operator => formatter.write_str("operator"),
        }
    }
}

/// The error for text that is not a quarantine source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid quarantine source {given:?}: {problem}; expected policy:<name>, indicator:<id>, \
     detection:<rule> or operator"
)]
pub struct InvalidQuarantineSource {
    pub given: String,
    pub problem: &'static str,
}

impl FromStr for QuarantineSource {
    type Err = InvalidQuarantineSource;

    /// Exact and case-sensitive, so that `to_string` and `parse` round-trip: the kind is lower
    /// case, the value is kept as written (it may itself contain `:`) and must not be empty.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |problem| InvalidQuarantineSource {
            given: text.to_string(),
            problem,
        };
        if text == "operator" {
            return Ok(QuarantineSource::Operator);
        }
        let Some((kind, value)) = text.split_once(':') else {
            return Err(invalid("no kind before `:`"));
        };
        let make = match kind {
            "policy" => QuarantineSource::Policy,
            "indicator" => QuarantineSource::Indicator,
            "detection" => QuarantineSource::Detection,
            "operator" => return Err(invalid("`operator` takes no value")),
            _ => return Err(invalid("unknown kind")),
        };
        if value.is_empty() {
            return Err(invalid("the value after `:` is empty"));
        }
        Ok(make(value.to_string()))
    }
}

impl Serialize for QuarantineSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for QuarantineSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
