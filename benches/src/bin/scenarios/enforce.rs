//! Scenarios (2) and (3): a start event → the container enforced by the agent's fast path,
//! beside the raw pause of the same API in the same run (and the store write before acting);
//! the network cut and its restore in one container's namespace.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use futures::StreamExt;
use lazaret_agent::app;
use lazaret_agent::config::RawConfig;
use lazaret_agent::enforce::netns::{self, NetnsHandle};
use lazaret_agent::runtime::docker::DockerRuntime;
use lazaret_agent::runtime::{ContainerRuntime, EventKind, RuntimeEvent, RuntimeResult};
use lazaret_agent::store::{Durability, Store};
use lazaret_benches::{Measurement, summarize};
use lazaret_core::ContainerId;
use lazaret_core::policy::{PolicySet, PolicySource};
use lazaret_core::quarantine::QuarantineState;
use tokio_util::sync::CancellationToken;

use super::cli::connected_containerd;
use super::{DOCKER_SOCKET, create_container, create_labelled};

/// The enforce-mode policy of the start → enforced scenario, with `actions`.
fn bench_policy(actions: &str) -> String {
    format!(
        "apiVersion: lazaret.dev/v1\nkind: Policy\nname: bench-violators\nmode: enforce\n\
         match:\n  labels: {{lazaret.bench: violate}}\n\
         rules:\n  - expr: 'container.labels[\"lazaret.bench\"] == \"violate\"'\n\
         actions: [{actions}]\n"
    )
}

/// The next `Started` event of `id` on `events`.
async fn started_event(
    events: &mut (impl futures::Stream<Item = RuntimeResult<RuntimeEvent>> + Unpin),
    id: &str,
) -> anyhow::Result<Instant> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .context("no start event within 10 s")?
            .context("event stream ended")??;
        if event.kind == EventKind::Started && event.id.as_str() == id {
            return Ok(Instant::now());
        }
    }
}

