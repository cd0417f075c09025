//! The controller with real agent processes on the real Docker engine (DESIGN.md §4): a rollout
//! through it reaches every agent and only the owner quarantines; fleet-wide listings show who
//! did what; the fleet-wide switch stops new quarantines everywhere; `release --policy` undoes a
//! rollout; a selector quarantines across nodes with the operator's name recorded; agents keep
//! enforcing without the controller and `--agent` still works; a restarted controller catches up;
//! a rewritten audit chain is flagged.
//!
//! Deadlines are generous; nothing here measures time (benches/ does).

use std::time::Duration;

use lazaret_agent::store::{Durability, Store};
use lazaret_tests::fleet::{Placement, TestFleet, owned, paused, policy};
use lazaret_tests::{TestContainers, ensure_busybox_image, init_tracing, wait_until};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(90);
const DEADLINE: Duration = Duration::from_secs(60);

/// `nodes` through the controller: the agents (role node) by name.
fn agents_view(fleet: &TestFleet) -> Vec<Value> {
    fleet.fleet_json(&["nodes"]).unwrap()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|node| node["role"] == "node")
        .cloned()
        .collect()
}

/// Whether the controller sees `count` live agents all enforcing policies `version`.
fn all_on(fleet: &TestFleet, count: usize, version: u64) -> bool {
    let agents = agents_view(fleet);
    agents.len() == count
        && agents.iter().all(|node| {
            node["status"] == "live" && node["bundles"]["policies"]["version"] == version
        })
}

/// A fleet of `count` agents on loopback and a controller seeded with node-1.
fn fleet_with_controller(count: usize) -> TestFleet {
    fleet_with_controller_config(count, "")
}

/// [`fleet_with_controller`], with `extra` TOML in the controller's configuration.
fn fleet_with_controller_config(count: usize, extra: &str) -> TestFleet {
    let mut fleet = TestFleet::new().unwrap();
    fleet.add_agent(Placement::loopback(), &[]).unwrap();
    let seed = fleet.agents[0].gossip.clone();
    for _ in 1..count {
        fleet
            .add_agent(Placement::loopback(), std::slice::from_ref(&seed))
            .unwrap();
    }
    fleet
        .add_controller_with(std::slice::from_ref(&seed), extra)
        .unwrap();
    wait_until("the controller sees every agent", CONVERGE, || {
        let agents = agents_view(&fleet);
        agents.len() == count && agents.iter().all(|node| node["status"] == "live")
    });
    fleet
}

