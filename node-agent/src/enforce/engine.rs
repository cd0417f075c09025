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
//!   `actor = agent`. Policies the container is exempt from (released earlier) are skipped by
//!   the judge, so another policy it breaks still decides. A container that left the inventory has its quarantine marked `gone`.
//! - **Fast path** (DESIGN.md §2): a *created* container is judged at once and the quarantine it
//!   deserves is kept ready. When its [`StartSignal`] arrives (the watcher sends it before it
//!   inspects), the quarantine is carried out from that verdict without another inspect: the
//!   start makes it running, the network namespace comes from the start event's PID or the
//!   runtime's cheap lookup
//!   ([`crate::runtime::ContainerRuntime::started_netns`]); only when neither tells is
//!   the container inspected. The time from reading the start event to the actions done is
//!   [`Enforced::since_start_event`] and the `lazaret_start_to_enforced_seconds` histogram. A
//!   lost signal costs nothing but time: the inspect that follows is judged as usual.
//! - **Every `recheck_interval`**: TTLs are expired and every quarantine in force is re-checked
//!   against a fresh inspect (unpaused, restarted, table deleted → re-applied, audited `tamper`),
//!   one at a time between other work, so the fast path never waits behind a whole sweep.
//! - Refusals (audit-only, exemption, blast radius, protected, already quarantined) are logged
//!   outcomes; the manager has already audited the ones that need a record. Audit-mode policies
//!   only log what they would have done.
//!
//! - **Policy reload** (with [`Enforcer::with_policy_reload`]): the policy files are re-read
//!   every interval ([`super::policy_files`]); a set that loads replaces the one in force and every
//!   container is judged again (quarantines already in force stay until released); one that does
//!   not is logged with its errors and counted, and the previous set stays.
//!
//! - **Commands** through an [`EnforcerHandle`] (operators through the API, in-process test
//!   harnesses): quarantine a container (as the inventory last saw it, inspected when the
//!   inventory does not have it; `force` overrides protection) and
//!   release one, carried out by this task between its other work, so the manager keeps one
//!   owner.
//!
//! Every container of a runtime the manager acts through is handled, and acted on through the
//! runtime that reports it ([`super::runtimes`]). Every quarantine carried out is published as
//! an [`Enforced`] to [`Enforcer::subscribe`]rs.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use lazaret_core::detection::DedupWindow;
use lazaret_core::indicator::index::IndicatorIndex;
use lazaret_core::policy::{self, IndicatorLookup, JudgeInput, PolicySet};
use lazaret_core::quarantine::{
    ExemptionSet, QuarantineRecord, QuarantineRequest, QuarantineSource, QuarantineState,
};
use lazaret_core::{ContainerId, ContainerInfo, ContainerState};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::policy_files::{PolicyFiles, Reload};
use super::quarantine::{AGENT_ACTOR, QuarantineError, QuarantineManager, QuarantineResult};
use crate::inventory::{InventoryEntry, InventorySnapshot};
use crate::metrics::Metrics;
use crate::watcher::StartSignal;

/// How many [`Enforced`] events a slow subscriber may fall behind before it misses some.
const ENFORCED_BUFFER: usize = 1024;

/// A quarantine the enforcement task carried out (applied, or failed with gaps).
#[derive(Debug, Clone)]
pub struct Enforced {
    pub record: QuarantineRecord,
    /// Fast path only: from reading the container's start event to its actions done (before
    /// their outcomes are audited).
    pub since_start_event: Option<Duration>,
}

/// How long the same detection (container, rule) acts only once, unless configured.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(60);

mod audit_mode;
mod commands;
pub mod detect;
mod fast_path;
mod gaps;
mod lapsed;
pub mod scanned;

use self::audit_mode::{AuditModeHit, Judged, Noted};
pub use self::commands::EnforcerHandle;
use self::commands::{COMMAND_BUFFER, Command};
use self::fast_path::Prejudged;
use self::gaps::Retries;

