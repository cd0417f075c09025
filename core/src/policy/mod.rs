//! The policy language (DESIGN.md §3): YAML documents of `kind: Policy` (what a container must
//! not be, and what to do about it) and `kind: Response` (which detections trigger which
//! actions), loaded as one [`PolicySet`] — whole or not at all — and the [`judge`] that turns a
//! container into a [`Verdict`].
//!
//! Everything is validated at load: unknown fields, checks, actions and CEL variables are
//! errors that name the file, line and column (or the field) and say what to fix, so that a
//! set that loads never fails for a reason that was knowable in advance. Expressions are
//! compiled once per load. This module does no I/O: callers hand in the files' text.

mod cel;
pub mod diff;
mod document;
#[cfg(feature = "fs")]
pub mod files;
mod judge;
mod response;
mod rules;
mod selector;
mod set;
#[cfg(test)]
mod tests;

use std::fmt;

pub use self::cel::{CONTAINER_FIELDS, CelExpression, CelFields, ContainerContext};
pub use judge::{EvaluationError, JudgeInput, PolicyFinding, Verdict, WouldHave, judge};
pub use response::{Detection, ResponseRule};
pub use rules::{
    IndicatorHit, IndicatorKind, IndicatorLookup, NoIndicators, Rule, normalized_image_location,
};
pub use selector::{DetectionMatch, Selector};
pub use set::{EnforcementScope, Policy, PolicyMode, PolicySet, RuleErrorPolicy};

/// The `apiVersion` every document must carry.
pub const API_VERSION: &str = "lazaret.dev/v1";

/// One file's text, named for error messages (usually its path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    pub name: String,
    pub text: String,
}

impl PolicySource {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        PolicySource {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// One problem in a policy file: where it is and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    /// 1-based; `None` when the problem concerns the set as a whole.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The policy the problem is in, when known.
    pub policy: Option<String>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(formatter, ":{line}")?;
            if let Some(column) = self.column {
                write!(formatter, ":{column}")?;
            }
        }
        if let Some(policy) = &self.policy {
            write!(formatter, ": policy {policy:?}")?;
        }
        write!(formatter, ": {}", self.message)
    }
}

/// Every problem found while loading a set; the set was not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors {
    pub errors: Vec<PolicyError>,
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        write!(
            formatter,
            "{count} problem{} in the policy set; nothing was loaded",
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.errors {
            write!(formatter, "\n  {error}")?;
        }
        Ok(())
    }
}
