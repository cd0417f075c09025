//! An in-memory runtime for unit tests of the logic and for benches: containers are added,
//! changed and removed by the test, which can also take the runtime "down" to exercise
//! reconnects. Never the only proof that something works against a real engine.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use lazaret_core::{ContainerId, ContainerInfo, ContainerState, RuntimeKind};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::{
    ContainerRuntime, EventKind, RuntimeError, RuntimeEvent, RuntimeResult, RuntimeVersion,
};

#[derive(Debug, Clone)]
enum Signal {
    Event(RuntimeEvent),
    /// The connection drops: every open event stream ends with an error.
    Disconnect,
}

struct State {
    containers: BTreeMap<ContainerId, ContainerInfo>,
    available: bool,
    /// Pause calls still to refuse (a flaky runtime): inspects and events go on.
    failing_pauses: usize,
    /// Every event so far with its time (Unix seconds), for `events(since)` replay.
    history: Vec<(i64, RuntimeEvent)>,
}

fn unix_seconds_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub struct FakeRuntime {
    kind: RuntimeKind,
    state: Mutex<State>,
    signals: broadcast::Sender<Signal>,
    inspects: AtomicUsize,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        FakeRuntime::new()
    }
}

impl FakeRuntime {
    pub fn new() -> Self {
        FakeRuntime::with_kind(RuntimeKind::Fake)
    }

    /// A fake that reports itself as `kind` (to test routing between runtimes).
    pub fn with_kind(kind: RuntimeKind) -> Self {
        let (signals, _) = broadcast::channel(4096);
        FakeRuntime {
            kind,
            state: Mutex::new(State {
                containers: BTreeMap::new(),
                available: true,
                failing_pauses: 0,
                history: Vec::new(),
            }),
            signals,
            inspects: AtomicUsize::new(0),
        }
    }

    /// How many times a container was inspected (the fast path must not inspect).
    pub fn inspects(&self) -> usize {
        self.inspects.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake runtime lock poisoned")
    }

    fn record(&self, state: &mut State, id: ContainerId, kind: EventKind, action: &str) {
        let now = unix_seconds_now();
        let event = RuntimeEvent {
            id,
            kind,
            action: action.to_string(),
            time_nanos: now.saturating_mul(1_000_000_000),
            pid: None,
        };
        state.history.push((now, event.clone()));
        if state.available {
            // No receiver is fine: nobody is watching yet.
            let _unwatched = self.signals.send(Signal::Event(event));
        }
    }

    /// Adds or replaces a container and emits an event, as the runtime would.
    pub fn upsert(&self, info: ContainerInfo) {
        let mut state = self.lock();
        let id = info.id.clone();
        let action = if state.containers.contains_key(&id) {
            "update"
        } else {
            "create"
        };
        state.containers.insert(id.clone(), info);
        self.record(&mut state, id, EventKind::Changed, action);
    }

    /// Starts a created (or stopped) container and emits `start`, as the runtime would.
    pub fn start(&self, id: &ContainerId) -> RuntimeResult<()> {
        self.check_available()?;
        let mut state = self.lock();
        let Some(container) = state.containers.get_mut(id) else {
            return Err(RuntimeError::NotFound { id: id.clone() });
        };
        container.state = ContainerState::Running;
        self.record(&mut state, id.clone(), EventKind::Started, "start");
        Ok(())
    }

    /// Removes a container and emits `destroy`.
    pub fn remove(&self, id: &ContainerId) {
        let mut state = self.lock();
        if state.containers.remove(id).is_some() {
            self.record(&mut state, id.clone(), EventKind::Removed, "destroy");
        }
    }

    /// Changes the container silently (no event): what a missed event looks like.
    pub fn upsert_without_event(&self, info: ContainerInfo) {
        self.lock().containers.insert(info.id.clone(), info);
    }

    /// Takes the runtime down (streams break, calls fail) or brings it back.
    pub fn set_available(&self, available: bool) {
        self.lock().available = available;
        if !available {
            let _unwatched = self.signals.send(Signal::Disconnect);
        }
    }

