//! The enforcement actions a policy, a response rule or an operator can ask for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One thing the agent does to a container. Written in policies and on the command line with the
/// names of [`Action::as_str`] (`actions: [network-cut, pause]`).
///
/// The variants are declared, and therefore ordered (`Ord`), by strength: `alert < network-cut <
/// pause < stop < kill`. Strength says how much an action takes away from the workload, so a
/// caller merging two requests keeps the stronger one; [`Action::strength`] gives the same order
/// as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Report only: the container is left alone.
    Alert,
    /// Drop all traffic in the container's network namespace (an nftables table); reversible.
    NetworkCut,
    /// Freeze every process (cgroup freezer); reversible, memory and evidence kept.
    Pause,
    /// SIGTERM, then SIGKILL after the grace period: the workload may run its shutdown code.
    Stop,
    /// SIGKILL at once: nothing in the container runs again.
    Kill,
}

/// The quarantine used when an operator asks for one without naming actions: cut the network
/// and freeze the processes, both reversible, so a release restores the workload and the
/// evidence in memory survives.
pub const DEFAULT_QUARANTINE_ACTIONS: [Action; 2] = [Action::NetworkCut, Action::Pause];

impl Action {
    /// In strength order.
    pub const ALL: [Action; 5] = [
        Action::Alert,
        Action::NetworkCut,
        Action::Pause,
        Action::Stop,
        Action::Kill,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::NetworkCut => "network-cut",
            Action::Pause => "pause",
            Action::Stop => "stop",
            Action::Kill => "kill",
        }
    }

    /// 0 for `alert` up to 4 for `kill`; agrees with the derived `Ord`.
    pub fn strength(self) -> u8 {
        match self {
            Action::Alert => 0,
            Action::NetworkCut => 1,
            Action::Pause => 2,
            Action::Stop => 3,
            Action::Kill => 4,
        }
    }

    /// Whether a release can undo it (`network-cut`, `pause`); `alert` changes nothing, and a
    /// stopped or killed workload stays down after a release.
    pub fn is_reversible(self) -> bool {
        matches!(self, Action::NetworkCut | Action::Pause)
    }

    /// Whether it does anything to the container at all (everything but `alert`).
    pub fn affects_container(self) -> bool {
        self != Action::Alert
    }

    /// The strongest action in a list, `None` for an empty one.
    pub fn strongest(actions: &[Action]) -> Option<Action> {
        actions.iter().copied().max()
    }
}

/// Makes a network cut hold: a container that can administer its own network (`NET_ADMIN`
/// added, `ALL` capabilities, or privileged) can delete the cut's table, so a quarantine that
/// cuts such a container without otherwise stopping its processes is given `pause` as well.
/// Returns the actions to carry out and, when `pause` was added, why (for the audit record).
/// Unknown capabilities (`None`) add nothing: the periodic re-check still catches a deleted table.
pub fn harden_network_cut(
    actions: &[Action],
    container: &crate::ContainerInfo,
) -> (Vec<Action>, Option<&'static str>) {
    let mut hardened = actions.to_vec();
    let cuts = actions.contains(&Action::NetworkCut);
    let freezes_or_ends = actions
        .iter()
        .any(|action| matches!(action, Action::Pause | Action::Stop | Action::Kill));
    let net_admin = container.privileged == Some(true)
        || container
            .cap_add
            .iter()
            .flatten()
            .any(|capability| capability == "NET_ADMIN" || capability == "ALL");
    if cuts && !freezes_or_ends && net_admin {
        hardened.push(Action::Pause);
        return (
            hardened,
            Some("pause added: the container has NET_ADMIN and could delete the network cut"),
        );
    }
    (hardened, None)
}

impl fmt::Display for Action {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The error for an action name Lazaret does not know; its message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action {given:?}: expected one of alert, network-cut, pause, stop, kill")]
pub struct UnknownAction {
    pub given: String,
}

impl FromStr for Action {
    type Err = UnknownAction;

    /// Accepts the names of [`Action::as_str`], ignoring case and surrounding spaces like
    /// [`crate::Severity`] does.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|action| action.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownAction {
                given: text.to_string(),
            })
    }
}