#[test]
fn a_rollout_through_the_controller_reaches_every_agent_and_can_be_stopped_and_undone() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let fleet = fleet_with_controller(5);
    let violating = owned(&containers, "ctl-node3", "node-3", "violate");
    let bystander = owned(&containers, "ctl-node2", "node-2", "fine");

    // A canary: signed by the controller for node-1 only, with its verdict there; the others
    // refuse it until it is promoted.
    let canary_dir = fleet.dir().join("canary");
    std::fs::create_dir(&canary_dir).unwrap();
    policy(&canary_dir, &containers, "canary");
    let canaried = owned(&containers, "ctl-canary", "node-1", "canary");
    let canary = fleet
        .fleet_json(&[
            "policy",
            "apply",
            canary_dir.to_str().unwrap(),
            "--canary",
            "node-1",
        ])
        .unwrap();
    assert_eq!(
        (canary["version"].as_u64(), canary["acked"].as_u64()),
        (Some(1), Some(1)),
        "{canary}"
    );
    let verdict = &canary["verdicts"][0];
    assert_eq!(verdict["node"], "node-1", "{canary}");
    assert!(
        verdict["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|outcome| {
                outcome["container"] == canaried && outcome["enforcing_policy"] == "fleet-canary"
            }),
        "the canary shows what the policy does on node-1: {canary}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let agents = agents_view(&fleet);
    for node in &agents {
        let version = node["bundles"]["policies"]["version"].as_u64();
        let expected = (node["name"] == "node-1").then_some(1);
        assert_eq!(version, expected, "only the canary node takes it: {node}");
    }
    let listed = fleet.fleet_json(&["policy", "list"]).unwrap();
    assert_eq!(listed["canary"], serde_json::json!(["node-1"]), "{listed}");

    // The rollout: the controller signs the next version for every node; gossip carries it.
    let policies = fleet.dir().join("policies");
    std::fs::create_dir(&policies).unwrap();
    policy(&policies, &containers, "violate");
    let diff = fleet
        .fleet_json(&["policy", "diff", policies.to_str().unwrap()])
        .unwrap();
    assert_eq!(
        diff,
        serde_json::json!([
            {"kind": "Policy", "name": "fleet-canary", "change": "removed"},
            {"kind": "Policy", "name": "fleet-violate", "change": "added"},
        ])
    );
    let applied = fleet
        .fleet_json(&["policy", "apply", policies.to_str().unwrap()])
        .unwrap();
    assert_eq!(
        (applied["version"].as_u64(), applied["acked"].as_u64()),
        (Some(2), Some(5)),
        "{applied}"
    );
    wait_until("the controller sees every agent on v2", CONVERGE, || {
        all_on(&fleet, 5, 2)
    });
    wait_until("the violating container paused", DEADLINE, || {
        paused(&containers, &violating)
    });
    let quarantined = fleet.fleet_json(&["containers", "--quarantined"]).unwrap();
    let listed = quarantined["containers"].as_array().unwrap();
    let ours: Vec<&Value> = listed.iter().filter(|c| c["id"] == violating).collect();
    assert_eq!(ours.len(), 1, "{quarantined}");
    assert_eq!(ours[0]["node"], "node-3", "only its owner quarantines it");
    let record = &ours[0]["quarantine"];
    assert_eq!(record["source"], "policy:fleet-violate", "{record}");
    assert_eq!(record["actor"], "agent", "{record}");
    assert!(!record["reason"].as_str().unwrap().is_empty(), "{record}");
    assert_eq!(quarantined["unreachable"], Value::Array(vec![]));
    assert!(!paused(&containers, &bystander));

    // The kill switch: every agent reports audit-only, and a new violation is only recorded.
    let switched = fleet
        .fleet_json(&[
            "fleet",
            "mode",
            "audit-only",
            "--reason",
            "suspicious rollout",
        ])
        .unwrap();
    assert_eq!(switched["agents_reached"], 5, "{switched}");
    let late = owned(&containers, "ctl-node5", "node-5", "violate");
    wait_until("node-5 records what it would have done", DEADLINE, || {
        fleet
            .json(4, &["audit"])
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .any(|record| {
                record["target"] == late
                    && record["outcome"]
                        .as_str()
                        .is_some_and(|outcome| outcome.starts_with("would-have"))
            })
    });
    assert!(
        !paused(&containers, &late),
        "audit-only quarantines nothing"
    );
    let mode_records = fleet.json(4, &["audit"]).unwrap();
    assert!(
        mode_records.as_array().unwrap().iter().any(|record| {
            record["action"] == "mode"
                && record["outcome"] == "audit-only"
                && record["actor"] == "admin via controller"
        }),
        "the switch is audited with the operator's name: {mode_records}"
    );

    // Undo the rollout in one command: every quarantine the policy caused is released.
    let released = fleet
        .fleet_json(&[
            "release",
            "--policy",
            "fleet-violate",
            "--reason",
            "bad rollout",
        ])
        .unwrap();
    let outcomes = released["outcomes"].as_array().unwrap();
    assert!(
        outcomes
            .iter()
            .any(|outcome| outcome["container"] == violating
                && outcome["node"] == "node-3"
                && outcome["record"]["state"] == "released"),
        "{released}"
    );
    wait_until("the container resumed", DEADLINE, || {
        !paused(&containers, &violating)
    });

    // Back to enforcing; a selector quarantines across nodes, the operator's name recorded.
    fleet
        .fleet_json(&["fleet", "mode", "enforce", "--reason", "all clear"])
        .unwrap();
    // Other tests' fleets share the engine and node names: select this run's containers only.
    let selector = format!("lazaret.fleet=fine,lazaret.test={}", containers.run_id());
    let selected = fleet
        .fleet_json(&[
            "quarantine",
            "--selector",
            &selector,
            "--reason",
            "incident 42",
        ])
        .unwrap();
    let outcomes = selected["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 1, "{selected}");
    assert_eq!(outcomes[0]["node"], "node-2");
    assert_eq!(outcomes[0]["record"]["actor"], "admin via controller");
    wait_until("the selected container paused", DEADLINE, || {
        paused(&containers, &bystander)
    });
}

