//! Peer to peer, with real agent processes on the real Docker engine (DESIGN.md §3): a signed
//! bundle applied to one agent is enforced by all, each by the owner of the containers only;
//! forged bundles and forged gossip values change nothing and are counted; a newcomer converges
//! from peers alone; a restarted agent is seen again; a partitioned fleet keeps enforcing and
//! converges after the heal.
//!
//! Deadlines are generous; nothing here measures time (benches/ does).

use std::time::Duration;

use lazaret_agent::gossip::identity::NodeSigner;
use lazaret_core::bundle::{BundleDigest, BundleStamp};
use lazaret_core::gossip::{GossipKey, NodeValue};
use lazaret_tests::fleet::{Placement, TestFleet, owned, paused, policy};
use lazaret_tests::{NetNs, TestContainers, ensure_busybox_image, init_tracing, wait_until};

const CONVERGE: Duration = Duration::from_secs(90);
const DEADLINE: Duration = Duration::from_secs(60);

/// The nodes whose `quarantines` list `id` applied.
fn enforcers(fleet: &TestFleet, id: &str) -> Vec<String> {
    (0..fleet.agents.len())
        .filter(|&agent| {
            fleet
                .json(agent, &["quarantines"])
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .any(|record| record["container"] == id && record["state"] == "applied")
        })
        .map(|agent| fleet.agents[agent].node.clone())
        .collect()
}

#[test]
fn a_bundle_applied_to_one_agent_is_enforced_by_all_and_forgeries_change_nothing() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let mut fleet = TestFleet::new().unwrap();
    fleet.add_agent(Placement::loopback(), &[]).unwrap();
    let seed = fleet.agents[0].gossip.clone();
    for _ in 1..5 {
        fleet
            .add_agent(Placement::loopback(), std::slice::from_ref(&seed))
            .unwrap();
    }
    // Running before the bundle: applying it re-judges running containers.
    let violating = owned(&containers, "fleet-node4", "node-4", "violate");
    let bystander = owned(&containers, "fleet-node2", "node-2", "fine");

    let policies = fleet.dir().join("policies");
    std::fs::create_dir(&policies).unwrap();
    policy(&policies, &containers, "violate");
    let bundle = fleet.sign("v10.bundle", 10, &policies).unwrap();
    let applied = fleet
        .json(0, &["bundle", "apply", bundle.to_str().unwrap()])
        .unwrap();
    assert_eq!(applied["outcome"], "applied");
    fleet
        .wait_converged(&[0, 1, 2, 3, 4], 10, CONVERGE)
        .unwrap();
    wait_until("the violating container paused", DEADLINE, || {
        paused(&containers, &violating)
    });
    assert_eq!(
        enforcers(&fleet, &violating),
        ["node-4"],
        "only its owner quarantines it"
    );
    assert!(!paused(&containers, &bystander));
    // The same bundle again: already in force, nothing changes.
    let again = fleet
        .json(1, &["bundle", "apply", bundle.to_str().unwrap()])
        .unwrap();
    assert_eq!(again["outcome"], "already-in-force");

    // Refused and counted, nothing applied: an untrusted key, an altered bundle, a replay.
    let stranger = fleet.dir().join("stranger");
    lazaretctl::signing::keygen(&stranger).unwrap();
    let untrusted = lazaretctl::signing::sign(
        &lazaretctl::signing::SignRequest {
            kind: lazaret_core::bundle::BundleKind::Policies,
            paths: vec![policies.clone()],
            version: 20,
            created: 1,
            expires: u64::MAX / 2,
        },
        &lazaretctl::signing::read_signing_key(&lazaretctl::signing::key_paths(&stranger).0)
            .unwrap(),
    )
    .unwrap();
    let untrusted_path = fleet.dir().join("untrusted.bundle");
    std::fs::write(&untrusted_path, untrusted.to_file_bytes()).unwrap();
    let altered_path = fleet.dir().join("altered.bundle");
    let signed_v11 = fleet.sign("v11.bundle", 11, &policies).unwrap();
    let altered = std::fs::read_to_string(&signed_v11)
        .unwrap()
        .replace("actions: [pause]", "actions: [kill]");
    std::fs::write(&altered_path, altered).unwrap();
    let older = fleet.sign("v5.bundle", 5, &policies).unwrap();
    for (path, message, reason) in [
        (&untrusted_path, "not trusted", "untrusted"),
        (&altered_path, "altered after signing", "bad-signature"),
        (&older, "older than the one accepted", "older"),
    ] {
        let output = fleet
            .run_ctl(2, &["bundle", "apply", path.to_str().unwrap()])
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
        let series =
            format!("lazaret_bundles_refused_total{{kind=\"policies\",reason=\"{reason}\"}}");
        assert_eq!(fleet.metric(2, &series).unwrap(), 1.0, "{series}");
    }
    for agent in 0..5 {
        assert_eq!(fleet.policies_version(agent).unwrap(), 10);
    }

    // A status value forged under node-2's name (its certificate, another node's key), with a
    // higher generation and a bundle nobody holds: refused, counted, never fetched.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rogue = runtime
        .block_on(forged_node(&fleet, "node-2", &seed))
        .unwrap();
    wait_until("node-1 counts the forged values", DEADLINE, || {
        fleet
            .metric(
                0,
                "lazaret_gossip_values_refused_total{reason=\"bad-seal\"}",
            )
            .unwrap()
            >= 1.0
    });
    let status = fleet.json(0, &["bundle", "status"]).unwrap();
    let node_2 = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|peer| peer["node"] == "node-2")
        .unwrap();
    assert_ne!(node_2["generation"], FORGED_GENERATION, "{node_2}");
    assert_eq!(node_2["acks"]["policies"]["version"], 10, "{node_2}");

    // A sixth agent, seeded by node-3 only, converges from its peers.
    let seed_3 = fleet.agents[2].gossip.clone();
    fleet.add_agent(Placement::loopback(), &[seed_3]).unwrap();
    fleet
        .wait_converged(&[0, 1, 2, 3, 4, 5], 10, CONVERGE)
        .unwrap();
    assert_eq!(fleet.policies_version(5).unwrap(), 10);

    // A restarted agent comes back with a higher generation, and its keys are seen again.
    let generation_before = generation_seen_by(&fleet, 0, "node-3");
    fleet.agents[2].process.restart().unwrap();
    wait_until("node-3 seen again after its restart", CONVERGE, || {
        let status = fleet.json(0, &["bundle", "status"]).unwrap();
        status["peers"].as_array().unwrap().iter().any(|peer| {
            peer["node"] == "node-3"
                && peer["live"] == true
                && peer["generation"].as_u64() > generation_before
                && peer["acks"]["policies"]["version"] == 10
        })
    });
    for agent in 0..6 {
        assert_eq!(fleet.policies_version(agent).unwrap(), 10);
    }
    runtime.block_on(rogue.shutdown()).unwrap();
}

