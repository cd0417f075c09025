//! The Docker Engine backend (bollard).
//!
//! Docker 20.10 speaks API 1.41 while bollard 0.21 defaults to 1.53, so every (re)connect
//! negotiates the version. A container's registry digest lives on its image, not the container:
//! it is looked up once per image id and cached.

mod convert;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{
    EventsOptions, KillContainerOptions, ListContainersOptions, StopContainerOptions,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use lazaret_core::{ContainerId, ContainerInfo, RuntimeKind};

pub use convert::container_info;

use super::{
    ContainerRuntime, EventKind, RuntimeError, RuntimeEvent, RuntimeResult, RuntimeVersion, cgroup,
};

/// Seconds bollard waits for a response's headers (not for a stream's end).
const REQUEST_TIMEOUT_SECONDS: u64 = 30;

/// Docker actions that say nothing about a container's configuration or state.
const IGNORED_ACTIONS: [&str; 9] = [
    "exec_create",
    "exec_start",
    "exec_die",
    "exec_detach",
    "attach",
    "resize",
    "top",
    "archive-path",
    "extract-to-dir",
];

pub struct DockerRuntime {
    socket: String,
    client: Mutex<Option<Docker>>,
    digests_by_image: Mutex<HashMap<String, Option<String>>>,
}

impl DockerRuntime {
    /// A backend for the engine at `socket` (a path, `unix://` optional). Nothing is contacted
    /// until [`ContainerRuntime::connect`].
    pub fn new(socket: impl Into<String>) -> Self {
        let socket = socket.into();
        let socket = socket
            .strip_prefix("unix://")
            .unwrap_or(&socket)
            .to_string();
        DockerRuntime {
            socket,
            client: Mutex::new(None),
            digests_by_image: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self) -> RuntimeResult<Docker> {
        self.client
            .lock()
            .expect("docker client lock poisoned")
            .clone()
            .ok_or_else(|| self.unavailable("not connected"))
    }

    fn unavailable(&self, reason: impl Into<String>) -> RuntimeError {
        RuntimeError::Unavailable {
            runtime: RuntimeKind::Docker,
            endpoint: self.socket.clone(),
            reason: reason.into(),
        }
    }

    /// Maps bollard's errors: connection problems are `Unavailable` (retried), 404 is
    /// `NotFound`, 409 and other refusals carry the engine's message.
    fn map_error(
        &self,
        operation: &'static str,
        id: Option<&ContainerId>,
        error: BollardError,
    ) -> RuntimeError {
        match (error, id) {
            (
                BollardError::DockerResponseServerError {
                    status_code: 404, ..
                },
                Some(id),
            ) => RuntimeError::NotFound { id: id.clone() },
            (
                BollardError::DockerResponseServerError {
                    status_code,
                    message,
                },
                Some(id),
            ) if (400..500).contains(&status_code) => RuntimeError::Refused {
                runtime: RuntimeKind::Docker,
                operation,
                id: id.clone(),
                reason: message,
            },
            (
                BollardError::DockerResponseServerError {
                    status_code,
                    message,
                },
                _,
            ) => RuntimeError::Api {
                runtime: RuntimeKind::Docker,
                operation,
                reason: format!("status {status_code}: {message}"),
            },
            (other, _) => self.unavailable(format!("{operation}: {other}")),
        }
    }

    async fn image_digest(&self, docker: &Docker, image_id: &str) -> Option<String> {
        if image_id.is_empty() {
            return None;
        }
        if let Some(cached) = self
            .digests_by_image
            .lock()
            .expect("digest cache lock poisoned")
            .get(image_id)
        {
            return cached.clone();
        }
        // An image that cannot be inspected (removed meanwhile) simply has no digest; the
        // container's own inspect already succeeded.
        let digest = docker
            .inspect_image(image_id)
            .await
            .ok()
            .and_then(|image| image.repo_digests)
            .and_then(|digests| digests.into_iter().next());
        self.digests_by_image
            .lock()
            .expect("digest cache lock poisoned")
            .insert(image_id.to_string(), digest.clone());
        digest
    }
}

fn event_from_message(message: EventMessage) -> Option<RuntimeEvent> {
    if message.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let action = message.action.unwrap_or_default();
    let base_action = action.split(':').next().unwrap_or_default().trim();
    if IGNORED_ACTIONS.contains(&base_action) {
        return None;
    }
    let id = message.actor.and_then(|actor| actor.id)?;
    let kind = match base_action {
        "destroy" => EventKind::Removed,
        // Also sent when a restart policy or `docker restart` starts it again.
        "start" => EventKind::Started,
        _ => EventKind::Changed,
    };
    Some(RuntimeEvent {
        id: ContainerId::new(id),
        kind,
        action: base_action.to_string(),
        time_nanos: message.time_nano.unwrap_or(0),
        pid: None,
    })
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Docker
    }

