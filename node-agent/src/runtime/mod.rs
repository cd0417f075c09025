//! The container runtimes Lazaret watches and acts on, behind one trait.
//!
//! [`ContainerRuntime`] is the only door to a runtime: watchers list, inspect and follow events
//! through it, and (from issue 4/11 on) the quarantine manager pauses, resumes, kills and stops
//! through it. Backends: [`docker`] (bollard), [`containerd`], and `fake` (in memory, for tests and
//! benches; behind the `testsuite` feature).
//! Runtime specifics (API versions, error shapes, id formats) never leak past this module: every
//! backend hands out `lazaret_core::ContainerInfo` and [`RuntimeEvent`].

pub mod cgroup;
pub mod containerd;
pub mod docker;
#[cfg(test)]
mod expectations;
#[cfg(any(test, feature = "testsuite"))]
pub mod fake;

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use lazaret_core::{ContainerId, ContainerInfo, RuntimeKind};
use serde::Serialize;

/// Errors from a runtime backend. `Unavailable` is the one the watcher retries.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{runtime} at {endpoint} is unreachable: {reason}")]
    Unavailable {
        runtime: RuntimeKind,
        endpoint: String,
        reason: String,
    },
    #[error("container {id} not found")]
    NotFound { id: ContainerId },
    #[error("{runtime} refused {operation} on {id}: {reason}")]
    Refused {
        runtime: RuntimeKind,
        operation: &'static str,
        id: ContainerId,
        reason: String,
    },
    #[error("{runtime} API error during {operation}: {reason}")]
    Api {
        runtime: RuntimeKind,
        operation: &'static str,
        reason: String,
    },
}

pub type RuntimeResult<T> = Result<T, RuntimeError>;

/// What happened to a container, reduced to what the inventory needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created, paused, died, renamed, updated…: look at it again.
    Changed,
    /// The container's main process started (also after a restart): look at it again, and act at
    /// once on a verdict reached at `create` (the enforcement fast path, DESIGN.md §2).
    Started,
    /// Removed from the runtime.
    Removed,
}

/// One container event from a runtime's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub id: ContainerId,
    pub kind: EventKind,
    /// The runtime's own action name (`create`, `start`, `destroy`, …), for logs.
    pub action: String,
    /// When the runtime says it happened, nanoseconds since the Unix epoch (0 if unknown).
    pub time_nanos: i64,
    /// The started process's host PID when the event carries it (containerd's `/tasks/start`).
    pub pid: Option<u32>,
}

/// A runtime's identity and the versions of what it runs on, for `scan` and advisories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeVersion {
    /// The engine's own version (Docker's `20.10.24+dfsg1`).
    pub version: String,
    /// The API version negotiated with it.
    pub api_version: String,
    /// containerd version as the engine reports it.
    pub containerd: Option<String>,
    /// runc version as the engine reports it.
    pub runc: Option<String>,
}

/// The one interface to a container runtime.
///
/// Implementations must be cheap to call concurrently; `connect` may be called again at any time
/// (after an error) and must then start from a fresh connection.
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    fn kind(&self) -> RuntimeKind;

    /// Where the runtime is reached (socket path), for logs and reports.
    fn endpoint(&self) -> String;

    /// (Re)establishes the connection and negotiates the API version.
    async fn connect(&self) -> RuntimeResult<RuntimeVersion>;

    /// Every container the runtime knows, running or not.
    async fn list(&self) -> RuntimeResult<Vec<ContainerId>>;

    /// The container's full configuration and state; `Ok(None)` when it no longer exists.
    async fn inspect(&self, id: &ContainerId) -> RuntimeResult<Option<ContainerInfo>>;

    /// Container events from `since_unix_seconds` on (events in the past are replayed, so a
    /// caller that lists first and then subscribes from the list's time misses nothing). The
    /// stream ends or yields an error when the connection is lost.
    fn events(&self, since_unix_seconds: i64) -> BoxStream<'static, RuntimeResult<RuntimeEvent>>;

    /// Freezes every process of the container (cgroup freezer); memory is kept.
    async fn pause(&self, id: &ContainerId) -> RuntimeResult<()>;

    /// Thaws a paused container.
    async fn resume(&self, id: &ContainerId) -> RuntimeResult<()>;

    /// Pauses a *Docker* container's task directly, without going through dockerd, when this runtime can
    /// (containerd watching Docker's `moby` namespace); `None` when it cannot. Docker follows
    /// the task's state through containerd's events, so `docker inspect` and `docker unpause`
    /// stay right, and the call is ~5 ms shorter than Docker's own pause here (FACTS.md,
    /// benches/README.md).
    async fn pause_docker_task(&self, id: &ContainerId) -> Option<RuntimeResult<()>> {
        let _ = id;
        None
    }

    /// Sends SIGKILL. Never another signal: through Docker any other signal unfreezes a paused
    /// container.
    async fn kill(&self, id: &ContainerId) -> RuntimeResult<()>;

    /// Stops with SIGTERM, then SIGKILL after `grace`.
    async fn stop(&self, id: &ContainerId, grace: Duration) -> RuntimeResult<()>;

    /// The network namespace path of a container that has just started, found without an
    /// inspect (the enforcement fast path): `info` is what was inspected at `create`, `pid` what
    /// the start event carried. `None` when it cannot be told cheaply; the caller then inspects.
    fn started_netns(&self, info: &ContainerInfo, pid: Option<u32>) -> Option<String> {
        let _ = info;
        pid.map(cgroup::netns_of_pid)
    }
}
