//! Reading containerd's records: where a container lives, its task, its image, the ids of a
//! namespace, and the host facts the conversion needs.
//!
//! Every call is bounded in time and read-only.

use std::os::unix::fs::MetadataExt;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, GetContainerRequest, GetImageRequest, GetRequest, ListContainersRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Status};
use containerd_client::types::v1::Process;
use lazaret_core::ContainerId;

use super::{ContainerdRuntime, ImageView, REQUEST_TIMEOUT, capabilities, request_in, within};
use crate::runtime::{RuntimeError, RuntimeResult};

impl ContainerdRuntime {
    /// Finds the container: the remembered namespace first, then every other one.
    pub(super) async fn locate(
        &self,
        channel: &Channel,
        id: &ContainerId,
    ) -> RuntimeResult<Option<(String, Container)>> {
        let remembered = self
            .known
            .lock()
            .expect("namespace map lock poisoned")
            .get(id)
            .cloned();
        let candidates = remembered.iter().chain(
            self.namespaces
                .iter()
                .filter(|namespace| Some(*namespace) != remembered.as_ref()),
        );
        for namespace in candidates {
            let request = request_in(namespace, GetContainerRequest { id: id.to_string() })?;
            match within(ContainersClient::new(channel.clone()).get(request)).await {
                Ok(response) => {
                    let Some(container) = response.container else {
                        continue;
                    };
                    self.known
                        .lock()
                        .expect("namespace map lock poisoned")
                        .insert(id.clone(), namespace.clone());
                    return Ok(Some((namespace.clone(), container)));
                }
                Err(status) if status.code() == Code::NotFound => continue,
                Err(status) => return Err(self.map_status("inspect", Some(id), status)),
            }
        }
        self.known
            .lock()
            .expect("namespace map lock poisoned")
            .remove(id);
        Ok(None)
    }

    /// The namespace an action must name, or `NotFound`.
    pub(super) async fn namespace_for(
        &self,
        channel: &Channel,
        id: &ContainerId,
    ) -> RuntimeResult<String> {
        let remembered = self
            .known
            .lock()
            .expect("namespace map lock poisoned")
            .get(id)
            .cloned();
        if let Some(namespace) = remembered {
            return Ok(namespace);
        }
        match self.locate(channel, id).await? {
            Some((namespace, _)) => Ok(namespace),
            None => Err(RuntimeError::NotFound { id: id.clone() }),
        }
    }

    /// The container's init task; `None` when it has none.
    pub(super) async fn task(
        &self,
        channel: &Channel,
        namespace: &str,
        id: &ContainerId,
    ) -> RuntimeResult<Option<Process>> {
        let request = request_in(
            namespace,
            GetRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            },
        )?;
        match within(TasksClient::new(channel.clone()).get(request)).await {
            Ok(response) => Ok(response.process),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(self.map_status("inspect", Some(id), status)),
        }
    }

    /// The image record behind `reference`. `image_digest` is set only when containerd holds a
    /// `repo@sha256:…` record for the same target (CRI records one for every pull, and a
    /// container created from a digest reference names one): that is a digest some registry
    /// served. An image that was imported or built locally also has a target digest, but it
    /// was computed here and exists in no registry, so it is never reported as one. (Anyone
    /// who can write to containerd can also tag such a record by hand: it is a claim of the
    /// node, as good as the node's containerd.)
    pub(super) async fn image(
        &self,
        channel: &Channel,
        namespace: &str,
        reference: &str,
    ) -> RuntimeResult<Option<ImageView>> {
        if reference.is_empty() {
            return Ok(None);
        }
        let Some(target) = self.image_target(channel, namespace, reference).await? else {
            return Ok(None);
        };
        if reference.contains('@') {
            return Ok(Some(ImageView {
                id: target,
                registry_digest: Some(reference.to_string()),
            }));
        }
        let digest_reference = format!("{}@{target}", repository_of(reference));
        let key = (namespace.to_string(), digest_reference.clone());
        let cached = self
            .digest_records
            .lock()
            .expect("digest cache lock poisoned")
            .get(&key)
            .copied();
        let exists = match cached {
            Some(exists) => exists,
            None => {
                let exists = self
                    .image_target(channel, namespace, &digest_reference)
                    .await?
                    .is_some_and(|digest_target| digest_target == target);
                self.digest_records
                    .lock()
                    .expect("digest cache lock poisoned")
                    .insert(key, exists);
                exists
            }
        };
        Ok(Some(ImageView {
            id: target,
            registry_digest: exists.then_some(digest_reference),
        }))
    }

    pub(super) async fn image_target(
        &self,
        channel: &Channel,
        namespace: &str,
        name: &str,
    ) -> RuntimeResult<Option<String>> {
        let request = request_in(
            namespace,
            GetImageRequest {
                name: name.to_string(),
            },
        )?;
        match within(ImagesClient::new(channel.clone()).get(request)).await {
            Ok(response) => Ok(response
                .image
                .and_then(|image| image.target)
                .map(|target| target.digest)
                .filter(|digest| !digest.is_empty())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(self.map_status("inspect image", None, status)),
        }
    }

    /// The ids in one namespace (one that does not exist yet lists nothing). Streamed one
    /// record per message: each record carries its whole spec, and a busy node's list in one
    /// message would exceed gRPC's 4 MiB default limit.
    pub(super) async fn list_namespace(
        &self,
        channel: &Channel,
        namespace: &str,
    ) -> Result<Vec<ContainerId>, Status> {
        let request = request_in(
            namespace,
            ListContainersRequest {
                filters: Vec::new(),
            },
        )
        .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let listing = async {
            let mut stream = ContainersClient::new(channel.clone())
                .list_stream(request)
                .await?
                .into_inner();
            let mut ids = Vec::new();
            while let Some(message) = stream.message().await? {
                if let Some(container) = message.container {
                    ids.push(ContainerId::new(container.id));
                }
            }
            Ok(ids)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, listing).await {
            Ok(result) => result,
            Err(_elapsed) => Err(Status::deadline_exceeded(format!(
                "no complete listing within {REQUEST_TIMEOUT:?}"
            ))),
        }
    }
}

/// `registry/repo:tag` → `registry/repo` (a port in the registry part is not a tag).
pub(super) fn repository_of(reference: &str) -> &str {
    let name_start = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[name_start..].rfind(':') {
        Some(colon) => &reference[..name_start + colon],
        None => reference,
    }
}

/// Whether a namespace file is the host's own (same inode as PID 1's, or as the agent's own
/// when PID 1's cannot be read, e.g. in a sandbox; the agent is deployed in the host's
/// namespaces); `None` when neither can be compared.
pub(super) fn is_host_namespace(kind: &str, path: &str) -> Option<bool> {
    let file = match kind {
        "network" => "net",
        "mount" => "mnt",
        "pid" | "ipc" | "uts" | "user" | "cgroup" => kind,
        _ => return None,
    };
    let host = std::fs::metadata(format!("/proc/1/ns/{file}"))
        .or_else(|_| std::fs::metadata(format!("/proc/self/ns/{file}")))
        .ok()?;
    let joined = std::fs::metadata(path).ok()?;
    Some(host.dev() == joined.dev() && host.ino() == joined.ino())
}

/// This process's capability bounding set: containerd (root, like the agent) grants exactly
/// that to `--privileged` containers. Empty when it cannot be read.
pub(super) fn own_bounding_capabilities() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapBnd:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .map(capabilities::capabilities_from_mask)
        .unwrap_or_default()
}
