//! Commands to the running enforcement task ([`EnforcerHandle`]): what operators (through the
//! API) and in-process harnesses ask of it, carried out by the one task that owns the
//! quarantine manager, between its other work.

use std::sync::Arc;
use std::time::Duration;

use lazaret_core::ContainerId;
use lazaret_core::detection::ContainerDetection;
use lazaret_core::indicator::index::IndicatorIndex;
use lazaret_core::indicator::observed::Observed;
use lazaret_core::policy::PolicySet;
use lazaret_core::quarantine::{QuarantineRecord, QuarantineRequest};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::Enforcer;
use super::detect::DetectOutcome;
use super::scanned::ScanOutcome;
use crate::enforce::quarantine::{QuarantineError, QuarantineResult, mode_name};
use crate::runtime::RuntimeError;

/// Commands waiting for the enforcement task before senders wait.
pub(super) const COMMAND_BUFFER: usize = 64;

/// What an [`EnforcerHandle`] asks of the enforcement task.
pub(super) enum Command {
    Quarantine {
        request: QuarantineRequest,
        force: bool,
        reply: oneshot::Sender<QuarantineResult<QuarantineRecord>>,
    },
    Release {
        container: ContainerId,
        actor: String,
        reason: String,
        exempt_for: Duration,
        reply: oneshot::Sender<QuarantineResult<QuarantineRecord>>,
    },
    SetMode {
        audit_only: bool,
        actor: String,
        reason: String,
        reply: oneshot::Sender<QuarantineResult<()>>,
    },
    UsePolicies {
        set: PolicySet,
        origin: String,
        reply: oneshot::Sender<()>,
    },
    UseIndicators {
        index: Arc<IndicatorIndex>,
        origin: String,
        reply: oneshot::Sender<()>,
    },
    Detect {
        found: ContainerDetection,
        reply: oneshot::Sender<DetectOutcome>,
    },
    Scanned {
        container: ContainerId,
        observed: Observed,
        reply: oneshot::Sender<ScanOutcome>,
    },
}

/// Asks the running enforcement task to quarantine or release; cheap to clone.
#[derive(Clone)]
pub struct EnforcerHandle {
    pub(super) commands: mpsc::Sender<Command>,
    /// The mode, kept current by the enforcement task.
    pub(super) mode: watch::Receiver<bool>,
}

impl EnforcerHandle {
    /// Quarantines `request.container` as the request says (the container is inspected afresh);
    /// `force` overrides protection. Refusals come back as the manager's errors.
    pub async fn quarantine(
        &self,
        request: QuarantineRequest,
        force: bool,
    ) -> QuarantineResult<QuarantineRecord> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Quarantine {
            request,
            force,
            reply,
        })
        .await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Releases `container`, leaving an exemption for `exempt_for` (automated quarantines).
    pub async fn release(
        &self,
        container: ContainerId,
        actor: &str,
        reason: &str,
        exempt_for: Duration,
    ) -> QuarantineResult<QuarantineRecord> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Release {
            container,
            actor: actor.to_string(),
            reason: reason.to_string(),
            exempt_for,
            reply,
        })
        .await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Switches the agent to audit-only (`true`) or back to enforcing; audited.
    pub async fn set_mode(
        &self,
        audit_only: bool,
        actor: &str,
        reason: &str,
    ) -> QuarantineResult<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::SetMode {
            audit_only,
            actor: actor.to_string(),
            reason: reason.to_string(),
            reply,
        })
        .await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Wakes at every mode change (gossip announces it at once).
    pub fn mode_changes(&self) -> watch::Receiver<bool> {
        self.mode.clone()
    }

    /// Whether the agent is in audit-only mode (read without a round trip to the task).
    pub fn audit_only(&self) -> bool {
        *self.mode.borrow()
    }

    /// Enforces `set` from now on, instead of the policy directory, and judges every container
    /// again (exemptions respected). Returns once the new set is in force; `origin` (e.g. `bundle
    /// v3 (abc…)`) is logged.
    pub async fn use_policies(&self, set: PolicySet, origin: String) -> QuarantineResult<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::UsePolicies { set, origin, reply })
            .await?;
        answer.await.map_err(|_| stopped())
    }

    /// Looks these indicators up from now on, and judges every container again (a sweep).
    /// Returns once they are in force.
    pub async fn use_indicators(
        &self,
        index: Arc<IndicatorIndex>,
        origin: String,
    ) -> QuarantineResult<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::UseIndicators {
            index,
            origin,
            reply,
        })
        .await?;
        answer.await.map_err(|_| stopped())
    }

    /// Answers a detection (see [`super::detect`]).
    pub async fn detect(&self, found: ContainerDetection) -> QuarantineResult<DetectOutcome> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Detect { found, reply }).await?;
        answer.await.map_err(|_| stopped())
    }

    /// Judges `container` with what the scan saw inside it (see [`super::scanned`]).
    pub async fn scanned(
        &self,
        container: ContainerId,
        observed: Observed,
    ) -> QuarantineResult<ScanOutcome> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Scanned {
            container,
            observed,
            reply,
        })
        .await?;
        answer.await.map_err(|_| stopped())
    }

    async fn send(&self, command: Command) -> QuarantineResult<()> {
        self.commands.send(command).await.map_err(|_| stopped())
    }
}

