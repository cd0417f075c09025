//! The fleet-wide enforce / audit-only switch, set by an operator (`SetFleetMode`) or by the
//! fleet's blast-radius budget: stored first, then gossiped as the controller's sealed
//! `fleet_mode` value, which agents follow and keep (DESIGN.md §4). Also the budget's loop.

use std::sync::Arc;
use std::time::Duration;

use lazaret_core::gossip::{FleetModeValue, GossipKey};
use lazaret_core::quarantine::QuarantineRecord;
use lazaret_core::quarantine::budget::FleetBudget;
use lazaret_core::roles::Role;
use lazaret_fleet::gossip::Gossip;
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::state::State;

/// Stores `mode` and gossips it.
pub async fn publish(state: &State, gossip: &Gossip, mode: &FleetModeValue) -> anyhow::Result<()> {
    state.put_fleet_mode(mode)?;
    gossip.publish(&GossipKey::FleetMode, mode).await?;
    info!(
        audit_only = mode.audit_only,
        actor = mode.actor,
        reason = mode.reason,
        "fleet-wide switch set"
    );
    Ok(())
}

/// Watches the gossiped quarantines and flips the fleet to audit-only when automated
/// quarantines spend the budget.
pub struct BudgetWatch {
    pub gossip: Arc<Gossip>,
    pub state: State,
    pub budget: FleetBudget,
    /// The controller's name: the switch's actor.
    pub name: String,
    pub tripped: Counter,
    pub interval: Duration,
}

impl BudgetWatch {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.round().await {
                warn!(error = %format!("{error:#}"), "the blast-radius budget was not checked");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    async fn round(&self) -> anyhow::Result<()> {
        let current = self.state.fleet_mode()?;
        if current.as_ref().is_some_and(|mode| mode.audit_only) {
            return Ok(());
        }
        let quarantines: Vec<QuarantineRecord> = self
            .gossip
            .peers()
            .await
            .into_iter()
            .filter(|view| view.role == Some(Role::Node) && view.problem.is_none())
            .flat_map(|view| view.quarantine_summaries)
            .collect();
        let now = chrono::Utc::now().timestamp_millis();
        let last_switch = current.map(|mode| mode.since_unix_ms);
        let Some(exceeded) = self.budget.exceeded(&quarantines, now, last_switch) else {
            return Ok(());
        };
        let reason = format!(
            "blast-radius budget: {} automated quarantines in the last {}s across the fleet (budget {})",
            exceeded.count,
            self.budget.window.as_secs(),
            self.budget.max
        );
        error!(%reason, "ALERT: the fleet goes audit-only; review, then `lazaretctl fleet mode enforce`");
        self.tripped.inc();
        let mode = FleetModeValue {
            audit_only: true,
            since_unix_ms: now,
            actor: self.name.clone(),
            reason,
        };
        publish(&self.state, &self.gossip, &mode).await
    }
}
