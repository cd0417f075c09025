//! Carrying out, undoing and checking a quarantine's actions on one container: the part of the
//! manager that touches the runtime and the network cut. Never stores or audits anything itself:
//! the manager does, around these calls.

use lazaret_core::quarantine::{Action, QuarantineRecord};
use lazaret_core::{ContainerInfo, ContainerState};

use super::super::netns::{CutStatus, NetnsError};
use super::{QuarantineManager, StepOutcome};

impl QuarantineManager {
    /// One action on one container. Never an error: how it went is the outcome.
    pub(super) async fn act(&self, action: Action, info: &ContainerInfo) -> StepOutcome {
        let stopped = matches!(
            info.state,
            ContainerState::Exited | ContainerState::Dead | ContainerState::Created
        );
        let result = match action {
            Action::Alert => return StepOutcome::Done,
            Action::NetworkCut => {
                let path = match cut_target(info) {
                    Ok(path) => path,
                    Err(why) => return StepOutcome::Skipped(why),
                };
                return match self.cutter.cut(&path).await {
                    Ok(()) => StepOutcome::Done,
                    Err(NetnsError::HostNetwork { .. }) => StepOutcome::Skipped(format!(
                        "host network ({path}): cutting it would cut the host"
                    )),
                    Err(error) => StepOutcome::Failed(error.to_string()),
                };
            }
            Action::Pause if info.state == ContainerState::Paused => {
                return StepOutcome::AlreadyInForce;
            }
            Action::Pause => async { self.runtimes.owner(info)?.pause(&info.id).await }.await,
            Action::Stop | Action::Kill if stopped => return StepOutcome::AlreadyInForce,
            Action::Stop => {
                let grace = self.config.stop_grace;
                async { self.runtimes.owner(info)?.stop(&info.id, grace).await }.await
            }
            Action::Kill => async { self.runtimes.owner(info)?.kill(&info.id).await }.await,
        };
        match result {
            Ok(()) => StepOutcome::Done,
            Err(error) => StepOutcome::Failed(error.to_string()),
        }
    }

    /// What undoes `record`'s reversible actions: restore the network, then resume. `Err` with
    /// the reason when either fails. A container that no longer exists has nothing to undo.
    pub(super) async fn undo(&self, record: &QuarantineRecord) -> Result<(), String> {
        let info = match self.runtimes.inspect(&record.container).await {
            Ok(Some(info)) => info,
            Ok(None) => return Ok(()),
            Err(error) => return Err(error.to_string()),
        };
        if record.actions.contains(&Action::NetworkCut)
            && let Ok(path) = cut_target(&info)
        {
            match self.cutter.restore(&path).await {
                Ok(()) | Err(NetnsError::HostNetwork { .. }) => {}
                Err(error) => return Err(format!("network restore: {error}")),
            }
        }
        if record.actions.contains(&Action::Pause) && info.state == ContainerState::Paused {
            self.runtimes
                .owner(&info)
                .map_err(|error| format!("resume: {error}"))?
                .resume(&record.container)
                .await
                .map_err(|error| format!("resume: {error}"))?;
        }
        Ok(())
    }

    /// How an applied quarantine was undone, if it was.
    pub(super) async fn find_tampering(
        &self,
        record: &QuarantineRecord,
        info: &ContainerInfo,
    ) -> Option<String> {
        let running = matches!(
            info.state,
            ContainerState::Running | ContainerState::Restarting
        );
        let ends_workload = record
            .actions
            .iter()
            .any(|action| matches!(action, Action::Kill | Action::Stop));
        if ends_workload && running {
            return Some("killed or stopped container is running again".into());
        }
        if record.actions.contains(&Action::Pause) && running {
            return Some(format!(
                "container is {} but should be paused",
                info.state.as_str()
            ));
        }
        if record.actions.contains(&Action::NetworkCut)
            && !ends_workload
            && let Ok(path) = cut_target(info)
        {
            match self.cutter.status(&path).await {
                Ok(CutStatus::Intact) | Err(NetnsError::HostNetwork { .. }) => {}
                Ok(CutStatus::Absent) => return Some("network cut table vanished".into()),
                Ok(CutStatus::Altered { reason }) => {
                    return Some(format!("network cut table altered: {reason}"));
                }
                Err(error) => return Some(format!("network cut unverifiable: {error}")),
            }
        }
        None
    }
}

/// The namespace path to cut, or why there is none.
pub(super) fn cut_target(info: &ContainerInfo) -> Result<String, String> {
    if info.host_namespaces.network == Some(true) {
        return Err("host network: cutting it would cut the host".into());
    }
    match info.netns_path.as_deref() {
        Some(path) if !path.is_empty() => Ok(path.to_string()),
        _ => Err("the runtime reports no network namespace (not running?)".into()),
    }
}
