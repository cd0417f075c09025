//! Carrying out, undoing and checking a quarantine's actions on one container: the part of the
//! manager that touches the runtime and the network cut. Never stores or audits anything itself:
//! the manager does, around these calls.

use lazaret_core::policy::EnforcementScope;
use lazaret_core::quarantine::{Action, QuarantineRecord};
use lazaret_core::{ContainerId, ContainerInfo, ContainerState};

use super::super::netns::{CutStatus, NetnsError};
use super::{QuarantineManager, StepOutcome};

impl QuarantineManager {
    /// One action on one container. Never an error: how it went is the outcome.
    pub(super) async fn act(
        &self,
        action: Action,
        info: &ContainerInfo,
        scope: EnforcementScope,
    ) -> StepOutcome {
        let stopped = matches!(
            info.state,
            ContainerState::Exited | ContainerState::Dead | ContainerState::Created
        );
        let result = match action {
            Action::Alert => return StepOutcome::Done,
            Action::NetworkCut => {
                let path = match self.cut_target(info, scope).await {
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
            Action::Pause => self.runtimes.pause(info).await,
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
            && let Ok(path) = self.cut_target(&info, record.scope).await
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
            && let Ok(path) = self.cut_target(info, record.scope).await
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
    /// The namespace path to cut for `info`'s container, or why there is none. A namespace the
    /// container shares with others (a pod, Docker's `--network container:X`) is cut only with
    /// `scope: pod`: then the owner's namespace is cut, which cuts the whole pod.
    pub(super) async fn cut_target(
        &self,
        info: &ContainerInfo,
        scope: EnforcementScope,
    ) -> Result<String, String> {
        if info.host_namespaces.network == Some(true) {
            return Err("host network: cutting it would cut the host".into());
        }
        let own_path = || match info.netns_path.as_deref() {
            Some(path) if !path.is_empty() => Ok(path.to_string()),
            _ => Err("the runtime reports no network namespace (not running?)".to_string()),
        };
        let Some(owner) = &info.netns_owner else {
            return own_path();
        };
        if scope != EnforcementScope::Pod {
            return Err(format!(
                "shares the network namespace of {owner} (a pod): cutting it would cut the \
                 others too (the policy's `scope: pod` allows that)"
            ));
        }
        // containerd reports the pod's namespace path itself; Docker only the owner's.
        if let Ok(path) = own_path() {
            return Ok(path);
        }
        match self
            .runtimes
            .inspect(&ContainerId::new(owner.as_str()))
            .await
        {
            Ok(Some(owner_info)) if owner_info.host_namespaces.network == Some(true) => Err(
                format!("{owner} uses the host network: cutting it would cut the host"),
            ),
            Ok(Some(owner_info)) => owner_info
                .netns_path
                .filter(|path| !path.is_empty())
                .ok_or_else(|| format!("{owner}, whose network it shares, is not running")),
            Ok(None) => Err(format!(
                "{owner}, whose network it shares, no longer exists"
            )),
            Err(error) => Err(format!(
                "cannot inspect {owner}, whose network it shares: {error}"
            )),
        }
    }
}