/// Start event → enforced (cut + paused) by the agent's fast path, interleaved with start event
/// → the raw pause call returned; and the store write that precedes every action.
pub async fn start_to_enforced(
    docker: &Docker,
    run_label: &str,
    count: usize,
    actions: &str,
) -> anyhow::Result<Vec<Measurement>> {
    let state = tempfile::tempdir()?;
    let mut raw = RawConfig::default();
    raw.metrics.listen = String::new();
    // containerd as a default agent finds it: Docker containers are paused through it.
    raw.state.dir = state.path().to_path_buf();
    raw.enforcement.blast_radius_per_minute = count * 2;
    let config = raw.validate()?;
    let policies = PolicySet::load(&[PolicySource::new("bench.yaml", bench_policy(actions))])?;
    let shutdown = CancellationToken::new();
    let runtime = Arc::new(DockerRuntime::new(DOCKER_SOCKET));
    runtime.connect().await?;
    let runtimes = app::runtimes_from_config(&config);
    let containerd = connected_containerd(&runtimes).await?;
    let agent = app::start(&config, runtimes, Some(policies), shutdown.clone()).await?;
    let mut enforced = agent.subscribe_enforced().context("enforcement runs")?;
    let mut status = agent.runtime_status[0].1.clone();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|status| status.connected),
    )
    .await??;
    let since = chrono::Utc::now().timestamp() - 1;
    let mut events = runtime.events(since);
    let mut fast_path = Vec::with_capacity(count);
    let mut raw_pause = Vec::with_capacity(count);
    let mut raw_task_pause = Vec::with_capacity(count);
    for index in 0..count {
        if let Some(containerd) = &containerd {
            // The call the agent makes for a Docker container: containerd's Tasks.Pause.
            let baseline =
                create_container(docker, run_label, &format!("{run_label}-taskpause-{index}"))
                    .await?;
            docker.start_container(&baseline, None).await?;
            let received = started_event(&mut events, &baseline).await?;
            containerd
                .pause_docker_task(&ContainerId::new(baseline.as_str()))
                .await
                .context("containerd does not watch Docker's namespace")??;
            raw_task_pause.push(received.elapsed());
        }
        // The raw call: read the start event, pause, until the call returns.
        let baseline =
            create_container(docker, run_label, &format!("{run_label}-pause-{index}")).await?;
        docker.start_container(&baseline, None).await?;
        let received = started_event(&mut events, &baseline).await?;
        runtime.pause(&ContainerId::new(baseline.as_str())).await?;
        raw_pause.push(received.elapsed());

        // The agent: judged at create, enforced from the start event.
        let violating = create_labelled(
            docker,
            run_label,
            &format!("{run_label}-enforced-{index}"),
            &[("lazaret.bench", "violate")],
        )
        .await?;
        let id = ContainerId::new(violating.as_str());
        let mut snapshots = agent.inventory.snapshots.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            snapshots.wait_for(|snapshot| snapshot.get(&id).is_some()),
        )
        .await
        .context("the created container never reached the inventory")??;
        docker.start_container(&violating, None).await?;
        let event = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let event = enforced.recv().await?;
                if event.record.container == id {
                    return anyhow::Ok(event);
                }
            }
        })
        .await
        .context("not enforced within 10 s")??;
        if event.record.state != QuarantineState::Applied {
            bail!("quarantine of {id} ended {}", event.record.state);
        }
        fast_path.push(
            event
                .since_start_event
                .context("enforced by the slow path: the fast path missed the start")?,
        );
    }
    shutdown.cancel();
    agent.drain().await;

    // The write that precedes every action, on the same kind of store.
    let store = Store::open(state.path(), Durability::Process)?;
    let mut writes = Vec::with_capacity(count * 4);
    let template = store
        .quarantines()?
        .records
        .into_iter()
        .next()
        .context("no quarantine stored")?;
    for index in 0..count * 4 {
        let mut record = template.clone();
        record.container = ContainerId::new(format!("bench-write-{index}"));
        let started = Instant::now();
        store.put_quarantine(&record)?;
        writes.push(started.elapsed());
    }

    let measured = summarize(&fast_path).context("no samples")?;
    let floor = summarize(&raw_pause).context("no samples")?;
    let write = summarize(&writes).context("no samples")?;
    let task_floor = summarize(&raw_task_pause);
    let mut measurements = vec![
        Measurement {
            metric: format!("start event -> enforced [{actions}], fast path"),
            goal: "p50 <= 1.15x raw pause, p99 <= 40 ms".into(),
            ratio_p50: Some(measured.p50_ms / floor.p50_ms),
            value: serde_json::to_value(&measured)?,
            floor: Some(floor),
        },
        Measurement {
            metric: "  of which: store write before acting".into(),
            goal: "(reported)".into(),
            value: serde_json::to_value(&write)?,
            floor: None,
            ratio_p50: None,
        },
    ];
    if let Some(task_floor) = task_floor {
        measurements.push(Measurement {
            metric: "  beside: start event -> raw containerd Tasks.Pause (what the agent calls)"
                .into(),
            goal: "(reported)".into(),
            ratio_p50: Some(measured.p50_ms / task_floor.p50_ms),
            value: serde_json::to_value(&measured)?,
            floor: Some(task_floor),
        });
    }
    Ok(measurements)
}

/// The network cut and its restore in one container's namespace, `rounds` times.
pub async fn cut_and_restore(
    docker: &Docker,
    run_label: &str,
    rounds: usize,
) -> anyhow::Result<Vec<Measurement>> {
    let id = create_container(docker, run_label, &format!("{run_label}-cut")).await?;
    docker.start_container(&id, None).await?;
    let inspected = docker.inspect_container(&id, None).await?;
    let sandbox = inspected
        .network_settings
        .and_then(|network| network.sandbox_key)
        .context("no sandbox key")?;
    let handle = NetnsHandle::open(&sandbox)?;
    let mut cuts = Vec::with_capacity(rounds);
    let mut restores = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        netns::cut(&handle).await?;
        cuts.push(started.elapsed());
        let started = Instant::now();
        netns::restore(&handle).await?;
        restores.push(started.elapsed());
    }
    let measurement = |metric: &str, samples: &[Duration]| -> anyhow::Result<Measurement> {
        Ok(Measurement {
            metric: metric.into(),
            goal: "(reported)".into(),
            value: serde_json::to_value(summarize(samples).context("no samples")?)?,
            floor: None,
            ratio_p50: None,
        })
    };
    Ok(vec![
        measurement("network cut (nft table added in the netns)", &cuts)?,
        measurement("network restore (table removed)", &restores)?,
    ])
}
