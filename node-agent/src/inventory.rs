//! The live inventory: every container the agent's runtimes know, with its posture findings.
//!
//! One task owns the set. Watchers send [`InventoryUpdate`]s; readers (scan, metrics, the judge
//! and the API as they land) get immutable [`InventorySnapshot`]s through a `watch` channel, so
//! nobody ever holds a lock across the set. A resync replaces everything one runtime reported,
//! which is how a missed event (a dropped connection) is repaired.
//!
//! One container, one entry: a Docker container is also visible in containerd's `moby`
//! namespace under the same id. Docker's view wins (it knows mounts, privilege, ports and labels,
//! which containerd's `moby` records leave empty): when Docker is watched, containerd's reports
//! from `moby` are ignored altogether, from the first one on (they would otherwise make an
//! unlabelled twin of a container another agent owns); they are used only when Docker is not
//! watched.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use lazaret_core::posture::{self, Finding};
use lazaret_core::{ContainerId, ContainerInfo, RuntimeKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::runtime::containerd::DOCKER_NAMESPACE;

/// How many updates may queue before watchers wait: back-pressure instead of unbounded memory.
const UPDATE_QUEUE: usize = 1024;

/// A container as the inventory holds it.
#[derive(Debug, Clone)]
pub struct InventoryEntry {
    pub info: ContainerInfo,
    pub findings: Vec<Finding>,
    /// When this version of the container entered the inventory.
    pub observed_at: SystemTime,
}

/// An immutable view of the whole inventory.
#[derive(Debug, Clone, Default)]
pub struct InventorySnapshot {
    pub containers: BTreeMap<ContainerId, Arc<InventoryEntry>>,
    /// Bumped on every change, so readers can tell views apart.
    pub version: u64,
    /// The watched runtimes whose containers have not been listed yet since the agent started,
    /// and whose first connection is still being tried: until it ends, the inventory lacks
    /// their containers (a container not found may well exist). A runtime that cannot be
    /// reached leaves this set at its first failed attempt.
    pub unlisted: BTreeSet<RuntimeKind>,
}

impl InventorySnapshot {
    /// The runtimes not listed yet, as text (`docker, containerd`); `None` once every watched
    /// runtime was listed.
    pub fn incomplete(&self) -> Option<String> {
        (!self.unlisted.is_empty()).then(|| {
            self.unlisted
                .iter()
                .map(|runtime| runtime.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    pub fn get(&self, id: &ContainerId) -> Option<&Arc<InventoryEntry>> {
        self.containers.get(id)
    }

    pub fn len(&self) -> usize {
        self.containers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
    }
}

/// A change reported by a runtime watcher.
#[derive(Debug)]
pub enum InventoryUpdate {
    Upsert(Box<ContainerInfo>),
    /// `runtime` says who reports the removal: it only removes that runtime's entry.
    Remove {
        runtime: RuntimeKind,
        id: ContainerId,
    },
    /// The complete list from one runtime: everything else it reported before is gone.
    Resync {
        runtime: RuntimeKind,
        containers: Vec<ContainerInfo>,
    },
    /// A connection to `runtime` failed: if it was never listed, the inventory stops waiting
    /// for it (a container not found is then not found, rather than "not listed yet" forever).
    Unreachable {
        runtime: RuntimeKind,
    },
}

/// The writing side (for watchers) and the reading side of the inventory.
#[derive(Debug, Clone)]
pub struct InventoryHandle {
    pub updates: mpsc::Sender<InventoryUpdate>,
    pub snapshots: watch::Receiver<Arc<InventorySnapshot>>,
}

impl InventoryHandle {
    pub fn current(&self) -> Arc<InventorySnapshot> {
        self.snapshots.borrow().clone()
    }
}

struct Inventory {
    containers: BTreeMap<ContainerId, Arc<InventoryEntry>>,
    version: u64,
    /// `None`: every container.
    ownership: Option<Ownership>,
    /// Docker is watched: containerd's `moby` reports are ignored.
    docker_watched: bool,
    /// Watched runtimes not listed yet ([`InventorySnapshot::unlisted`]).
    unlisted: BTreeSet<RuntimeKind>,
}

impl Inventory {
    fn new(ownership: Option<Ownership>, watched: &[RuntimeKind]) -> Self {
        Inventory {
            containers: BTreeMap::new(),
            version: 0,
            ownership,
            docker_watched: watched.contains(&RuntimeKind::Docker),
            unlisted: watched.iter().copied().collect(),
        }
    }
}

/// Whether `incoming` may replace `existing`: Docker's view of a container beats containerd's.
fn may_replace(existing: &ContainerInfo, incoming: &ContainerInfo) -> bool {
    !(existing.runtime == RuntimeKind::Docker && incoming.runtime == RuntimeKind::Containerd)
}

impl Inventory {
    fn upsert(&mut self, info: ContainerInfo) {
        if let Some(existing) = self.containers.get(&info.id)
            && !may_replace(&existing.info, &info)
        {
            return;
        }
        if self.docker_watched
            && info.runtime == RuntimeKind::Containerd
            && info.namespace == DOCKER_NAMESPACE
        {
            return;
        }
        if self
            .ownership
            .as_ref()
            .is_some_and(|ownership| !ownership.owns(&info))
        {
            // Relabelled to another node, or never ours.
            self.containers.remove(&info.id);
            return;
        }
        let findings = posture::assess(&info);
        let entry = InventoryEntry {
            info,
            findings,
            observed_at: SystemTime::now(),
        };
        self.containers
            .insert(entry.info.id.clone(), Arc::new(entry));
    }

    /// Applies `update`; `false` when it changed nothing (a repeated connection failure), so
    /// that no snapshot is published for it.
    fn apply(&mut self, update: InventoryUpdate) -> bool {
        match update {
            InventoryUpdate::Upsert(info) => self.upsert(*info),
            InventoryUpdate::Remove { runtime, id } => {
                if self
                    .containers
                    .get(&id)
                    .is_some_and(|entry| entry.info.runtime == runtime)
                {
                    self.containers.remove(&id);
                }
            }
            InventoryUpdate::Unreachable { runtime } => {
                if !self.unlisted.remove(&runtime) {
                    return false;
                }
            }
            InventoryUpdate::Resync {
                runtime,
                containers,
            } => {
                self.unlisted.remove(&runtime);
                self.containers
                    .retain(|_, entry| entry.info.runtime != runtime);
                for info in containers {
                    self.upsert(info);
                }
            }
        }
        self.version += 1;
        true
    }

    fn snapshot(&self) -> Arc<InventorySnapshot> {
        Arc::new(InventorySnapshot {
            containers: self.containers.clone(),
            version: self.version,
            unlisted: self.unlisted.clone(),
        })
    }
}

/// A one-off inventory from complete lists (what `scan` sees), merged by the same rules as the
/// live one: one entry per container, Docker's view winning over containerd's.
pub fn merge_lists(lists: Vec<(RuntimeKind, Vec<ContainerInfo>)>) -> InventorySnapshot {
    let watched: Vec<RuntimeKind> = lists.iter().map(|(runtime, _)| *runtime).collect();
    let mut inventory = Inventory::new(None, &watched);
    for (runtime, containers) in lists {
        inventory.apply(InventoryUpdate::Resync {
            runtime,
            containers,
        });
    }
    InventorySnapshot {
        containers: inventory.containers,
        version: inventory.version,
        unlisted: inventory.unlisted,
    }
}

/// The label that gives a container to one agent when several share one engine.
pub const NODE_LABEL: &str = "lazaret.io/node";

/// Which containers this agent owns: those labelled [`NODE_LABEL`]` = <its node>`, and unlabelled
/// ones when it claims them (the first agent on an engine does; the others leave them to it).
/// Containers it does not own are not in its inventory: never judged, never acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    pub node: String,
    pub claim_unlabelled: bool,
}

impl Ownership {
    pub fn owns(&self, info: &ContainerInfo) -> bool {
        match info.labels.get(NODE_LABEL) {
            Some(node) => *node == self.node,
            None => self.claim_unlabelled,
        }
    }
}

/// Starts the task that owns the inventory, holding every container. It ends when `shutdown`
/// fires or every sender is dropped.
pub fn spawn(metrics: Metrics, shutdown: CancellationToken) -> (InventoryHandle, JoinHandle<()>) {
    spawn_owning(metrics, None, &[], shutdown)
}

/// Like [`spawn`], holding only the containers `ownership` gives this agent, from the `watched`
/// runtimes (unlisted until each sends its first complete list; with Docker among them,
/// containerd's `moby` reports are ignored).
pub fn spawn_owning(
    metrics: Metrics,
    ownership: Option<Ownership>,
    watched: &[RuntimeKind],
    shutdown: CancellationToken,
) -> (InventoryHandle, JoinHandle<()>) {
    let (update_sender, mut update_receiver) = mpsc::channel(UPDATE_QUEUE);
    let inventory = Inventory::new(ownership, watched);
    let (snapshot_sender, snapshot_receiver) = watch::channel(inventory.snapshot());
    // The inventory gauges are computed from the newest snapshot when metrics are read, never
    // per update (that is O(containers × checks) and would sit on the enforcement fast path).
    metrics.follow_inventory(snapshot_receiver.clone());
    let task = tokio::spawn(async move {
        let mut inventory = inventory;
        loop {
            let update = tokio::select! {
                _ = shutdown.cancelled() => break,
                update = update_receiver.recv() => match update {
                    Some(update) => update,
                    None => break,
                },
            };
            let mut changed = inventory.apply(update);
            // Fold whatever else is already queued into the same snapshot.
            while let Ok(more) = update_receiver.try_recv() {
                changed |= inventory.apply(more);
            }
            // A runtime that keeps failing to connect does not wake the enforcer each time.
            if changed {
                snapshot_sender.send_replace(inventory.snapshot());
            }
        }
    });
    (
        InventoryHandle {
            updates: update_sender,
            snapshots: snapshot_receiver,
        },
        task,
    )
}

#[cfg(test)]
mod tests {
    use lazaret_core::ContainerState;

    use super::*;

    fn container(id: &str, runtime: RuntimeKind) -> ContainerInfo {
        let mut info = ContainerInfo::unknown(ContainerId::new(id), runtime);
        info.state = ContainerState::Running;
        info
    }

    #[test]
    fn an_agent_holds_only_the_containers_it_owns() {
        let labelled = |id: &str, node: Option<&str>| {
            let mut info = container(id, RuntimeKind::Docker);
            if let Some(node) = node {
                info.labels.insert(NODE_LABEL.into(), node.into());
            }
            info
        };
        let held = |claim_unlabelled: bool| {
            let mut inventory = Inventory::new(
                Some(Ownership {
                    node: "node-2".into(),
                    claim_unlabelled,
                }),
                &[RuntimeKind::Docker, RuntimeKind::Containerd],
            );
            inventory.apply(InventoryUpdate::Resync {
                runtime: RuntimeKind::Docker,
                containers: vec![
                    labelled("mine", Some("node-2")),
                    labelled("theirs", Some("node-1")),
                    labelled("nobodys", None),
                ],
            });
            // Relabelled to another node: it leaves.
            inventory.apply(InventoryUpdate::Upsert(Box::new(labelled(
                "mine",
                Some("node-3"),
            ))));
            inventory.apply(InventoryUpdate::Upsert(Box::new(labelled(
                "also-mine",
                Some("node-2"),
            ))));
            inventory
                .containers
                .keys()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(held(false), ["also-mine"]);
        assert_eq!(held(true), ["also-mine", "nobodys"]);
    }

    #[test]
    fn resync_replaces_only_that_runtimes_containers() {
        let mut inventory = Inventory::new(None, &[]);
        inventory.apply(InventoryUpdate::Upsert(Box::new(container(
            "a",
            RuntimeKind::Docker,
        ))));
        inventory.apply(InventoryUpdate::Upsert(Box::new(container(
            "b",
            RuntimeKind::Docker,
        ))));
        inventory.apply(InventoryUpdate::Upsert(Box::new(container(
            "x",
            RuntimeKind::Fake,
        ))));
        inventory.apply(InventoryUpdate::Resync {
            runtime: RuntimeKind::Docker,
            containers: vec![
                container("b", RuntimeKind::Docker),
                container("c", RuntimeKind::Docker),
            ],
        });
        let ids: Vec<&str> = inventory
            .containers
            .keys()
            .map(ContainerId::as_str)
            .collect();
        assert_eq!(ids, ["b", "c", "x"]);
        assert_eq!(inventory.version, 4);
    }

    #[test]
    fn a_docker_container_seen_in_containerd_is_one_entry_and_docker_wins() {
        let mut inventory = Inventory::new(None, &[]);
        let mut through_containerd = container("same", RuntimeKind::Containerd);
        through_containerd.namespace = "moby".into();
        inventory.apply(InventoryUpdate::Upsert(Box::new(
            through_containerd.clone(),
        )));
        assert_eq!(
            inventory.containers[&ContainerId::new("same")].info.runtime,
            RuntimeKind::Containerd
        );
        let mut through_docker = container("same", RuntimeKind::Docker);
        through_docker.privileged = Some(true);
        inventory.apply(InventoryUpdate::Upsert(Box::new(through_docker)));
        inventory.apply(InventoryUpdate::Upsert(Box::new(
            through_containerd.clone(),
        )));
        inventory.apply(InventoryUpdate::Resync {
            runtime: RuntimeKind::Containerd,
            containers: vec![through_containerd],
        });
        assert_eq!(inventory.containers.len(), 1);
        let entry = &inventory.containers[&ContainerId::new("same")];
        assert_eq!(entry.info.runtime, RuntimeKind::Docker);
        assert_eq!(entry.info.privileged, Some(true));
        // containerd's delete does not remove Docker's entry; Docker's does.
        inventory.apply(InventoryUpdate::Remove {
            runtime: RuntimeKind::Containerd,
            id: ContainerId::new("same"),
        });
        assert_eq!(inventory.containers.len(), 1);
        inventory.apply(InventoryUpdate::Remove {
            runtime: RuntimeKind::Docker,
            id: ContainerId::new("same"),
        });
        assert!(inventory.containers.is_empty());
    }

    #[test]
    fn containerds_unlabelled_view_of_a_docker_container_never_moves_its_ownership() {
        // node-2 owns a Docker container labelled for it; containerd's `moby` record of the same
        // container has no labels. Seen through containerd (e.g. after a pause through its Tasks
        // API) it must neither drop out of node-2's inventory nor appear in node-1's.
        let mut labelled = container("shared", RuntimeKind::Docker);
        labelled.labels.insert(NODE_LABEL.into(), "node-2".into());
        let mut through_containerd = container("shared", RuntimeKind::Containerd);
        through_containerd.namespace = DOCKER_NAMESPACE.into();
        for (node, claim_unlabelled, expected) in [("node-2", false, 1), ("node-1", true, 0)] {
            let mut inventory = Inventory::new(
                Some(Ownership {
                    node: node.into(),
                    claim_unlabelled,
                }),
                &[RuntimeKind::Docker, RuntimeKind::Containerd],
            );
            // containerd may report first, before Docker's resync arrives.
            inventory.apply(InventoryUpdate::Upsert(Box::new(
                through_containerd.clone(),
            )));
            inventory.apply(InventoryUpdate::Resync {
                runtime: RuntimeKind::Docker,
                containers: vec![labelled.clone()],
            });
            inventory.apply(InventoryUpdate::Upsert(Box::new(
                through_containerd.clone(),
            )));
            inventory.apply(InventoryUpdate::Resync {
                runtime: RuntimeKind::Containerd,
                containers: vec![through_containerd.clone()],
            });
            assert_eq!(inventory.containers.len(), expected, "{node}");
        }
    }

    #[test]
    fn entries_carry_findings_for_every_check() {
        let mut inventory = Inventory::new(None, &[]);
        inventory.apply(InventoryUpdate::Upsert(Box::new(container(
            "a",
            RuntimeKind::Docker,
        ))));
        let entry = inventory.snapshot().containers[&ContainerId::new("a")].clone();
        assert_eq!(entry.findings.len(), posture::catalogue().len());
        inventory.apply(InventoryUpdate::Remove {
            runtime: RuntimeKind::Docker,
            id: ContainerId::new("a"),
        });
        assert!(inventory.snapshot().is_empty());
    }

    #[test]
    fn the_inventory_is_incomplete_until_every_watched_runtime_was_listed() {
        let mut inventory = Inventory::new(None, &[RuntimeKind::Docker, RuntimeKind::Containerd]);
        assert_eq!(
            inventory.snapshot().incomplete().as_deref(),
            Some("docker, containerd")
        );
        // Events before the first list do not make it complete.
        inventory.apply(InventoryUpdate::Upsert(Box::new(container(
            "a",
            RuntimeKind::Docker,
        ))));
        inventory.apply(InventoryUpdate::Resync {
            runtime: RuntimeKind::Docker,
            containers: Vec::new(),
        });
        assert_eq!(
            inventory.snapshot().incomplete().as_deref(),
            Some("containerd")
        );
        inventory.apply(InventoryUpdate::Resync {
            runtime: RuntimeKind::Containerd,
            containers: Vec::new(),
        });
        assert_eq!(inventory.snapshot().incomplete(), None);
        assert_eq!(Inventory::new(None, &[]).snapshot().incomplete(), None);
        // A runtime whose first connection failed is not waited for.
        let mut inventory = Inventory::new(None, &[RuntimeKind::Docker]);
        let unreachable = || InventoryUpdate::Unreachable {
            runtime: RuntimeKind::Docker,
        };
        assert!(inventory.apply(unreachable()));
        assert_eq!(inventory.snapshot().incomplete(), None);
        // Failing again changes nothing, and publishes nothing.
        assert!(!inventory.apply(unreachable()));
    }
}
