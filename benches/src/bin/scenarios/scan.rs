//! Scenario (9): the scan's cost. `--scan-containers` running busybox containers with three
//! processes each, half of them idle (`sleep`s only) and half holding a listening TCP socket
//! (`nc -l`, so the namespace's TCP table is read: the expensive part, which walks the host's
//! whole connection hash), looked inside the way the agent's scan does ([`ProcFs::look`], the
//! host's real `/proc`, everything wanted). Each cycle over one group is timed `--scan-rounds`
//! times with an empty executable-hash cache (cold: every executable hashed) and with the cache
//! of the previous cycle (warm: the steady state), and reported per container. The floor is the
//! raw reads a look cannot avoid: each process's `comm`.

use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;
use lazaret_agent::scan::hashes::ExeHashes;
use lazaret_agent::scan::procfs::{Limits, ProcFs, Wanted};
use lazaret_benches::{LatencySummary, Measurement, summarize};
use lazaret_core::ContainerId;

use super::{Args, create_command};

const LIMITS: Limits = Limits {
    max_processes: 256,
    max_addresses: 4096,
    max_exe_bytes: 64 << 20,
};

type Targets = Vec<(ContainerId, u32)>;

pub async fn cost_per_container(
    args: &Args,
    docker: &Docker,
    run_label: &str,
) -> anyhow::Result<Vec<Measurement>> {
    let half = (args.scan_containers / 2).max(1);
    let idle = start(
        docker,
        run_label,
        "idle",
        half,
        "sleep 3600 & sleep 3600 & wait",
    )
    .await?;
    let listening = start(
        docker,
        run_label,
        "listening",
        half,
        "nc -l -p 8080 & sleep 3600 & wait",
    )
    .await?;
    let mut measurements = Vec::new();
    for (group, targets) in [("idle", idle), ("with a TCP listener", listening)] {
        let rounds = args.scan_rounds;
        let (cold, warm, floor) =
            tokio::task::spawn_blocking(move || time_cycles(&targets, rounds)).await??;
        for (name, measured) in [
            ("warm hash cache", warm),
            ("cold: every executable hashed", cold),
        ] {
            measurements.push(Measurement {
                metric: format!(
                    "scan cost per container per cycle, {half} {group} x 3 processes, {name}"
                ),
                goal: "(reported; no goal set)".into(),
                ratio_p50: Some(measured.p50_ms / floor.p50_ms),
                value: serde_json::to_value(&measured)?,
                floor: Some(floor.clone()),
            });
        }
    }
    Ok(measurements)
}

/// Starts `count` containers running `script`; their ids and init PIDs once each shows three
/// processes.
async fn start(
    docker: &Docker,
    run_label: &str,
    group: &str,
    count: usize,
    script: &str,
) -> anyhow::Result<Targets> {
    let mut targets = Vec::new();
    for index in 0..count {
        let name = format!("{run_label}-scan-{group}-{index}");
        let id = create_command(docker, run_label, &name, &[], &["sh", "-c", script]).await?;
        docker.start_container(&id, None).await?;
        let pid = docker
            .inspect_container(&id, None)
            .await?
            .state
            .and_then(|state| state.pid)
            .filter(|pid| *pid > 0)
            .context("a started container has no PID")?;
        targets.push((ContainerId::new(id.as_str()), pid as u32));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = ProcFs::default().look(&targets, LIMITS, Wanted::ALL, &mut ExeHashes::default());
        if seen.len() == targets.len() && seen.iter().all(|(_, seen)| seen.processes.len() == 3) {
            return Ok(targets);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the containers never showed 3 processes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (cold, warm, floor) per container.
fn time_cycles(
    targets: &Targets,
    rounds: usize,
) -> anyhow::Result<(LatencySummary, LatencySummary, LatencySummary)> {
    let procfs = ProcFs::default();
    let count = targets.len() as u32;
    let (mut cold, mut warm, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    let mut cache = ExeHashes::default();
    procfs.look(targets, LIMITS, Wanted::ALL, &mut cache);
    for _ in 0..rounds {
        let started = Instant::now();
        procfs.look(targets, LIMITS, Wanted::ALL, &mut ExeHashes::default());
        cold.push(started.elapsed() / count);
        let started = Instant::now();
        let seen = procfs.look(targets, LIMITS, Wanted::ALL, &mut cache);
        warm.push(started.elapsed() / count);
        let started = Instant::now();
        for (_, observed) in &seen {
            for process in &observed.processes {
                std::hint::black_box(std::fs::read(format!("/proc/{}/comm", process.pid)).ok());
            }
        }
        floor.push(started.elapsed() / count);
    }
    let summary = |samples: &[Duration]| summarize(samples).context("no samples");
    Ok((summary(&cold)?, summary(&warm)?, summary(&floor)?))
}
