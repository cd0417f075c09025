//! Upgrades with a fleet of mixed builds (docs/operators.md, "Upgrades"): the previous release's
//! agent (the commit in `tests/previous-release`, built by `scripts/previous-release.sh`, which
//! `scripts/test.sh` runs first) beside this tree's agent and controller, on the real Docker
//! engine:
//!
//! - the controller sees both; a policy rollout through it reaches both over gossip (bundles,
//!   sealed gossip values and the API of either build are understood by the other), and the old
//!   node enforces it;
//! - a quarantine routed through the controller to the old node is carried out;
//! - the old node upgraded in place (same state directory, this build): what it quarantined
//!   still holds, the audit chain both builds wrote verifies, and this build releases a
//!   quarantine the old one stored.

use std::path::PathBuf;
use std::time::Duration;

use lazaret_tests::fleet::{Placement, TestFleet, owned, paused, policy};
use lazaret_tests::{TestContainers, ensure_busybox_image, init_tracing, wait_until};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(90);
const DEADLINE: Duration = Duration::from_secs(60);
/// A line only this build's agent logs (once per start).
const ROLLED_FORWARD: &str = "stored quarantines rolled forward";

/// The previous release's agent, built by `scripts/previous-release.sh`.
fn previous_agent() -> PathBuf {
    let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/previous/target/debug/lazaret-agent");
    assert!(
        binary.is_file(),
        "{} is missing: run ./scripts/previous-release.sh first (scripts/test.sh does)",
        binary.display()
    );
    binary
}

/// The agents the controller lists, by name: (status, policies version).
fn agents_view(fleet: &TestFleet) -> Vec<(String, String, Option<u64>)> {
    fleet.fleet_json(&["nodes"]).unwrap()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|node| node["role"] == "node")
        .map(|node| {
            (
                node["name"].as_str().unwrap_or_default().to_string(),
                node["status"].as_str().unwrap_or_default().to_string(),
                node["bundles"]["policies"]["version"].as_u64(),
            )
        })
        .collect()
}

fn all_live_on(fleet: &TestFleet, version: Option<u64>) -> bool {
    let agents = agents_view(fleet);
    agents.len() == 2
        && agents
            .iter()
            .all(|(_, status, on)| status == "live" && *on == version)
}

#[test]
fn a_fleet_of_the_previous_and_this_build_converges_enforces_and_upgrades_in_place() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let previous = previous_agent();
    let containers = TestContainers::new(None);
    let mut fleet = TestFleet::new().unwrap();
    fleet.add_agent(Placement::loopback(), &[]).unwrap();
    let seed = fleet.agents[0].gossip.clone();
    fleet
        .add_agent_built(
            Placement::loopback(),
            std::slice::from_ref(&seed),
            "",
            Some(previous),
        )
        .unwrap();
    fleet.add_controller(std::slice::from_ref(&seed)).unwrap();
    wait_until("the controller sees both builds live", CONVERGE, || {
        all_live_on(&fleet, None)
    });

    // A rollout through this build's controller reaches the old node, which enforces it.
    let violating = owned(&containers, "n1-old", "node-2", "violate");
    let policies = fleet.dir().join("policies");
    std::fs::create_dir(&policies).unwrap();
    policy(&policies, &containers, "violate");
    let applied = fleet
        .fleet_json(&["policy", "apply", policies.to_str().unwrap()])
        .unwrap();
    assert_eq!(applied["version"].as_u64(), Some(1), "{applied}");
    wait_until("both builds on v1", CONVERGE, || {
        all_live_on(&fleet, Some(1))
    });
    wait_until(
        "the old node paused the violating container",
        DEADLINE,
        || paused(&containers, &violating),
    );

    // An operator's quarantine routed to the old node.
    let routed = owned(&containers, "n1-routed", "node-2", "fine");
    fleet.wait_listed(1, &routed).unwrap();
    let quarantined = fleet
        .fleet_json(&["quarantine", &routed, "--reason", "n-1"])
        .unwrap();
    assert_eq!(
        quarantined["outcomes"][0]["node"], "node-2",
        "{quarantined}"
    );
    wait_until("the routed quarantine carried out", DEADLINE, || {
        paused(&containers, &routed)
    });

    // Really two builds: this one logs its roll-forward (new in this release), the old did not.
    let rolled = |fleet: &TestFleet, agent: usize| {
        fleet.agents[agent]
            .process
            .log()
            .matches(ROLLED_FORWARD)
            .count()
    };
    assert_eq!(
        (rolled(&fleet, 0), rolled(&fleet, 1)),
        (1, 0),
        "node-1 this build, node-2 the previous"
    );

    // The old node upgraded in place: same state directory, this build.
    let agent = &mut fleet.agents[1].process;
    agent.kill().unwrap();
    agent.use_binary(None);
    agent.restart().unwrap();
    wait_until("the upgraded node answering", DEADLINE, || {
        fleet
            .run_ctl(1, &["quarantines"])
            .is_ok_and(|output| output.status.success())
    });
    wait_until("the upgraded node live again on v1", CONVERGE, || {
        all_live_on(&fleet, Some(1))
    });
    assert_eq!(rolled(&fleet, 1), 1, "node-2 now runs this build");
    let held: Vec<Value> = fleet
        .json(1, &["quarantines"])
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    for id in [&violating, &routed] {
        assert!(
            held.iter()
                .any(|record| record["container"] == id.as_str() && record["state"] == "applied"),
            "{id} not held after the upgrade: {held:?}"
        );
        assert!(paused(&containers, id), "{id} resumed by the upgrade");
    }
    let verified = fleet.json(1, &["audit", "--verify"]).unwrap();
    assert_eq!(verified["intact"], true, "{verified}");
    // The controller asks the agents afresh: wait until the restarted one answers for it.
    wait_until("the controller finds the container again", DEADLINE, || {
        fleet
            .run_fleet(&["container", &routed])
            .is_ok_and(|output| output.status.success())
    });
    let released = fleet
        .fleet_json(&["release", &routed, "--reason", "upgraded"])
        .unwrap();
    assert_eq!(
        released["outcomes"][0]["record"]["state"], "released",
        "{released}"
    );
    wait_until("released by the new build", DEADLINE, || {
        !paused(&containers, &routed)
    });
}
