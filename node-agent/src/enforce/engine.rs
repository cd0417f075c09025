//! The enforcement task (DESIGN.md §2): the one owner of the [`QuarantineManager`], following
//! the inventory and turning the judge's verdicts into quarantines.
//!
//! - **At start** every stored quarantine is rolled forward ([`QuarantineManager::roll_forward`]);
//!   if the runtime cannot be reached yet, again at every sweep until it works.
//! - **On every inventory change** (an entry that appeared or was replaced, i.e. a new inspect of
//!   that container): a container with a quarantine in force is re-checked against a fresh
//!   inspect (so a stale view never reads as tampering); any other container that is running (or
//!   paused) is judged with its posture findings, and when the verdict names an enforce-mode
//!   policy with actions the container is quarantined with `source = policy:<name>`,
//!   `actor = agent`. A created container is judged when it starts. A container that left the
//!   inventory has its quarantine marked `gone`.
//! - **Every `recheck_interval`**: TTLs are expired and every quarantine in force is re-checked
//!   against a fresh inspect (unpaused, restarted, table deleted → re-applied, audited `tamper`).
//! - Refusals (audit-only, exemption, blast radius, protected, already quarantined) are logged
//!   outcomes; the manager has already audited the ones that need a record. Audit-mode policies
//!   only log what they would have done.
//!
//! Every container of a runtime the manager acts through is handled, and acted on through the
//! runtime that reports it ([`super::runtimes`]). Policies are loaded once at start;
//! reloading on change is not done yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lazaret_core::policy::{self, JudgeInput, NoIndicators, PolicySet};
use lazaret_core::quarantine::{QuarantineRequest, QuarantineSource, QuarantineState};
use lazaret_core::{ContainerId, ContainerInfo, ContainerState};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::quarantine::{AGENT_ACTOR, QuarantineError, QuarantineManager};
use crate::inventory::{InventoryEntry, InventorySnapshot};

/// The enforcement task's state. See the module docs.
pub struct Enforcer {
    manager: QuarantineManager,
    policies: PolicySet,
    node: String,
    recheck_interval: Duration,
    /// The inventory entry each container was last handled at.
    seen: HashMap<ContainerId, Arc<InventoryEntry>>,
    rolled_forward: bool,
}

impl Enforcer {
    /// Acts through the manager's runtimes.
    pub fn new(
        manager: QuarantineManager,
        policies: PolicySet,
        recheck_interval: Duration,
    ) -> Self {
        let node = manager.config().node.clone();
        Enforcer {
            manager,
            policies,
            node,
            recheck_interval,
            seen: HashMap::new(),
            rolled_forward: false,
        }
    }

    /// The manager, for tests and an in-process harness.
    pub fn manager(&mut self) -> &mut QuarantineManager {
        &mut self.manager
    }

