//! Detections in the enforcement task (DESIGN.md §3, `kind: Response`): a detection about a
//! container this agent owns is answered by the first enforce-mode response that applies, once
//! per (container, rule) within the dedup window, through the same quarantine manager as every
//! other automated action (so it shares the blast-radius budget, audit-only and protection). What
//! happens is audited either way: a quarantine by the manager; an unknown container, a repeat,
//! or no response here.

use lazaret_core::audit::AuditEntry;
use lazaret_core::detection::{ContainerDetection, respond};
use lazaret_core::quarantine::{QuarantineRequest, QuarantineSource};
use lazaret_core::{ContainerId, QuarantineRecord};

use super::{AGENT_ACTOR, Enforcer};

/// The longest detector output kept in a quarantine's reason.
const OUTPUT_CHARS: usize = 200;

/// What a detection led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectOutcome {
    /// The response acted.
    Quarantined {
        response: String,
        record: QuarantineRecord,
    },
    /// Refused by the quarantine manager (audit-only, blast radius, protected, already
    /// quarantined, …): why.
    Refused { response: String, reason: String },
    /// The same rule on the same container acted within the dedup window.
    Repeated { container: ContainerId },
    /// No enforce-mode response applies; the audit-mode ones that would have.
    NoResponse {
        container: ContainerId,
        would_have: Vec<String>,
    },
    /// No container of this agent matches the id (or the prefix is ambiguous).
    Unmatched { why: String },
}

impl DetectOutcome {
    /// A word for logs, metrics and answers.
    pub fn as_str(&self) -> &'static str {
        match self {
            DetectOutcome::Quarantined { .. } => "quarantined",
            DetectOutcome::Refused { .. } => "refused",
            DetectOutcome::Repeated { .. } => "repeated",
            DetectOutcome::NoResponse { .. } => "no-response",
            DetectOutcome::Unmatched { .. } => "unmatched",
        }
    }
}

impl Enforcer {
    pub(super) async fn detect(&mut self, found: ContainerDetection) -> DetectOutcome {
        let detection = &found.detection;
        let source = QuarantineSource::Detection(detection.rule.clone()).to_string();
        let snapshot = self
            .inventory
            .as_ref()
            .map(|inventory| inventory.borrow().clone());
        let matching: Vec<_> = snapshot
            .iter()
            .flat_map(|snapshot| snapshot.containers.values())
            .filter(|entry| entry.info.id.as_str().starts_with(&found.container))
            .collect();
        let note = |outcome: String, target: String| AuditEntry {
            actor: AGENT_ACTOR.to_string(),
            on_behalf_of: None,
            action: "detection".into(),
            target,
            reason: format!("{} ({})", detection.rule, detection.severity),
            source: source.clone(),
            outcome,
        };
        let entry = match matching.as_slice() {
            [entry] => (*entry).clone(),
            others => {
                let why = match others.len() {
                    0 => format!("no container {} on this node", found.container),
                    count => format!("{} matches {count} containers", found.container),
                };
                self.write(note(format!("unmatched: {why}"), found.container.clone()))
                    .await;
                return DetectOutcome::Unmatched { why };
            }
        };
        let info = &entry.info;
        let response = match respond(&self.policies, detection, info) {
            Ok(response) => response.clone(),
            Err(would) => {
                let would_have: Vec<String> = would.iter().map(|r| r.name.clone()).collect();
                let outcome = match would_have.is_empty() {
                    true => "no response applies".to_string(),
                    false => format!("would-have: {} (audit mode)", would_have.join(", ")),
                };
                self.write(note(outcome, info.id.to_string())).await;
                return DetectOutcome::NoResponse {
                    container: info.id.clone(),
                    would_have,
                };
            }
        };
        let now = self.manager.now_unix_ms();
        if !self.dedup.admit(info.id.as_str(), &detection.rule, now) {
            self.write(note(
                "repeated within the dedup window".into(),
                info.id.to_string(),
            ))
            .await;
            return DetectOutcome::Repeated {
                container: info.id.clone(),
            };
        }
        let output: String = found.output.chars().take(OUTPUT_CHARS).collect();
        let request = QuarantineRequest {
            container: info.id.clone(),
            node: self.node.clone(),
            actions: response.actions.clone(),
            ttl: response.ttl,
            reason: format!(
                "detection {} ({}) answered by {}: {output}",
                detection.rule, detection.severity, response.name
            ),
            actor: AGENT_ACTOR.to_string(),
            source: QuarantineSource::Detection(detection.rule.clone()),
            scope: Default::default(),
        };
        let result = self.manager.quarantine(request, info, false).await;
        self.report(&info.id, &source, &result, None);
        match result {
            Ok(record) => DetectOutcome::Quarantined {
                response: response.name,
                record,
            },
            Err(error) => DetectOutcome::Refused {
                response: response.name,
                reason: error.to_string(),
            },
        }
    }

    async fn write(&self, entry: AuditEntry) {
        if let Err(error) = self.manager.audit(entry).await {
            tracing::error!(%error, "cannot audit a detection");
        }
    }
}
