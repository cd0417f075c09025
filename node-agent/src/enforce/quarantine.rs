//! The quarantine manager (DESIGN.md §2, `enforce/quarantine.rs`): carries out `lazaret_core`'s
//! quarantine state machine on real containers.
//!
//! - **Stored before acting.** A quarantine is stored `requested` before the first action, and
//!   every later transition is stored before the next action, so after a crash
//!   [`QuarantineManager::roll_forward`] finishes what was started and re-checks what was done.
//! - **Actions**: `network-cut` through the container's `netns_path` (host networking cannot be
//!   cut without cutting the host: the cut is skipped, audited as an `enforcement-gap`, and the
//!   other actions still run), concurrently with `pause`, `stop`, `kill` (in that order) through
//!   the runtime that reports the container ([`super::runtimes`]): a `[network-cut, pause]`
//!   quarantine takes as long as the slower of the two. An action that fails is a gap too; the
//!   others still run, and the quarantine ends `failed`. Outcomes are audited in the record's
//!   order once all are done.
//! - **Re-checks** (`keeping.rs`, [`QuarantineManager::recheck`]): an applied quarantine whose
//!   container was unpaused, restarted, or whose table vanished is marked `tampered`, re-applied
//!   and audited as `tamper`; a release or an expiry left under way is finished.
//! - **Release** (`undoing.rs`) stores the record as under way, restores the network, then
//!   resumes, stores `released`, and leaves an exemption
//!   for (container, source) so the next sweep does not quarantine it again. TTL expiry
//!   ([`QuarantineManager::expire_due`]) undoes the same actions without an exemption.
//! - **Guards**: protected containers (the agent's own, label [`PROTECTED_LABEL`]` = true`, or a
//!   configured name or id prefix) are refused unless forced; a cut of a container that has
//!   `NET_ADMIN` gets `pause` added (it could delete the cut); automated quarantines (any source but an operator) are limited to a budget per
//!   minute, past which an `alert`-level audit record says so; in `audit-only` mode only a
//!   would-have audit record is written.
//!
//! The manager is the one owner of quarantine state: its methods take `&mut self`, so the agent
//! runs it in one task and sends it commands. Store calls run on the blocking pool. The clock is
//! a [`Clock`] so tests control time. This module must never decide *whether* a container
//! deserves a quarantine (the judge and the operators do), and never act without storing first.

mod actions;
mod carry;
mod cutter;
mod keeping;
#[cfg(test)]
mod tests;
mod undoing;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lazaret_core::audit::AuditEntry;
use lazaret_core::quarantine::{
    self as core_quarantine, Action, ExemptionSet, QuarantineRecord, QuarantineRequest,
    QuarantineSource, QuarantineState, TransitionError,
};
use lazaret_core::{ContainerId, ContainerInfo};

#[cfg(any(test, feature = "testsuite"))]
pub use self::cutter::FakeCutter;
pub use self::cutter::{NetnsCutter, NetworkCutter};
use super::runtimes::Runtimes;
use crate::runtime::{ContainerRuntime, RuntimeError};
use crate::store::{Store, StoreError};

/// The label that marks a container the agent must not quarantine unless forced (the agent's
/// own, infrastructure), with the value `true`.
pub const PROTECTED_LABEL: &str = "lazaret.io/protected";
/// The shortest id prefix a configured protected entry matches by (Docker's short id).
pub const MIN_PROTECTED_ID_PREFIX: usize = 12;
/// The window of the blast-radius budget.
pub const BLAST_RADIUS_WINDOW: Duration = Duration::from_secs(60);
/// The audit `actor` of the agent's own decisions (expiry, tamper repair, roll-forward).
pub const AGENT_ACTOR: &str = "agent";

pub use crate::clock::{Clock, SystemClock};

