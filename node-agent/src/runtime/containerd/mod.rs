//! The containerd backend (containerd-client: gRPC on containerd's unix socket).
//!
//! One instance serves every namespace it is given (`moby`, `k8s.io`, `default` by default):
//! `list` covers them all, and an internal id → namespace map (filled by `list` and events,
//! with a search of every namespace on a miss) tells `inspect`, `pause`, `resume`, `kill` and
//! `stop` which `containerd-namespace` header to send. Known limitation: two namespaces using
//! the same container id are one container here (the last one listed wins, with a warning).
//!
//! containerd cannot replay events, so the event subscription starts in `connect` (see
//! `events.rs`); `events(since)` hands out that subscription and ignores `since`. Actions go
//! through the Tasks service; this backend never creates, starts or deletes anything.

mod capabilities;
mod convert;
mod events;
mod records;
mod spec;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::tonic::metadata::MetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Response, Status};
use futures::StreamExt;
use futures::stream::BoxStream;
use lazaret_core::{ContainerId, ContainerInfo, RuntimeKind};

pub use convert::{Host, ImageView, RESTART_POLICY_LABEL, container_info};
pub use events::{PROBE_NAMESPACE, PROBE_TOPIC, event_from_envelope};

use self::events::{Forwarder, ForwarderContext, NamespaceMap, Subscription};
use super::{ContainerRuntime, RuntimeError, RuntimeEvent, RuntimeResult, RuntimeVersion};

/// The namespaces watched when the configuration names none: Docker's, Kubernetes' (CRI) and
/// `ctr`'s.
pub const DEFAULT_NAMESPACES: [&str; 3] = [DOCKER_NAMESPACE, "k8s.io", "default"];
/// Docker's containerd namespace: its containers' tasks live there under their Docker ids.
pub const DOCKER_NAMESPACE: &str = "moby";
/// A system containerd first, then the one Docker manages for itself.
const CANDIDATE_SOCKETS: [&str; 2] = [
    "/run/containerd/containerd.sock",
    "/var/run/docker/containerd/containerd.sock",
];
const NAMESPACE_HEADER: &str = "containerd-namespace";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on every unary call; containerd answers local calls in about a millisecond.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The first containerd socket that exists, for a default configuration.
pub fn default_socket() -> Option<String> {
    CANDIDATE_SOCKETS
        .iter()
        .find(|socket| std::path::Path::new(socket).exists())
        .map(|socket| socket.to_string())
}

pub struct ContainerdRuntime {
    socket: String,
    namespaces: Vec<String>,
    session: Mutex<Option<Session>>,
    known: NamespaceMap,
    /// What `--privileged` grants on this host (the agent's own bounding set).
    host_capabilities: Vec<String>,
    /// (namespace, `repo@digest`) → whether that image record exists.
    digest_records: Mutex<HashMap<(String, String), bool>>,
    /// Namespaces whose containers another watched runtime reports (Docker's `moby`, when Docker
    /// is watched): only their start events are passed on (the fast path may act on the earliest
    /// start signal); their other events would make the agent inspect, for a view the inventory
    /// ignores anyway.
    shadowed: Vec<String>,
}

/// One connection: its channel, the subscription until `events` takes it, and the forwarder,
/// aborted when the session is replaced or dropped.
struct Session {
    channel: Channel,
    subscription: Option<Subscription>,
    _forwarder: Forwarder,
}

impl ContainerdRuntime {
    /// A backend for the containerd at `socket` (a path, `unix://` optional) watching
    /// `namespaces`. Nothing is contacted until [`ContainerRuntime::connect`].
    pub fn new(socket: impl Into<String>, namespaces: Vec<String>) -> Self {
        let socket = socket.into();
        let socket = socket
            .strip_prefix("unix://")
            .unwrap_or(&socket)
            .to_string();
        ContainerdRuntime {
            socket,
            namespaces,
            session: Mutex::new(None),
            known: Arc::new(Mutex::new(HashMap::new())),
            host_capabilities: records::own_bounding_capabilities(),
            digest_records: Mutex::new(HashMap::new()),
            shadowed: Vec::new(),
        }
    }

    /// Passes on only the start events of `namespaces` (see the field's docs).
    pub fn shadowing(mut self, namespaces: Vec<String>) -> Self {
        self.shadowed = namespaces;
        self
    }

    /// The namespaces this backend watches, in listing order.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    fn channel(&self) -> RuntimeResult<Channel> {
        self.session
            .lock()
            .expect("containerd session lock poisoned")
            .as_ref()
            .map(|session| session.channel.clone())
            .ok_or_else(|| self.unavailable("not connected"))
    }

    fn unavailable(&self, reason: impl Into<String>) -> RuntimeError {
        RuntimeError::Unavailable {
            runtime: RuntimeKind::Containerd,
            endpoint: self.socket.clone(),
            reason: reason.into(),
        }
    }

    /// Transport trouble is `Unavailable` (retried); a missing object with an id is `NotFound`;
    /// a refusal about a container carries containerd's message.
    fn map_status(
        &self,
        operation: &'static str,
        id: Option<&ContainerId>,
        status: Status,
    ) -> RuntimeError {
        if is_transport_error(&status) {
            return self.unavailable(format!("{operation}: {}", status.message()));
        }
        match (status.code(), id) {
            (Code::NotFound, Some(id)) => RuntimeError::NotFound { id: id.clone() },
            (_, Some(id)) => RuntimeError::Refused {
                runtime: RuntimeKind::Containerd,
                operation,
                id: id.clone(),
                reason: status.message().to_string(),
            },
            (code, None) => RuntimeError::Api {
                runtime: RuntimeKind::Containerd,
                operation,
                reason: format!("{code:?}: {}", status.message()),
            },
        }
    }
}