#[test]
fn agents_keep_enforcing_without_the_controller_which_catches_up_and_flags_a_rewritten_chain() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let mut fleet = fleet_with_controller(3);

    // The controller is gone: a bundle handed to one agent still reaches all, and is enforced.
    fleet.controller.as_mut().unwrap().kill().unwrap();
    let violating = owned(&containers, "ctl-down", "node-2", "violate");
    let watched = owned(&containers, "ctl-watched", "node-3", "watched");
    let policies = fleet.dir().join("policies");
    std::fs::create_dir(&policies).unwrap();
    policy(&policies, &containers, "violate");
    // An audit-mode policy: it flags, it does not act.
    std::fs::write(
        policies.join("fleet-watched.yaml"),
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: fleet-watched\nmode: audit\n\
             match:\n  labels: {{lazaret.test: \"{}\", lazaret.fleet: watched}}\n\
             rules: [{{expr: \"true\"}}]\nactions: [pause]\n",
            containers.run_id()
        ),
    )
    .unwrap();
    let bundle = fleet.sign("v10.bundle", 10, &policies).unwrap();
    fleet
        .json(0, &["bundle", "apply", bundle.to_str().unwrap()])
        .unwrap();
    fleet.wait_converged(&[0, 1, 2], 10, CONVERGE).unwrap();
    wait_until("the violating container paused", DEADLINE, || {
        paused(&containers, &violating)
    });

    // A restarted controller catches up from gossip alone.
    fleet.controller.as_mut().unwrap().restart().unwrap();
    fleet.wait_controller().unwrap();
    wait_until("the controller sees every agent on v10", CONVERGE, || {
        all_on(&fleet, 3, 10)
    });
    // What an audit-mode policy flags, quarantined on an operator's word in one command.
    assert!(!paused(&containers, &watched));
    let flagged = fleet
        .fleet_json(&[
            "quarantine",
            "--policy",
            "fleet-watched",
            "--reason",
            "seen enough",
        ])
        .unwrap();
    let outcomes = flagged["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 1, "{flagged}");
    assert_eq!(
        (&outcomes[0]["container"], &outcomes[0]["node"]),
        (&Value::from(watched.as_str()), &Value::from("node-3")),
        "{flagged}"
    );
    wait_until("the flagged container paused", DEADLINE, || {
        paused(&containers, &watched)
    });

    // One container, found on its owner; the agents' audit trails merged, each record's node named.
    let found = fleet.fleet_json(&["container", &violating[..12]]).unwrap();
    assert_eq!(found["node"], "node-2", "{found}");
    assert_eq!(found["quarantine"]["state"], "applied", "{found}");
    let audit = fleet.fleet_json(&["audit", "--limit", "50"]).unwrap();
    assert!(
        audit["records"].as_array().unwrap().iter().any(|record| {
            record["node"] == "node-2"
                && record["target"] == violating
                && record["action"] == "quarantine"
        }),
        "{audit}"
    );
    let mut follow = fleet.ctl_fleet(&["events", "--follow", "-o", "json"]);
    let mut follower = follow
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(follower.stdout.take().unwrap()));
    let (sender, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let noted = owned(&containers, "ctl-follow", "node-3", "fine");
    wait_until("node-3 sees the new container", DEADLINE, || {
        fleet
            .run_fleet(&["container", &noted[..12]])
            .unwrap()
            .status
            .success()
    });
    fleet
        .fleet_json(&["quarantine", &noted[..12], "--reason", "followed"])
        .unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    let seen = loop {
        let line = received
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("a merged event for the quarantine");
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["target"] == noted && event["action"] == "quarantine" {
            break event;
        }
    };
    assert_eq!(seen["node"], "node-3", "{seen}");
    assert_eq!(seen["actor"], "admin via controller", "{seen}");
    let _killed = follower.kill();
    let _reaped = follower.wait();

    let quarantines = fleet.fleet_json(&["quarantines"]).unwrap();
    assert!(
        quarantines["quarantines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|record| record["container"] == violating && record["node"] == "node-2"),
        "{quarantines}"
    );

    // node-2's chain is anchored; then rewritten on disk (it still verifies on its own).
    let head = fleet.json(1, &["audit"]).unwrap().as_array().unwrap().len() as u64;
    let controller = fleet.controller.as_ref().unwrap();
    controller
        .wait_for("node-2's chain anchored", CONVERGE, || {
            controller.log().lines().any(|line| {
                line.contains("audit anchored")
                    && line.contains("node-2")
                    && line.contains(&format!("sequence={head}"))
            })
        })
        .unwrap();
    let agent = &mut fleet.agents[1].process;
    agent.kill().unwrap();
    {
        let store = Store::open(&agent.state_dir(), Durability::Process).unwrap();
        let mut records = store.audit_records(1, usize::MAX).unwrap();
        records[0].reason = "nothing happened here".into();
        store.rewrite_audit_for_tests(records).unwrap();
        assert!(
            store.verify_audit(None).unwrap().is_ok(),
            "a consistent forgery"
        );
    }
    agent.restart().unwrap();
    wait_until("the controller flags node-2", CONVERGE, || {
        agents_view(&fleet)
            .iter()
            .any(|node| node["name"] == "node-2" && node["audit_problem"].as_str().is_some())
    });
    assert!(
        agents_view(&fleet)
            .iter()
            .filter(|node| node["name"] != "node-2")
            .all(|node| node["audit_problem"].is_null()),
        "only node-2 is flagged"
    );
    let log = fleet.controller.as_ref().unwrap().log();
    assert!(
        log.contains("ALERT: an agent's audit chain was rewritten"),
        "{log}"
    );
}

#[test]
fn automated_quarantines_past_the_fleet_budget_flip_every_agent_to_audit_only() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let fleet =
        fleet_with_controller_config(3, "[safety]\nblast_radius = 1\nblast_window = \"5m\"\n");
    let first = owned(&containers, "budget-1", "node-1", "violate");
    let second = owned(&containers, "budget-2", "node-2", "violate");
    let policies = fleet.dir().join("policies");
    std::fs::create_dir(&policies).unwrap();
    policy(&policies, &containers, "violate");
    fleet
        .fleet_json(&["policy", "apply", policies.to_str().unwrap()])
        .unwrap();
    // Indicators through the controller: signed by it, acked by all, listed back.
    let indicators = fleet.dir().join("indicators");
    std::fs::create_dir(&indicators).unwrap();
    std::fs::write(
        indicators.join("intel.yaml"),
        "apiVersion: lazaret.dev/v1\nkind: Indicators\nsource: e2e\nindicators:\n\
         - {id: miner, type: process-name, value: xmrig-e2e, severity: critical}\n",
    )
    .unwrap();
    let applied = fleet
        .fleet_json(&["indicators", "apply", indicators.to_str().unwrap()])
        .unwrap();
    assert_eq!(applied["acked"], 3, "{applied}");
    let stats = fleet.fleet_json(&["indicators", "stats"]).unwrap();
    assert_eq!(stats["total"], 1, "{stats}");
    assert_eq!(stats["by_type"]["process-name"], 1, "{stats}");

    // Two automated quarantines on two nodes: over a budget of one.
    wait_until("both quarantined", DEADLINE, || {
        paused(&containers, &first) && paused(&containers, &second)
    });
    wait_until("every agent audit-only", DEADLINE, || {
        let nodes = fleet.fleet_json(&["nodes"]).unwrap();
        nodes["fleet_mode"] == "audit-only"
            && agents_view(&fleet)
                .iter()
                .all(|node| node["audit_only"] == true)
    });
    let log = fleet.controller.as_ref().unwrap().log();
    assert!(log.contains("ALERT: the fleet goes audit-only"), "{log}");
    // A third violation is only recorded now.
    let third = owned(&containers, "budget-3", "node-3", "violate");
    wait_until("node-3 records what it would have done", DEADLINE, || {
        fleet
            .json(2, &["audit"])
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .any(|record| {
                record["target"] == third
                    && record["outcome"]
                        .as_str()
                        .is_some_and(|outcome| outcome.starts_with("would-have"))
            })
    });
    assert!(!paused(&containers, &third));
    // An operator reviews it: undoes the rollout and switches back; nothing trips again.
    fleet
        .fleet_json(&[
            "release",
            "--policy",
            "fleet-violate",
            "--reason",
            "reviewed",
        ])
        .unwrap();
    fleet
        .fleet_json(&["fleet", "mode", "enforce", "--reason", "reviewed"])
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        fleet.fleet_json(&["nodes"]).unwrap()["fleet_mode"],
        "enforce"
    );
}