/// How the manager behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineConfig {
    /// This agent's node name, written into every record.
    pub node: String,
    /// Record what would have been done, do nothing.
    pub audit_only: bool,
    /// Automated quarantines allowed per [`BLAST_RADIUS_WINDOW`]; operators are not counted.
    pub blast_radius_per_minute: usize,
    /// The grace `stop` gives before SIGKILL.
    pub stop_grace: Duration,
    /// Containers refused unless forced, besides those labelled [`PROTECTED_LABEL`]: names, or
    /// id prefixes of at least [`MIN_PROTECTED_ID_PREFIX`] characters.
    pub protected: Vec<String>,
    /// The agent's own container when it runs in one: always protected.
    pub own_container: Option<ContainerId>,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            node: "localhost".to_string(),
            audit_only: false,
            blast_radius_per_minute: 10,
            stop_grace: Duration::from_secs(10),
            protected: Vec::new(),
            own_container: None,
        }
    }
}

/// Why a quarantine or a release was not done.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("container {container} is protected ({why}): refusing without force")]
    Protected { container: ContainerId, why: String },
    #[error("audit-only mode: quarantine of {container} recorded, not carried out")]
    AuditOnly { container: ContainerId },
    #[error(
        "blast radius exceeded: {limit} automated quarantines in the last minute, refusing \
         {container}"
    )]
    BlastRadius {
        container: ContainerId,
        limit: usize,
    },
    #[error(
        "container {container} is exempt from {policy} until {until_unix_ms} (released earlier)"
    )]
    Exempt {
        container: ContainerId,
        policy: String,
        until_unix_ms: i64,
    },
    #[error("container {container} is already quarantined ({state})")]
    AlreadyQuarantined {
        container: ContainerId,
        state: QuarantineState,
    },
    #[error("the request names container {requested} but the inspected container is {inspected}")]
    ContainerMismatch {
        requested: ContainerId,
        inspected: ContainerId,
    },
    #[error("container {container} is not quarantined")]
    NotQuarantined { container: ContainerId },
    #[error("release of {container} failed, the quarantine stays in force: {reason}")]
    ReleaseFailed {
        container: ContainerId,
        reason: String,
    },
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("store task failed: {0}")]
    Blocking(String),
}

pub type QuarantineResult<T> = Result<T, QuarantineError>;

/// How one action went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StepOutcome {
    Done,
    /// Already in force (paused already, exited already).
    AlreadyInForce,
    /// Not possible for this container; the next action still runs (a gap).
    Skipped(String),
    /// Tried and failed (a gap).
    Failed(String),
}

/// The quarantine manager. See the module docs.
pub struct QuarantineManager {
    /// Every action goes to the runtime that reports the container.
    runtimes: Runtimes,
    cutter: Arc<dyn NetworkCutter>,
    store: Store,
    clock: Arc<dyn Clock>,
    config: QuarantineConfig,
    /// When the automated quarantines of the last window were accepted.
    automated: VecDeque<i64>,
    actions_done_at: Option<Instant>,
    /// The stored exemptions, once read (see [`Self::exemptions_now`]).
    exemptions: Option<Arc<ExemptionSet>>,
    /// Where tampering found is counted.
    metrics: crate::metrics::Metrics,
}

impl QuarantineManager {
    /// A manager acting through one runtime.
    pub fn new(
        runtime: Arc<dyn ContainerRuntime>,
        cutter: Arc<dyn NetworkCutter>,
        store: Store,
        clock: Arc<dyn Clock>,
        config: QuarantineConfig,
    ) -> Self {
        QuarantineManager::with_runtimes(Runtimes::one(runtime), cutter, store, clock, config)
    }

    /// A manager acting through each container's own runtime among `runtimes`.
    pub fn with_runtimes(
        runtimes: Runtimes,
        cutter: Arc<dyn NetworkCutter>,
        store: Store,
        clock: Arc<dyn Clock>,
        config: QuarantineConfig,
    ) -> Self {
        QuarantineManager {
            runtimes,
            cutter,
            store,
            clock,
            config,
            automated: VecDeque::new(),
            actions_done_at: None,
            exemptions: None,
            metrics: crate::metrics::Metrics::new(),
        }
    }