    /// Refuses the next `count` pause calls, as a flaky runtime API does; the rest of the API
    /// keeps answering.
    pub fn fail_pauses(&self, count: usize) {
        self.lock().failing_pauses = count;
    }

    pub fn container(&self, id: &ContainerId) -> Option<ContainerInfo> {
        self.lock().containers.get(id).cloned()
    }

    fn check_available(&self) -> RuntimeResult<()> {
        if self.lock().available {
            Ok(())
        } else {
            Err(RuntimeError::Unavailable {
                runtime: RuntimeKind::Fake,
                endpoint: "memory".into(),
                reason: "taken down by the test".into(),
            })
        }
    }

    fn set_state(
        &self,
        id: &ContainerId,
        operation: &'static str,
        to: ContainerState,
    ) -> RuntimeResult<()> {
        self.check_available()?;
        let mut state = self.lock();
        let Some(container) = state.containers.get_mut(id) else {
            return Err(RuntimeError::NotFound { id: id.clone() });
        };
        container.state = to;
        self.record(&mut state, id.clone(), EventKind::Changed, operation);
        Ok(())
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    fn kind(&self) -> RuntimeKind {
        self.kind
    }

    fn endpoint(&self) -> String {
        "memory".into()
    }

    async fn connect(&self) -> RuntimeResult<RuntimeVersion> {
        self.check_available()?;
        Ok(RuntimeVersion {
            version: "fake".into(),
            api_version: "1".into(),
            containerd: None,
            runc: None,
        })
    }

    async fn list(&self) -> RuntimeResult<Vec<ContainerId>> {
        self.check_available()?;
        Ok(self.lock().containers.keys().cloned().collect())
    }

    async fn inspect(&self, id: &ContainerId) -> RuntimeResult<Option<ContainerInfo>> {
        self.inspects.fetch_add(1, Ordering::Relaxed);
        self.check_available()?;
        Ok(self.lock().containers.get(id).cloned())
    }

    fn events(&self, since_unix_seconds: i64) -> BoxStream<'static, RuntimeResult<RuntimeEvent>> {
        if let Err(error) = self.check_available() {
            return futures::stream::once(async move { Err(error) }).boxed();
        }
        // Subscribe before reading history so nothing falls between the two.
        let live = BroadcastStream::new(self.signals.subscribe());
        let replay: Vec<RuntimeResult<RuntimeEvent>> = self
            .lock()
            .history
            .iter()
            .filter(|(time, _)| *time >= since_unix_seconds)
            .map(|(_, event)| Ok(event.clone()))
            .collect();
        let live = live
            .map(|signal| match signal {
                Ok(Signal::Event(event)) => Ok(event),
                Ok(Signal::Disconnect) | Err(_) => Err(RuntimeError::Unavailable {
                    runtime: RuntimeKind::Fake,
                    endpoint: "memory".into(),
                    reason: "connection dropped".into(),
                }),
            })
            .take_while(|item| futures::future::ready(item.is_ok()))
            .chain(futures::stream::once(async {
                Err(RuntimeError::Unavailable {
                    runtime: RuntimeKind::Fake,
                    endpoint: "memory".into(),
                    reason: "connection dropped".into(),
                })
            }));
        futures::stream::iter(replay).chain(live).boxed()
    }

    async fn pause(&self, id: &ContainerId) -> RuntimeResult<()> {
        {
            let mut state = self.lock();
            if state.failing_pauses > 0 {
                state.failing_pauses -= 1;
                return Err(RuntimeError::Api {
                    runtime: RuntimeKind::Fake,
                    operation: "pause",
                    reason: "injected failure (a flaky runtime)".into(),
                });
            }
        }
        self.set_state(id, "pause", ContainerState::Paused)
    }

    async fn resume(&self, id: &ContainerId) -> RuntimeResult<()> {
        self.set_state(id, "unpause", ContainerState::Running)
    }

    async fn kill(&self, id: &ContainerId) -> RuntimeResult<()> {
        self.set_state(id, "kill", ContainerState::Exited)
    }

    async fn stop(&self, id: &ContainerId, _grace: Duration) -> RuntimeResult<()> {
        self.set_state(id, "stop", ContainerState::Exited)
    }
}
