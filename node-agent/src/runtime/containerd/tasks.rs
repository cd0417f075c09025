//! Actions through containerd's Tasks service: pause, resume, signals, a graceful stop.
//!
//! Every call names the container's namespace (see `records.rs`) and is bounded in time. A
//! task call that finds nothing tells a missing container (`NotFound`) apart from a container
//! without a running task (`Refused`, like Docker's 409). Nothing here creates or deletes.

use std::time::Duration;

use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    KillRequest, PauseTaskRequest, ResumeTaskRequest, WaitRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Status};
use containerd_client::types::v1::Status as TaskStatus;
use lazaret_core::{ContainerId, RuntimeKind};

use super::{ContainerdRuntime, request_in, within};
use crate::runtime::{RuntimeError, RuntimeResult};

/// How long a task may take to die after SIGKILL before `stop` reports it.
const KILL_WAIT: Duration = Duration::from_secs(10);
const SIGTERM: u32 = 15;
pub(super) const SIGKILL: u32 = 9;

impl ContainerdRuntime {
    /// Freezes the task (cgroup freezer); measured ~7-8 ms here.
    pub(super) async fn pause_task(&self, id: &ContainerId) -> RuntimeResult<()> {
        let channel = self.channel()?;
        let namespace = self.namespace_for(&channel, id).await?;
        self.pause_on(&channel, &namespace, id).await
    }

    /// [`Self::pause_task`] in a namespace known beforehand (Docker's `moby`).
    pub(super) async fn pause_task_in(
        &self,
        namespace: &str,
        id: &ContainerId,
    ) -> RuntimeResult<()> {
        let channel = self.channel()?;
        self.pause_on(&channel, namespace, id).await
    }

    async fn pause_on(
        &self,
        channel: &Channel,
        namespace: &str,
        id: &ContainerId,
    ) -> RuntimeResult<()> {
        let request = request_in(
            namespace,
            PauseTaskRequest {
                container_id: id.to_string(),
            },
        )?;
        match within(TasksClient::new(channel.clone()).pause(request)).await {
            Ok(()) => Ok(()),
            Err(status) => Err(self.task_error("pause", channel, id, status).await),
        }
    }

    /// Thaws a paused task.
    pub(super) async fn resume_task(&self, id: &ContainerId) -> RuntimeResult<()> {
        let channel = self.channel()?;
        let namespace = self.namespace_for(&channel, id).await?;
        let request = request_in(
            &namespace,
            ResumeTaskRequest {
                container_id: id.to_string(),
            },
        )?;
        match within(TasksClient::new(channel.clone()).resume(request)).await {
            Ok(()) => Ok(()),
            Err(status) => Err(self.task_error("resume", &channel, id, status).await),
        }
    }

    /// Sends `signal` to the container's init process (`all`: to every process in it, which
    /// also thaws a paused container for SIGKILL).
    pub(super) async fn signal(
        &self,
        id: &ContainerId,
        signal: u32,
        all: bool,
    ) -> RuntimeResult<()> {
        let channel = self.channel()?;
        let namespace = self.namespace_for(&channel, id).await?;
        let request = request_in(
            &namespace,
            KillRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
                signal,
                all,
            },
        )?;
        match within(TasksClient::new(channel.clone()).kill(request)).await {
            Ok(()) => Ok(()),
            Err(status) => Err(self.task_error("kill", &channel, id, status).await),
        }
    }

    /// A task call failed: "not found" means no container, or a container without a running
    /// task (refused, like Docker's 409).
    pub(super) async fn task_error(
        &self,
        operation: &'static str,
        channel: &Channel,
        id: &ContainerId,
        status: Status,
    ) -> RuntimeError {
        if status.code() != Code::NotFound {
            return self.map_status(operation, Some(id), status);
        }
        match self.locate(channel, id).await {
            Ok(Some(_)) => RuntimeError::Refused {
                runtime: RuntimeKind::Containerd,
                operation,
                id: id.clone(),
                reason: format!("no running task: {}", status.message()),
            },
            Ok(None) => RuntimeError::NotFound { id: id.clone() },
            Err(error) => error,
        }
    }

    /// Waits up to `limit` for the task to exit; true once it has (or is gone).
    pub(super) async fn wait_exit(
        &self,
        channel: &Channel,
        namespace: &str,
        id: &ContainerId,
        limit: Duration,
    ) -> RuntimeResult<bool> {
        let request = request_in(
            namespace,
            WaitRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            },
        )?;
        let mut tasks = TasksClient::new(channel.clone());
        match tokio::time::timeout(limit, tasks.wait(request)).await {
            Err(_elapsed) => Ok(false),
            Ok(Ok(_exited)) => Ok(true),
            Ok(Err(status)) if status.code() == Code::NotFound => Ok(true),
            Ok(Err(status)) => Err(self.map_status("stop", Some(id), status)),
        }
    }

    /// SIGTERM to the init process, SIGKILL to every process after `grace`, each followed by
    /// a bounded wait on the task's exit. A container without a running task is already
    /// stopped.
    pub(super) async fn stop_task(&self, id: &ContainerId, grace: Duration) -> RuntimeResult<()> {
        let channel = self.channel()?;
        let namespace = self.namespace_for(&channel, id).await?;
        let Some(task) = self.task(&channel, &namespace, id).await? else {
            // No task: stopped already, if the container still exists at all.
            return match self.locate(&channel, id).await? {
                Some(_) => Ok(()),
                None => Err(RuntimeError::NotFound { id: id.clone() }),
            };
        };
        if task.status == TaskStatus::Stopped as i32 {
            return Ok(());
        }
        match self.signal(id, SIGTERM, false).await {
            Ok(()) => {}
            // It exited between the look and the signal.
            Err(RuntimeError::Refused { .. }) => return Ok(()),
            Err(error) => return Err(error),
        }
        if self.wait_exit(&channel, &namespace, id, grace).await? {
            return Ok(());
        }
        tracing::info!(container_id = %id, ?grace, "container ignored SIGTERM; sending SIGKILL");
        self.signal(id, SIGKILL, true).await?;
        if self.wait_exit(&channel, &namespace, id, KILL_WAIT).await? {
            return Ok(());
        }
        Err(RuntimeError::Refused {
            runtime: RuntimeKind::Containerd,
            operation: "stop",
            id: id.clone(),
            reason: format!("still running {KILL_WAIT:?} after SIGKILL"),
        })
    }
}
