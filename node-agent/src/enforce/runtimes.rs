//! The runtimes enforcement acts through, and which one owns a container.
//!
//! Every action goes to the runtime that reports the container (`ContainerInfo.runtime`): a
//! container seen only through containerd (a namespace other than `moby`) is paused through
//! containerd even when Docker is watched too, and a Docker container that containerd also sees
//! in its `moby` namespace is Docker's (the inventory merges it so). When only an id is known (a
//! stored quarantine after a restart, a release), the runtimes are asked in order, Docker first.

use std::sync::Arc;

use lazaret_core::{ContainerId, ContainerInfo, RuntimeKind};

use crate::runtime::{ContainerRuntime, RuntimeError, RuntimeResult};

/// The runtimes enforcement may act through, Docker first. See the module docs.
#[derive(Clone)]
pub struct Runtimes {
    runtimes: Vec<Arc<dyn ContainerRuntime>>,
}

impl Runtimes {
    /// The configured runtimes; Docker is put first so it owns the containers it shares with
    /// containerd's `moby` namespace.
    pub fn new(mut runtimes: Vec<Arc<dyn ContainerRuntime>>) -> Self {
        runtimes.sort_by_key(|runtime| runtime.kind() != RuntimeKind::Docker);
        Runtimes { runtimes }
    }

    /// Just one runtime.
    pub fn one(runtime: Arc<dyn ContainerRuntime>) -> Self {
        Runtimes::new(vec![runtime])
    }

    pub fn is_empty(&self) -> bool {
        self.runtimes.is_empty()
    }

    /// The kinds acted through, in lookup order.
    pub fn kinds(&self) -> Vec<RuntimeKind> {
        self.runtimes.iter().map(|runtime| runtime.kind()).collect()
    }

    /// Whether containers of `kind` can be acted on.
    pub fn handles(&self, kind: RuntimeKind) -> bool {
        self.runtimes.iter().any(|runtime| runtime.kind() == kind)
    }

    /// The runtime that reports `info`'s container.
    pub fn owner(&self, info: &ContainerInfo) -> RuntimeResult<&Arc<dyn ContainerRuntime>> {
        self.runtimes
            .iter()
            .find(|runtime| runtime.kind() == info.runtime)
            .ok_or_else(|| RuntimeError::Refused {
                runtime: info.runtime,
                operation: "enforce",
                id: info.id.clone(),
                reason: format!(
                    "the agent does not act through {} (it acts through {:?})",
                    info.runtime,
                    self.kinds()
                ),
            })
    }

    /// Pauses `info`'s container. A Docker container is paused through containerd's Tasks API
    /// when a watched containerd can (its `moby` namespace): that skips dockerd and is ~5 ms
    /// shorter, which is most of the budget of an operator's quarantine. Any failure there
    /// falls back to Docker's own pause, so the shortcut can never lose a pause.
    pub async fn pause(&self, info: &ContainerInfo) -> RuntimeResult<()> {
        let owner = self.owner(info)?;
        if info.runtime == RuntimeKind::Docker {
            for runtime in self
                .runtimes
                .iter()
                .filter(|runtime| runtime.kind() != RuntimeKind::Docker)
            {
                match runtime.pause_docker_task(&info.id).await {
                    Some(Ok(())) => return Ok(()),
                    Some(Err(error)) => {
                        tracing::debug!(container = %info.id, %error, "pause through containerd failed; pausing through Docker");
                        break;
                    }
                    None => {}
                }
            }
        }
        owner.pause(&info.id).await
    }

    /// The container as the first runtime that has it reports it. `Ok(None)` only when every
    /// runtime answered and none has it; an error when none has it and one could not answer (so
    /// an unreachable runtime never reads as "the container is gone").
    pub async fn inspect(&self, id: &ContainerId) -> RuntimeResult<Option<ContainerInfo>> {
        let mut failure = None;
        for runtime in &self.runtimes {
            match runtime.inspect(id).await {
                Ok(Some(info)) => return Ok(Some(info)),
                Ok(None) => {}
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(None),
        }
    }
}

impl std::fmt::Debug for Runtimes {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_list().entries(self.kinds()).finish()
    }
}
