//! A Docker container is also a task in Docker's containerd (namespace `moby`). With both
//! watched, Docker reports it; containerd passes on only its start events (the fast path may act
//! on the earliest start signal), so a pause or an unpause is inspected once, through Docker,
//! not twice (benches/README.md: the agent's CPU under engine events halved).

use std::time::Duration;

use lazaret_tests::agent_process::AgentProcess;
use lazaret_tests::{BUSYBOX_IMAGE, TestContainers, ensure_busybox_image, init_tracing};

const DEADLINE: Duration = Duration::from_secs(60);

/// Docker and Docker's containerd, found automatically; no enforcement.
const CONFIG: &str = "[metrics]\nlisten = \"\"\n[containerd]\nenabled = true\n";

/// The agent's `container event` log lines about `id` from `runtime`: their `action`s.
fn actions(log: &str, runtime: &str, id: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains("container event"))
        .filter(|line| {
            line.contains(&format!("runtime=\"{runtime}\""))
                || line.contains(&format!("runtime={runtime} "))
        })
        .filter(|line| line.contains(id))
        .filter_map(|line| line.split("action=").nth(1))
        .map(|action| {
            action
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn containerd_passes_on_only_the_start_of_a_docker_container() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start_with(dir.path(), CONFIG, &[], None).unwrap();
    agent
        .wait_for("both runtimes watched", DEADLINE, || {
            agent
                .log()
                .matches("runtime connected, inventory resynced")
                .count()
                >= 2
        })
        .unwrap();
    let id = containers
        .run("twin", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    for _ in 0..3 {
        containers.docker(&["pause", &id]).unwrap();
        containers.docker(&["unpause", &id]).unwrap();
    }
    agent
        .wait_for("Docker's pause and unpause events seen", DEADLINE, || {
            let docker = actions(&agent.log(), "docker", &id);
            docker
                .iter()
                .filter(|action| action.as_str() == "unpause")
                .count()
                == 3
        })
        .unwrap();
    let log = agent.log();
    let from_containerd = actions(&log, "containerd", &id);
    assert!(
        from_containerd
            .iter()
            .any(|action| action.contains("start")),
        "containerd's start signal still reaches the agent: {from_containerd:?}\n{}",
        agent.log_tail()
    );
    assert!(
        from_containerd
            .iter()
            .all(|action| action.contains("start")),
        "nothing but starts from containerd's twin: {from_containerd:?}"
    );
}
