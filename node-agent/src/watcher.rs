//! Follows one runtime: list, then events from the list's time on; on any error, back off,
//! reconnect and resync in full, so a missed event never hides a container.
//!
//! The watcher is the only writer of its runtime's part of the inventory. It never panics on a
//! runtime error and always returns promptly when `shutdown` fires.
//!
//! **Fast lane**: a `start` event is also handed to enforcement as a [`StartSignal`] *before* the
//! container is inspected, so a verdict reached at `create` is acted on without waiting for the
//! inspect (DESIGN.md §2). The watcher then holds its inspect until enforcement has dealt with the
//! signal (at most [`FAST_PATH_HOLD`]): an inspect racing the pause slows the pause at the engine
//! (measured: +2–3 ms p50 on Docker), and afterwards the inventory sees the quarantined state at
//! once. The lane is bounded and never blocks the watcher: a signal that does not fit is dropped
//! and counted, and the inspect that follows still reaches enforcement.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use lazaret_core::{ContainerId, RuntimeKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::inventory::InventoryUpdate;
use crate::metrics::Metrics;
use crate::runtime::{ContainerRuntime, EventKind, RuntimeError, RuntimeResult, RuntimeVersion};

/// How many inspects run at once during a resync.
const RESYNC_CONCURRENCY: usize = 8;

/// Reconnect back-off: doubles from `initial` up to `max`; reset once a connection has held
/// events for `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    fn next(&self, current: Duration) -> Duration {
        (current * 2).min(self.max)
    }
}

/// What the watcher last knew about its runtime, for `scan`, health and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeStatus {
    pub connected: bool,
    pub version: Option<RuntimeVersion>,
    pub last_error: Option<String>,
    pub reconnects: u64,
}

fn unix_seconds_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Lists every container and inspects each (a few at a time). Containers that vanish between
/// list and inspect are skipped.
pub async fn inspect_all(
    runtime: &dyn ContainerRuntime,
) -> RuntimeResult<Vec<lazaret_core::ContainerInfo>> {
    let ids = runtime.list().await?;
    let inspected: Vec<RuntimeResult<Option<lazaret_core::ContainerInfo>>> =
        futures::stream::iter(ids)
            .map(|id| async move { runtime.inspect(&id).await })
            .buffer_unordered(RESYNC_CONCURRENCY)
            .collect()
            .await;
    let mut containers = Vec::with_capacity(inspected.len());
    for result in inspected {
        if let Some(info) = result? {
            containers.push(info);
        }
    }
    Ok(containers)
}

/// The longest a watcher holds a started container's inspect for enforcement (see the module
/// docs); a quarantine normally takes tens of milliseconds.
pub const FAST_PATH_HOLD: Duration = Duration::from_millis(200);

/// A container's `start` event, handed to enforcement before the inspect. See the module docs.
#[derive(Debug)]
pub struct StartSignal {
    pub runtime: RuntimeKind,
    pub id: ContainerId,
    /// The started process's PID when the event carried it.
    pub pid: Option<u32>,
    /// When the watcher read the event: the fast path's latency is measured from here.
    pub received: tokio::time::Instant,
    /// Dropped once enforcement has dealt with the signal: the watcher's inspect goes ahead.
    pub handled: Option<oneshot::Sender<()>>,
}

/// Why a connected session ended.
enum SessionEnd {
    Shutdown,
    Lost(RuntimeError),
}

pub struct Watcher {
    pub runtime: Arc<dyn ContainerRuntime>,
    pub updates: mpsc::Sender<InventoryUpdate>,
    pub metrics: Metrics,
    pub backoff: Backoff,
    pub status: watch::Sender<RuntimeStatus>,
    /// The fast lane to enforcement, when it runs.
    pub starts: Option<mpsc::Sender<StartSignal>>,
}

impl Watcher {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let runtime_name = self.runtime.kind().as_str();
        let mut delay = self.backoff.initial;
        let mut sessions: u64 = 0;
        loop {
            let started = tokio::time::Instant::now();
            match self.session(sessions, &shutdown).await {
                SessionEnd::Shutdown => break,
                SessionEnd::Lost(error) => {
                    let unreachable = InventoryUpdate::Unreachable {
                        runtime: self.runtime.kind(),
                    };
                    if self.updates.send(unreachable).await.is_err() {
                        break;
                    }
                    self.metrics.set_runtime_connected(runtime_name, false);
                    self.status.send_modify(|status| {
                        status.connected = false;
                        status.last_error = Some(error.to_string());
                    });
                    warn!(runtime = runtime_name, endpoint = %self.runtime.endpoint(), %error, retry_in = ?delay, "runtime connection lost");
                }
            }
            sessions += 1;
            if started.elapsed() >= self.backoff.max {
                delay = self.backoff.initial;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = self.backoff.next(delay);
        }
        self.metrics.set_runtime_connected(runtime_name, false);
        debug!(runtime = runtime_name, "watcher stopped");
    }

