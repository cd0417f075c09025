//! What audit-mode policies would have done (DESIGN.md §3, `mode: audit`): recorded in the audit
//! chain once per (container, policy) while the agent runs, as `quarantine` records with source
//! `policy:<name>` and outcome `would-have: <actions> (audit mode)`, so that `lazaretctl policy
//! report NAME` can show a policy's blast radius across the fleet before it is switched to
//! enforce. The judge reaches the same verdict at every re-judge; only the first is written
//! ([`Enforcer::record_once`], which the gaps of judgement share).

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

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

/// What was already recorded for each container (a policy's would-have, a rule's gap), by a
/// hash of what it names ([`noted_key`]): a re-judge checks without allocating.
#[derive(Default)]
pub(super) struct Noted(HashMap<ContainerId, HashSet<u64>>);

impl Noted {
    fn contains(&self, container: &ContainerId, key: u64) -> bool {
        self.0
            .get(container)
            .is_some_and(|keys| keys.contains(&key))
    }

    /// How many keys are remembered.
    fn len(&self) -> usize {
        self.0.values().map(HashSet::len).sum()
    }

    /// Remembers `key` for `container`; past [`MAX_NOTED`] keys the memory starts over first
    /// (everything is then recorded once more). Called only after an audit write, so counting
    /// here costs nothing that matters.
    fn insert(&mut self, container: &ContainerId, key: u64) {
        if self.len() >= MAX_NOTED {
            self.0.clear();
        }
        self.0.entry(container.clone()).or_default().insert(key);
    }

    /// Forgets what was recorded for a container that is gone.
    pub(super) fn forget(&mut self, container: &ContainerId) {
        self.0.remove(container);
    }
}

/// The key [`Enforcer::record_once`] remembers `parts` by. A 64-bit hash: two different findings
/// for one container would have to collide for the second to go unrecorded.
pub(super) fn noted_key(parts: &[&str]) -> u64 {
    let mut hasher = DefaultHasher::new();
    parts.hash(&mut hasher);
    hasher.finish()
}

impl Enforcer {
    /// Records each hit not recorded yet for this container.
    pub(super) async fn note_would_have(&mut self, info: &ContainerInfo, hits: Vec<AuditModeHit>) {
        for hit in hits {
            debug!(container = %info.id, policy = %hit.policy, "audit-mode policy would have acted");
            let key = noted_key(&["would-have", &hit.policy]);
            self.record_once(&info.id, key, || AuditEntry {
                actor: AGENT_ACTOR.to_string(),
                on_behalf_of: None,
                action: "quarantine".into(),
                target: info.id.to_string(),
                reason: hit.why,
                source: format!("policy:{}", hit.policy),
                outcome: format!("would-have: {} (audit mode)", actions_text(&hit.actions)),
            })
            .await;
        }
    }

    /// Writes the entry `entry` makes unless `key` was recorded already for `container`; `true`
    /// when it wrote it.
    pub(super) async fn record_once(
        &mut self,
        container: &ContainerId,
        key: u64,
        entry: impl FnOnce() -> AuditEntry,
    ) -> bool {
        if self.noted.contains(container, key) {
            return false;
        }
        let entry = entry();
        let what = entry.action.clone();
        match self.manager.audit(entry).await {
            Ok(()) => {
                self.noted.insert(container, key);
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
        self.noted = Noted::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_noted_is_kept_per_container_forgotten_with_it_and_bounded() {
        let (a, b) = (ContainerId::new("a"), ContainerId::new("b"));
        let gap = noted_key(&["gap", "p", "r", "error"]);
        let would_have = noted_key(&["would-have", "p"]);
        assert_ne!(gap, would_have);
        assert_ne!(noted_key(&["ab", "c"]), noted_key(&["a", "bc"]));
        let mut noted = Noted::default();
        noted.insert(&a, gap);
        noted.insert(&a, gap);
        noted.insert(&a, would_have);
        noted.insert(&b, gap);
        assert!(noted.contains(&a, gap) && noted.contains(&b, gap));
        assert!(!noted.contains(&b, would_have));
        assert_eq!(noted.len(), 3);
        noted.forget(&a);
        assert!(!noted.contains(&a, gap) && noted.contains(&b, gap));
        assert_eq!(noted.len(), 1);
        // Full (b's key and MAX_NOTED - 1 more): it starts over rather than growing.
        for key in 1..MAX_NOTED as u64 {
            noted.insert(&ContainerId::new("c"), key);
        }
        noted.insert(&a, gap);
        assert!(noted.contains(&a, gap) && !noted.contains(&b, gap));
        assert_eq!(noted.len(), 1);
    }
}
