//! CIS Docker Benchmark posture checks (numbering of v1.6.0, DESIGN.md §3), as pure functions
//! over [`ContainerInfo`].
//!
//! Each check has a stable id (`"5.4"`), a title and a severity, and yields `fail`, `pass` or
//! `unknown`. `unknown` means the runtime's view lacks the field: it must never be reported as
//! `pass`. This module must not grow I/O: checks that need to look inside a running container
//! (5.7, sshd) stay `unknown` here and are answered by the agent's process scan.

mod checks;
#[cfg(test)]
mod tests;

use serde::Serialize;

pub use checks::{DEFAULT_CAPABILITIES, SENSITIVE_HOST_DIRECTORIES};

use crate::container::ContainerInfo;
use crate::severity::Severity;

/// A check's id as CIS numbers it, e.g. `"5.4"` (or `"4.1"` for the container user).
pub type CheckId = &'static str;

/// The outcome of one check on one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckResult {
    Fail,
    Pass,
    /// The runtime did not tell us enough to decide.
    Unknown,
}

impl CheckResult {
    pub const ALL: [CheckResult; 3] = [CheckResult::Fail, CheckResult::Pass, CheckResult::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckResult::Fail => "fail",
            CheckResult::Pass => "pass",
            CheckResult::Unknown => "unknown",
        }
    }
}

/// A check's verdict plus the human explanation shown next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: CheckResult,
    pub detail: String,
}

impl Outcome {
    pub fn fail(detail: impl Into<String>) -> Self {
        Outcome {
            result: CheckResult::Fail,
            detail: detail.into(),
        }
    }

    pub fn pass(detail: impl Into<String>) -> Self {
        Outcome {
            result: CheckResult::Pass,
            detail: detail.into(),
        }
    }

    pub fn unknown(detail: impl Into<String>) -> Self {
        Outcome {
            result: CheckResult::Unknown,
            detail: detail.into(),
        }
    }
}

/// One entry of the check catalogue.
#[derive(Debug, Clone, Copy)]
pub struct CheckDefinition {
    pub id: CheckId,
    pub title: &'static str,
    pub severity: Severity,
    pub evaluate: fn(&ContainerInfo) -> Outcome,
}

/// The result of one check on one container, as reported by `scan`, the API and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: CheckId,
    pub title: &'static str,
    pub severity: Severity,
    pub result: CheckResult,
    pub detail: String,
}

/// Every check Lazaret runs, in CIS order.
pub fn catalogue() -> &'static [CheckDefinition] {
    checks::CATALOGUE
}

/// Looks a check up by id.
pub fn definition(id: &str) -> Option<&'static CheckDefinition> {
    checks::CATALOGUE.iter().find(|check| check.id == id)
}

/// Runs every check on one container.
pub fn assess(container: &ContainerInfo) -> Vec<Finding> {
    checks::CATALOGUE
        .iter()
        .map(|check| {
            let outcome = (check.evaluate)(container);
            Finding {
                check: check.id,
                title: check.title,
                severity: check.severity,
                result: outcome.result,
                detail: outcome.detail,
            }
        })
        .collect()
}