    /// Counts into the agent's metrics instead of private ones.
    pub fn set_metrics(&mut self, metrics: crate::metrics::Metrics) {
        self.metrics = metrics;
    }

    /// The runtimes acted through.
    pub fn runtimes(&self) -> &Runtimes {
        &self.runtimes
    }

    /// The manager's clock, Unix milliseconds.
    pub fn now_unix_ms(&self) -> i64 {
        self.clock.now_unix_ms()
    }

    pub fn config(&self) -> &QuarantineConfig {
        &self.config
    }

    /// Why `info`'s container is protected, if it is: the agent's own, labelled
    /// [`PROTECTED_LABEL`]` = true`, or named (or id-prefixed) in the configured list.
    pub fn protection(&self, info: &ContainerInfo) -> Option<String> {
        if self.config.own_container.as_ref() == Some(&info.id) {
            return Some("the agent's own container".into());
        }
        if is_protected(info) {
            return Some(format!("label {PROTECTED_LABEL}=true"));
        }
        self.config
            .protected
            .iter()
            .find(|entry| {
                **entry == info.name
                    || (entry.len() >= MIN_PROTECTED_ID_PREFIX
                        && info.id.as_str().starts_with(entry.as_str()))
            })
            .map(|entry| format!("listed as protected: {entry}"))
    }

    /// Switches `audit-only` mode on or off (agent-wide or fleet-wide switch).
    pub fn set_audit_only(&mut self, audit_only: bool) {
        self.config.audit_only = audit_only;
    }

    /// [`Self::set_audit_only`] on an operator's request, audited (`mode`, with who and why).
    pub async fn set_mode(
        &mut self,
        audit_only: bool,
        actor: &str,
        reason: &str,
    ) -> QuarantineResult<()> {
        self.set_audit_only(audit_only);
        self.audit(AuditEntry {
            actor: actor.to_string(),
            on_behalf_of: None,
            action: "mode".into(),
            target: self.config.node.clone(),
            reason: reason.to_string(),
            source: QuarantineSource::Operator.to_string(),
            outcome: mode_name(audit_only).into(),
        })
        .await
    }

