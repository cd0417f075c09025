//! The agent under the shipped systemd unit's restrictions (`deploy/systemd/lazaret-agent.service`):
//! its `CapabilityBoundingSet` and `NoNewPrivileges`, applied with `setpriv` (no systemd runs
//! here), read from the unit itself so that the test and the unit keep one list. Under them the
//! agent still cuts and pauses a violating container, and what the scan reads inside a container
//! (its PID namespace link, its executable, its socket table) stays readable. Its `/metrics`,
//! scraped, shows the quarantine it just made.

use std::time::Duration;

use lazaret_agent::enforce::netns::CutStatus;
use lazaret_tests::agent_process::{AgentProcess, metric_value, scrape_metrics};
use lazaret_tests::agent_unit;
use lazaret_tests::inside::cut_status;
use lazaret_tests::{BUSYBOX_IMAGE, TestContainers, ensure_busybox_image, free_port, init_tracing};

const DEADLINE: Duration = Duration::from_secs(60);

/// Docker only, metrics on `port`.
fn config(port: u16) -> String {
    format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\n[containerd]\nenabled = false\n\
         [enforcement]\nrecheck_interval = \"1s\"\n"
    )
}

/// `setpriv` arguments applying the unit's capability bounding set and no-new-privileges, and
/// the capabilities (lower case, as `capsh` names them).
fn setpriv_for_unit() -> (Vec<String>, Vec<String>) {
    let capabilities: Vec<String> = agent_unit::capabilities()
        .iter()
        .map(|name| name.to_ascii_lowercase())
        .collect();
    assert!(!capabilities.is_empty());
    let bounding = std::iter::once("-all".to_string())
        .chain(capabilities.iter().map(|name| format!("+{name}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut wrapper = vec![
        "setpriv".to_string(),
        format!("--bounding-set={bounding}"),
        "--inh-caps=-all".to_string(),
    ];
    if agent_unit::setting("NoNewPrivileges").as_deref() == Some("yes") {
        wrapper.push("--no-new-privs".into());
    }
    wrapper.push("--".into());
    (wrapper, capabilities)
}

/// The capability names in a `/proc/PID/status` mask line (`CapBnd:`), via `capsh --decode`.
fn decoded(status: &str, line: &str) -> Vec<String> {
    let mask = status
        .lines()
        .find_map(|text| text.strip_prefix(line))
        .unwrap()
        .trim();
    let output = std::process::Command::new("capsh")
        .arg(format!("--decode={mask}"))
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let names = text.trim().split_once('=').map_or("", |(_, names)| names);
    let mut names: Vec<String> = names
        .split(',')
        .filter(|name| !name.is_empty())
        .map(|name| name.trim_start_matches("cap_").to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_cuts_pauses_and_scans_under_the_units_restrictions() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let (wrapper, mut capabilities) = setpriv_for_unit();

    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("e2e.yaml"),
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: e2e-violators\nmode: enforce\n\
             match:\n  labels: {{lazaret.test: \"{}\", lazaret.e2e: violate}}\n\
             rules:\n  - expr: 'true'\nactions: [network-cut, pause]\n",
            containers.run_id()
        ),
    )
    .unwrap();
    // The scan's reads, under the same restrictions, of a container the agent leaves alone.
    let bystander = containers
        .run("hardened-bystander", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let init = containers.field(&bystander, "{{.State.Pid}}").unwrap();
    let reads = std::process::Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .args(["sh", "-c"])
        .arg(format!(
            "readlink /proc/{init}/ns/pid && sha256sum /proc/{init}/exe && head -1 /proc/{init}/net/tcp"
        ))
        .output()
        .unwrap();
    assert!(
        reads.status.success(),
        "the scan's reads under the unit's capabilities: {}",
        String::from_utf8_lossy(&reads.stderr)
    );

    let metrics = format!("127.0.0.1:{}", free_port());
    let port = metrics.rsplit_once(':').unwrap().1.parse().unwrap();
    let agent =
        AgentProcess::start_wrapped(dir.path(), &config(port), &policies, &wrapper).unwrap();

    // The agent really runs with the unit's bounding set, and no new privileges.
    let pid = agent.pid().unwrap();
    agent
        .wait_for("setpriv to exec the agent", DEADLINE, || {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.trim() == "lazaret-agent")
        })
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    capabilities.sort();
    assert_eq!(decoded(&status, "CapBnd:"), capabilities);
    assert_eq!(decoded(&status, "CapEff:"), capabilities);
    assert!(
        status.lines().any(|line| line == "NoNewPrivs:\t1"),
        "{status}"
    );

    let violator = containers
        .run(
            "hardened-violator",
            &[
                "--label",
                "lazaret.e2e=violate",
                BUSYBOX_IMAGE,
                "sleep",
                "600",
            ],
        )
        .unwrap();
    agent
        .wait_for("the violator paused", DEADLINE, || {
            containers.field(&violator, "{{.State.Status}}").unwrap() == "paused"
        })
        .unwrap();
    assert_eq!(
        cut_status(&containers, &violator).await.unwrap(),
        CutStatus::Intact,
        "cut inside its namespace; agent log:\n{}",
        agent.log_tail()
    );
    assert!(
        !agent.log().contains("quarantine failed"),
        "{}",
        agent.log_tail()
    );

    // Scraped: the quarantine, by action and source; the container by state.
    let text = scrape_metrics(&metrics).unwrap();
    for action in ["network-cut", "pause"] {
        let series = format!("lazaret_quarantines_total{{action=\"{action}\",source=\"policy\"}}");
        assert_eq!(metric_value(&text, &series), 1.0, "{series} in\n{text}");
    }
    assert!(
        metric_value(&text, "lazaret_containers{state=\"paused\"}") >= 1.0,
        "{text}"
    );
}
