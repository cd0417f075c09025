//! containerd's event subscription: started by `connect`, handed out by `events`.
//!
//! containerd keeps no event history (`Subscribe` has no `since`), and its `Subscribe` call only
//! returns once the first event arrives. So the subscription is opened in `connect`, and
//! `connect` publishes a probe event (topic [`PROBE_TOPIC`] in namespace [`PROBE_NAMESPACE`],
//! which no engine or kubelet subscribes to) until the probe comes back: from then on the
//! subscription is registered inside containerd, and everything that happens after `connect`
//! returns is buffered for `events`, even though the watcher lists first. Merely having sent
//! the `Subscribe` call is not enough: on Docker's containerd the first probe, published right
//! after it, was seen delivered to another subscriber but not to ours (the second one was). The
//! probe creates no object (no namespace either); it only passes over containerd's event bus.
//!
//! This module must never block containerd: a full buffer ends the subscription (the watcher
//! then reconnects and resyncs) instead of applying back-pressure to containerd's event queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use containerd_client::events::{
    ContainerCreate, ContainerDelete, ContainerUpdate, TaskCreate, TaskDelete, TaskExit, TaskOom,
    TaskPaused, TaskResumed, TaskStart,
};
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::{PublishRequest, SubscribeRequest};
use containerd_client::tonic::transport::Channel;
use containerd_client::types::Envelope;
use futures::StreamExt;
use futures::stream::BoxStream;
use lazaret_core::{ContainerId, RuntimeKind};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{request_in, within};
use crate::runtime::{EventKind, RuntimeError, RuntimeEvent, RuntimeResult};

/// The namespace the subscription probe is published in (events are namespaced; this one holds
/// no objects and is never listed).
pub const PROBE_NAMESPACE: &str = "lazaret-probe";
/// The probe's topic; filtered out before anything reaches the watcher.
pub const PROBE_TOPIC: &str = "/lazaret/subscription-probe";
/// Events buffered until the watcher reads them; more unread than this ends the subscription,
/// and the watcher's reconnect resyncs instead.
const EVENT_BUFFER: usize = 4096;
/// How often the probe is published until the subscription confirms it.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// How long `connect` waits for the subscription to confirm.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Server-side filters (any one matches): container and task life-cycle, and the probe.
fn subscription_filters() -> Vec<String> {
    vec![
        r#"topic~="^/containers/""#.to_string(),
        r#"topic~="^/tasks/""#.to_string(),
        format!(r#"topic=="{PROBE_TOPIC}""#),
    ]
}

/// Container id → namespace, shared by the runtime (list) and the forwarder (events).
pub type NamespaceMap = Arc<Mutex<HashMap<ContainerId, String>>>;

/// Why the forwarder stopped, read by the stream once the buffer is drained.
type EndReason = Arc<Mutex<Option<RuntimeError>>>;

/// The receiving side, until `events` hands it out as a stream.
pub struct Subscription {
    receiver: mpsc::Receiver<RuntimeEvent>,
    end: EndReason,
    endpoint: String,
}

impl Subscription {
    /// Buffered events, then one error saying why the subscription ended.
    pub fn into_stream(self) -> BoxStream<'static, RuntimeResult<RuntimeEvent>> {
        futures::stream::unfold(Some(self), |state| async move {
            let mut subscription = state?;
            match subscription.receiver.recv().await {
                Some(event) => Some((Ok(event), Some(subscription))),
                None => {
                    let reason = subscription
                        .end
                        .lock()
                        .expect("end reason lock poisoned")
                        .take()
                        .unwrap_or_else(|| {
                            unavailable(&subscription.endpoint, "event subscription ended")
                        });
                    Some((Err(reason), None))
                }
            }
        })
        .boxed()
    }
}