    /// Quarantines `info`'s container as `request` says. Refused for a container already
    /// quarantined, for an automated request on a (container, source) an active exemption
    /// covers, for a protected container unless `force`, in audit-only mode (after writing the
    /// would-have record), and past the blast-radius budget (after an alert-level record).
    pub async fn quarantine(
        &mut self,
        request: QuarantineRequest,
        info: &ContainerInfo,
        force: bool,
    ) -> QuarantineResult<QuarantineRecord> {
        let container = request.container.clone();
        if container != info.id {
            return Err(QuarantineError::ContainerMismatch {
                requested: container,
                inspected: info.id.clone(),
            });
        }
        self.actions_done_at = None;
        let now = self.clock.now_unix_ms();
        let entry = |action: &str, outcome: String| AuditEntry {
            actor: request.actor.clone(),
            on_behalf_of: None,
            action: action.to_string(),
            target: container.to_string(),
            reason: request.reason.clone(),
            source: request.source.to_string(),
            outcome,
        };
        // One trip to the store for both checks: this is on the fast path.
        let (existing, exemption) = {
            let store = self.store.clone();
            let id = container.clone();
            let exemption_key = (request.source != QuarantineSource::Operator)
                .then(|| request.source.exemption_key());
            blocking(move || {
                let existing = store.quarantine(&id)?;
                let exemption = match exemption_key {
                    Some(key) => store.exemption(&id, &key)?,
                    None => None,
                };
                Ok((existing, exemption))
            })
            .await?
        };
        if let Some(existing) = existing
            && !existing.state.is_terminal()
        {
            return Err(QuarantineError::AlreadyQuarantined {
                container,
                state: existing.state,
            });
        }
        if let Some(exemption) = exemption.filter(|exemption| exemption.is_active(now)) {
            // Not audited: the judge's sweeps would write one record per sweep.
            return Err(QuarantineError::Exempt {
                container,
                policy: exemption.policy,
                until_unix_ms: exemption.until_unix_ms,
            });
        }
        if let Some(why) = self.protection(info)
            && !force
        {
            self.audit(entry("quarantine", format!("refused: protected ({why})")))
                .await?;
            return Err(QuarantineError::Protected { container, why });
        }
        if self.config.audit_only {
            let outcome = format!(
                "would-have: {} (audit-only)",
                actions_text(&request.actions)
            );
            self.audit(entry("quarantine", outcome)).await?;
            return Err(QuarantineError::AuditOnly { container });
        }
        if request.source != QuarantineSource::Operator {
            let window_start = now.saturating_sub(BLAST_RADIUS_WINDOW.as_millis() as i64);
            while self.automated.front().is_some_and(|&at| at <= window_start) {
                self.automated.pop_front();
            }
            let limit = self.config.blast_radius_per_minute;
            if self.automated.len() >= limit {
                let outcome =
                    format!("alert: blast radius exceeded ({limit} automated per minute)");
                self.audit(entry("quarantine", outcome)).await?;
                tracing::error!(%container, limit, "blast radius exceeded: quarantine refused");
                return Err(QuarantineError::BlastRadius { container, limit });
            }
            self.automated.push_back(now);
        }
        let (actions, hardened) = core_quarantine::harden_network_cut(&request.actions, info);
        let record = QuarantineRecord::requested(QuarantineRequest { actions, ..request }, now);
        self.put(&record).await?;
        // Evidence: before a stop or a kill (nothing is left afterwards), else after the actions.
        let destructive = record
            .actions
            .iter()
            .any(|action| matches!(action, Action::Stop | Action::Kill));
        if destructive {
            self.keep_evidence(info, now).await;
        }
        // Stored: act now. The `requested` audit record is written while the actions run.
        let requested = match hardened {
            Some(why) => format!("requested; {why}"),
            None => "requested".to_string(),
        };
        let (audited, outcomes) = tokio::join!(
            self.audit_record(&record, &record.actor, "quarantine", requested),
            self.perform(&record, info)
        );
        self.actions_done_at = Some(Instant::now());
        if !destructive {
            let (store, info) = (self.store.clone(), info.clone());
            tokio::task::spawn_blocking(move || keep_evidence(&store, &info, now));
        }
        audited?;
        self.conclude(record, outcomes).await
    }

    /// Takes and stores the evidence of `info`'s container now (see [`super::evidence`]).
    async fn keep_evidence(&self, info: &ContainerInfo, now: i64) {
        let (store, info) = (self.store.clone(), info.clone());
        if tokio::task::spawn_blocking(move || keep_evidence(&store, &info, now))
            .await
            .is_err()
        {
            tracing::error!("the evidence task failed");
        }
    }

    /// When the actions of the last quarantine carried out by [`Self::quarantine`] were done
    /// (before their outcomes were audited): the fast path's latency ends here.
    pub fn actions_done_at(&self) -> Option<Instant> {
        self.actions_done_at
    }

    /// Every exemption stored, and the manager's clock now: for the judge, so a policy a container
    /// is exempt from does not decide its verdict.
    /// Read from the store once, then kept: this manager is the only writer of exemptions and
    /// drops the copy when it writes one, so judging a change costs no store read.
    pub async fn exemptions_now(&mut self) -> QuarantineResult<(Arc<ExemptionSet>, i64)> {
        let exemptions = match &self.exemptions {
            Some(exemptions) => exemptions.clone(),
            None => {
                let store = self.store.clone();
                let loaded = Arc::new(blocking(move || store.exemptions()).await?.records);
                self.exemptions = Some(loaded.clone());
                loaded
            }
        };
        Ok((exemptions, self.clock.now_unix_ms()))
    }

