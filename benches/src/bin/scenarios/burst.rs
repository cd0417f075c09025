//! Scenario (10): a burst of container starts. An in-process agent enforcing a pause policy on
//! the burst's violators (every other container); `--burst` containers are created, then all
//! started as fast as the engine takes them (8 at a time). Measured from the first start call:
//! until every container is in the inventory running with its findings (judged) and every
//! violator is paused. Reported: how many were missed (never judged, or a violator never paused:
//! the goal is none) and the time to drain.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;
use futures::StreamExt;
use lazaret_agent::app;
use lazaret_agent::config::RawConfig;
use lazaret_benches::Measurement;
use lazaret_core::policy::{PolicySet, PolicySource};
use lazaret_core::{ContainerId, ContainerState};
use tokio_util::sync::CancellationToken;

use super::{Args, create_labelled};

/// How many container calls run at once.
const PARALLEL: usize = 8;
/// How long the agent may take after the last start.
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);

const POLICY: &str = "apiVersion: lazaret.dev/v1\nkind: Policy\nname: bench-burst\nmode: enforce\n\
     match:\n  labels: {lazaret.burst: violate}\nrules:\n  - expr: 'true'\nactions: [pause]\n";

pub async fn burst(
    args: &Args,
    docker: &Docker,
    run_label: &str,
) -> anyhow::Result<Vec<Measurement>> {
    let state = tempfile::tempdir()?;
    let mut raw = RawConfig::default();
    raw.metrics.listen = String::new();
    raw.state.dir = state.path().to_path_buf();
    // The burst is the point: no per-minute budget in the way.
    raw.enforcement.blast_radius_per_minute = args.burst * 2;
    let config = raw.validate()?;
    let policies = PolicySet::load(&[PolicySource::new("burst.yaml", POLICY.to_string())])?;
    let shutdown = CancellationToken::new();
    let runtimes = app::runtimes_from_config(&config);
    let agent = app::start(&config, runtimes, Some(policies), shutdown.clone()).await?;
    let mut status = agent.runtime_status[0].1.clone();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|status| status.connected),
    )
    .await??;

    let names: Vec<(String, bool)> = (0..args.burst)
        .map(|index| (format!("{run_label}-burst-{index}"), index % 2 == 0))
        .collect();
    let created: Vec<anyhow::Result<String>> = futures::stream::iter(names.iter())
        .map(|(name, violates)| async move {
            let value = if *violates { "violate" } else { "fine" };
            create_labelled(docker, run_label, name, &[("lazaret.burst", value)]).await
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut ids = Vec::new();
    let mut violators = HashSet::new();
    for (created, (_, violates)) in created.into_iter().zip(&names) {
        let id = ContainerId::new(created?.as_str());
        if *violates {
            violators.insert(id.clone());
        }
        ids.push(id);
    }
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(ids.iter())
        .map(|id| docker.start_container(id.as_str(), None))
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    for result in results {
        result.context("a burst container did not start")?;
    }
    let starts_done = started.elapsed();

    // Drain: every container judged (in the inventory, running or paused, with findings) and
    // every violator paused by the agent.
    let mut snapshots = agent.inventory.snapshots.clone();
    let drained = tokio::time::timeout(
        DRAIN_DEADLINE,
        snapshots.wait_for(|snapshot| {
            ids.iter().all(|id| {
                snapshot.get(id).is_some_and(|entry| {
                    !entry.findings.is_empty()
                        && match violators.contains(id) {
                            true => entry.info.state == ContainerState::Paused,
                            false => entry.info.state == ContainerState::Running,
                        }
                })
            })
        }),
    )
    .await
    .is_ok();
    let drain = started.elapsed();
    let snapshot = agent.inventory.snapshots.borrow().clone();
    let judged = ids
        .iter()
        .filter(|id| {
            snapshot
                .get(id)
                .is_some_and(|entry| !entry.findings.is_empty())
        })
        .count();
    let paused = violators
        .iter()
        .filter(|id| {
            snapshot
                .get(id)
                .is_some_and(|entry| entry.info.state == ContainerState::Paused)
        })
        .count();
    shutdown.cancel();
    agent.drain().await;
    let missed = (ids.len() - judged) + (violators.len() - paused);
    let what = format!(
        "burst of {} container starts ({} violators)",
        ids.len(),
        violators.len()
    );
    Ok(vec![
        Measurement {
            metric: format!("{what}: missed (not judged, or a violator not paused)"),
            goal: "<= 0 missed".into(),
            value: serde_json::json!(missed),
            floor: None,
            ratio_p50: None,
        },
        Measurement {
            metric: format!(
                "{what}: from the first start to all judged and paused (s; the starts alone: {:.1} s)",
                starts_done.as_secs_f64()
            ),
            goal: "(reported)".into(),
            value: match drained {
                true => serde_json::json!((drain.as_secs_f64() * 10.0).round() / 10.0),
                false => serde_json::json!(format!("not within {} s", DRAIN_DEADLINE.as_secs())),
            },
            floor: None,
            ratio_p50: None,
        },
    ])
}
