//! Smoke tests of the harness itself: the busybox image, container cleanup, and a private
//! engine that restarts without disturbing the machine's engine.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use lazaret_tests::command::run_checked;
use lazaret_tests::docker::{container_exists, engine_answers};
use lazaret_tests::image::image_exists;
use lazaret_tests::leftovers::processes_mentioning;
use lazaret_tests::{
    BUSYBOX_IMAGE, PrivateDockerd, TestContainers, ensure_busybox_image, init_tracing,
};

/// `sleep 30` as PID 1 ignores SIGTERM; a 1 s stop timeout keeps engine shutdowns short.
const SLEEPER: &[&str] = &["--stop-timeout", "1", BUSYBOX_IMAGE, "sleep", "30"];

#[test]
fn busybox_image_runs() -> anyhow::Result<()> {
    init_tracing();
    let started = Instant::now();
    ensure_busybox_image(None)?;
    let containers = TestContainers::new(None);
    let container_id = containers.run("sleeper", SLEEPER)?;
    ensure!(
        is_running(&containers, &container_id)?,
        "container {container_id} is not running"
    );
    let labelled = containers.list()?;
    ensure!(
        labelled == [container_id.clone()],
        "label lists {labelled:?}"
    );

    drop(containers);
    ensure!(
        !container_exists(None, &container_id)?,
        "container {container_id} survived its guard"
    );
    tracing::info!(elapsed = ?started.elapsed(), "busybox_image_runs done");
    Ok(())
}

#[test]
fn private_dockerd_survives_restart_and_leaves_machine_engine_alone() -> anyhow::Result<()> {
    init_tracing();
    let started = Instant::now();
    let docker0_before =
        docker0_identity().context("the machine has no docker0 before the test")?;

    let mut engine = PrivateDockerd::start()?;
    tracing::info!(elapsed = ?started.elapsed(), "private engine up");
    ensure!(
        docker0_identity()? == docker0_before,
        "docker0 changed while the private engine started"
    );
    let private_host = engine
        .socket_path()
        .to_str()
        .context("socket path is not utf-8")?
        .to_owned();
    let private_dir = engine.dir().to_owned();
    let private_netns = engine.netns().name().to_owned();

    ensure_busybox_image(Some(&private_host))?;
    let private_containers = TestContainers::new(Some(&private_host));
    let container_id = private_containers.run("inside", SLEEPER)?;
    ensure!(
        is_running(&private_containers, &container_id)?,
        "private container is not running"
    );
    ensure!(
        !container_exists(None, &container_id)?,
        "the machine's engine sees the private container"
    );

    let stop_started = Instant::now();
    engine.stop()?;
    tracing::info!(elapsed = ?stop_started.elapsed(), "private engine stopped");
    ensure!(!engine.is_running(), "dockerd still runs after stop");
    ensure!(!engine.socket_path().exists(), "socket left after stop");
    ensure!(
        !engine_answers(Some(&private_host), Duration::from_secs(5)),
        "engine answers after stop"
    );
    let containerd_marker = format!("{}/exec/containerd/containerd.toml", private_dir.display());
    ensure!(
        processes_mentioning(&containerd_marker)?.is_empty(),
        "managed containerd outlived stop"
    );

    let restart_started = Instant::now();
    engine.start_again()?;
    tracing::info!(elapsed = ?restart_started.elapsed(), "private engine restarted");
    ensure!(
        engine_answers(Some(&private_host), Duration::from_secs(5)),
        "engine silent after restart"
    );
    ensure!(
        image_exists(Some(&private_host), BUSYBOX_IMAGE)?,
        "image lost across restart"
    );
    ensure!(
        container_exists(Some(&private_host), &container_id)?,
        "container lost across restart"
    );

    drop(private_containers);
    drop(engine);
    ensure!(
        processes_mentioning(&format!("{}/", private_dir.display()))?.is_empty(),
        "processes of the private engine outlived it"
    );
    ensure!(
        !private_dir.exists(),
        "{} left behind",
        private_dir.display()
    );
    let namespaces = run_checked(
        Command::new("ip").args(["netns", "list"]),
        Duration::from_secs(10),
    )?;
    ensure!(
        !namespaces.contains(&private_netns),
        "netns {private_netns} left behind"
    );

    // The property that matters most: the machine's engine is untouched and still works.
    ensure!(
        docker0_identity()? == docker0_before,
        "the machine's docker0 was recreated or changed"
    );
    ensure_busybox_image(None)?;
    let machine_containers = TestContainers::new(None);
    let machine_container_id = machine_containers.run("after", SLEEPER)?;
    ensure!(
        is_running(&machine_containers, &machine_container_id)?,
        "the machine's engine cannot start containers any more"
    );
    tracing::info!(elapsed = ?started.elapsed(), "private engine test done");
    Ok(())
}

