//! Gaps of judgement (DESIGN.md §3, `on_error`): a rule that could not be evaluated (data the
//! runtime did not report, a CEL error, indicators in doubt because their bundle is past its
//! expiry) leaves the agent unsure. The policy's `on_error` decides: `fail-open` lets the
//! container run, `fail-closed` counts the rule as violated. Either way it is an enforcement gap:
//! audited once per (container, rule, error) as an `enforcement-gap` record with source
//! `policy:<name>` and the choice in the outcome, logged, and counted in
//! `lazaret_enforcement_gaps_total`.
//!
//! The same choice applies when the runtime fails an action (a flaky API): a quarantine of a
//! `fail-closed` policy that ended `failed` is retried by the agent at every sweep until it holds;
//! one of a `fail-open` policy (or any other source) stays `failed`, alerted, for an operator.
//! Retries back off (doubling from one sweep up to [`MAX_RETRY_BACKOFF`]) so that a container the
//! runtime can never pause does not fill the audit trail.

use lazaret_core::ContainerInfo;
use lazaret_core::audit::AuditEntry;
use lazaret_core::policy::{EvaluationError, RuleErrorPolicy};
use lazaret_core::quarantine::{QuarantineRecord, QuarantineSource, QuarantineState};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use lazaret_core::ContainerId;
use tracing::{info, warn};

use super::audit_mode::noted_key;
use super::{AGENT_ACTOR, Enforcer};

/// The longest wait between two retries of a fail-closed quarantine.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(300);

/// When each failed fail-closed quarantine may be retried next, and the wait after that.
#[derive(Default)]
pub(super) struct Retries(HashMap<ContainerId, (Instant, Duration)>);

/// The audit `action` of a gap (shared with actions that proved impossible).
pub const GAP_ACTION: &str = "enforcement-gap";

/// The outcome a gap is audited with.
pub fn gap_outcome(gap: &EvaluationError) -> String {
    if gap.counted_as_violation {
        format!("fail-closed: rule {} counted as violated", gap.rule)
    } else {
        format!(
            "fail-open: rule {} counted as clear; the container runs",
            gap.rule
        )
    }
}

impl Enforcer {
    /// Records and counts each gap not recorded yet for this container.
    pub(super) async fn note_gaps(&mut self, info: &ContainerInfo, gaps: Vec<EvaluationError>) {
        for gap in gaps {
            let key = noted_key(&["gap", &gap.policy, &gap.rule, &gap.error]);
            let entry = || AuditEntry {
                actor: AGENT_ACTOR.to_string(),
                on_behalf_of: None,
                action: GAP_ACTION.into(),
                target: info.id.to_string(),
                reason: gap.error.clone(),
                source: format!("policy:{}", gap.policy),
                outcome: gap_outcome(&gap),
            };
            if self.record_once(&info.id, key, entry).await {
                warn!(container = %info.id, policy = %gap.policy, rule = %gap.rule, error = %gap.error, fail_closed = gap.counted_as_violation, "enforcement gap: a rule could not be evaluated");
                self.metrics.count_enforcement_gap();
            }
        }
    }
}

impl Enforcer {
    /// Whether `record` came from a policy in force with `on_error: fail-closed`.
    fn is_fail_closed(&self, record: &QuarantineRecord) -> bool {
        let QuarantineSource::Policy(name) = &record.source else {
            return false;
        };
        self.policies
            .policies
            .iter()
            .any(|policy| &policy.name == name && policy.on_error == RuleErrorPolicy::FailClosed)
    }

    /// Retries the `failed` quarantines of fail-closed policies (see the module docs).
    pub(super) async fn retry_fail_closed(&mut self, failed: Vec<QuarantineRecord>) {
        let now = Instant::now();
        let failing: Vec<ContainerId> = failed
            .iter()
            .map(|record| record.container.clone())
            .collect();
        self.retries
            .0
            .retain(|container, _| failing.contains(container));
        for record in failed {
            if !self.is_fail_closed(&record) {
                continue;
            }
            let first_wait = self.recheck_interval;
            let (due, wait) = self
                .retries
                .0
                .entry(record.container.clone())
                .or_insert((now, first_wait));
            if *due > now {
                continue;
            }
            *due = now + *wait;
            *wait = (*wait * 2).min(MAX_RETRY_BACKOFF);
            let info = match self.manager.runtimes().inspect(&record.container).await {
                Ok(Some(info)) => info,
                // Gone: the next re-check marks it so; unreachable: the next sweep tries again.
                Ok(None) => continue,
                Err(error) => {
                    warn!(container = %record.container, %error, "fail-closed quarantine not retried: the runtime does not answer");
                    continue;
                }
            };
            let source = record.source.to_string();
            let result = self.manager.retry(&info, super::AGENT_ACTOR).await;
            if let Ok(retried) = &result
                && retried.state == QuarantineState::Applied
            {
                info!(container = %record.container, %source, "fail-closed quarantine retried: it holds now");
            }
            self.report(&record.container, &source, &result, None);
        }
    }
}