    /// `container`'s quarantine when one is in force (any state but a final one).
    pub async fn in_force(
        &self,
        container: &ContainerId,
    ) -> QuarantineResult<Option<QuarantineRecord>> {
        Ok(self
            .stored(container)
            .await?
            .filter(|record| !record.state.is_terminal()))
    }

    /// Every quarantine in force (any state but a final one).
    pub async fn all_in_force(&self) -> QuarantineResult<Vec<QuarantineRecord>> {
        let store = self.store.clone();
        let loaded = blocking(move || store.quarantines()).await?;
        Ok(loaded
            .records
            .into_iter()
            .filter(|record| !record.state.is_terminal())
            .collect())
    }

    async fn active(&self, container: &ContainerId) -> QuarantineResult<QuarantineRecord> {
        match self.stored(container).await? {
            Some(record) if !record.state.is_terminal() => Ok(record),
            _ => Err(QuarantineError::NotQuarantined {
                container: container.clone(),
            }),
        }
    }

    async fn stored(&self, container: &ContainerId) -> QuarantineResult<Option<QuarantineRecord>> {
        let store = self.store.clone();
        let container = container.clone();
        blocking(move || store.quarantine(&container)).await
    }

    async fn put(&self, record: &QuarantineRecord) -> QuarantineResult<()> {
        let store = self.store.clone();
        let record = record.clone();
        blocking(move || store.put_quarantine(&record)).await
    }

    async fn audit_record(
        &self,
        record: &QuarantineRecord,
        actor: &str,
        action: &str,
        outcome: String,
    ) -> QuarantineResult<()> {
        self.audit(self.entry(record, actor, action, outcome)).await
    }

    /// The audit entry for `action` on `record`'s container.
    fn entry(
        &self,
        record: &QuarantineRecord,
        actor: &str,
        action: &str,
        outcome: String,
    ) -> AuditEntry {
        AuditEntry {
            actor: actor.to_string(),
            on_behalf_of: None,
            action: action.to_string(),
            target: record.container.to_string(),
            reason: record.reason.clone(),
            source: record.source.to_string(),
            outcome,
        }
    }

    pub(crate) async fn audit(&self, entry: AuditEntry) -> QuarantineResult<()> {
        let store = self.store.clone();
        let now = self.clock.now_unix_ms();
        blocking(move || store.append_audit(entry, now).map(drop)).await
    }

    /// Appends `entries` and stores `record`, in one durable write.
    async fn store_with_audit(
        &self,
        entries: Vec<AuditEntry>,
        record: &QuarantineRecord,
    ) -> QuarantineResult<()> {
        let store = self.store.clone();
        let now = self.clock.now_unix_ms();
        let record = record.clone();
        blocking(move || {
            store
                .append_audit_with(entries, now, Some(&record))
                .map(drop)
        })
        .await
    }
}

/// Whether the container carries `lazaret.io/protected=true`.
pub fn is_protected(info: &ContainerInfo) -> bool {
    info.labels
        .get(PROTECTED_LABEL)
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// Takes and stores evidence (blocking); a failure is logged, never in the way of a quarantine.
fn keep_evidence(store: &Store, info: &ContainerInfo, now: i64) {
    let evidence = super::evidence::take(info, now);
    if let Err(error) = store.put_evidence(&info.id, &evidence) {
        tracing::error!(container = %info.id, %error, "cannot store the quarantine's evidence");
    }
}

/// `audit-only` or `enforce`, as the API and the audit trail name the modes.
pub fn mode_name(audit_only: bool) -> &'static str {
    if audit_only { "audit-only" } else { "enforce" }
}

pub(crate) fn actions_text(actions: &[Action]) -> String {
    actions
        .iter()
        .map(|action| action.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> QuarantineResult<T> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|error| QuarantineError::Blocking(error.to_string()))?
        .map_err(QuarantineError::from)
}
