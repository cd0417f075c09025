//! The network cut (`lazaret_agent::enforce::netns`) against real namespaces: Docker containers
//! on the default bridge, a namespace pair of the test's own joined by a veth, tampering by a
//! process with the container's own capabilities, and the refusal of host networking.
//!
//! Traffic only ever flows between the test's own containers and namespaces, or on loopback.
//! The host's ruleset is only read (`nft -s list ruleset`), never changed. Deadlines are
//! generous and nothing here measures time.

use std::process::Command;
use std::time::{Duration, Instant};

use lazaret_agent::enforce::netns::{self, CutStatus, NetnsError, NetnsHandle, TABLE_NAME};
use lazaret_agent::runtime::ContainerRuntime;
use lazaret_agent::runtime::docker::DockerRuntime;
use lazaret_core::ContainerId;
use lazaret_tests::agent::DEFAULT_DOCKER_SOCKET;
use lazaret_tests::command::{run_checked, run_with_timeout};
use lazaret_tests::docker::docker_output;
use lazaret_tests::inside::nft_as_container;
use lazaret_tests::{BUSYBOX_IMAGE, NetNs, TestContainers, ensure_busybox_image, init_tracing};

const HTTP_PORT: u16 = 8080;
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reachability that must come (server start, after a restore) may take.
const REACH_DEADLINE: Duration = Duration::from_secs(60);
const RETRY_INTERVAL: Duration = Duration::from_millis(250);
const SLEEPER: [&str; 3] = [BUSYBOX_IMAGE, "sleep", "600"];

/// Starts a busybox httpd on [`HTTP_PORT`] whose page is the container's suffix.
fn web_server(containers: &TestContainers, suffix: &str, options: &[&str]) -> String {
    let script = format!(
        "mkdir -p /www && echo {suffix} > /www/index.html && exec httpd -f -p {HTTP_PORT} -h /www"
    );
    let mut args: Vec<&str> = options.to_vec();
    args.extend([BUSYBOX_IMAGE, "sh", "-c", &script]);
    containers.run(suffix, &args).unwrap()
}

fn bridge_ip(containers: &TestContainers, container: &str) -> String {
    let address = containers
        .field(container, "{{.NetworkSettings.IPAddress}}")
        .unwrap();
    assert!(!address.is_empty(), "{container} has no bridge address");
    address
}

/// The namespace path the agent's Docker backend reports (the sandbox key), as a quarantine
/// would get it.
async fn reported_netns_path(container: &str) -> Option<String> {
    let runtime = DockerRuntime::new(DEFAULT_DOCKER_SOCKET);
    runtime.connect().await.unwrap();
    runtime
        .inspect(&ContainerId::new(container))
        .await
        .unwrap()
        .expect("the container exists")
        .netns_path
}

/// The page `from` gets over HTTP from `address`, or `None` when it cannot connect in time.
/// Bounded by busybox `timeout`: busybox 1.35's `wget -T` crashes (SIGSEGV) on this image.
fn fetch(containers: &TestContainers, from: &str, address: &str) -> Option<String> {
    let url = format!("http://{address}:{HTTP_PORT}/");
    let output = docker_output(
        containers.docker_host(),
        &["exec", from, "timeout", "5", "wget", "-q", "-O-", &url],
    )
    .unwrap();
    output.success().then(|| output.stdout.trim().to_owned())
}

fn wait_until_served(containers: &TestContainers, from: &str, address: &str, page: &str) {
    let deadline = Instant::now() + REACH_DEADLINE;
    loop {
        if fetch(containers, from, address).as_deref() == Some(page) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{from} never got {page:?} from {address}"
        );
        std::thread::sleep(RETRY_INTERVAL);
    }
}