/// The background task forwarding envelopes; aborted when dropped (on reconnect or when the
/// runtime goes away), which closes the stream handed out earlier.
pub struct Forwarder {
    task: JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the forwarder needs besides the channel.
pub struct ForwarderContext {
    pub endpoint: String,
    pub namespaces: Vec<String>,
    pub known: NamespaceMap,
    /// Namespaces of which only start events are passed on.
    pub shadowed: Vec<String>,
}

/// Opens the subscription and returns once containerd has confirmed it (see the module docs).
pub async fn subscribe(
    channel: Channel,
    context: ForwarderContext,
) -> RuntimeResult<(Subscription, Forwarder)> {
    let (sender, receiver) = mpsc::channel(EVENT_BUFFER);
    let end: EndReason = Arc::new(Mutex::new(None));
    let (ready_sender, ready_receiver) = oneshot::channel();
    let endpoint = context.endpoint.clone();
    let task = tokio::spawn(forward(
        EventsClient::new(channel.clone()),
        context,
        sender,
        end.clone(),
        ready_sender,
    ));
    let forwarder = Forwarder { task };
    confirm(channel, &endpoint, ready_receiver, &end).await?;
    let subscription = Subscription {
        receiver,
        end,
        endpoint,
    };
    Ok((subscription, forwarder))
}

async fn confirm(
    channel: Channel,
    endpoint: &str,
    mut ready: oneshot::Receiver<()>,
    end: &EndReason,
) -> RuntimeResult<()> {
    let mut client = EventsClient::new(channel);
    let probe = PublishRequest {
        topic: PROBE_TOPIC.to_string(),
        event: Some(prost_types::Any {
            type_url: "google.protobuf.Empty".to_string(),
            value: Vec::new(),
        }),
    };
    let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
    loop {
        let request = request_in(PROBE_NAMESPACE, probe.clone())?;
        if let Err(status) = within(client.publish(request)).await {
            if super::is_transport_error(&status) {
                return Err(unavailable(endpoint, format!("publish probe: {status}")));
            }
            // A containerd that refuses publishing still delivers real events; the
            // subscription is then merely unconfirmed.
            tracing::warn!(endpoint, %status, "containerd refused the subscription probe; events are not confirmed");
            return Ok(());
        }
        tokio::select! {
            confirmed = &mut ready => {
                return confirmed.map_err(|_| {
                    end.lock()
                        .expect("end reason lock poisoned")
                        .take()
                        .unwrap_or_else(|| unavailable(endpoint, "event subscription failed"))
                });
            }
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(unavailable(
                endpoint,
                format!("event subscription not confirmed within {CONFIRM_TIMEOUT:?}"),
            ));
        }
    }
}

async fn forward(
    mut client: EventsClient<Channel>,
    context: ForwarderContext,
    sender: mpsc::Sender<RuntimeEvent>,
    end: EndReason,
    ready: oneshot::Sender<()>,
) {
    let finish = |reason: RuntimeError| {
        *end.lock().expect("end reason lock poisoned") = Some(reason);
    };
    let request = SubscribeRequest {
        filters: subscription_filters(),
    };
    let mut envelopes = match client.subscribe(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            return finish(unavailable(
                &context.endpoint,
                format!("subscribe: {status}"),
            ));
        }
    };
    // The call returned, so an envelope is in flight: containerd has registered us.
    if ready.send(()).is_err() {
        return;
    }
    loop {
        let next = tokio::select! {
            _ = sender.closed() => return,
            next = envelopes.message() => next,
        };
        let envelope = match next {
            Ok(Some(envelope)) => envelope,
            Ok(None) => {
                return finish(unavailable(
                    &context.endpoint,
                    "containerd closed the event stream",
                ));
            }
            Err(status) => {
                return finish(unavailable(
                    &context.endpoint,
                    format!("event stream: {status}"),
                ));
            }
        };
        if envelope.topic == PROBE_TOPIC || !context.namespaces.contains(&envelope.namespace) {
            continue;
        }
        let Some(event) = event_from_envelope(&envelope) else {
            continue;
        };
        remember(&context.known, &envelope.namespace, &event);
        if event.kind != EventKind::Started && context.shadowed.contains(&envelope.namespace) {
            continue;
        }
        match sender.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return finish(unavailable(
                    &context.endpoint,
                    format!("more than {EVENT_BUFFER} events unread; resync needed"),
                ));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// Keeps the id → namespace map current, so actions on a new container find its namespace.
fn remember(known: &NamespaceMap, namespace: &str, event: &RuntimeEvent) {
    let mut known = known.lock().expect("namespace map lock poisoned");
    match event.kind {
        EventKind::Removed => {
            if known
                .get(&event.id)
                .is_some_and(|known_namespace| known_namespace == namespace)
            {
                known.remove(&event.id);
            }
        }
        EventKind::Changed | EventKind::Started => {
            known.insert(event.id.clone(), namespace.to_string());
        }
    }
}

/// Maps one envelope to an event for the inventory; `None` for topics that say nothing about a
/// container's configuration or state (exec processes, checkpoints, images, snapshots).
pub fn event_from_envelope(envelope: &Envelope) -> Option<RuntimeEvent> {
    let payload = envelope.event.as_ref().map(|any| any.value.as_slice())?;
    let mut pid = None;
    let (id, kind) = match envelope.topic.as_str() {
        "/containers/create" => (
            ContainerCreate::decode(payload).ok()?.id,
            EventKind::Changed,
        ),
        "/containers/update" => (
            ContainerUpdate::decode(payload).ok()?.id,
            EventKind::Changed,
        ),
        "/containers/delete" => (
            ContainerDelete::decode(payload).ok()?.id,
            EventKind::Removed,
        ),
        "/tasks/create" => (
            TaskCreate::decode(payload).ok()?.container_id,
            EventKind::Changed,
        ),
        "/tasks/start" => {
            let start = TaskStart::decode(payload).ok()?;
            pid = Some(start.pid).filter(|&pid| pid != 0);
            (start.container_id, EventKind::Started)
        }
        "/tasks/paused" => (
            TaskPaused::decode(payload).ok()?.container_id,
            EventKind::Changed,
        ),
        "/tasks/resumed" => (
            TaskResumed::decode(payload).ok()?.container_id,
            EventKind::Changed,
        ),
        "/tasks/oom" => (
            TaskOom::decode(payload).ok()?.container_id,
            EventKind::Changed,
        ),
        "/tasks/exit" => {
            let exit = TaskExit::decode(payload).ok()?;
            // An exec'd process exiting changes nothing about the container.
            if !exit.id.is_empty() && exit.id != exit.container_id {
                return None;
            }
            (exit.container_id, EventKind::Changed)
        }
        "/tasks/delete" => {
            let delete = TaskDelete::decode(payload).ok()?;
            if !delete.id.is_empty() && delete.id != delete.container_id {
                return None;
            }
            (delete.container_id, EventKind::Changed)
        }
        _ => return None,
    };
    if id.is_empty() {
        return None;
    }
    let time_nanos = envelope
        .timestamp
        .as_ref()
        .map(|time| {
            time.seconds
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(time.nanos))
        })
        .unwrap_or(0);
    Some(RuntimeEvent {
        id: ContainerId::new(id),
        kind,
        action: envelope.topic.clone(),
        time_nanos,
        pid,
    })
}

fn unavailable(endpoint: &str, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::Unavailable {
        runtime: RuntimeKind::Containerd,
        endpoint: endpoint.to_string(),
        reason: reason.into(),
    }
}