    /// Runs until `shutdown` fires or the inventory closes.
    pub async fn run(
        mut self,
        mut snapshots: watch::Receiver<Arc<InventorySnapshot>>,
        shutdown: CancellationToken,
    ) {
        self.roll_forward().await;
        let mut ticker = tokio::time::interval(self.recheck_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        let first = snapshots.borrow_and_update().clone();
        self.observe(&first).await;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let snapshot = snapshots.borrow_and_update().clone();
                    self.observe(&snapshot).await;
                }
                _ = ticker.tick() => self.sweep().await,
            }
        }
        info!("enforcement stopped");
    }

    /// Rolls stored quarantines forward once; `false` (retried at the next sweep) on failure.
    pub async fn roll_forward(&mut self) -> bool {
        if self.rolled_forward {
            return true;
        }
        match self.manager.roll_forward().await {
            Ok(changed) => {
                for record in &changed {
                    info!(container = %record.container, state = %record.state, "quarantine rolled forward");
                }
                self.rolled_forward = true;
            }
            Err(error) => warn!(%error, "cannot roll quarantines forward yet; retrying"),
        }
        self.rolled_forward
    }

    /// Handles every container that appeared or changed since the last snapshot, and every one
    /// that left.
    pub async fn observe(&mut self, snapshot: &InventorySnapshot) {
        let mut changed = Vec::new();
        for (id, entry) in &snapshot.containers {
            if !self.manager.runtimes().handles(entry.info.runtime) {
                continue;
            }
            if self
                .seen
                .get(id)
                .is_some_and(|seen| Arc::ptr_eq(seen, entry))
            {
                continue;
            }
            self.seen.insert(id.clone(), entry.clone());
            changed.push(entry.clone());
        }
        for entry in changed {
            self.handle(&entry).await;
        }
        let gone: Vec<ContainerId> = self
            .seen
            .keys()
            .filter(|id| !snapshot.containers.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.seen.remove(&id);
            match self.manager.container_gone(&id).await {
                Ok(Some(record)) => {
                    info!(container = %id, state = %record.state, "quarantined container removed")
                }
                Ok(None) => {}
                Err(error) => error!(container = %id, %error, "cannot record a removed container"),
            }
        }
    }

    /// Expires due quarantines and re-checks every one in force against a fresh inspect.
    pub async fn sweep(&mut self) {
        if !self.roll_forward().await {
            return;
        }
        match self.manager.expire_due().await {
            Ok(expired) => {
                for record in expired {
                    info!(container = %record.container, "quarantine expired: released");
                }
            }
            Err(error) => error!(%error, "cannot expire quarantines"),
        }
        let in_force = match self.manager.all_in_force().await {
            Ok(records) => records,
            Err(error) => {
                error!(%error, "cannot read quarantines for the re-check");
                return;
            }
        };
        for record in in_force {
            if record.state == QuarantineState::Failed {
                continue;
            }
            self.recheck_fresh(&record.container).await;
        }
    }

    async fn handle(&mut self, entry: &InventoryEntry) {
        let info = &entry.info;
        match self.manager.in_force(&info.id).await {
            Ok(Some(_)) => {
                self.recheck_fresh(&info.id).await;
                return;
            }
            Ok(None) => {}
            Err(error) => {
                error!(container = %info.id, %error, "cannot read the container's quarantine");
                return;
            }
        }
        if !matches!(info.state, ContainerState::Running | ContainerState::Paused) {
            // Created containers are judged when they start; stopped ones need nothing.
            return;
        }
        let verdict = policy::judge(
            &self.policies,
            &JudgeInput {
                container: info,
                posture: &entry.findings,
                indicators: &NoIndicators,
                is_exempt: &|_| false,
            },
        );
        for would in &verdict.would_have {
            debug!(container = %info.id, ?would, "audit-mode policy would have acted");
        }
        let Some(policy_name) = verdict.enforcing_policy.clone() else {
            return;
        };
        if verdict.actions.is_empty() {
            return;
        }
        let reason = verdict
            .findings
            .iter()
            .find(|finding| finding.policy == policy_name)
            .or(verdict.findings.first())
            .map(|finding| finding.why.to_string())
            .unwrap_or_else(|| format!("violates {policy_name}"));
        let request = QuarantineRequest {
            container: info.id.clone(),
            node: self.node.clone(),
            actions: verdict.actions.clone(),
            ttl: verdict.ttl,
            reason,
            actor: AGENT_ACTOR.to_string(),
            source: QuarantineSource::Policy(policy_name.to_string()),
        };
        match self.manager.quarantine(request, info, false).await {
            Ok(record) => {
                info!(container = %info.id, policy = %policy_name, state = %record.state, "container quarantined")
            }
            Err(
                refusal @ (QuarantineError::AuditOnly { .. }
                | QuarantineError::Exempt { .. }
                | QuarantineError::Protected { .. }
                | QuarantineError::AlreadyQuarantined { .. }),
            ) => {
                info!(container = %info.id, policy = %policy_name, %refusal, "quarantine not carried out")
            }
            Err(refusal @ QuarantineError::BlastRadius { .. }) => {
                error!(container = %info.id, policy = %policy_name, %refusal, "ALERT: quarantine refused")
            }
            Err(error) => {
                error!(container = %info.id, policy = %policy_name, %error, "quarantine failed")
            }
        }
    }

    /// Re-checks `container`'s quarantine against a fresh inspect; a container the runtime no
    /// longer has is marked gone.
    async fn recheck_fresh(&mut self, container: &ContainerId) {
        let fresh: Option<ContainerInfo> = match self.manager.runtimes().inspect(container).await {
            Ok(fresh) => fresh,
            Err(error) => {
                warn!(%container, %error, "cannot inspect a quarantined container; re-checking later");
                return;
            }
        };
        let result = match fresh {
            Some(info) => self.manager.recheck(&info).await,
            None => self.manager.container_gone(container).await,
        };
        match result {
            Ok(Some(record)) => {
                info!(%container, state = %record.state, "quarantine re-checked and re-applied")
            }
            Ok(None) => {}
            Err(error) => error!(%container, %error, "quarantine re-check failed"),
        }
    }
}

#[cfg(test)]
mod tests;