const FORGED_GENERATION: u64 = 1_000_000;

fn generation_seen_by(fleet: &TestFleet, agent: usize, node: &str) -> Option<u64> {
    let status = fleet.json(agent, &["bundle", "status"]).unwrap();
    status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|peer| peer["node"] == node)
        .and_then(|peer| peer["generation"].as_u64())
}

/// A chitchat node claiming to be `victim`: it publishes the victim's real certificate, but
/// seals its values with node-1's key (all it has), announcing a bundle nobody holds.
async fn forged_node(
    fleet: &TestFleet,
    victim: &str,
    seed: &str,
) -> anyhow::Result<chitchat::ChitchatHandle> {
    let read = |file: &str| std::fs::read_to_string(fleet.pki_dir.join(file)).unwrap();
    let forger = NodeSigner::new(
        "lazaret",
        victim,
        read(&format!("{victim}.pem")),
        read("node-1-key.pem").as_bytes(),
    )?;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let stamp = BundleStamp {
        version: 999_999,
        digest: BundleDigest([0xff; 32]),
    };
    let node = NodeValue {
        version: "forged".into(),
        hostname: "forged".into(),
        runtimes: vec![],
        grpc: "127.0.0.1:1".into(),
        detections: None,
    };
    let slot = lazaret_core::gossip::Slot {
        generation: FORGED_GENERATION,
        version: 1,
    };
    let sealed =
        |key: &GossipKey, payload: String| (key.to_string(), forger.seal(key, slot, &payload));
    let values = vec![
        (
            GossipKey::Cert.to_string(),
            forger.certificate_pem().to_string(),
        ),
        sealed(&GossipKey::Node, serde_json::to_string(&node)?),
        sealed(
            &GossipKey::Ack(lazaret_core::bundle::BundleKind::Policies),
            serde_json::to_string(&stamp)?,
        ),
    ];
    let config = chitchat::ChitchatConfig {
        chitchat_id: chitchat::ChitchatId::new(victim, FORGED_GENERATION, address),
        cluster_id: "lazaret".into(),
        gossip_interval: Duration::from_millis(200),
        listen_addr: address,
        seed_nodes: vec![seed.to_string()],
        failure_detector_config: Default::default(),
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: chitchat::ProtocolVersion::V1,
    };
    chitchat::spawn_chitchat(config, values, &chitchat::transport::UdpTransport).await
}

