//! The agent binary against the real Docker engine, as an operator runs it
//! (`lazaret-agent --config … run --policy-dir … --state-dir …`):
//!
//! - three quarantines hold across `kill -9` of the agent while, behind its back, one container
//!   is unpaused, one with `--restart always` is unpaused and dies (Docker restarts it in a new
//!   network namespace), and one with NET_ADMIN is unpaused and deletes the cut table from inside;
//!   the restarted agent quarantines all three again, audits each as `tamper`, and the audit
//!   chain verifies;
//! - policies change under a running agent: a broken edit is rejected (the previous set stays),
//!   a switch to `enforce` is picked up; then the protected containers (by label and by the
//!   configured list) are refused and the blast-radius budget trips with an ALERT record.
//!
//! Deadlines are generous; nothing here measures time.

use std::path::PathBuf;
use std::time::Duration;

use lazaret_agent::enforce::netns::{CutStatus, TABLE_NAME};
use lazaret_tests::agent_process::{AgentProcess, describe_audit, has_audit_record};
use lazaret_tests::inside::{cut_status, nft_as_container};
use lazaret_tests::{BUSYBOX_IMAGE, TestContainers, ensure_busybox_image, init_tracing};

/// How long the agent may take to bring a container to the wanted state.
const DEADLINE: Duration = Duration::from_secs(60);
const SLEEPER: [&str; 3] = [BUSYBOX_IMAGE, "sleep", "600"];

/// Docker only, re-checks every second.
const CONFIG: &str = r#"
[metrics]
listen = ""
[containerd]
enabled = false
[policies]
reload_interval = "500ms"
[enforcement]
recheck_interval = "1s"
"#;

/// Two enforce-mode policies for this run's containers: `lazaret.e2e=violate` gets the default
/// quarantine, `lazaret.e2e=cut-only` only a network cut (the agent adds the pause NET_ADMIN needs).
fn policies(run: &str, mode: &str) -> String {
    let policy = |name: &str, value: &str, actions: &str| {
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: {name}\nmode: {mode}\n\
             match:\n  labels: {{lazaret.test: \"{run}\", lazaret.e2e: \"{value}\"}}\n\
             rules:\n  - expr: 'container.labels[\"lazaret.e2e\"] == \"{value}\"'\n\
             actions: [{actions}]\n"
        )
    };
    format!(
        "{}---\n{}",
        policy("e2e-violators", "violate", "network-cut, pause"),
        policy("e2e-cut-only", "cut-only", "network-cut")
    )
}

/// `options`, then the sleeper image and command.
fn sleeper_with<'a>(options: &[&'a str]) -> Vec<&'a str> {
    [options, &SLEEPER[..]].concat()
}

/// A directory with this run's policies in `mode` (one file, returned too) for the agent.
fn policy_dir(containers: &TestContainers, mode: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policies");
    std::fs::create_dir(&policy_dir).unwrap();
    let policy_file = policy_dir.join("e2e.yaml");
    std::fs::write(&policy_file, policies(containers.run_id(), mode)).unwrap();
    (dir, policy_dir, policy_file)
}

