//! Scenario (5): the agent as a real process with many containers on the host: its RSS, its CPU
//! while idle, and its CPU while the engine emits about 100 events per second (five containers
//! paused and unpaused in turn, each every 50 ms; the agent inspects each changed container).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;
use lazaret_benches::Measurement;

use super::{Args, DOCKER_SOCKET, create_container};

fn process_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// utime + stime of a process, in clock ticks.
pub(super) fn process_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Containers the agent reports through `/metrics` (a plain HTTP/1.0 GET on loopback).
async fn inventory_size(metrics_address: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(metrics_address).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let total = response
        .lines()
        .filter(|line| line.starts_with("lazaret_containers{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    Some(total)
}

/// The agent as a real process: RSS with N containers on the host, CPU while idle.
pub async fn agent_process_footprint(
    args: &Args,
    docker: &Docker,
    run_label: &str,
) -> anyhow::Result<Vec<Measurement>> {
    if !args.agent.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p lazaret-agent`",
            args.agent.display()
        );
    }
    let existing = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await?
        .len();
    for index in existing..args.rss_containers {
        create_container(docker, run_label, &format!("{run_label}-rss-{index}")).await?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let metrics_address = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(&args.agent)
        .args([
            "--docker-socket",
            DOCKER_SOCKET,
            "--log-level",
            "warn",
            "run",
            "--metrics-listen",
            &metrics_address,
        ])
        .kill_on_drop(true)
        .spawn()
        .context("failed to start the agent")?;
    let pid = child.id().context("agent has no pid")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let wanted = u64::try_from(args.rss_containers.max(existing))?;
    loop {
        if inventory_size(&metrics_address)
            .await
            .is_some_and(|size| size >= wanted)
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the agent did not list {wanted} containers within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_kib = process_rss_kib(pid)?;
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let before = process_cpu_ticks(pid)?;
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let after = process_cpu_ticks(pid)?;
    let idle_cpu_percent =
        (after - before) as f64 / ticks_per_second / args.idle_seconds as f64 * 100.0;
    let (events_per_second, busy_cpu_percent) =
        under_events(docker, run_label, pid, args.idle_seconds).await?;
    child.kill().await.ok();
    Ok(vec![
        Measurement {
            metric: format!("agent RSS with {wanted} containers (MiB)"),
            goal: "<= 30 MiB".into(),
            value: serde_json::json!(rss_kib as f64 / 1024.0),
            floor: None,
            ratio_p50: None,
        },
        Measurement {
            metric: format!(
                "agent CPU idle over {} s (% of one core)",
                args.idle_seconds
            ),
            goal: "<= 0.5 %".into(),
            value: serde_json::json!(idle_cpu_percent),
            floor: None,
            ratio_p50: None,
        },
        Measurement {
            metric: format!(
                "agent CPU at {events_per_second:.0} engine events/s over {} s (% of one core)",
                args.idle_seconds
            ),
            goal: "<= 5 %".into(),
            value: serde_json::json!((busy_cpu_percent * 100.0).round() / 100.0),
            floor: None,
            ratio_p50: None,
        },
    ])
}

/// Five running containers paused and unpaused in turn, each every 50 ms (about 100 engine
/// events per second), for `seconds`: the events per second achieved and the agent's CPU (% of
/// one core) meanwhile.
async fn under_events(
    docker: &Docker,
    run_label: &str,
    pid: u32,
    seconds: u64,
) -> anyhow::Result<(f64, f64)> {
    let mut busy = Vec::new();
    for index in 0..5 {
        let id =
            create_container(docker, run_label, &format!("{run_label}-events-{index}")).await?;
        docker.start_container(&id, None).await?;
        busy.push(id);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let until = Instant::now() + Duration::from_secs(seconds);
    let before = process_cpu_ticks(pid)?;
    let started = Instant::now();
    let loops = busy.iter().map(|id| async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(50));
        let mut events = 0u64;
        let mut paused = false;
        while Instant::now() < until {
            ticker.tick().await;
            let done = match paused {
                false => docker.pause_container(id).await,
                true => docker.unpause_container(id).await,
            };
            if done.is_ok() {
                paused = !paused;
                events += 1;
            }
        }
        if paused {
            docker.unpause_container(id).await.ok();
        }
        events
    });
    let events: u64 = futures::future::join_all(loops).await.into_iter().sum();
    let elapsed = started.elapsed().as_secs_f64();
    let after = process_cpu_ticks(pid)?;
    let cpu = (after - before) as f64 / 100.0 / elapsed * 100.0;
    Ok((events as f64 / elapsed, cpu))
}
