//! Builds the agent from its configuration and runs it: the inventory task, one watcher per
//! runtime, the metrics endpoint, (with policies or the API) the enforcement task and its signed
//! bundles, the API, and (configured) gossip with bundle sync. Shutdown is a parameter, so tests
//! start and stop agents in process exactly as `main` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lazaret_core::policy::{self, JudgeInput, NoIndicators, PolicySet};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

mod fleet;

use crate::api::{self, AgentApi};
use crate::bundles::BundleBook;
use crate::clock::{Clock, SystemClock};
use crate::config::AgentConfig;
use crate::enforce::engine::{Enforced, Enforcer, EnforcerHandle};
use crate::enforce::policy_files::PolicyFiles;
use crate::enforce::quarantine::{NetnsCutter, QuarantineConfig, QuarantineManager};
use crate::enforce::runtimes::Runtimes;
use crate::gossip::Gossip;
use crate::inventory::{self, InventoryHandle, Ownership};
use crate::metrics::{self, Metrics};
use crate::report::{ContainerReport, PostureReport, RuntimeReport};
use crate::runtime::ContainerRuntime;
use crate::runtime::containerd::ContainerdRuntime;
use crate::runtime::docker::DockerRuntime;
use crate::store::Store;
use crate::watcher::{self, Backoff, RuntimeStatus, StartSignal, Watcher};

/// Start signals that may wait for enforcement (the fast lane); more are dropped and counted,
/// and enforced after their inspect.
const START_LANE: usize = 256;
/// How long tasks get to finish after shutdown before they are abandoned.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The runtimes the configuration asks for.
pub fn runtimes_from_config(config: &AgentConfig) -> Vec<Arc<dyn ContainerRuntime>> {
    let mut runtimes: Vec<Arc<dyn ContainerRuntime>> = Vec::new();
    if let Some(socket) = &config.docker_socket {
        runtimes.push(Arc::new(DockerRuntime::new(socket.clone())));
    }
    if let Some(containerd) = &config.containerd {
        let mut runtime =
            ContainerdRuntime::new(containerd.socket.clone(), containerd.namespaces.clone());
        if config.docker_socket.is_some() {
            // Docker reports its own containers: containerd's `moby` twin only signals starts.
            runtime = runtime.shadowing(vec![crate::runtime::containerd::DOCKER_NAMESPACE.into()]);
        }
        runtimes.push(Arc::new(runtime));
    }
    runtimes
}

/// A started agent.
pub struct RunningAgent {
    pub inventory: InventoryHandle,
    /// One status per runtime, in configuration order.
    pub runtime_status: Vec<(Arc<dyn ContainerRuntime>, watch::Receiver<RuntimeStatus>)>,
    pub metrics: Metrics,
    /// Where `/metrics` is served, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// What enforcement carried out, when it runs.
    pub enforced: Option<broadcast::Sender<Enforced>>,
    /// Quarantine and release through the running enforcement task, when it runs.
    pub enforcer: Option<EnforcerHandle>,
    /// Where the gRPC API is served, when enabled.
    pub api_addr: Option<SocketAddr>,
    /// The signed bundles held, when enforcement runs.
    pub bundles: Option<Arc<BundleBook>>,
    /// Gossip, when configured.
    pub gossip: Option<Arc<Gossip>>,
    /// Where the detections intake is served, when enabled.
    pub detections: Option<SocketAddr>,
    tasks: JoinSet<()>,
}

impl RunningAgent {
    /// Every quarantine enforcement carries out from now on; `None` without enforcement.
    pub fn subscribe_enforced(&self) -> Option<broadcast::Receiver<Enforced>> {
        self.enforced.as_ref().map(broadcast::Sender::subscribe)
    }

    /// Waits for every task to finish after `shutdown` fired, at most `DRAIN_TIMEOUT`.
    pub async fn drain(mut self) {
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(timeout = ?DRAIN_TIMEOUT, "agent tasks did not stop in time; abandoning them");
            self.tasks.abort_all();
        }
    }
}