fn wait_for_state(containers: &TestContainers, container: &str, state: &str, agent: &AgentProcess) {
    agent
        .wait_for(&format!("{container} {state}"), DEADLINE, || {
            containers.field(container, "{{.State.Status}}").unwrap() == state
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_quarantines_hold_across_an_agent_crash_and_tampering_of_each_kind() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let (dir, policy_dir, _) = policy_dir(&containers, "enforce");
    let mut agent = AgentProcess::start(dir.path(), CONFIG, &policy_dir).unwrap();

    let unpaused = containers
        .run(
            "unpaused",
            &sleeper_with(&["--label", "lazaret.e2e=violate"]),
        )
        .unwrap();
    let restarted = containers
        .run(
            "restarted",
            &sleeper_with(&["--label", "lazaret.e2e=violate", "--restart", "always"]),
        )
        .unwrap();
    let net_admin = containers
        .run(
            "net-admin",
            &sleeper_with(&["--label", "lazaret.e2e=cut-only", "--cap-add", "NET_ADMIN"]),
        )
        .unwrap();
    let bystander = containers.run("bystander", &SLEEPER).unwrap();
    let quarantined = [&unpaused, &restarted, &net_admin];
    for container in quarantined {
        wait_for_state(&containers, container, "paused", &agent);
        assert_eq!(
            cut_status(&containers, container).await.unwrap(),
            CutStatus::Intact
        );
    }

    agent.kill().unwrap();
    // Behind the agent's back: unpaused; unpaused and died (restarted by Docker in a fresh
    // namespace); unpaused and the table deleted from inside with NET_ADMIN.
    for container in quarantined {
        containers.docker(&["unpause", container]).unwrap();
    }
    let first_pid = containers.field(&restarted, "{{.State.Pid}}").unwrap();
    // Its main process dies (as in a crash or an OOM kill): Docker's restart policy starts it.
    let killed = std::process::Command::new("kill")
        .args(["-9", &first_pid])
        .status()
        .unwrap();
    assert!(killed.success());
    agent
        .wait_for("the restart-always container restarted", DEADLINE, || {
            containers.field(&restarted, "{{.RestartCount}}").unwrap() != "0"
                && containers.field(&restarted, "{{.State.Status}}").unwrap() == "running"
                && containers.field(&restarted, "{{.State.Pid}}").unwrap() != first_pid
        })
        .unwrap();
    assert_eq!(
        cut_status(&containers, &restarted).await.unwrap(),
        CutStatus::Absent
    );
    let deleted = nft_as_container(
        &containers,
        &net_admin,
        &["delete", "table", "inet", TABLE_NAME],
    );
    assert!(deleted.success(), "{}", deleted.stderr);
    assert_eq!(
        cut_status(&containers, &net_admin).await.unwrap(),
        CutStatus::Absent
    );

    agent.restart().unwrap();
    for container in quarantined {
        wait_for_state(&containers, container, "paused", &agent);
        agent
            .wait_for(&format!("{container} cut again"), DEADLINE, || {
                futures::executor::block_on(cut_status(&containers, container)).unwrap()
                    == CutStatus::Intact
            })
            .unwrap();
    }
    assert_eq!(
        containers.field(&bystander, "{{.State.Status}}").unwrap(),
        "running"
    );
    agent.kill().unwrap();

    let audit = agent.verified_audit().unwrap();
    for container in quarantined {
        assert!(
            has_audit_record(&audit, container, "tamper", ""),
            "no tamper record for {container}:\n{}",
            describe_audit(&audit)
        );
    }
    assert!(
        has_audit_record(&audit, &net_admin, "quarantine", "pause added"),
        "{}",
        describe_audit(&audit)
    );
    assert!(audit.iter().all(|record| record.target != bystander));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_protected_containers_and_the_blast_radius_through_the_agent() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let (dir, policy_dir, policy_file) = policy_dir(&containers, "audit");
    let listed = containers.container_name("listed");
    let config = format!("{CONFIG}blast_radius_per_minute = 2\nprotected = [\"{listed}\"]\n");

    let violating = "lazaret.e2e=violate";
    let labelled = containers
        .run(
            "labelled",
            &sleeper_with(&["--label", violating, "--label", "lazaret.io/protected=true"]),
        )
        .unwrap();
    let listed = containers
        .run("listed", &sleeper_with(&["--label", violating]))
        .unwrap();
    let budget: Vec<String> = (0..3)
        .map(|index| {
            let name = format!("v{index}");
            containers
                .run(&name, &sleeper_with(&["--label", violating]))
                .unwrap()
        })
        .collect();
    let mut agent = AgentProcess::start(dir.path(), &config, &policy_dir).unwrap();
    agent
        .wait_for("the audit-mode policies loaded", DEADLINE, || {
            agent.log().contains("enforcement running")
        })
        .unwrap();

    // A broken edit is rejected; the audit-mode set stays in force.
    std::fs::write(
        &policy_file,
        "apiVersion: lazaret.dev/v1\nkind: Policy\nname: [\n",
    )
    .unwrap();
    agent
        .wait_for("the broken edit rejected", DEADLINE, || {
            agent.log().contains("policy change rejected")
        })
        .unwrap();
    for container in budget.iter().chain([&labelled, &listed]) {
        assert_eq!(
            containers.field(container, "{{.State.Status}}").unwrap(),
            "running"
        );
    }

    // Switched to enforce: two of the three unprotected containers are quarantined, the third
    // trips the budget; the protected ones are refused.
    std::fs::write(&policy_file, policies(containers.run_id(), "enforce")).unwrap();
    agent
        .wait_for("two quarantines", DEADLINE, || {
            budget
                .iter()
                .filter(|container| {
                    containers.field(container, "{{.State.Status}}").unwrap() == "paused"
                })
                .count()
                == 2
        })
        .unwrap();
    agent
        .wait_for("the ALERT", DEADLINE, || {
            agent.log().contains("ALERT: quarantine refused")
        })
        .unwrap();
    agent.kill().unwrap();
    let running: Vec<&String> = budget
        .iter()
        .filter(|container| containers.field(container, "{{.State.Status}}").unwrap() == "running")
        .collect();
    assert_eq!(running.len(), 1, "exactly one over the budget");
    for container in [&labelled, &listed] {
        assert_eq!(
            containers.field(container, "{{.State.Status}}").unwrap(),
            "running"
        );
    }

    let audit = agent.verified_audit().unwrap();
    assert!(
        has_audit_record(
            &audit,
            running[0],
            "quarantine",
            "alert: blast radius exceeded"
        ),
        "{}",
        describe_audit(&audit)
    );
    assert!(has_audit_record(
        &audit,
        &labelled,
        "quarantine",
        "refused: protected (label"
    ));
    assert!(has_audit_record(
        &audit,
        &listed,
        "quarantine",
        "refused: protected (listed as protected"
    ));
}
