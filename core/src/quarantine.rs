//! Quarantines as a pure state machine (DESIGN.md §2, `enforce/quarantine.rs`): the actions, the
//! record the API, the store and gossip share, the transitions between its states, TTL expiry,
//! and the exemptions a release leaves behind.
//!
//! ```text
//!                   applied                   tampered
//!   requested ───────────────▶ applied ──────────────────▶ tampered
//!     │   ▲                       ▲                           │
//!     │   │ retry                 └───────── applied ─────────┤
//!     │   │                                                   │ action-failed
//!     │   └───────────── failed ◀─────────────────────────────┘
//!     └──── action-failed ──▲
//!
//!   requested, applied, tampered, failed ── released | expired ──▶ released  (final)
//!   every state but released and gone ──── container-gone ─────▶ gone      (final)
//! ```
//!
//! `released` and `gone` are final. `failed` (an enforcement gap: an action proved impossible)
//! is not: it can be retried (back to `requested`), and it can be released, expire or go, because
//! the actions that did succeed before the failure (a network cut before a refused pause) are
//! still in force and must be undone one day.
//!
//! Every function here is total: an event that does not fit the state is a [`TransitionError`],
//! never a panic. This module must never do I/O or read the clock: the agent's quarantine
//! manager carries out the actions, stores each new record before the next action, writes the
//! audit record, and passes the time in.

mod action;
pub mod budget;
mod exemption;
mod source;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::action::{Action, DEFAULT_QUARANTINE_ACTIONS, UnknownAction, harden_network_cut};
pub use self::exemption::{Exemption, ExemptionSet};
pub use self::source::{InvalidQuarantineSource, QuarantineSource};
use crate::container::ContainerId;
use crate::policy::EnforcementScope;

/// Where a quarantine stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuarantineState {
    /// Decided and stored; the actions are being carried out. After a crash the agent rolls a
    /// `requested` quarantine forward.
    Requested,
    /// Every action took effect.
    Applied,
    /// Something undid an applied quarantine (the container was unpaused, the nftables table
    /// vanished); the agent re-applies it.
    Tampered,
    /// Over: an operator released it or its TTL ran out. Final.
    Released,
    /// An action proved impossible: an enforcement gap. Actions that succeeded before it stay in
    /// force until a retry, a release or expiry.
    Failed,
    /// The container was removed. Final.
    Gone,
}

impl QuarantineState {
    pub const ALL: [QuarantineState; 6] = [
        QuarantineState::Requested,
        QuarantineState::Applied,
        QuarantineState::Tampered,
        QuarantineState::Released,
        QuarantineState::Failed,
        QuarantineState::Gone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineState::Requested => "requested",
            QuarantineState::Applied => "applied",
            QuarantineState::Tampered => "tampered",
            QuarantineState::Released => "released",
            QuarantineState::Failed => "failed",
            QuarantineState::Gone => "gone",
        }
    }

    /// No event leaves a final state: `released` and `gone`. A new quarantine of the same
    /// container is a new record.
    pub fn is_terminal(self) -> bool {
        matches!(self, QuarantineState::Released | QuarantineState::Gone)
    }
}

impl fmt::Display for QuarantineState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The error for a state name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown quarantine state {given:?}: expected one of requested, applied, tampered, released, \
     failed, gone"
)]
pub struct UnknownQuarantineState {
    pub given: String,
}

impl FromStr for QuarantineState {
    type Err = UnknownQuarantineState;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        QuarantineState::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownQuarantineState {
                given: text.to_string(),
            })
    }
}

/// What happened to a quarantine. Events carry no details: who released it, which action failed
/// and why go into the audit record the caller writes alongside the transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuarantineEvent {
    /// Every action took effect: first application, or re-application after tampering.
    Applied,
    /// An action could not be carried out.
    ActionFailed,
    /// Something undid an applied quarantine.
    Tampered,
    /// An operator released it.
    Released,
    /// Its TTL ran out; refused while it has not (see [`apply`]).
    Expired,
    /// The runtime removed the container.
    ContainerGone,
    /// Try a failed quarantine again.
    Retry,
}

impl QuarantineEvent {
    pub const ALL: [QuarantineEvent; 7] = [
        QuarantineEvent::Applied,
        QuarantineEvent::ActionFailed,
        QuarantineEvent::Tampered,
        QuarantineEvent::Released,
        QuarantineEvent::Expired,
        QuarantineEvent::ContainerGone,
        QuarantineEvent::Retry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineEvent::Applied => "applied",
            QuarantineEvent::ActionFailed => "action-failed",
            QuarantineEvent::Tampered => "tampered",
            QuarantineEvent::Released => "released",
            QuarantineEvent::Expired => "expired",
            QuarantineEvent::ContainerGone => "container-gone",
            QuarantineEvent::Retry => "retry",
        }
    }
}

