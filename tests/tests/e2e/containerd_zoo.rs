//! containerd's OCI configurations judged end to end (root user, writable or read-only root,
//! sensitive mounts), and a container in a network namespace of the test's own, wired to a
//! peer namespace by a veth pair: the set-up the network-cut tests of issue 4/11 start from.

use lazaret_core::posture::CheckResult;
use lazaret_core::{ContainerId, ContainerState};
use lazaret_tests::NetNs;
use lazaret_tests::agent::TestAgent;
use lazaret_tests::command::run_checked;

use super::containerd::{drop_blocking, result_of, runtime_for, start_containerd};

const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_configurations_are_judged_and_a_test_netns_is_ready_for_cuts() {
    lazaret_tests::init_tracing();
    let containerd = start_containerd().await;
    let namespace = containerd.unique_namespace("zoo");
    containerd.import_busybox(&namespace).unwrap();
    let container_netns = NetNs::create("pod").unwrap();
    let peer_netns = NetNs::create("peer").unwrap();
    let veth = container_netns.link_to(&peer_netns, 0).unwrap();

    let agent = TestAgent::start_runtimes(vec![runtime_for(&containerd, &[&namespace])])
        .await
        .unwrap();
    containerd.run(&namespace, "rootful", &[], &[]).unwrap();
    containerd
        .run(&namespace, "read-only", &[], &["--read-only"])
        .unwrap();
    containerd
        .run(
            &namespace,
            "etc-rw",
            &[],
            &[
                "--mount",
                "type=bind,src=/etc,dst=/host-etc,options=rbind:rw",
            ],
        )
        .unwrap();
    containerd
        .run(
            &namespace,
            "etc-ro",
            &[],
            &[
                "--mount",
                "type=bind,src=/etc,dst=/host-etc,options=rbind:ro",
            ],
        )
        .unwrap();
    let joined = format!("network:{}", container_netns.path().display());
    containerd
        .run(&namespace, "in-test-netns", &[], &["--with-ns", &joined])
        .unwrap();

    let ids = ["rootful", "read-only", "etc-rw", "etc-ro", "in-test-netns"].map(ContainerId::new);
    let snapshot = agent
        .wait_for_inventory("the zoo running", |snapshot| {
            ids.iter().all(|id| {
                snapshot
                    .get(id)
                    .is_some_and(|entry| entry.info.state == ContainerState::Running)
            })
        })
        .await
        .unwrap();
    let findings = |id: &str| {
        snapshot
            .get(&ContainerId::new(id))
            .unwrap()
            .findings
            .clone()
    };
    let expectations = [
        ("rootful", "4.1", CheckResult::Fail),
        ("rootful", "5.13", CheckResult::Fail),
        ("rootful", "5.6", CheckResult::Pass),
        ("rootful", "5.4", CheckResult::Pass),
        ("rootful", "5.10", CheckResult::Pass),
        ("read-only", "5.13", CheckResult::Pass),
        ("etc-rw", "5.6", CheckResult::Fail),
        ("etc-ro", "5.6", CheckResult::Pass),
        ("in-test-netns", "5.10", CheckResult::Pass),
    ];
    for (id, check, expected) in expectations {
        assert_eq!(
            result_of(&findings(id), check),
            expected,
            "{id} check {check}"
        );
    }
    let in_netns = snapshot.get(&ContainerId::new("in-test-netns")).unwrap();
    assert_eq!(
        in_netns.info.netns_path.as_deref(),
        Some(container_netns.path().to_str().unwrap())
    );
    assert_eq!(
        snapshot
            .get(&ContainerId::new("rootful"))
            .unwrap()
            .info
            .user
            .as_deref(),
        Some("0")
    );

    // The container's namespace really reaches its peer (and only it): what a cut must stop.
    let ping = run_checked(
        container_netns
            .command("busybox")
            .args(["ping", "-c", "1", "-W", "2", &veth.peer_address]),
        COMMAND_TIMEOUT,
    );
    assert!(
        ping.is_ok(),
        "no traffic between the test's namespaces: {ping:?}"
    );

    agent.stop().await;
    drop_blocking(containerd).await;
    drop(container_netns);
    drop(peer_netns);
}