    fn endpoint(&self) -> String {
        self.socket.clone()
    }

    async fn connect(&self) -> RuntimeResult<RuntimeVersion> {
        let docker = Docker::connect_with_unix(
            &self.socket,
            REQUEST_TIMEOUT_SECONDS,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|error| self.unavailable(error.to_string()))?
        .negotiate_version()
        .await
        .map_err(|error| self.unavailable(format!("version negotiation: {error}")))?;
        let reported = docker
            .version()
            .await
            .map_err(|error| self.map_error("version", None, error))?;
        let component = |name: &str| {
            reported
                .components
                .iter()
                .flatten()
                .find(|component| component.name.eq_ignore_ascii_case(name))
                .map(|component| component.version.clone())
        };
        let version = RuntimeVersion {
            version: reported.version.clone().unwrap_or_default(),
            api_version: docker.client_version().to_string(),
            containerd: component("containerd"),
            runc: component("runc"),
        };
        *self.client.lock().expect("docker client lock poisoned") = Some(docker);
        Ok(version)
    }

    async fn list(&self) -> RuntimeResult<Vec<ContainerId>> {
        let docker = self.client()?;
        let options = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let summaries = docker
            .list_containers(Some(options))
            .await
            .map_err(|error| self.map_error("list", None, error))?;
        Ok(summaries
            .into_iter()
            .filter_map(|summary| summary.id.map(ContainerId::new))
            .collect())
    }

    async fn inspect(&self, id: &ContainerId) -> RuntimeResult<Option<ContainerInfo>> {
        let docker = self.client()?;
        let inspected = match docker.inspect_container(id.as_str(), None).await {
            Ok(inspected) => inspected,
            Err(error) => match self.map_error("inspect", Some(id), error) {
                RuntimeError::NotFound { .. } => return Ok(None),
                other => return Err(other),
            },
        };
        let digest = self
            .image_digest(&docker, inspected.image.as_deref().unwrap_or_default())
            .await;
        Ok(Some(container_info(&inspected, digest)))
    }

    fn events(&self, since_unix_seconds: i64) -> BoxStream<'static, RuntimeResult<RuntimeEvent>> {
        let docker = match self.client() {
            Ok(docker) => docker,
            Err(error) => return futures::stream::once(async move { Err(error) }).boxed(),
        };
        let options = EventsOptions {
            since: Some(since_unix_seconds.to_string()),
            until: None,
            filters: Some(HashMap::from([(
                "type".to_string(),
                vec!["container".to_string()],
            )])),
        };
        let endpoint = self.socket.clone();
        docker
            .events(Some(options))
            .filter_map(move |item| {
                let endpoint = endpoint.clone();
                async move {
                    match item {
                        Ok(message) => event_from_message(message).map(Ok),
                        Err(error) => Some(Err(RuntimeError::Unavailable {
                            runtime: RuntimeKind::Docker,
                            endpoint,
                            reason: format!("event stream: {error}"),
                        })),
                    }
                }
            })
            .boxed()
    }

    async fn pause(&self, id: &ContainerId) -> RuntimeResult<()> {
        self.client()?
            .pause_container(id.as_str())
            .await
            .map_err(|error| self.map_error("pause", Some(id), error))
    }

    async fn resume(&self, id: &ContainerId) -> RuntimeResult<()> {
        self.client()?
            .unpause_container(id.as_str())
            .await
            .map_err(|error| self.map_error("resume", Some(id), error))
    }

    async fn kill(&self, id: &ContainerId) -> RuntimeResult<()> {
        let options = KillContainerOptions {
            signal: "SIGKILL".to_string(),
        };
        self.client()?
            .kill_container(id.as_str(), Some(options))
            .await
            .map_err(|error| self.map_error("kill", Some(id), error))
    }

    /// Docker's start event carries no PID: the container's cgroup tells it.
    fn started_netns(&self, info: &ContainerInfo, pid: Option<u32>) -> Option<String> {
        pid.or_else(|| {
            cgroup::started_pid(
                Path::new(cgroup::CGROUP_ROOT),
                Path::new(cgroup::PROC_ROOT),
                &info.id,
                info.cgroup_parent.as_deref().unwrap_or_default(),
            )
        })
        .map(cgroup::netns_of_pid)
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) -> RuntimeResult<()> {
        let options = StopContainerOptions {
            signal: None,
            t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
        };
        self.client()?
            .stop_container(id.as_str(), Some(options))
            .await
            .map_err(|error| self.map_error("stop", Some(id), error))
    }
}
