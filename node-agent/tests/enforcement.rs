//! `lazaret-agent run --policy-dir --state-dir` as a process against the real Docker engine:
//! a container violating an enforce-mode policy ends paused (and network-cut), a compliant one
//! keeps running, and after `kill -9` of the agent and a `docker unpause` behind its back, the
//! restarted agent quarantines it again and audits the tampering in a chain that verifies.
//!
//! Lives here rather than in `lazaret-tests` because it needs `CARGO_BIN_EXE_lazaret-agent`.
//! Every wait is bounded; containers are removed on drop, the agent killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lazaret_agent::store::{Durability, Store};

mod support;

use support::labelled_container;

const AGENT: &str = env!("CARGO_BIN_EXE_lazaret-agent");
/// Generous: these are not timing tests.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn run_with_a_bad_policy_exits_64_with_the_location() {
    let directory = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join("bad.yaml"),
        "apiVersion: lazaret.dev/v1\nkind: Policy\nname: p\nrules:\n  - expr: 'container.usr == \"\"'\n",
    )
    .unwrap();
    let output = Command::new(AGENT)
        .args([
            "run",
            "--metrics-listen",
            "",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--policy-dir",
            directory.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.yaml:5:"), "{stderr}");
}

#[test]
fn violating_container_is_quarantined_and_stays_so_across_an_agent_kill() {
    let label = format!("enforcement-{}", std::process::id());
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("sys-admin.yaml"),
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: e2e-no-sys-admin\nmode: enforce\n\
             severity: high\nmatch:\n  labels: {{lazaret.test: \"{label}\"}}\nrules:\n  \
             - check: \"5.4\"\n    capabilities: [SYS_ADMIN]\nactions: [network-cut, pause]\n"
        ),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();

    let mut agent = Agent::start(state.path(), policies.path(), &logs.path().join("1.log"));
    let bad = labelled_container(
        &["run", "-d"],
        &format!("lzt-enforce-bad-{}", std::process::id()),
        &label,
        &["--cap-add", "SYS_ADMIN"],
    );
    let plain = labelled_container(
        &["run", "-d"],
        &format!("lzt-enforce-plain-{}", std::process::id()),
        &label,
        &[],
    );
    wait_for_state(&bad.0, "paused", &agent);
    assert_eq!(
        docker_state(&plain.0),
        "running",
        "a compliant container is left alone"
    );

    agent.kill();
    let unpaused = Command::new("docker")
        .args(["unpause", &bad.0])
        .output()
        .unwrap();
    assert!(
        unpaused.status.success(),
        "{}",
        String::from_utf8_lossy(&unpaused.stderr)
    );
    assert_eq!(docker_state(&bad.0), "running");

    let mut agent = Agent::start(state.path(), policies.path(), &logs.path().join("2.log"));
    wait_for_state(&bad.0, "paused", &agent);
    assert_eq!(docker_state(&plain.0), "running");
    agent.kill();

    let store = Store::open(state.path(), Durability::Process).unwrap();
    store
        .verify_audit(None)
        .unwrap()
        .expect("the audit chain verifies");
    let records = store.audit_records(1, 100_000).unwrap();
    assert!(
        records
            .iter()
            .any(|record| record.action == "tamper" && record.target == bad.0),
        "a tamper record for the unpaused container: {:#?}",
        records
            .iter()
            .map(|record| format!("{} {} {}", record.action, record.target, record.outcome))
            .collect::<Vec<_>>()
    );
    assert!(
        records.iter().any(|record| record.action == "network-cut"
            && record.target == bad.0
            && record.outcome == "applied"),
        "the network was cut too"
    );
    assert!(
        records.iter().all(|record| record.target != plain.0),
        "nothing recorded against the compliant container"
    );
}

/// The agent as a child process, SIGKILLed on drop; its log goes to a file shown on failure.
struct Agent {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Agent {
    fn start(state: &Path, policies: &Path, log: &Path) -> Agent {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new(AGENT)
            .args([
                "--log-level",
                "lazaret_agent=debug,info",
                "run",
                "--metrics-listen",
                "",
                "--state-dir",
                state.to_str().unwrap(),
                "--policy-dir",
                policies.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Agent {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// SIGKILL, then reap (bounded by the kernel: a killed process exits).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _killed = child.kill();
            let _reaped = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for_state(container: &str, wanted: &str, agent: &Agent) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let state = docker_state(container);
        if state == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "container {container} is {state}, not {wanted}, after {DEADLINE:?}; agent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn docker_state(container: &str) -> String {
    let output = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Status}}", container])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