/// Starts the agent's tasks; they run until `shutdown` fires. With `policies` or the API, the
/// enforcement task runs too, on the store in `config.state_dir`, after the inventory and the
/// watchers; with the API configured, the gRPC server last.
pub async fn start(
    config: &AgentConfig,
    runtimes: Vec<Arc<dyn ContainerRuntime>>,
    policies: Option<PolicySet>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningAgent> {
    start_with_clock(config, runtimes, policies, shutdown, Arc::new(SystemClock)).await
}

/// [`start`], with quarantine TTLs, exemptions and bundle expiry read from `clock` (tests move
/// time forward through a [`crate::clock::ManualClock`]).
pub async fn start_with_clock(
    config: &AgentConfig,
    runtimes: Vec<Arc<dyn ContainerRuntime>>,
    policies: Option<PolicySet>,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<RunningAgent> {
    // Enforcement acts on each container through the runtime that reports it. It runs with
    // policies, and with the API (operators quarantine through it even without policies).
    let enforcing = Runtimes::new(runtimes.clone());
    let wants_enforcement = (policies.is_some() || config.api.is_some()) && !enforcing.is_empty();
    let store = match wants_enforcement {
        true => {
            let dir = config.state_dir.clone();
            let durability = config.durability;
            let opened = tokio::task::spawn_blocking(move || Store::open(&dir, durability))
                .await
                .context("store task failed")?;
            Some(opened.with_context(|| {
                format!(
                    "cannot open the state store in {}",
                    config.state_dir.display()
                )
            })?)
        }
        false => None,
    };
    let (starts, starts_receiver) = match wants_enforcement {
        true => {
            let (sender, receiver) = mpsc::channel(START_LANE);
            (Some(sender), Some(receiver))
        }
        false => (None, None),
    };
    let mut agent = start_parts(
        config.metrics_listen,
        config.backoff,
        runtimes,
        starts,
        Some(config.ownership.clone()),
        shutdown.clone(),
    )
    .await?;
    let Some(store) = store else {
        if config.detections.is_some() {
            warn!(
                "[detections] is set, but enforcement does not run (no policies, no API): the intake is off"
            );
        }
        return Ok(agent);
    };
    let kinds = enforcing.kinds();
    let manager = QuarantineManager::with_runtimes(
        enforcing,
        Arc::new(NetnsCutter::new()),
        store.clone(),
        clock.clone(),
        QuarantineConfig {
            node: config.node_name.clone(),
            audit_only: config.enforcement.audit_only,
            blast_radius_per_minute: config.enforcement.blast_radius_per_minute,
            stop_grace: config.enforcement.stop_grace,
            protected: config.enforcement.protected.clone(),
            own_container: crate::runtime::cgroup::own_container_id(),
        },
    );
    let book = {
        let (node, trusted, store) = (
            config.node_name.clone(),
            config.trusted_keys.clone(),
            store.clone(),
        );
        let fleet_metrics = agent.metrics.fleet.clone();
        let opened = tokio::task::spawn_blocking(move || {
            BundleBook::open_with_clock(&node, trusted, store, fleet_metrics, clock)
        })
        .await
        .context("bundle task failed")?;
        Arc::new(opened.context("cannot read the stored bundles")?)
    };
    // A signed policies bundle, once accepted, replaces the policy directory (bundles module).
    let from_bundle = book.policies();
    if from_bundle.is_some() && !config.policy_dirs.is_empty() {
        info!("a signed policies bundle is in force: the policy directory is not read");
    }
    let reads_files = from_bundle.is_none();
    let mut enforcer = Enforcer::new(
        manager,
        from_bundle.or(policies).unwrap_or_default(),
        config.enforcement.recheck_interval,
    )
    .with_metrics(agent.metrics.clone())
    .with_indicators(book.indicators())
    .with_dedup_window(config.dedup_window);
    if let Some(every) = config
        .policy_reload
        .filter(|_| !config.policy_dirs.is_empty() && reads_files)
    {
        let dirs = config.policy_dirs.clone();
        let files = tokio::task::spawn_blocking(move || PolicyFiles::new(dirs))
            .await
            .context("policy reader task failed")?;
        enforcer = enforcer.with_policy_reload(files, every);
    }
    agent.enforced = Some(enforcer.publisher());
    let commands = enforcer.commands();
    agent.enforcer = Some(commands.clone());
    book.enforce_with(commands.clone());
    agent.bundles = Some(book.clone());
    info!(
        runtimes = ?kinds,
        state_dir = %config.state_dir.display(),
        audit_only = config.enforcement.audit_only,
        policies = enforcer.policies().policies.len(),
        "enforcement running"
    );
    agent.tasks.spawn(enforcer.run(
        agent.inventory.snapshots.clone(),
        starts_receiver,
        shutdown.clone(),
    ));
    let scanner = crate::scan::Scanner {
        settings: config.scan,
        procfs: crate::scan::procfs::ProcFs::default(),
        inventory: agent.inventory.snapshots.clone(),
        book: book.clone(),
        enforcer: commands.clone(),
        metrics: agent.metrics.scan.clone(),
    };
    agent.tasks.spawn(scanner.run(shutdown.clone()));
    if let Some(intake) = &config.detections {
        let (bound, tasks) =
            crate::detections::serve(intake, commands.clone(), shutdown.clone()).await?;
        agent.detections = bound;
        for task in tasks {
            agent.tasks.spawn(async move {
                let _served = task.await;
            });
        }
    }
    if let Some(settings) = &config.api {
        let api = AgentApi::new(
            config.node_name.clone(),
            agent.inventory.clone(),
            store.clone(),
            commands.clone(),
        )
        .with_bundles(book.clone());
        let gossip_slot = api.gossip_slot();
        let tls = settings.read_tls()?;
        let (bound, task) = api::serve(
            settings,
            &tls,
            api,
            &agent.metrics,
            agent
                .runtime_status
                .iter()
                .map(|(_, status)| status.clone())
                .collect(),
            shutdown.clone(),
        )
        .await?;
        agent.api_addr = Some(bound);
        agent.tasks.spawn(async move {
            drop(task.await);
        });
        if let Some(gossip_settings) = &config.gossip {
            let parts = fleet::Parts {
                store,
                book,
                enforcer: commands,
                inventory: agent.inventory.clone(),
                metrics: agent.metrics.fleet.clone(),
                api_addr: bound,
                detections_addr: agent.detections,
            };
            let gossip = fleet::start_gossip(
                config,
                &tls,
                gossip_settings,
                parts,
                &mut agent.tasks,
                shutdown,
            )
            .await?;
            // Only ever set here, once.
            let _first = gossip_slot.set(gossip.clone());
            agent.gossip = Some(gossip);
        }
    }
    Ok(agent)
}

/// Like [`start`] without enforcement, from the parts tests and benches choose themselves.
pub async fn start_with_backoff(
    metrics_listen: Option<SocketAddr>,
    backoff: Backoff,
    runtimes: Vec<Arc<dyn ContainerRuntime>>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningAgent> {
    start_parts(metrics_listen, backoff, runtimes, None, None, shutdown).await
}

/// The metrics endpoint, the inventory and one watcher per runtime; with `starts`, the watchers
/// signal every start there (the enforcement fast lane).
async fn start_parts(
    metrics_listen: Option<SocketAddr>,
    backoff: Backoff,
    runtimes: Vec<Arc<dyn ContainerRuntime>>,
    starts: Option<mpsc::Sender<StartSignal>>,
    ownership: Option<Ownership>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningAgent> {
    let metrics = Metrics::new();
    let mut tasks = JoinSet::new();
    let metrics_addr = match metrics_listen {
        Some(listen) => {
            let (bound, task) = metrics::serve(metrics.clone(), listen, shutdown.clone()).await?;
            tasks.spawn(async move {
                drop(task.await);
            });
            info!(address = %bound, "metrics endpoint listening");
            Some(bound)
        }
        None => None,
    };
    let watched: Vec<lazaret_core::RuntimeKind> =
        runtimes.iter().map(|runtime| runtime.kind()).collect();
    let (inventory, inventory_task) =
        inventory::spawn_owning(metrics.clone(), ownership, &watched, shutdown.clone());
    tasks.spawn(async move {
        drop(inventory_task.await);
    });
    let mut runtime_status = Vec::new();
    for runtime in runtimes {
        let (status_sender, status_receiver) = watch::channel(RuntimeStatus::default());
        let watcher = Watcher {
            runtime: runtime.clone(),
            updates: inventory.updates.clone(),
            metrics: metrics.clone(),
            backoff,
            status: status_sender,
            starts: starts.clone(),
        };
        tasks.spawn(watcher.run(shutdown.clone()));
        runtime_status.push((runtime, status_receiver));
    }
    Ok(RunningAgent {
        inventory,
        runtime_status,
        metrics,
        metrics_addr,
        enforced: None,
        enforcer: None,
        api_addr: None,
        bundles: None,
        gossip: None,
        detections: None,
        tasks,
    })
}

/// One-shot posture report: connect to each runtime, list, inspect, check, and (with a policy
/// set) judge. An unreachable runtime is reported as such, never silently skipped.
pub async fn scan(
    node: String,
    runtimes: Vec<Arc<dyn ContainerRuntime>>,
    policies: Option<&PolicySet>,
) -> anyhow::Result<PostureReport> {
    let mut runtime_reports = Vec::new();
    let mut lists = Vec::new();
    for runtime in runtimes {
        let mut report = RuntimeReport {
            runtime: runtime.kind().to_string(),
            endpoint: runtime.endpoint(),
            reachable: false,
            error: None,
            version: None,
        };
        match runtime.connect().await {
            Ok(version) => {
                report.reachable = true;
                report.version = Some(version);
                let listed = watcher::inspect_all(runtime.as_ref())
                    .await
                    .with_context(|| {
                        format!(
                            "failed to list containers of {} at {}",
                            runtime.kind(),
                            runtime.endpoint()
                        )
                    })?;
                lists.push((runtime.kind(), listed));
            }
            Err(error) => report.error = Some(error.to_string()),
        }
        runtime_reports.push(report);
    }
    let merged = inventory::merge_lists(lists);
    let containers = merged
        .containers
        .values()
        .map(|entry| {
            let verdict = policies.map(|set| {
                policy::judge(
                    set,
                    &JudgeInput {
                        container: &entry.info,
                        posture: &entry.findings,
                        indicators: &NoIndicators,
                        is_exempt: &|_| false,
                    },
                )
            });
            ContainerReport::new(&entry.info, entry.findings.clone(), verdict)
        })
        .collect();
    Ok(PostureReport::new(node, runtime_reports, containers))
}