/// The enforcement task's state. See the module docs.
pub struct Enforcer {
    manager: QuarantineManager,
    policies: PolicySet,
    /// The indicators in force (the indicators bundle's), which policies' `indicator` rules
    /// look up.
    indicators: Arc<IndicatorIndex>,
    /// Detections that acted, per (container, rule), within the dedup window.
    dedup: DedupWindow,
    node: String,
    recheck_interval: Duration,
    /// The inventory entry each container was last handled at.
    seen: HashMap<ContainerId, Arc<InventoryEntry>>,
    /// Created containers that deserve a quarantine as soon as they start.
    prejudged: HashMap<ContainerId, Prejudged>,
    /// Quarantines the current sweep has still to re-check.
    pending_rechecks: VecDeque<ContainerId>,
    /// What audit-mode policies would have done and the gaps of judgement, recorded once per
    /// (container, policy or rule).
    noted: Noted,
    /// When each failed quarantine of a fail-closed policy is retried next.
    retries: Retries,
    /// The time (Unix ms, the manager's clock) exemptions were last looked at for lapses.
    exemptions_checked_at: i64,
    /// The inventory, once running: a start whose create this task has not judged yet is judged
    /// from its newest entry.
    inventory: Option<watch::Receiver<Arc<InventorySnapshot>>>,
    rolled_forward: bool,
    metrics: Metrics,
    enforced: broadcast::Sender<Enforced>,
    policy_files: Option<(PolicyFiles, Duration)>,
    commands: mpsc::Receiver<Command>,
    handle: EnforcerHandle,
    /// Whether the agent is in audit-only mode, for readers that must not queue a command.
    mode: watch::Sender<bool>,
}

impl Enforcer {
    /// Acts through the manager's runtimes.
    pub fn new(
        manager: QuarantineManager,
        policies: PolicySet,
        recheck_interval: Duration,
    ) -> Self {
        let node = manager.config().node.clone();
        let (sender, commands) = mpsc::channel(COMMAND_BUFFER);
        let mode = watch::channel(manager.config().audit_only).0;
        Enforcer {
            manager,
            policies,
            indicators: Arc::default(),
            dedup: DedupWindow::new(DEFAULT_DEDUP_WINDOW),
            node,
            recheck_interval,
            seen: HashMap::new(),
            prejudged: HashMap::new(),
            pending_rechecks: VecDeque::new(),
            noted: Noted::default(),
            retries: Retries::default(),
            exemptions_checked_at: 0,
            inventory: None,
            rolled_forward: false,
            metrics: Metrics::new(),
            enforced: broadcast::channel(ENFORCED_BUFFER).0,
            policy_files: None,
            commands,
            handle: EnforcerHandle {
                commands: sender,
                mode: mode.subscribe(),
            },
            mode,
        }
    }

    /// Sends this task commands once it runs.
    pub fn commands(&self) -> EnforcerHandle {
        self.handle.clone()
    }