impl fmt::Display for QuarantineEvent {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// An event that does not fit the quarantine's state; `why` says what would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot apply `{event}` to a quarantine that is {from}: {why}")]
pub struct TransitionError {
    pub from: QuarantineState,
    pub event: QuarantineEvent,
    pub why: &'static str,
}

/// The quarantine record (DESIGN.md §3): one per quarantine of one container, rewritten at every
/// transition. The same shape is stored, served by the API and summarised in gossip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub container: ContainerId,
    /// The node (agent) that owns the container.
    pub node: String,
    pub state: QuarantineState,
    /// In the order they are carried out.
    pub actions: Vec<Action>,
    /// When the record entered its current state. Never moves backwards, even if the clock does.
    pub since_unix_ms: i64,
    /// When the quarantine ends by itself (the first instant it is expired); `None`: until
    /// released.
    pub expires_unix_ms: Option<i64>,
    /// Why it was quarantined, for people.
    pub reason: String,
    /// Who asked: a certificate subject, or `agent` for the agent's own verdicts.
    pub actor: String,
    pub source: QuarantineSource,
    /// What a network cut applies to: the container's own namespace, or its pod's shared one.
    #[serde(default)]
    pub scope: EnforcementScope,
    /// A release asked for and stored before its first undo: after a crash the agent finishes
    /// it instead of taking the half-undone quarantine for tampering. Absent from records of
    /// schema 1 (and not written when `None`, so those readers still read these records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub releasing: Option<Box<PendingRelease>>,
}

/// A release or an expiry that is under way: which of the two, who asked, and how long the
/// exemption it leaves lasts (an expiry leaves none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRelease {
    /// Absent from records written before expiries were stored this way: a release.
    #[serde(default)]
    pub kind: UndoKind,
    pub actor: String,
    pub reason: String,
    pub exempt_for_ms: u64,
}

impl PendingRelease {
    /// An operator's (or a detection's) release, leaving an exemption for `exempt_for`.
    pub fn release(actor: &str, reason: &str, exempt_for: Duration) -> PendingRelease {
        PendingRelease {
            kind: UndoKind::Release,
            actor: actor.to_string(),
            reason: reason.to_string(),
            exempt_for_ms: u64::try_from(exempt_for.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The end of a quarantine whose TTL ran out, by `actor` (the agent); no exemption.
    pub fn expiry(actor: &str) -> PendingRelease {
        PendingRelease {
            kind: UndoKind::Expiry,
            actor: actor.to_string(),
            reason: "ttl ran out".to_string(),
            exempt_for_ms: 0,
        }
    }

    pub fn exempt_for(&self) -> Duration {
        Duration::from_millis(self.exempt_for_ms)
    }
}

/// How a quarantine that is being undone ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UndoKind {
    /// Released on request: `released`, and an exemption for the source.
    #[default]
    Release,
    /// Its TTL ran out: `expired`, no exemption.
    Expiry,
}

impl UndoKind {
    /// `release` or `expiry`, as serialised (and as the metrics label it).
    pub fn as_str(self) -> &'static str {
        match self {
            UndoKind::Release => "release",
            UndoKind::Expiry => "expiry",
        }
    }

    /// The event that ends the quarantine once every action is undone.
    pub fn event(self) -> QuarantineEvent {
        match self {
            UndoKind::Release => QuarantineEvent::Released,
            UndoKind::Expiry => QuarantineEvent::Expired,
        }
    }

    /// The audit action that records it.
    pub fn audit_action(self) -> &'static str {
        match self {
            UndoKind::Release => "release",
            UndoKind::Expiry => "expire",
        }
    }
}

/// What a quarantine is asked with, before it has a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRequest {
    pub container: ContainerId,
    pub node: String,
    /// Policy validation refuses an empty list; [`DEFAULT_QUARANTINE_ACTIONS`] is the usual
    /// choice for an operator who names none.
    pub actions: Vec<Action>,
    /// `None`: until released.
    pub ttl: Option<Duration>,
    pub reason: String,
    pub actor: String,
    pub source: QuarantineSource,
    /// Whether a network cut may cut a namespace the container shares (its pod's).
    pub scope: EnforcementScope,
}

impl QuarantineRecord {
    /// A new quarantine in state `requested` at `now_unix_ms`, expiring `ttl` later (saturating
    /// at the end of time; a zero TTL is expired at once).
    pub fn requested(request: QuarantineRequest, now_unix_ms: i64) -> QuarantineRecord {
        let expires_unix_ms = request.ttl.map(|ttl| {
            let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            now_unix_ms.saturating_add(ttl_ms)
        });
        QuarantineRecord {
            container: request.container,
            node: request.node,
            state: QuarantineState::Requested,
            actions: request.actions,
            since_unix_ms: now_unix_ms,
            expires_unix_ms,
            reason: request.reason,
            actor: request.actor,
            source: request.source,
            scope: request.scope,
            releasing: None,
        }
    }

