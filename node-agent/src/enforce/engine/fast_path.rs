//! The fast path (DESIGN.md §2): a verdict reached at `create` is acted on at the container's
//! `start` signal, without another inspect; the network namespace comes from the start event's
//! PID or the runtime's cheap lookup, and only when neither tells is the container inspected.

use lazaret_core::quarantine::QuarantineRequest;
use lazaret_core::{ContainerId, ContainerInfo, ContainerState};
use tracing::{debug, warn};

use super::Enforcer;
use crate::watcher::StartSignal;

/// A verdict reached at `create`, waiting for the container's start.
pub(super) struct Prejudged {
    pub(super) request: QuarantineRequest,
    pub(super) info: ContainerInfo,
}

impl Enforcer {
    /// A start whose create this task has not judged (the snapshot holding it is still unread):
    /// judged now from the inventory's newest entry, unless a quarantine is in force already.
    async fn judge_late(&mut self, id: &ContainerId) -> Option<Prejudged> {
        let entry = self.inventory.as_ref()?.borrow().get(id).cloned()?;
        if !matches!(self.manager.in_force(id).await, Ok(None)) {
            return None;
        }
        let exemptions = self.exemptions().await;
        let request = self.request_for(&entry, &exemptions, self.indicators.as_ref())?;
        Some(Prejudged {
            request,
            info: entry.info.clone(),
        })
    }

    /// The fast path: a container judged at `create` has started; act from that verdict.
    /// Dropping the signal at the end lets the watcher's held inspect go ahead.
    pub async fn started(&mut self, signal: StartSignal) {
        let prejudged = match self.prejudged.remove(&signal.id) {
            Some(prejudged) => Some(prejudged),
            None => self.judge_late(&signal.id).await,
        };
        let Some(Prejudged { request, mut info }) = prejudged else {
            return;
        };
        info.state = ContainerState::Running;
        info.pid = signal.pid.or(info.pid);
        let needs_netns = info.netns_owner.is_none()
            && info.host_namespaces.network != Some(true)
            && info.netns_path.as_deref().is_none_or(str::is_empty);
        if needs_netns {
            info.netns_path = self
                .manager
                .runtimes()
                .owner(&info)
                .ok()
                .and_then(|runtime| runtime.started_netns(&info, signal.pid));
        }
        if info.netns_path.is_none() && needs_netns {
            debug!(container = %info.id, "fast path: namespace unknown, inspecting");
            match self.manager.runtimes().inspect(&info.id).await {
                Ok(Some(fresh)) => info = fresh,
                Ok(None) => return,
                Err(error) => warn!(container = %info.id, %error, "fast path: cannot inspect"),
            }
        }
        let policy = request.source.to_string();
        let result = self.manager.quarantine(request, &info, false).await;
        // Enforced once the actions are done; their audit records follow.
        let done = self
            .manager
            .actions_done_at()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(tokio::time::Instant::now);
        let elapsed = done.saturating_duration_since(signal.received);
        self.report(&info.id, &policy, &result, Some(elapsed));
    }
}