#[test]
fn a_policy_report_shows_what_an_audit_mode_policy_would_have_done_across_the_fleet() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let fleet = fleet_with_controller(2);
    let dir = fleet.dir().join("audit-policy");
    std::fs::create_dir(&dir).unwrap();
    let file = policy(&dir, &containers, "audit");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("mode: enforce", "mode: audit")).unwrap();
    let flagged = owned(&containers, "report-flagged", "node-2", "audit");
    let unflagged = owned(&containers, "report-other", "node-1", "fine");
    fleet
        .fleet_json(&["policy", "apply", dir.to_str().unwrap()])
        .unwrap();

    let report = || {
        fleet
            .fleet_json(&["policy", "report", "fleet-audit", "--since", "1h"])
            .unwrap()
    };
    wait_until("the report names the flagged container", DEADLINE, || {
        report()["containers"] == 1
    });
    let report = report();
    assert_eq!(
        report["by_node"],
        serde_json::json!({"node-2": 1}),
        "{report}"
    );
    let hit = &report["hits"][0];
    assert_eq!(hit["container"], flagged.as_str(), "{report}");
    assert_eq!(hit["would_have"], "pause (audit mode)", "{report}");
    // Audit mode: nothing was done to either.
    assert!(!paused(&containers, &flagged) && !paused(&containers, &unflagged));
    let table = fleet
        .run_fleet(&["policy", "report", "fleet-audit"])
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains("fleet-audit: 1 container(s) on 1 node(s) in the last 1day (node-2 1)"),
        "{table}"
    );
}

