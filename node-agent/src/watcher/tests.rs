//! The watcher's list/events/reconnect logic on the in-memory runtime. The same behaviour on
//! the real engine is proven in `tests/` (e2e `inventory` suite).

use std::sync::Arc;
use std::time::Duration;

use lazaret_core::{ContainerId, ContainerInfo, ContainerState, RuntimeKind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Backoff, RuntimeStatus, StartSignal, Watcher};
use crate::inventory::{self, InventoryHandle, InventorySnapshot};
use crate::metrics::Metrics;
use crate::runtime::fake::FakeRuntime;

fn container(id: &str) -> ContainerInfo {
    let mut info = ContainerInfo::unknown(ContainerId::new(id), RuntimeKind::Fake);
    info.state = ContainerState::Running;
    info
}

struct Running {
    fake: Arc<FakeRuntime>,
    inventory: InventoryHandle,
    status: watch::Receiver<RuntimeStatus>,
    metrics: Metrics,
    shutdown: CancellationToken,
    starts: mpsc::Receiver<StartSignal>,
}

fn start(fake: Arc<FakeRuntime>) -> Running {
    start_with_lane(fake, 16)
}

fn start_with_lane(fake: Arc<FakeRuntime>, lane: usize) -> Running {
    let shutdown = CancellationToken::new();
    let metrics = Metrics::new();
    let (inventory, _task) = inventory::spawn(metrics.clone(), shutdown.clone());
    let (status_sender, status) = watch::channel(RuntimeStatus::default());
    let (starts_sender, starts) = mpsc::channel(lane);
    let watcher = Watcher {
        runtime: fake.clone(),
        updates: inventory.updates.clone(),
        metrics: metrics.clone(),
        backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
        status: status_sender,
        starts: Some(starts_sender),
    };
    tokio::spawn(watcher.run(shutdown.clone()));
    Running {
        fake,
        inventory,
        status,
        metrics,
        shutdown,
        starts,
    }
}

async fn wait_for(
    inventory: &InventoryHandle,
    what: &str,
    condition: impl Fn(&InventorySnapshot) -> bool,
) {
    let mut snapshots = inventory.snapshots.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        snapshots.wait_for(|snapshot| condition(snapshot)),
    )
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    .expect("inventory alive");
}

fn has(snapshot: &InventorySnapshot, id: &str) -> bool {
    snapshot.get(&ContainerId::new(id)).is_some()
}

#[tokio::test]
async fn lists_existing_then_follows_events() {
    let fake = Arc::new(FakeRuntime::new());
    fake.upsert(container("before"));
    let running = start(fake);
    wait_for(&running.inventory, "the listed container", |s| {
        has(s, "before")
    })
    .await;
    running.fake.upsert(container("after"));
    wait_for(&running.inventory, "the created container", |s| {
        has(s, "after")
    })
    .await;
    running.fake.remove(&ContainerId::new("before"));
    wait_for(&running.inventory, "the removal", |s| !has(s, "before")).await;
    let mut paused = container("after");
    paused.state = ContainerState::Paused;
    running.fake.upsert(paused);
    wait_for(&running.inventory, "the state change", |s| {
        s.get(&ContainerId::new("after"))
            .is_some_and(|entry| entry.info.state == ContainerState::Paused)
    })
    .await;
    running.shutdown.cancel();
}

#[tokio::test]
async fn resyncs_after_reconnect_so_missed_changes_appear() {
    let fake = Arc::new(FakeRuntime::new());
    fake.upsert(container("kept"));
    fake.upsert(container("removed-while-away"));
    let running = start(fake);
    wait_for(&running.inventory, "the first list", |s| s.len() == 2).await;

    running.fake.set_available(false);
    let mut status = running.status.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|status| !status.connected),
    )
    .await
    .expect("watcher notices the outage")
    .expect("status alive");
    // Changes while the watcher is away: no events reach it.
    running
        .fake
        .upsert_without_event(container("created-while-away"));
    running.fake.remove(&ContainerId::new("removed-while-away"));
    running.fake.set_available(true);

    wait_for(&running.inventory, "the resync", |s| {
        has(s, "kept") && has(s, "created-while-away") && !has(s, "removed-while-away")
    })
    .await;
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|status| status.connected),
    )
    .await
    .expect("watcher reconnects")
    .expect("status alive");
    assert!(running.status.borrow().reconnects >= 1);
    assert!(
        running
            .metrics
            .encode()
            .contains("lazaret_runtime_reconnects_total{runtime=\"fake\"}"),
        "reconnects are counted"
    );
    running.shutdown.cancel();
}

#[tokio::test]
async fn keeps_retrying_while_the_runtime_is_down_and_stops_on_shutdown() {
    let fake = Arc::new(FakeRuntime::new());
    fake.set_available(false);
    let running = start(fake);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!running.status.borrow().connected);
    assert!(running.status.borrow().last_error.is_some());
    running.fake.upsert_without_event(container("late"));
    running.fake.set_available(true);
    wait_for(
        &running.inventory,
        "the container after the runtime came up",
        |s| has(s, "late"),
    )
    .await;
    running.shutdown.cancel();
}

#[tokio::test]
async fn a_start_is_signalled_before_the_inspect_and_a_full_lane_drops_and_counts() {
    let fake = Arc::new(FakeRuntime::new());
    let mut created = container("web");
    created.state = ContainerState::Created;
    let mut running = start_with_lane(fake.clone(), 1);
    wait_for(&running.inventory, "the connection", |_| true).await;
    fake.upsert(created.clone());
    wait_for(&running.inventory, "the created container", |s| {
        has(s, "web")
    })
    .await;
    assert!(running.starts.try_recv().is_err(), "create is no start");

    fake.start(&created.id).unwrap();
    let signal = tokio::time::timeout(Duration::from_secs(10), running.starts.recv())
        .await
        .expect("a start signal")
        .unwrap();
    assert_eq!(
        (signal.runtime, signal.id.as_str()),
        (RuntimeKind::Fake, "web")
    );
    wait_for(&running.inventory, "the started container", |s| {
        s.get(&created.id)
            .is_some_and(|entry| entry.info.state == ContainerState::Running)
    })
    .await;

    // Nobody reads the lane: the second start fills it, the third is dropped and counted.
    fake.start(&created.id).unwrap();
    fake.start(&created.id).unwrap();
    fake.upsert(container("marker"));
    wait_for(&running.inventory, "the marker", |s| has(s, "marker")).await;
    assert!(
        running
            .metrics
            .encode()
            .contains("lazaret_fast_path_signals_dropped_total 1"),
        "{}",
        running.metrics.encode()
    );
    running.shutdown.cancel();
}