#[test]
fn a_partitioned_fleet_keeps_enforcing_and_converges_after_the_heal() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let side_a = NetNs::create("fleet-a").unwrap();
    let side_b = NetNs::create("fleet-b").unwrap();
    let link = side_a.link_to(&side_b, 61).unwrap();
    let placement = |netns: &NetNs, host: &str| Placement {
        host: host.to_string(),
        netns: Some(netns.path()),
    };
    let mut fleet = TestFleet::new().unwrap();
    fleet
        .add_agent(placement(&side_a, &link.address), &[])
        .unwrap();
    let seed = fleet.agents[0].gossip.clone();
    fleet
        .add_agent(
            placement(&side_a, &link.address),
            std::slice::from_ref(&seed),
        )
        .unwrap();
    fleet
        .add_agent(
            placement(&side_b, &link.peer_address),
            std::slice::from_ref(&seed),
        )
        .unwrap();
    let seed_b = fleet.agents[2].gossip.clone();
    fleet
        .add_agent(
            placement(&side_b, &link.peer_address),
            &[seed.clone(), seed_b],
        )
        .unwrap();

    let policies = fleet.dir().join("policies");
    std::fs::create_dir(&policies).unwrap();
    policy(&policies, &containers, "v1");
    let v1 = fleet.sign("v1.bundle", 1, &policies).unwrap();
    fleet
        .json(0, &["bundle", "apply", v1.to_str().unwrap()])
        .unwrap();
    fleet.wait_converged(&[0, 1, 2, 3], 1, CONVERGE).unwrap();

    // Partition: the only link between the sides goes down.
    let ip = |args: &[&str]| {
        lazaret_tests::command::run_checked(
            std::process::Command::new("ip").args(args),
            Duration::from_secs(10),
        )
        .unwrap()
    };
    ip(&["-n", side_a.name(), "link", "set", "lzv-here", "down"]);
    policy(&policies, &containers, "v2");
    let v2 = fleet.sign("v2.bundle", 2, &policies).unwrap();
    fleet
        .json(0, &["bundle", "apply", v2.to_str().unwrap()])
        .unwrap();
    fleet.wait_converged(&[0, 1], 2, CONVERGE).unwrap();

    // Both sides keep enforcing their last bundle.
    let b_v1 = owned(&containers, "b-v1", "node-3", "v1");
    let b_v2 = owned(&containers, "b-v2", "node-3", "v2");
    let a_v2 = owned(&containers, "a-v2", "node-2", "v2");
    wait_until("side B enforces v1", DEADLINE, || {
        paused(&containers, &b_v1)
    });
    wait_until("side A enforces v2", DEADLINE, || {
        paused(&containers, &a_v2)
    });
    for agent in [2, 3] {
        assert_eq!(
            fleet.policies_version(agent).unwrap(),
            1,
            "side B is cut off"
        );
    }
    assert!(!paused(&containers, &b_v2), "side B cannot know v2 yet");

    // Heal: everyone converges on v2, and side B re-judges its running containers under it.
    ip(&["-n", side_a.name(), "link", "set", "lzv-here", "up"]);
    fleet.wait_converged(&[0, 1, 2, 3], 2, CONVERGE).unwrap();
    wait_until("side B enforces v2 after the heal", DEADLINE, || {
        paused(&containers, &b_v2)
    });
    assert_eq!(enforcers(&fleet, &b_v2), ["node-3"]);
}