    /// Counts into the agent's metrics instead of private ones.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.manager.set_metrics(metrics.clone());
        self.metrics = metrics;
        self
    }

    /// Acts on the same (container, rule) detection once per `window`.
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.dedup = DedupWindow::new(window);
        self
    }

    /// Starts with these indicators (the stored indicators bundle's).
    pub fn with_indicators(mut self, indicators: Arc<IndicatorIndex>) -> Self {
        self.indicators = indicators;
        self
    }

    /// Re-reads `files` every `every` and enforces the new set when it loads.
    pub fn with_policy_reload(mut self, files: PolicyFiles, every: Duration) -> Self {
        self.policy_files = Some((files, every));
        self
    }

    /// Every quarantine carried out from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Enforced> {
        self.enforced.subscribe()
    }

    /// Where [`Enforced`] events are published, for subscribing later.
    pub fn publisher(&self) -> broadcast::Sender<Enforced> {
        self.enforced.clone()
    }

    /// The policies in force.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The manager, for tests and an in-process harness.
    pub fn manager(&mut self) -> &mut QuarantineManager {
        &mut self.manager
    }

    /// Runs until `shutdown` fires or the inventory closes. `starts`: the watchers' fast lane.
    pub async fn run(
        mut self,
        mut snapshots: watch::Receiver<Arc<InventorySnapshot>>,
        mut starts: Option<mpsc::Receiver<StartSignal>>,
        shutdown: CancellationToken,
    ) {
        self.inventory = Some(snapshots.clone());
        self.roll_forward().await;
        let mut ticker = tokio::time::interval(self.recheck_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        let reload_every = self
            .policy_files
            .as_ref()
            .map_or(Duration::MAX / 4, |(_, every)| *every);
        let mut reload =
            tokio::time::interval_at(tokio::time::Instant::now() + reload_every, reload_every);
        reload.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let first = snapshots.borrow_and_update().clone();
        self.observe(&first).await;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                // Before the inventory: a start is signalled before its inspect is sent.
                Some(signal) = next_start(&mut starts) => self.started(signal).await,
                Some(command) = self.commands.recv() => self.command(command).await,
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let snapshot = snapshots.borrow_and_update().clone();
                    self.observe(&snapshot).await;
                }
                _ = ticker.tick() => self.begin_sweep().await,
                Some(container) = async { self.pending_rechecks.pop_front() },
                    if !self.pending_rechecks.is_empty() => {
                    self.recheck_fresh(&container).await;
                }
                _ = reload.tick(), if self.policy_files.is_some() => {
                    if self.reload_policies().await {
                        let snapshot = snapshots.borrow().clone();
                        self.observe(&snapshot).await;
                    }
                }
            }
        }
        info!("enforcement stopped");
    }

    /// Re-reads the policy files; `true` when a new set is in force (every container is then
    /// judged again at the next observation).
    pub async fn reload_policies(&mut self) -> bool {
        let Some((mut files, every)) = self.policy_files.take() else {
            return false;
        };
        let checked = tokio::task::spawn_blocking(move || {
            let outcome = files.check();
            (files, outcome)
        })
        .await;
        let Ok((files, outcome)) = checked else {
            error!("policy reload task failed; policies unchanged");
            return false;
        };
        self.policy_files = Some((files, every));
        match outcome {
            Reload::Unchanged => false,
            Reload::Applied(set) => {
                info!(policies = set.policies.len(), "policy change applied");
                self.metrics.count_policy_reload("applied");
                self.install(set);
                true
            }
            Reload::Rejected(errors) => {
                error!(%errors, "policy change rejected: the previous policies stay in force");
                self.metrics.count_policy_reload("rejected");
                false
            }
        }
    }

    /// Puts `set` in force: every container is judged again at the next observation.
    fn install(&mut self, set: PolicySet) {
        self.policies = set;
        self.seen.clear();
        self.prejudged.clear();
        self.forget_noted();
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
                info!(changed = changed.len(), "stored quarantines rolled forward");
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
        if !changed.is_empty() {
            let exemptions = self.exemptions().await;
            for entry in changed {
                self.handle(&entry, &exemptions).await;
            }
        }
        let gone: Vec<ContainerId> = self
            .seen
            .keys()
            .filter(|id| !snapshot.containers.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.seen.remove(&id);
            self.noted.forget(&id);
            match self.manager.container_gone(&id).await {
                Ok(Some(record)) => {
                    info!(container = %id, state = %record.state, "quarantined container removed")
                }
                Ok(None) => {}
                Err(error) => error!(container = %id, %error, "cannot record a removed container"),
            }
        }
    }

    /// Expires due quarantines and re-checks every one in force against a fresh inspect, all at
    /// once (the task itself spreads the re-checks out: see [`Self::begin_sweep`]).
    pub async fn sweep(&mut self) {
        self.begin_sweep().await;
        while let Some(container) = self.pending_rechecks.pop_front() {
            self.recheck_fresh(&container).await;
        }
    }

    /// Expires due quarantines and queues a re-check of every one in force. The task runs one
    /// queued re-check at a time when nothing else waits, so a start signal or a command never
    /// waits behind a whole sweep (each re-check inspects and lists the cut table: milliseconds,
    /// times the quarantines in force).
    async fn begin_sweep(&mut self) {
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
        let mut failed = Vec::new();
        for record in in_force {
            if record.state == QuarantineState::Failed {
                failed.push(record);
            } else if !self.pending_rechecks.contains(&record.container) {
                self.pending_rechecks.push_back(record.container);
            }
        }
        self.retry_fail_closed(failed).await;
        self.rejudge_lapsed_exemptions().await;
    }

    async fn handle(&mut self, entry: &InventoryEntry, exemptions: &(Arc<ExemptionSet>, i64)) {
        let info = &entry.info;
        match self.manager.in_force(&info.id).await {
            Ok(Some(_)) => {
                self.prejudged.remove(&info.id);
                self.recheck_fresh(&info.id).await;
                return;
            }
            Ok(None) => {}
            Err(error) => {
                error!(container = %info.id, %error, "cannot read the container's quarantine");
                return;
            }
        }
        match info.state {
            ContainerState::Created => {
                // Judged now, acted on at its start (the fast path).
                match self.request_for(entry, exemptions, self.indicators.as_ref()) {
                    Some(request) => {
                        let prejudged = Prejudged {
                            request,
                            info: info.clone(),
                        };
                        self.prejudged.insert(info.id.clone(), prejudged);
                    }
                    None => {
                        self.prejudged.remove(&info.id);
                    }
                }
            }
            ContainerState::Running | ContainerState::Paused => {
                self.prejudged.remove(&info.id);
                let judged = self.judge_entry(entry, exemptions, self.indicators.as_ref());
                self.note_would_have(info, judged.audit_mode).await;
                self.note_gaps(info, judged.gaps).await;
                if let Some(request) = judged.request {
                    let policy = request.source.to_string();
                    let result = self.manager.quarantine(request, info, false).await;
                    self.report(&info.id, &policy, &result, None);
                }
            }
            // Stopped ones need nothing.
            _ => {
                self.prejudged.remove(&info.id);
            }
        }
    }

    /// Every stored exemption and the clock now, for the judge; none when they cannot be read
    /// (logged: judging on is better than not judging).
    async fn exemptions(&mut self) -> (Arc<ExemptionSet>, i64) {
        match self.manager.exemptions_now().await {
            Ok(exemptions) => exemptions,
            Err(error) => {
                error!(%error, "cannot read exemptions; judging without them");
                (Arc::default(), 0)
            }
        }
    }

    /// The quarantine `entry`'s container deserves under the policies in force, its
    /// `indicator` rules looking up `indicators`, if any. A policy the container is exempt from
    /// (released earlier) does not decide, so another enforce-mode policy it also breaks still
    /// can.
    fn request_for(
        &self,
        entry: &InventoryEntry,
        exemptions: &(Arc<ExemptionSet>, i64),
        indicators: &dyn IndicatorLookup,
    ) -> Option<QuarantineRequest> {
        self.judge_entry(entry, exemptions, indicators).request
    }

    /// [`Self::request_for`], and what audit-mode policies would have done.
    fn judge_entry(
        &self,
        entry: &InventoryEntry,
        (exemptions, now): &(Arc<ExemptionSet>, i64),
        indicators: &dyn IndicatorLookup,
    ) -> Judged {
        let info = &entry.info;
        let is_exempt = |policy: &str| exemptions.is_exempt(&info.id, policy, *now);
        let verdict = policy::judge(
            &self.policies,
            &JudgeInput {
                container: info,
                posture: &entry.findings,
                indicators,
                is_exempt: &is_exempt,
            },
        );
        let why = |policy: &str| {
            verdict
                .findings
                .iter()
                .find(|finding| &*finding.policy == policy)
                .or(verdict.findings.first())
                .map(|finding| finding.why.to_string())
                .unwrap_or_else(|| format!("violates {policy}"))
        };
        let audit_mode = verdict
            .would_have
            .iter()
            .map(|would| AuditModeHit {
                policy: would.policy.to_string(),
                actions: would.actions.clone(),
                why: why(&would.policy),
            })
            .collect();
        let request = verdict
            .enforcing_policy
            .clone()
            .filter(|_| !verdict.actions.is_empty())
            .map(|policy_name| QuarantineRequest {
                container: info.id.clone(),
                node: self.node.clone(),
                actions: verdict.actions.clone(),
                ttl: verdict.ttl,
                reason: why(&policy_name),
                actor: AGENT_ACTOR.to_string(),
                source: QuarantineSource::Policy(policy_name.to_string()),
                scope: verdict.scope,
            });
        Judged {
            request,
            audit_mode,
            gaps: verdict.errors,
        }
    }

    /// Logs, counts and publishes how a quarantine the agent decided on went.
    fn report(
        &self,
        container: &ContainerId,
        source: &str,
        result: &QuarantineResult<QuarantineRecord>,
        since_start_event: Option<Duration>,
    ) {
        match result {
            Ok(record) => {
                info!(%container, %source, state = %record.state, fast_path = ?since_start_event, "container quarantined");
                if let Some(elapsed) = since_start_event {
                    self.metrics.observe_start_to_enforced(elapsed);
                }
                self.metrics.count_quarantine(record);
                if record.state == QuarantineState::Failed {
                    self.metrics.count_enforcement_gap();
                }
                // Nobody subscribed is fine.
                let _unheard = self.enforced.send(Enforced {
                    record: record.clone(),
                    since_start_event,
                });
            }
            Err(
                refusal @ (QuarantineError::AuditOnly { .. }
                | QuarantineError::Exempt { .. }
                | QuarantineError::Protected { .. }
                | QuarantineError::AlreadyQuarantined { .. }),
            ) => {
                info!(%container, %source, %refusal, "quarantine not carried out")
            }
            Err(refusal @ QuarantineError::BlastRadius { .. }) => {
                self.metrics.count_blast_radius_exceeded();
                error!(%container, %source, %refusal, "ALERT: quarantine refused")
            }
            Err(error) => {
                self.metrics.count_enforcement_gap();
                error!(%container, %source, %error, "quarantine failed")
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

/// The next start signal, or never when there is no fast lane.
async fn next_start(starts: &mut Option<mpsc::Receiver<StartSignal>>) -> Option<StartSignal> {
    match starts {
        Some(starts) => starts.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