#[test]
fn private_dockerd_cleans_up_after_a_crash() -> anyhow::Result<()> {
    init_tracing();
    let started = Instant::now();
    let mut engine = PrivateDockerd::start()?;
    let private_host = engine
        .socket_path()
        .to_str()
        .context("socket path is not utf-8")?
        .to_owned();
    let private_dir = engine.dir().to_owned();
    let private_dir_marker = format!("{}/", private_dir.display());
    ensure_busybox_image(Some(&private_host))?;
    let private_containers = TestContainers::new(Some(&private_host));
    let container_id = private_containers.run("orphan", SLEEPER)?;

    engine.kill()?;
    ensure!(!engine.is_running(), "dockerd survived SIGKILL");
    ensure!(
        !engine.socket_path().exists(),
        "stale socket left after kill"
    );
    // As after a real crash, the container's shim outlives dockerd and its containerd.
    let survivors = processes_mentioning(&private_dir_marker)?;
    ensure!(
        !survivors.is_empty(),
        "no shim survived the crash of {container_id}"
    );

    drop(private_containers);
    drop(engine);
    ensure!(
        processes_mentioning(&private_dir_marker)?.is_empty(),
        "shims or containers outlived the crashed engine"
    );
    ensure!(
        !private_dir.exists(),
        "{} left behind",
        private_dir.display()
    );
    tracing::info!(elapsed = ?started.elapsed(), "crash cleanup test done");
    Ok(())
}

#[test]
fn busybox_image_is_imported_once_when_tests_race() -> anyhow::Result<()> {
    init_tracing();
    // A fresh engine, so the race really imports (the machine's engine has the image already).
    let engine = PrivateDockerd::start()?;
    let private_host = engine
        .socket_path()
        .to_str()
        .context("socket path is not utf-8")?
        .to_owned();
    std::thread::scope(|scope| {
        let racers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| ensure_busybox_image(Some(&private_host))))
            .collect();
        racers
            .into_iter()
            .map(|racer| racer.join().expect("racer panicked"))
            .collect::<anyhow::Result<Vec<()>>>()
    })?;
    let images = lazaret_tests::docker(Some(&private_host), &["images", "-q"])?;
    ensure!(
        images.lines().count() == 1,
        "expected one image, got {images:?}"
    );
    Ok(())
}

fn is_running(containers: &TestContainers, container_id: &str) -> anyhow::Result<bool> {
    let running = containers.docker(&["inspect", "-f", "{{.State.Running}}", container_id])?;
    Ok(running == "true")
}

/// docker0's interface index and MAC address: both change if the bridge is deleted and
/// recreated, neither changes when containers come and go.
fn docker0_identity() -> anyhow::Result<String> {
    let link = run_checked(
        Command::new("ip").args(["-o", "link", "show", "docker0"]),
        Duration::from_secs(10),
    )?;
    let index = link.split(':').next().unwrap_or_default().trim();
    let mac = link
        .split_whitespace()
        .skip_while(|word| *word != "link/ether")
        .nth(1)
        .unwrap_or_default();
    ensure!(
        !index.is_empty() && !mac.is_empty(),
        "cannot parse {link:?}"
    );
    Ok(format!("{index} {mac}"))
}
