//! Fault: the agent keeps running while its engine goes away and comes back, reconnects, and
//! resyncs, so containers created meanwhile are in the inventory. Uses a private dockerd in
//! its own network namespace, never the machine's engine.

use std::time::Duration;

use lazaret_core::{ContainerId, ContainerState};
use lazaret_tests::agent::TestAgent;
use lazaret_tests::{BUSYBOX_IMAGE, PrivateDockerd, TestContainers, ensure_busybox_image};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reconnects_and_resyncs_after_its_engine_restarts() {
    lazaret_tests::init_tracing();
    let mut engine = tokio::task::spawn_blocking(PrivateDockerd::start)
        .await
        .unwrap()
        .unwrap();
    let host = engine.host();
    ensure_busybox_image(Some(&host)).unwrap();
    let containers = TestContainers::new(Some(&host));
    let socket = engine.socket_path().to_str().unwrap().to_string();

    let agent = TestAgent::start_docker(&socket).await.unwrap();
    agent
        .wait_for_runtime("the first connection", |status| status.connected)
        .await
        .unwrap();
    let before = ContainerId::new(
        containers
            .create("before", &[BUSYBOX_IMAGE, "sleep", "600"])
            .unwrap(),
    );
    agent
        .wait_for_inventory("the container created before the outage", |s| {
            s.get(&before).is_some()
        })
        .await
        .unwrap();

    // The engine goes away: the agent notices and keeps running.
    let engine = tokio::task::spawn_blocking(move || {
        engine.stop().unwrap();
        engine
    })
    .await
    .unwrap();
    // It stays down for a while: the agent retries with back-off instead of giving up.
    agent.expect_outage(Duration::from_secs(2)).await.unwrap();

    // The engine comes back; containers are created and removed around the reconnect.
    let mut engine = engine;
    let engine = tokio::task::spawn_blocking(move || {
        engine.start_again().unwrap();
        engine
    })
    .await
    .unwrap();
    let after = ContainerId::new(
        containers
            .create("after", &[BUSYBOX_IMAGE, "sleep", "600"])
            .unwrap(),
    );
    let started = ContainerId::new(
        containers
            .run(
                "started",
                &["--stop-timeout", "1", BUSYBOX_IMAGE, "sleep", "600"],
            )
            .unwrap(),
    );

    let status = agent
        .wait_for_runtime("the reconnect", |status| {
            status.connected && status.reconnects >= 1
        })
        .await
        .unwrap();
    assert!(status.version.is_some());
    agent
        .wait_for_inventory("old and new containers after the resync", |s| {
            s.get(&before).is_some()
                && s.get(&after).is_some()
                && s.get(&started)
                    .is_some_and(|entry| entry.info.state == ContainerState::Running)
        })
        .await
        .unwrap();
    let metrics = agent.metrics_text();
    assert!(
        metrics.contains("lazaret_runtime_reconnects_total{runtime=\"docker\"} "),
        "{metrics}"
    );
    assert!(
        !metrics.contains("lazaret_runtime_reconnects_total{runtime=\"docker\"} 0\n"),
        "{metrics}"
    );

    agent.stop().await;
    drop(containers);
    tokio::task::spawn_blocking(move || drop(engine))
        .await
        .unwrap();
}