    /// One connection: connect, list + resync, then follow events until the stream breaks.
    async fn session(&self, previous_sessions: u64, shutdown: &CancellationToken) -> SessionEnd {
        let runtime_name = self.runtime.kind().as_str();
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return SessionEnd::Shutdown,
            connected = self.runtime.connect() => connected,
        };
        let version = match connected {
            Ok(version) => version,
            Err(error) => return SessionEnd::Lost(error),
        };
        // Events from one second before the list are replayed: duplicates are harmless
        // (upserts are idempotent), gaps are not.
        let since = unix_seconds_now() - 1;
        let listed = tokio::select! {
            _ = shutdown.cancelled() => return SessionEnd::Shutdown,
            listed = inspect_all(self.runtime.as_ref()) => listed,
        };
        let containers = match listed {
            Ok(containers) => containers,
            Err(error) => return SessionEnd::Lost(error),
        };
        let count = containers.len();
        if !self
            .send(InventoryUpdate::Resync {
                runtime: self.runtime.kind(),
                containers,
            })
            .await
        {
            return SessionEnd::Shutdown;
        }
        self.metrics.count_resync(runtime_name);
        if previous_sessions > 0 {
            self.metrics.count_reconnect(runtime_name);
        }
        self.metrics.set_runtime_connected(runtime_name, true);
        self.status.send_modify(|status| {
            status.connected = true;
            status.last_error = None;
            status.reconnects = previous_sessions;
            status.version = Some(version.clone());
        });
        info!(runtime = runtime_name, endpoint = %self.runtime.endpoint(), version = %version.version, containers = count, "runtime connected, inventory resynced");

        let mut events = self.runtime.events(since);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return SessionEnd::Shutdown,
                next = events.next() => next,
            };
            let event = match next {
                Some(Ok(event)) => event,
                Some(Err(error)) => return SessionEnd::Lost(error),
                None => {
                    return SessionEnd::Lost(RuntimeError::Unavailable {
                        runtime: self.runtime.kind(),
                        endpoint: self.runtime.endpoint(),
                        reason: "event stream ended".into(),
                    });
                }
            };
            let received = tokio::time::Instant::now();
            self.metrics.count_event(runtime_name);
            debug!(runtime = runtime_name, container_id = %event.id, action = %event.action, "container event");
            if event.kind == EventKind::Started {
                self.signal_start(&event.id, event.pid, received).await;
            }
            let update = match event.kind {
                EventKind::Removed => InventoryUpdate::Remove {
                    runtime: self.runtime.kind(),
                    id: event.id,
                },
                EventKind::Changed | EventKind::Started => match self.refresh(&event.id).await {
                    Ok(update) => update,
                    Err(error) => return SessionEnd::Lost(error),
                },
            };
            if !self.send(update).await {
                return SessionEnd::Shutdown;
            }
        }
    }

    async fn refresh(&self, id: &ContainerId) -> RuntimeResult<InventoryUpdate> {
        match self.runtime.inspect(id).await? {
            Some(info) => Ok(InventoryUpdate::Upsert(Box::new(info))),
            None => Ok(InventoryUpdate::Remove {
                runtime: self.runtime.kind(),
                id: id.clone(),
            }),
        }
    }

    /// Hands the start to enforcement and waits (bounded) until it has been dealt with.
    async fn signal_start(
        &self,
        id: &ContainerId,
        pid: Option<u32>,
        received: tokio::time::Instant,
    ) {
        let Some(starts) = &self.starts else {
            return;
        };
        let (handled, dealt_with) = oneshot::channel();
        let signal = StartSignal {
            runtime: self.runtime.kind(),
            id: id.clone(),
            pid,
            received,
            handled: Some(handled),
        };
        match starts.try_send(signal) {
            Ok(()) => {
                // Either outcome ends the hold: handled (sender dropped) or the deadline.
                let _held = tokio::time::timeout(FAST_PATH_HOLD, dealt_with).await;
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.count_fast_path_dropped();
                debug!(container_id = %id, "fast lane full: the start is enforced after the inspect");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// False when the inventory is gone (the agent is shutting down).
    async fn send(&self, update: InventoryUpdate) -> bool {
        self.updates.send(update).await.is_ok()
    }
}

#[cfg(test)]
mod tests;
