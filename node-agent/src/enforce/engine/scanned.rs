//! What the scan saw inside a container ([`crate::scan`]), judged in the enforcement task: the
//! policies in force are evaluated with their `indicator` rules looking up the container's
//! runtime view *and* what was seen (process names, executables, remote addresses), and a
//! verdict that names an enforce-mode policy is carried out like any other (`source =
//! policy:<name>`, budgets, audit-only, exemptions and protection apply).

use std::fmt;

use lazaret_core::indicator::observed::{Observed, WithObserved};
use lazaret_core::{ContainerId, QuarantineRecord};

use super::Enforcer;

/// What a scan's finding led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOutcome {
    /// A policy acted on it.
    Quarantined(QuarantineRecord),
    /// A policy would have acted, and the quarantine manager refused (audit-only, blast radius,
    /// protected, …): why.
    Refused(String),
    /// No enforce-mode policy acts on what was seen (audit-mode ones are logged).
    NoPolicy,
    /// A quarantine is in force on the container already.
    InForce,
    /// The container left the inventory, or is not handled here.
    Unknown,
}

impl fmt::Display for ScanOutcome {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanOutcome::Quarantined(record) => {
                write!(formatter, "quarantined ({})", record.reason)
            }
            ScanOutcome::Refused(why) => write!(formatter, "refused: {why}"),
            ScanOutcome::NoPolicy => formatter.write_str("no enforce-mode policy acts on it"),
            ScanOutcome::InForce => formatter.write_str("already quarantined"),
            ScanOutcome::Unknown => formatter.write_str("no such container here"),
        }
    }
}

impl Enforcer {
    pub(super) async fn scanned(
        &mut self,
        container: &ContainerId,
        observed: &Observed,
    ) -> ScanOutcome {
        let Some(entry) = self.seen.get(container).cloned() else {
            return ScanOutcome::Unknown;
        };
        if !matches!(self.manager.in_force(container).await, Ok(None)) {
            return ScanOutcome::InForce;
        }
        let exemptions = self.exemptions().await;
        let index = self.indicators.clone();
        let lookup = WithObserved {
            index: &index,
            observed,
        };
        let Some(mut request) = self.request_for(&entry, &exemptions, &lookup) else {
            return ScanOutcome::NoPolicy;
        };
        request.reason = format!("{} (seen inside by the scan)", request.reason);
        let source = request.source.to_string();
        let result = self.manager.quarantine(request, &entry.info, false).await;
        self.report(container, &source, &result, None);
        match result {
            Ok(record) => ScanOutcome::Quarantined(record),
            Err(refusal) => ScanOutcome::Refused(refusal.to_string()),
        }
    }
}
