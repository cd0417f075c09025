//! The one severity scale used everywhere: findings, policies, indicators, detections.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How bad something is, ordered `info < low < medium < high < critical`.
///
/// Comparisons such as `--fail-on high` rely on the derived ordering, so the variants must stay
/// in ascending order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Maps a Falco rule priority onto our scale (DESIGN.md §3). Unknown priorities are `None`
    /// so that the caller decides (and reports) rather than guessing.
    pub fn from_falco_priority(priority: &str) -> Option<Severity> {
        match priority.to_ascii_lowercase().as_str() {
            "emergency" | "alert" | "critical" => Some(Severity::Critical),
            "error" => Some(Severity::High),
            "warning" => Some(Severity::Medium),
            "notice" | "informational" | "info" => Some(Severity::Low),
            "debug" => Some(Severity::Info),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The error for a severity that is not on the scale; its message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {given:?}: expected one of info, low, medium, high, critical")]
pub struct UnknownSeverity {
    pub given: String,
}

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|severity| severity.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownSeverity {
                given: text.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_is_ascending() {
        assert!(Severity::Info < Severity::Low);
        assert!(Severity::Low < Severity::Medium);
        assert!(Severity::Medium < Severity::High);
        assert!(Severity::High < Severity::Critical);
    }

    #[test]
    fn parses_case_insensitively_and_rejects_unknown() {
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        let error = "severe".parse::<Severity>().unwrap_err();
        assert!(error.to_string().contains("expected one of"));
    }

    #[test]
    fn falco_priorities_map_as_designed() {
        let cases = [
            ("Emergency", Severity::Critical),
            ("Alert", Severity::Critical),
            ("Critical", Severity::Critical),
            ("Error", Severity::High),
            ("Warning", Severity::Medium),
            ("Notice", Severity::Low),
            ("Informational", Severity::Low),
            ("Debug", Severity::Info),
        ];
        for (priority, expected) in cases {
            assert_eq!(
                Severity::from_falco_priority(priority),
                Some(expected),
                "{priority}"
            );
        }
        assert_eq!(Severity::from_falco_priority("loud"), None);
    }

    #[test]
    fn serializes_lowercase() {
        assert_eq!(
            serde_json::to_string(&Severity::Medium).unwrap(),
            "\"medium\""
        );
    }
}