fn stopped() -> QuarantineError {
    QuarantineError::Blocking("the enforcement task has stopped".into())
}

impl Enforcer {
    /// Judges every container of the newest inventory again (after the policies or indicators
    /// changed; what was judged before is forgotten by the caller).
    async fn judge_again(&mut self) {
        let snapshot = self
            .inventory
            .as_ref()
            .map(|inventory| inventory.borrow().clone());
        if let Some(snapshot) = snapshot {
            self.observe(&snapshot).await;
        }
    }

    pub(super) async fn command(&mut self, command: Command) {
        match command {
            Command::Quarantine {
                request,
                force,
                reply,
            } => {
                // The inventory's view (event-driven, current within milliseconds) when it has
                // the container, as for policy verdicts; a fresh inspect otherwise.
                let known = self
                    .seen
                    .get(&request.container)
                    .map(|entry| entry.info.clone());
                let info = match known {
                    Some(info) => Ok(Some(info)),
                    None => self.manager.runtimes().inspect(&request.container).await,
                };
                let result = match info {
                    Ok(Some(info)) => {
                        let source = request.source.to_string();
                        let result = self.manager.quarantine(request, &info, force).await;
                        self.report(&info.id, &source, &result, None);
                        result
                    }
                    Ok(None) => Err(RuntimeError::NotFound {
                        id: request.container,
                    }
                    .into()),
                    Err(error) => Err(error.into()),
                };
                // The asker may have gone away; the quarantine stands either way.
                let _unasked = reply.send(result);
            }
            Command::Release {
                container,
                actor,
                reason,
                exempt_for,
                reply,
            } => {
                let result = self
                    .manager
                    .release(&container, &actor, &reason, exempt_for)
                    .await;
                if result.is_ok() {
                    info!(%container, %actor, %reason, "quarantine released");
                }
                let _unasked = reply.send(result);
            }
            Command::SetMode {
                audit_only,
                actor,
                reason,
                reply,
            } => {
                let result = self.manager.set_mode(audit_only, &actor, &reason).await;
                warn!(mode = mode_name(audit_only), %actor, %reason, "enforcement mode changed");
                self.mode.send_replace(self.manager.config().audit_only);
                let _unasked = reply.send(result);
            }
            Command::UsePolicies { set, origin, reply } => {
                info!(policies = set.policies.len(), %origin, "policies replaced; the policy directory is no longer read");
                self.metrics.count_policy_reload("applied");
                self.policy_files = None;
                self.install(set);
                let _unasked = reply.send(());
                self.judge_again().await;
            }
            Command::Scanned {
                container,
                observed,
                reply,
            } => {
                let outcome = self.scanned(&container, &observed).await;
                let _unasked = reply.send(outcome);
            }
            Command::Detect { found, reply } => {
                let rule = found.detection.rule.clone();
                let outcome = self.detect(found).await;
                info!(%rule, outcome = outcome.as_str(), "detection answered");
                let _unasked = reply.send(outcome);
            }
            Command::UseIndicators {
                index,
                origin,
                reply,
            } => {
                info!(indicators = index.len(), expired = index.expired, %origin, "indicators replaced; sweeping every container");
                self.indicators = index;
                self.seen.clear();
                self.prejudged.clear();
                let _unasked = reply.send(());
                self.judge_again().await;
            }
        }
    }
}