#[test]
fn a_container_asked_for_before_an_agent_listed_its_runtime_is_unavailable_not_missing() {
    init_tracing();
    let mut fleet = TestFleet::new().unwrap();
    // A Docker socket that takes connections and never answers: the agent's first connection
    // hangs for the Docker client's 30 s timeout, its containers not listed meanwhile.
    let silent = fleet.dir().join("silent-docker.sock");
    let _silent = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    fleet
        .add_agent_with(
            Placement::loopback(),
            &[],
            &format!("[docker]\nsocket = \"{}\"\n", silent.display()),
        )
        .unwrap();
    let seed = fleet.agents[0].gossip.clone();
    fleet.add_controller(std::slice::from_ref(&seed)).unwrap();
    let answered = |output: std::process::Output, code: i32| {
        assert_eq!(output.status.code(), Some(code), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };

    // Through the controller and straight to the agent: not known yet (exit 3: try again).
    wait_until("the controller sees node-1", CONVERGE, || {
        agents_view(&fleet)
            .iter()
            .any(|node| node["status"] == "live")
    });
    let through = fleet
        .run_fleet(&["quarantine", "nope", "--reason", "r"])
        .unwrap();
    let stderr = answered(through, 3);
    assert!(
        stderr.contains("not searched in full: node-1") && stderr.contains("not listed yet"),
        "{stderr}"
    );
    let direct = fleet
        .run_ctl(0, &["quarantine", "nope", "--reason", "r"])
        .unwrap();
    let stderr = answered(direct, 3);
    assert!(
        stderr.contains("docker containers are not listed yet"),
        "{stderr}"
    );
    let listed = fleet.run_ctl(0, &["containers"]).unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(
        stderr.contains("has not listed its docker containers yet"),
        "{stderr}"
    );

    // Once the first connection has failed, the agent no longer waits for that runtime: not
    // found is not found (exit 1), never "try again" forever.
    fleet.agents[0]
        .process
        .wait_for(
            "the first Docker connection failed",
            Duration::from_secs(90),
            || {
                fleet.agents[0]
                    .process
                    .log()
                    .contains("runtime connection lost")
            },
        )
        .unwrap();
    let direct = fleet
        .run_ctl(0, &["quarantine", "nope", "--reason", "r"])
        .unwrap();
    let stderr = answered(direct, 1);
    assert!(stderr.contains("not found"), "{stderr}");
}