/// The host's ruleset without counters, minus rules on published ports: concurrent tests
/// publish ports, and Docker adds and removes those rules (all match a `dport`). Only read.
fn host_ruleset() -> String {
    let listing = run_checked(
        Command::new("nft").args(["-s", "list", "ruleset"]),
        TOOL_TIMEOUT,
    )
    .unwrap();
    listing
        .lines()
        .filter(|line| !line.contains("dport"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn status(handle: &NetnsHandle) -> CutStatus {
    netns::cut_status(handle).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_isolates_one_container_both_ways_until_restored() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let target = web_server(&containers, "target", &[]);
    let bystander = web_server(&containers, "bystander", &[]);
    let probe = containers.run("probe", &SLEEPER).unwrap();
    let target_ip = bridge_ip(&containers, &target);
    let bystander_ip = bridge_ip(&containers, &bystander);
    wait_until_served(&containers, &probe, &target_ip, "target");
    wait_until_served(&containers, &probe, &bystander_ip, "bystander");
    wait_until_served(&containers, &target, &bystander_ip, "bystander");

    let ruleset_before = host_ruleset();
    let path = reported_netns_path(&target).await.expect("a sandbox key");
    let handle = NetnsHandle::open(&path).unwrap();
    assert_eq!(status(&handle).await, CutStatus::Absent);

    netns::cut(&handle).await.unwrap();
    assert!(netns::is_cut(&handle).await.unwrap());
    // A second cut (the replacing transaction) changes nothing visible.
    netns::cut(&handle).await.unwrap();
    assert_eq!(status(&handle).await, CutStatus::Intact);

    assert_eq!(fetch(&containers, &probe, &target_ip), None, "inbound");
    assert_eq!(fetch(&containers, &target, &bystander_ip), None, "outbound");
    assert_eq!(
        fetch(&containers, &target, "127.0.0.1").as_deref(),
        Some("target"),
        "the target's loopback must keep working"
    );
    assert_eq!(
        fetch(&containers, &probe, &bystander_ip).as_deref(),
        Some("bystander"),
        "other containers must be untouched"
    );
    assert_eq!(host_ruleset(), ruleset_before, "the host's ruleset changed");

    netns::restore(&handle).await.unwrap();
    netns::restore(&handle).await.unwrap();
    assert_eq!(status(&handle).await, CutStatus::Absent);
    wait_until_served(&containers, &probe, &target_ip, "target");
    wait_until_served(&containers, &target, &bystander_ip, "bystander");
    assert_eq!(host_ruleset(), ruleset_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_needs_net_admin_is_detected_and_a_new_cut_repairs_it() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let mut admin_args = vec!["--cap-add", "NET_ADMIN"];
    admin_args.extend(SLEEPER);
    let admin = containers.run("net-admin", &admin_args).unwrap();
    let plain = containers.run("plain", &SLEEPER).unwrap();
    let admin_netns = NetnsHandle::open(reported_netns_path(&admin).await.unwrap()).unwrap();
    let plain_netns = NetnsHandle::open(reported_netns_path(&plain).await.unwrap()).unwrap();
    netns::cut(&admin_netns).await.unwrap();
    netns::cut(&plain_netns).await.unwrap();
    let delete = ["delete", "table", "inet", TABLE_NAME];

    // Docker's default capabilities do not include NET_ADMIN: the table stays.
    let refused = nft_as_container(&containers, &plain, &delete);
    assert!(!refused.success(), "deleted without NET_ADMIN");
    assert!(
        refused.stderr.contains("Operation not permitted"),
        "{}",
        refused.stderr
    );
    assert_eq!(status(&plain_netns).await, CutStatus::Intact);

    // With NET_ADMIN the table can be deleted, and that is seen.
    let deleted = nft_as_container(&containers, &admin, &delete);
    assert!(deleted.success(), "{}", deleted.stderr);
    assert_eq!(status(&admin_netns).await, CutStatus::Absent);
    assert!(!netns::is_cut(&admin_netns).await.unwrap());

    // Subtler edits are seen too, and a new cut puts the table back as it was.
    let edits: [&[&str]; 3] = [
        &["chain", "inet", TABLE_NAME, "input", "{ policy accept; }"],
        &["insert", "rule", "inet", TABLE_NAME, "output", "accept"],
        &["add", "table", "inet", TABLE_NAME, "{ flags dormant; }"],
    ];
    for edit in edits {
        netns::cut(&admin_netns).await.unwrap();
        assert_eq!(status(&admin_netns).await, CutStatus::Intact);
        let edited = nft_as_container(&containers, &admin, edit);
        assert!(edited.success(), "{edit:?}: {}", edited.stderr);
        let seen = status(&admin_netns).await;
        assert!(
            matches!(seen, CutStatus::Altered { .. }),
            "{edit:?} went unnoticed: {seen:?}"
        );
        assert!(!netns::is_cut(&admin_netns).await.unwrap());
    }
    netns::cut(&admin_netns).await.unwrap();
    assert_eq!(status(&admin_netns).await, CutStatus::Intact);

    netns::restore(&admin_netns).await.unwrap();
    netns::restore(&plain_netns).await.unwrap();
    assert_eq!(status(&admin_netns).await, CutStatus::Absent);
    assert_eq!(status(&plain_netns).await, CutStatus::Absent);
}

/// Whether one ping from `from` to `address` is answered within 2 s.
fn pings(from: &NetNs, address: &str) -> bool {
    let mut command = from.command("busybox");
    command.args(["ping", "-c", "1", "-W", "2", address]);
    run_with_timeout(&mut command, TOOL_TIMEOUT)
        .unwrap()
        .success()
}

fn wait_until_pings(from: &NetNs, address: &str) {
    let deadline = Instant::now() + REACH_DEADLINE;
    while !pings(from, address) {
        assert!(
            Instant::now() < deadline,
            "{} never reached {address}",
            from.name()
        );
        std::thread::sleep(RETRY_INTERVAL);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_of_the_tests_own_is_cut_across_its_veth_and_restored() {
    init_tracing();
    let inside = NetNs::create("cut").unwrap();
    let peer = NetNs::create("cutpeer").unwrap();
    let veth = inside.link_to(&peer, 7).unwrap();
    wait_until_pings(&inside, &veth.peer_address);
    wait_until_pings(&peer, &veth.address);

    let handle = NetnsHandle::open(inside.path()).unwrap();
    netns::cut(&handle).await.unwrap();
    assert!(
        !pings(&inside, &veth.peer_address),
        "outbound ping passed the cut"
    );
    assert!(!pings(&peer, &veth.address), "inbound ping passed the cut");
    assert!(pings(&inside, "127.0.0.1"), "loopback must keep working");
    let peer_ruleset =
        run_checked(peer.command("nft").args(["list", "ruleset"]), TOOL_TIMEOUT).unwrap();
    assert_eq!(peer_ruleset.trim(), "", "the peer namespace got rules");

    netns::restore(&handle).await.unwrap();
    wait_until_pings(&inside, &veth.peer_address);
    wait_until_pings(&peer, &veth.address);
    drop(handle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_networking_is_refused_and_the_host_left_alone() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let ruleset_before = host_ruleset();
    let containers = TestContainers::new(None);
    let mut host_args = vec!["--network", "host"];
    host_args.extend(SLEEPER);
    let host_networked = containers.run("host-net", &host_args).unwrap();
    let owner = containers.run("owner", &SLEEPER).unwrap();
    let owner_mode = format!("container:{owner}");
    let mut sharing_args = vec!["--network", owner_mode.as_str()];
    sharing_args.extend(SLEEPER);
    let sharing = containers.run("sharing", &sharing_args).unwrap();

    // Docker reports a sandbox key for host networking: a bind mount of the host's namespace.
    let sandbox_key = reported_netns_path(&host_networked)
        .await
        .expect("docker reports a sandbox key for host networking");
    tracing::info!(%sandbox_key, "sandbox key of a host-network container");
    let refusal = NetnsHandle::open(&sandbox_key).unwrap_err();
    assert!(
        matches!(refusal, NetnsError::HostNetwork { .. }),
        "{refusal}"
    );
    // The same namespace reached as containerd reports it (the task's /proc path).
    let pid = containers.field(&host_networked, "{{.State.Pid}}").unwrap();
    let through_proc = NetnsHandle::open(format!("/proc/{pid}/ns/net")).unwrap_err();
    assert!(
        matches!(through_proc, NetnsError::HostNetwork { .. }),
        "{through_proc}"
    );

    // A container in another's namespace has no sandbox key of its own: it is cut (together
    // with its owner) only through the owner's.
    assert_eq!(reported_netns_path(&sharing).await, None);

    // A namespace file of another type is refused by setns before nft runs.
    let owner_pid = containers.field(&owner, "{{.State.Pid}}").unwrap();
    let mount_namespace = NetnsHandle::open(format!("/proc/{owner_pid}/ns/mnt")).unwrap();
    let wrong_type = netns::cut(&mount_namespace).await.unwrap_err();
    assert!(matches!(wrong_type, NetnsError::Nft { .. }), "{wrong_type}");

    assert_eq!(host_ruleset(), ruleset_before, "the host's ruleset changed");
}