    /// This record, stored before the first undo of `pending`: marked as being undone.
    pub fn undoing(&self, pending: PendingRelease) -> QuarantineRecord {
        QuarantineRecord {
            releasing: Some(Box::new(pending)),
            ..self.clone()
        }
    }

    /// This record with no undo under way (an undo that failed: the quarantine stays).
    pub fn kept(&self) -> QuarantineRecord {
        QuarantineRecord {
            releasing: None,
            ..self.clone()
        }
    }

    /// Whether the TTL has run out at `now_unix_ms`, whatever the state. Exactly at
    /// `expires_unix_ms` it has.
    pub fn is_expired(&self, now_unix_ms: i64) -> bool {
        self.expires_unix_ms
            .is_some_and(|expires_unix_ms| now_unix_ms >= expires_unix_ms)
    }
}

/// The state `event` leads to from `from`, ignoring time (see [`apply`] for `expired`).
///
/// | from | applied | action-failed | tampered | released, expired | container-gone | retry |
/// |---|---|---|---|---|---|---|
/// | requested      | applied | failed | –        | released | gone | –         |
/// | applied        | –       | –      | tampered | released | gone | –         |
/// | tampered       | applied | failed | –        | released | gone | –         |
/// | failed         | –       | –      | –        | released | gone | requested |
/// | released, gone | –       | –      | –        | –        | –    | –         |
pub fn next_state(
    from: QuarantineState,
    event: QuarantineEvent,
) -> Result<QuarantineState, TransitionError> {
    use QuarantineEvent as Event;
    use QuarantineState as State;
    let refuse = |why| Err(TransitionError { from, event, why });
    match (from, event) {
        (State::Released, _) => refuse("released is final: quarantine the container anew"),
        (State::Gone, _) => refuse("gone is final: the container no longer exists"),
        (_, Event::Released | Event::Expired) => Ok(State::Released),
        (_, Event::ContainerGone) => Ok(State::Gone),
        (State::Requested | State::Tampered, Event::Applied) => Ok(State::Applied),
        (State::Requested | State::Tampered, Event::ActionFailed) => Ok(State::Failed),
        (State::Applied, Event::Tampered) => Ok(State::Tampered),
        (State::Failed, Event::Retry) => Ok(State::Requested),
        (State::Applied, Event::Applied) => refuse("it is already applied"),
        (State::Applied, Event::ActionFailed) => {
            refuse("its actions already took effect: report `tampered` if they were undone")
        }
        (State::Requested, Event::Tampered) => refuse("nothing has been applied yet"),
        (State::Tampered, Event::Tampered) => refuse("it is already marked tampered"),
        (State::Failed, Event::Applied) => {
            refuse("a failed quarantine must be retried (back to requested) first")
        }
        (State::Failed, Event::ActionFailed) => refuse("it has already failed"),
        (State::Failed, Event::Tampered) => refuse("a failed quarantine was never applied"),
        (_, Event::Retry) => refuse("only a failed quarantine can be retried"),
    }
}

/// The record after `event` at `now_unix_ms`, or why the event does not fit.
///
/// Only `state` and `since_unix_ms` change; `since` becomes `now`, or stays put if the clock
/// went backwards. `expired` is refused for a record without a TTL or before its TTL has run
/// out, so a released-by-expiry record always really was due.
pub fn apply(
    record: &QuarantineRecord,
    event: QuarantineEvent,
    now_unix_ms: i64,
) -> Result<QuarantineRecord, TransitionError> {
    let state = next_state(record.state, event)?;
    // An expiry stored as under way was decided when the TTL had run out: it is finished even
    // if the clock reads earlier now (moved back, or another host's).
    let decided = record
        .releasing
        .as_ref()
        .is_some_and(|pending| pending.kind == UndoKind::Expiry);
    if event == QuarantineEvent::Expired && !decided {
        let refuse = |why| TransitionError {
            from: record.state,
            event,
            why,
        };
        if record.expires_unix_ms.is_none() {
            return Err(refuse("it has no ttl"));
        }
        if !record.is_expired(now_unix_ms) {
            return Err(refuse("its ttl has not run out yet"));
        }
    }
    Ok(QuarantineRecord {
        state,
        since_unix_ms: record.since_unix_ms.max(now_unix_ms),
        releasing: record.releasing.clone().filter(|_| !state.is_terminal()),
        ..record.clone()
    })
}

/// The released record if `record`'s TTL has run out at `now_unix_ms` and it is not final yet;
/// `None` otherwise. What the agent's periodic sweep calls on every quarantine.
pub fn expire_if_due(record: &QuarantineRecord, now_unix_ms: i64) -> Option<QuarantineRecord> {
    apply(record, QuarantineEvent::Expired, now_unix_ms).ok()
}
