//! The fleet's blast-radius budget (DESIGN.md §4): how many automated quarantines (a policy's,
//! an indicator's, a detection's; never an operator's) the whole fleet may apply within a window
//! before the controller flips every agent to audit-only. Pure: the controller passes the
//! gossiped quarantine summaries, the time, and when the fleet-wide switch last changed.

use std::time::Duration;

use super::{QuarantineRecord, QuarantineSource};

/// The budget: at most `max` automated quarantines started within `window`; 0 disables it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetBudget {
    pub max: usize,
    pub window: Duration,
}

/// The budget is spent: how many automated quarantines started within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub count: usize,
}

impl FleetBudget {
    /// Whether `quarantines` (every node's in force) spend the budget at `now_unix_ms`. Only an
    /// episode with a quarantine newer than `last_switch_unix_ms` counts: after an operator puts
    /// the fleet back to enforcing, the quarantines already seen do not trip it again at once.
    pub fn exceeded(
        &self,
        quarantines: &[QuarantineRecord],
        now_unix_ms: i64,
        last_switch_unix_ms: Option<i64>,
    ) -> Option<Exceeded> {
        if self.max == 0 {
            return None;
        }
        let window_start = now_unix_ms.saturating_sub(self.window.as_millis() as i64);
        let recent: Vec<&QuarantineRecord> = quarantines
            .iter()
            .filter(|record| record.source != QuarantineSource::Operator)
            .filter(|record| !record.state.is_terminal())
            .filter(|record| record.since_unix_ms >= window_start)
            .collect();
        let fresh = recent
            .iter()
            .any(|record| last_switch_unix_ms.is_none_or(|switch| record.since_unix_ms > switch));
        (recent.len() > self.max && fresh).then_some(Exceeded {
            count: recent.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ContainerId;
    use crate::quarantine::QuarantineState;

    fn record(container: &str, source: QuarantineSource, since: i64) -> QuarantineRecord {
        QuarantineRecord {
            container: ContainerId::new(container),
            node: "node-1".into(),
            state: QuarantineState::Applied,
            actions: Vec::new(),
            since_unix_ms: since,
            expires_unix_ms: None,
            reason: String::new(),
            actor: "agent".into(),
            source,
            scope: Default::default(),
            releasing: None,
        }
    }

    #[test]
    fn only_recent_automated_quarantines_in_force_spend_the_budget() {
        let budget = FleetBudget {
            max: 2,
            window: Duration::from_secs(60),
        };
        let policy = || QuarantineSource::Policy("p".into());
        let now = 1_000_000;
        let mut fleet = vec![
            record("a", policy(), now - 1_000),
            record("b", policy(), now - 2_000),
            record("c", QuarantineSource::Operator, now - 1_000),
            record("d", policy(), now - 120_000),
        ];
        assert_eq!(budget.exceeded(&fleet, now, None), None, "2 of 2");
        let mut released = record("e", policy(), now - 500);
        released.state = QuarantineState::Released;
        fleet.push(released);
        assert_eq!(
            budget.exceeded(&fleet, now, None),
            None,
            "released ones do not count"
        );
        fleet.push(record(
            "f",
            QuarantineSource::Detection("r".into()),
            now - 100,
        ));
        assert_eq!(
            budget.exceeded(&fleet, now, None),
            Some(Exceeded { count: 3 })
        );
        // An operator switched back to enforcing after all of them: not again at once.
        assert_eq!(budget.exceeded(&fleet, now, Some(now - 50)), None);
        fleet.push(record("g", policy(), now));
        assert_eq!(
            budget.exceeded(&fleet, now, Some(now - 50)),
            Some(Exceeded { count: 4 })
        );
        let off = FleetBudget { max: 0, ..budget };
        assert_eq!(off.exceeded(&fleet, now, None), None);
    }
}
