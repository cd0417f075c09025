//! What audit-mode policies would have done (DESIGN.md §3, `mode: audit`): recorded in the audit
//! chain once per (container, policy) while the agent runs, as `quarantine` records with source
//! `policy:<name>` and outcome `would-have: <actions> (audit mode)`, so that `lazaretctl policy
//! report NAME` can show a policy's blast radius across the fleet before it is switched to
//! enforce. The judge reaches the same verdict at every re-judge; only the first is written
//! ([`Enforcer::record_once`], which the gaps of judgement share).

use std::collections::HashSet;

use lazaret_core::audit::AuditEntry;
use lazaret_core::policy::EvaluationError;
use lazaret_core::quarantine::QuarantineRequest;
use lazaret_core::{Action, ContainerId, ContainerInfo};
use tracing::{debug, error};

use super::{AGENT_ACTOR, Enforcer};
use crate::enforce::quarantine::actions_text;

/// Pairs remembered before the memory starts over (then each is recorded once more).
const MAX_NOTED: usize = 100_000;

/// The judge's answer for one container.
pub(super) struct Judged {
    /// What the enforce-mode policies call for, if anything.
    pub(super) request: Option<QuarantineRequest>,
    /// What each audit-mode policy that matched would have done.
    pub(super) audit_mode: Vec<AuditModeHit>,
    /// The rules that could not be evaluated, and how `on_error` counted them.
    pub(super) gaps: Vec<EvaluationError>,
}

/// One audit-mode policy that would have acted.
pub(super) struct AuditModeHit {
    pub(super) policy: String,
    pub(super) actions: Vec<Action>,
    pub(super) why: String,
}

/// The (container, what) pairs already recorded: a policy's would-have, a rule's gap.
#[derive(Default)]
pub(super) struct Noted(HashSet<(ContainerId, String)>);

impl Enforcer {
    /// Records each hit not recorded yet for this container.
    pub(super) async fn note_would_have(&mut self, info: &ContainerInfo, hits: Vec<AuditModeHit>) {
        for hit in hits {
            debug!(container = %info.id, policy = %hit.policy, "audit-mode policy would have acted");
            let entry = AuditEntry {
                actor: AGENT_ACTOR.to_string(),
                on_behalf_of: None,
                action: "quarantine".into(),
                target: info.id.to_string(),
                reason: hit.why,
                source: format!("policy:{}", hit.policy),
                outcome: format!("would-have: {} (audit mode)", actions_text(&hit.actions)),
            };
            self.record_once((info.id.clone(), hit.policy), entry).await;
        }
    }

    /// Writes `entry` unless `key` was recorded already; `true` when it wrote it.
    pub(super) async fn record_once(
        &mut self,
        key: (ContainerId, String),
        entry: AuditEntry,
    ) -> bool {
        if self.noted.0.contains(&key) {
            return false;
        }
        if self.noted.0.len() >= MAX_NOTED {
            self.noted.0.clear();
        }
        let what = entry.action.clone();
        match self.manager.audit(entry).await {
            Ok(()) => {
                self.noted.0.insert(key);
                true
            }
            Err(error) => {
                error!(%error, %what, "cannot record what the judge found");
                false
            }
        }
    }

    /// Forgets what was recorded (new policies or indicators: their verdicts are recorded
    /// afresh).
    pub(super) fn forget_noted(&mut self) {
        self.noted.0.clear();
    }
}
