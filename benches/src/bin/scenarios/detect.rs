//! Scenario (8): a Falco alert → enforced. An in-process agent with the detections intake and a
//! `kind: Response` (network cut + pause on critical shell alerts); each round a new container,
//! then the alert POSTed over loopback HTTP with the bearer token, timed until the answer, which
//! comes once the quarantine is applied (cut and paused). Beside it, the raw Docker pause.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bollard::Docker;
use lazaret_agent::app;
use lazaret_agent::config::RawConfig;
use lazaret_agent::runtime::ContainerRuntime;
use lazaret_agent::runtime::docker::DockerRuntime;
use lazaret_benches::{Measurement, summarize};
use lazaret_core::ContainerId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{Args, DOCKER_SOCKET, create_container, start_seen_running};

const TOKEN: &str = "bench-token-0123456789abcdef";

/// POSTs `body` to `/falco` at `address` over a fresh connection; the answer's body.
async fn post(address: &str, body: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "POST /falco HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    if !answer.starts_with("HTTP/1.1 200") {
        bail!("the intake answered: {answer}");
    }
    Ok(answer)
}

pub async fn alert_to_enforced(
    args: &Args,
    docker: &Docker,
    run_label: &str,
) -> anyhow::Result<Vec<Measurement>> {
    let state = tempfile::tempdir()?;
    let policies = state.path().join("policies");
    std::fs::create_dir(&policies)?;
    std::fs::write(
        policies.join("response.yaml"),
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Response\nname: bench-shell\nmode: enforce\n\
             match: {{rules: ['Terminal shell in container'], min_severity: critical}}\n\
             containers: {{labels: {{lazaret.test: \"{run_label}\"}}}}\nactions: [network-cut, pause]\n"
        ),
    )?;
    let token = state.path().join("token");
    std::fs::write(&token, TOKEN)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut raw = RawConfig::default();
    raw.metrics.listen = String::new();
    raw.api.listen = String::new();
    raw.state.dir = state.path().join("state");
    raw.policies.dirs = vec![policies.clone()];
    raw.detections.listen = format!("127.0.0.1:{port}");
    raw.detections.token_file = token;
    // Each round is a new container: the dedup window never holds one back.
    raw.enforcement.blast_radius_per_minute = 10_000;
    let config = raw.validate()?;
    let shutdown = CancellationToken::new();
    let runtimes = app::runtimes_from_config(&config);
    let sources = lazaret_core::policy::files::read_sources(&[policies])
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let set = lazaret_core::policy::PolicySet::load(&sources)
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let agent = app::start(&config, runtimes, Some(set), shutdown.clone()).await?;
    let address = agent
        .detections
        .context("the intake did not start")?
        .to_string();
    let pause = Arc::new(DockerRuntime::new(DOCKER_SOCKET));
    pause.connect().await?;
    let (mut alerts, mut raw_pause) = (Vec::new(), Vec::new());
    for round in 0..args.cli_rounds {
        let baseline = create_container(
            docker,
            run_label,
            &format!("{run_label}-alertpause-{round}"),
        )
        .await?;
        docker.start_container(&baseline, None).await?;
        let started = Instant::now();
        pause.pause(&ContainerId::new(baseline.as_str())).await?;
        raw_pause.push(started.elapsed());

        let target = start_seen_running(
            docker,
            &agent.inventory,
            run_label,
            &format!("{run_label}-alert-{round}"),
        )
        .await?;
        let body = serde_json::json!({
            "rule": "Terminal shell in container",
            "priority": "Critical",
            "output": "A shell was spawned in a container",
            "output_fields": {"container.id": &target[..12]},
        })
        .to_string();
        let started = Instant::now();
        let answer = post(&address, &body).await?;
        alerts.push(started.elapsed());
        if !answer.contains("\"quarantined\"") {
            bail!("the alert did not quarantine: {answer}");
        }
    }
    shutdown.cancel();
    agent.drain().await;
    let measured = summarize(&alerts).context("no samples")?;
    let floor = summarize(&raw_pause).context("no samples")?;
    Ok(vec![Measurement {
        metric: "Falco alert POST -> network cut + pause applied (loopback HTTP, token)".into(),
        goal: "p99 <= 30 ms".into(),
        ratio_p50: Some(measured.p50_ms / floor.p50_ms),
        value: serde_json::to_value(&measured)?,
        floor: Some(floor),
    }])
}
