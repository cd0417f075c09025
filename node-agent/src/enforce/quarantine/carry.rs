//! Carrying out a stored quarantine: its actions run (the network cut alongside the runtime
//! actions, [`QuarantineManager::perform`]), then each outcome is audited (gaps as
//! `enforcement-gap`) and the quarantine stored `applied` or `failed`
//! ([`QuarantineManager::conclude`]). The record is stored `requested` or `tampered` before any
//! of this runs.

use lazaret_core::ContainerInfo;
use lazaret_core::quarantine::{
    self as core_quarantine, Action, QuarantineEvent, QuarantineRecord,
};

use super::{QuarantineManager, QuarantineResult, StepOutcome};

impl QuarantineManager {
    /// Carries out `record`'s actions (it is `requested` or `tampered`), then stores `applied`
    /// or `failed`.
    pub(super) async fn carry_out(
        &self,
        record: QuarantineRecord,
        info: &ContainerInfo,
    ) -> QuarantineResult<QuarantineRecord> {
        let outcomes = self.perform(&record, info).await;
        self.conclude(record, outcomes).await
    }

    /// Runs `record`'s actions: the network cut concurrently with the runtime actions (which run
    /// in order), so a `[network-cut, pause]` quarantine takes as long as the slower of the two.
    /// Outcomes in the record's order.
    pub(super) async fn perform(
        &self,
        record: &QuarantineRecord,
        info: &ContainerInfo,
    ) -> Vec<(Action, StepOutcome)> {
        let cut = async {
            match record.actions.contains(&Action::NetworkCut) {
                true => Some(self.act(Action::NetworkCut, info, record.scope).await),
                false => None,
            }
        };
        let runtime_actions = async {
            let mut outcomes = Vec::new();
            for &action in &record.actions {
                if action != Action::NetworkCut {
                    outcomes.push(self.act(action, info, record.scope).await);
                }
            }
            outcomes
        };
        let (mut cut, runtime_outcomes) = tokio::join!(cut, runtime_actions);
        let mut runtime_outcomes = runtime_outcomes.into_iter();
        record
            .actions
            .iter()
            .filter_map(|&action| {
                let outcome = match action {
                    Action::NetworkCut => cut.take(),
                    _ => runtime_outcomes.next(),
                };
                outcome.map(|outcome| (action, outcome))
            })
            .collect()
    }

    /// Audits each action's outcome (gaps as `enforcement-gap`), then stores and audits the
    /// quarantine `applied` or `failed`: one durable write for all of it.
    pub(super) async fn conclude(
        &self,
        record: QuarantineRecord,
        outcomes: Vec<(Action, StepOutcome)>,
    ) -> QuarantineResult<QuarantineRecord> {
        let mut entries = Vec::new();
        let mut gaps = Vec::new();
        let mut any_failed = false;
        let mut effective = 0usize;
        for (action, outcome) in outcomes {
            let text = match &outcome {
                StepOutcome::Done => "applied".to_string(),
                StepOutcome::AlreadyInForce => "already in force".to_string(),
                StepOutcome::Skipped(why) => format!("skipped: {why}"),
                StepOutcome::Failed(why) => format!("failed: {why}"),
            };
            entries.push(self.entry(&record, &record.actor, action.as_str(), text.clone()));
            match outcome {
                StepOutcome::Done | StepOutcome::AlreadyInForce => {
                    effective += usize::from(action.affects_container());
                }
                StepOutcome::Skipped(why) | StepOutcome::Failed(why) => {
                    any_failed |= text.starts_with("failed");
                    tracing::warn!(container = %record.container, %action, %why, "enforcement gap");
                    entries.push(self.entry(
                        &record,
                        &record.actor,
                        "enforcement-gap",
                        format!("{action}: {text}"),
                    ));
                    gaps.push(format!("{action}: {why}"));
                }
            }
        }
        let nothing_held = effective == 0
            && record
                .actions
                .iter()
                .any(|action| action.affects_container());
        let now = self.clock.now_unix_ms();
        let (event, outcome) = if any_failed || nothing_held {
            (
                QuarantineEvent::ActionFailed,
                format!("failed: {}", gaps.join("; ")),
            )
        } else if gaps.is_empty() {
            (QuarantineEvent::Applied, "applied".to_string())
        } else {
            (
                QuarantineEvent::Applied,
                format!("applied with gaps: {}", gaps.join("; ")),
            )
        };
        let finished = core_quarantine::apply(&record, event, now)?;
        entries.push(self.entry(&finished, &finished.actor, "quarantine", outcome));
        self.store_with_audit(entries, &finished).await?;
        Ok(finished)
    }
}