/// A request carrying the namespace header (`with_namespace!` without its panics).
fn request_in<T>(namespace: &str, message: T) -> RuntimeResult<Request<T>> {
    let value = MetadataValue::try_from(namespace).map_err(|error| RuntimeError::Api {
        runtime: RuntimeKind::Containerd,
        operation: "request",
        reason: format!("namespace {namespace:?} cannot be a header: {error}"),
    })?;
    let mut request = Request::new(message);
    request.metadata_mut().insert(NAMESPACE_HEADER, value);
    Ok(request)
}

/// Bounds a unary call by [`REQUEST_TIMEOUT`]; a timeout is a `DeadlineExceeded` status.
async fn within<T>(call: impl Future<Output = Result<Response<T>, Status>>) -> Result<T, Status> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(result) => result.map(Response::into_inner),
        Err(_elapsed) => Err(Status::deadline_exceeded(format!(
            "no answer within {REQUEST_TIMEOUT:?}"
        ))),
    }
}

/// Whether the status says the connection (not containerd) failed.
fn is_transport_error(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => true,
        Code::Unknown => std::error::Error::source(status).is_some(),
        _ => false,
    }
}

#[async_trait]
impl ContainerRuntime for ContainerdRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Containerd
    }

    fn endpoint(&self) -> String {
        self.socket.clone()
    }

    async fn connect(&self) -> RuntimeResult<RuntimeVersion> {
        // The previous session's forwarder stops here, closing any stream it fed.
        let previous = self
            .session
            .lock()
            .expect("containerd session lock poisoned")
            .take();
        drop(previous);
        let channel =
            tokio::time::timeout(CONNECT_TIMEOUT, containerd_client::connect(&self.socket))
                .await
                .map_err(|_elapsed| {
                    self.unavailable(format!("no connection within {CONNECT_TIMEOUT:?}"))
                })?
                .map_err(|error| self.unavailable(format!("connect: {error}")))?;
        let reported = within(VersionClient::new(channel.clone()).version(()))
            .await
            .map_err(|status| self.map_status("version", None, status))?;
        let context = ForwarderContext {
            endpoint: self.socket.clone(),
            namespaces: self.namespaces.clone(),
            known: self.known.clone(),
            shadowed: self.shadowed.clone(),
        };
        let (subscription, forwarder) = events::subscribe(channel.clone(), context).await?;
        *self
            .session
            .lock()
            .expect("containerd session lock poisoned") = Some(Session {
            channel,
            subscription: Some(subscription),
            _forwarder: forwarder,
        });
        Ok(RuntimeVersion {
            version: reported.version.clone(),
            api_version: "v1".to_string(),
            containerd: Some(reported.version),
            runc: None,
        })
    }

    async fn list(&self) -> RuntimeResult<Vec<ContainerId>> {
        let channel = self.channel()?;
        let mut ids = Vec::new();
        let mut namespaces_by_id = HashMap::new();
        for namespace in &self.namespaces {
            let listed = self
                .list_namespace(&channel, namespace)
                .await
                .map_err(|status| self.map_status("list", None, status))?;
            for id in listed {
                match namespaces_by_id.insert(id.clone(), namespace.clone()) {
                    None => ids.push(id),
                    Some(other) => {
                        tracing::warn!(container_id = %id, namespace, other_namespace = %other, "same container id in two containerd namespaces; only one is watched");
                    }
                }
            }
        }
        *self.known.lock().expect("namespace map lock poisoned") = namespaces_by_id;
        Ok(ids)
    }

    async fn inspect(&self, id: &ContainerId) -> RuntimeResult<Option<ContainerInfo>> {
        let channel = self.channel()?;
        let Some((namespace, container)) = self.locate(&channel, id).await? else {
            return Ok(None);
        };
        let task = self.task(&channel, &namespace, id).await?;
        let image = self.image(&channel, &namespace, &container.image).await?;
        let host = Host {
            capabilities: &self.host_capabilities,
            is_host_namespace: &records::is_host_namespace,
        };
        Ok(Some(container_info(
            &namespace,
            &container,
            task.as_ref(),
            image.as_ref(),
            &host,
        )))
    }

    /// Hands out the subscription `connect` started; `since` cannot be honoured (containerd
    /// keeps no history) and is not needed: the subscription predates the watcher's list.
    fn events(&self, _since_unix_seconds: i64) -> BoxStream<'static, RuntimeResult<RuntimeEvent>> {
        let subscription = self
            .session
            .lock()
            .expect("containerd session lock poisoned")
            .as_mut()
            .and_then(|session| session.subscription.take());
        match subscription {
            Some(subscription) => subscription.into_stream(),
            None => {
                let error = self.unavailable("no event subscription: connect first");
                futures::stream::once(async move { Err(error) }).boxed()
            }
        }
    }

    async fn pause(&self, id: &ContainerId) -> RuntimeResult<()> {
        self.pause_task(id).await
    }

    async fn resume(&self, id: &ContainerId) -> RuntimeResult<()> {
        self.resume_task(id).await
    }

    async fn pause_docker_task(&self, id: &ContainerId) -> Option<RuntimeResult<()>> {
        let watches_docker = self
            .namespaces
            .iter()
            .any(|namespace| namespace == DOCKER_NAMESPACE);
        match watches_docker {
            true => Some(self.pause_task_in(DOCKER_NAMESPACE, id).await),
            false => None,
        }
    }

    async fn kill(&self, id: &ContainerId) -> RuntimeResult<()> {
        self.signal(id, tasks::SIGKILL, true).await
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) -> RuntimeResult<()> {
        self.stop_task(id, grace).await
    }
}
