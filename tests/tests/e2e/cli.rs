//! `lazaretctl` against a real agent process over mutual TLS, on the real Docker engine:
//! quarantine then release a container by name, with the engine, `container` and `events
//! --follow` agreeing at each step; what each role may not do (viewer quarantine, operator
//! `--force`), and handshakes refused without a certificate from the fleet CA.
//!
//! Deadlines are generous; nothing here measures time.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lazaret_core::roles::Role;
use lazaret_tests::agent_process::{AgentProcess, workspace_binary};
use lazaret_tests::dev_fleet::DevUp;
use lazaret_tests::{BUSYBOX_IMAGE, TestContainers, ensure_busybox_image, free_port, init_tracing};
use lazaretctl::pki;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// `lazaretctl --agent ADDR --tls-dir DIR --as WHO ARGS…`.
fn ctl(address: &str, tls_dir: &Path, identity: &str, args: &[&str]) -> Command {
    let mut command = Command::new(workspace_binary("lazaretctl").unwrap());
    command
        .args(["--agent", address, "--tls-dir"])
        .arg(tls_dir)
        .args(["--as", identity])
        .args(args)
        .env_remove("LAZARET_AGENT")
        .env_remove("LAZARET_TLS_DIR");
    command
}

fn run(mut command: Command) -> Output {
    command.output().unwrap()
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An agent process serving the API with a fresh PKI (`admin`, viewer `alice`, operator `olga`).
struct ApiAgent {
    dir: tempfile::TempDir,
    pki_dir: PathBuf,
    address: String,
    metrics: String,
    agent: AgentProcess,
}

impl ApiAgent {
    /// `lazaretctl` as `identity` against this agent.
    fn ctl(&self, identity: &str, args: &[&str]) -> Command {
        ctl(&self.address, &self.pki_dir, identity, args)
    }

    fn start() -> ApiAgent {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        pki::init(&pki_dir, 1).unwrap();
        pki::issue(&pki_dir, Role::Viewer, "alice", &[]).unwrap();
        pki::issue(&pki_dir, Role::Operator, "olga", &[]).unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        std::fs::write(
            policies.join("observe.yaml"),
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: observe\nrules: [{check: privileged}]\n",
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let config = format!(
            "node_name = \"node-1\"\n[metrics]\nlisten = \"{metrics}\"\n[containerd]\nenabled = false\n\
             [api]\nlisten = \"{address}\"\ntls_dir = \"{}\"\n",
            pki_dir.display()
        );
        let agent_dir = dir.path().join("agent");
        std::fs::create_dir(&agent_dir).unwrap();
        let agent = AgentProcess::start(&agent_dir, &config, &policies).unwrap();
        agent
            .wait_for("the API listening", DEADLINE, || {
                agent.log().contains("API listening")
            })
            .unwrap();
        ApiAgent {
            dir,
            pki_dir,
            address,
            metrics,
            agent,
        }
    }
}

#[test]
fn quarantine_and_release_by_name_through_the_cli_with_roles_enforced() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let api = ApiAgent::start();
    let (dir, pki_dir, address, agent) = (
        api.dir.path(),
        &api.pki_dir,
        api.address.as_str(),
        &api.agent,
    );
    let target = containers
        .run("cli-target", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let name = containers.container_name("cli-target");
    let admin = |args: &[&str]| ctl(address, pki_dir, "admin", args);
    agent
        .wait_for("the container listed", DEADLINE, || {
            run(admin(&["containers", "-o", "json"]))
                .stdout
                .windows(name.len())
                .any(|window| window == name.as_bytes())
        })
        .unwrap();

    // `events --follow` from now on, in the background.
    let head = json_of(&run(admin(&["audit", "-o", "json"])))
        .as_array()
        .map_or(0, Vec::len);
    let mut follower = admin(&[
        "events",
        "--follow",
        "-o",
        "json",
        "--from",
        &(head + 1).to_string(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let (lines, received) = mpsc::channel();
    let follower_out = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(follower_out).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });

    // Roles: a viewer may not quarantine, an operator may not force.
    let denied = run(ctl(
        address,
        pki_dir,
        "alice",
        &["quarantine", &name, "--reason", "test"],
    ));
    assert_eq!(denied.status.code(), Some(1), "{}", stderr(&denied));
    assert!(
        stderr(&denied).contains("not allowed: alice (viewer)"),
        "{}",
        stderr(&denied)
    );
    let forced = run(ctl(
        address,
        pki_dir,
        "olga",
        &["quarantine", &name, "--reason", "test", "--force"],
    ));
    assert_eq!(forced.status.code(), Some(1), "{}", stderr(&forced));
    assert!(
        stderr(&forced).contains("quarantine with --force"),
        "{}",
        stderr(&forced)
    );
    // A node certificate may only fetch bundles; a detector only report detections.
    pki::issue(pki_dir, Role::Detector, "falco", &[]).unwrap();
    for (who, role) in [("node-1", "node"), ("falco", "detector")] {
        let refused = run(ctl(address, pki_dir, who, &["containers"]));
        assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
        assert!(
            stderr(&refused).contains(&format!("not allowed: {who} ({role})")),
            "{}",
            stderr(&refused)
        );
    }
    let state = |container: &str| {
        containers
            .docker(&["inspect", "-f", "{{.State.Status}}", container])
            .unwrap()
    };
    assert_eq!(state(&target), "running");

    // An operator quarantines by name: engine and detail agree.
    let record = json_of(&run(ctl(
        address,
        pki_dir,
        "olga",
        &[
            "quarantine",
            &name,
            "--reason",
            "e2e: suspicious",
            "-o",
            "json",
        ],
    )));
    assert_eq!(record["state"], "applied", "{record}");
    assert_eq!(record["actor"], "olga");
    assert_eq!(state(&target), "paused");
    let detail = json_of(&run(admin(&["container", &name, "-o", "json"])));
    assert_eq!(detail["id"], target.as_str());
    assert_eq!(detail["quarantine"]["state"], "applied");
    assert_eq!(detail["quarantine"]["source"], "operator");

    let released = json_of(&run(ctl(
        address,
        pki_dir,
        "olga",
        &["release", &name, "--reason", "e2e: cleared", "-o", "json"],
    )));
    assert_eq!(released["state"], "released");
    assert_eq!(state(&target), "running");
    let detail = json_of(&run(admin(&["container", &name, "-o", "json"])));
    assert_eq!(detail["quarantine"]["state"], "released");

    // The follower saw both, as they happened.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + DEADLINE;
    while !seen
        .iter()
        .any(|event: &Value| event["action"] == "release")
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = received
            .recv_timeout(left)
            .expect("events --follow printed the release");
        seen.push(serde_json::from_str(&line).unwrap());
    }
    assert!(seen.iter().any(|event| event["action"] == "quarantine"
        && event["actor"] == "olga"
        && event["target"] == target.as_str()));
    let _killed = follower.kill();
    let _reaped = follower.wait();

    // A unique id prefix works like the name.
    let by_prefix = json_of(&run(admin(&["container", &target[..10], "-o", "json"])));
    assert_eq!(by_prefix["id"], target.as_str());
    // `policy test`: what a policy would do, nothing done.
    let policy = dir.join("would.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: would-kill\nmode: enforce\n\
             match:\n  names: [\"{name}\"]\nrules:\n  - expr: 'container.name == \"{name}\"'\n\
             actions: [kill]\n"
        ),
    )
    .unwrap();
    let tested = json_of(&run(api.ctl(
        "alice",
        &["policy", "test", policy.to_str().unwrap(), "-o", "json"],
    )));
    let outcome = tested
        .as_array()
        .unwrap()
        .iter()
        .find(|outcome| outcome["container"] == target.as_str())
        .unwrap_or_else(|| panic!("no outcome for the target: {tested}"));
    assert_eq!(outcome["enforcing_policy"], "would-kill");
    assert_eq!(outcome["actions"], serde_json::json!(["kill"]));
    assert_eq!(state(&target), "running", "policy test acted");

    let verified = json_of(&run(admin(&["audit", "--verify", "-o", "json"])));
    assert_eq!(verified["intact"], true);

    // The API's certificate expiry is a metric: a year ahead for a fresh node certificate.
    let text = lazaret_tests::agent_process::scrape_metrics(&api.metrics).unwrap();
    let expiry: i64 = text
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "lazaret_certificate_expiry_timestamp_seconds{certificate=\"node-1\"} ",
            )
        })
        .unwrap_or_else(|| panic!("no expiry metric in:\n{text}"))
        .trim()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(expiry > now + 300 * 86400, "{expiry} vs now {now}");

    // Handshakes: a certificate from another CA is refused before any handler runs.
    let other = dir.join("other-pki");
    pki::init(&other, 1).unwrap();
    let stranger = run(ctl(address, &other, "admin", &["containers"]));
    assert_eq!(stranger.status.code(), Some(3), "{}", stderr(&stranger));
}

/// Installs Python's gRPC client libraries from PyPI into the target directory (once per
/// checkout) and returns the directory for `PYTHONPATH`.
fn python_grpc() -> PathBuf {
    let target = workspace_binary("lazaret-agent")
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("python-grpc");
    if !target.join("grpc_reflection").is_dir() {
        let installed = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&target)
            .args(["grpcio", "grpcio-reflection", "grpcio-health-checking"])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install of grpcio failed");
    }
    target
}

#[test]
fn a_python_grpc_client_lists_services_by_reflection_and_gets_serving() {
    init_tracing();
    let python_path = python_grpc();
    let api = ApiAgent::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/grpc_probe.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&api.address)
        .arg(&api.pki_dir)
        .env("PYTHONPATH", python_path)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}\n{}\nagent log:\n{}",
        stderr(&output),
        api.agent.log_tail()
    );
    let report: Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(report["health"], "SERVING");
    let services: Vec<&str> = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        services.contains(&"lazaret.v1.AgentService"),
        "{services:?}"
    );
    assert!(
        services.contains(&"grpc.reflection.v1alpha.ServerReflection"),
        "{services:?}"
    );
    assert!(
        report["without_certificate"].is_string(),
        "a client without a certificate got through: {report}"
    );
}

#[test]
fn the_readme_quick_start_brings_a_fleet_up_quarantines_and_stops_on_ctrl_c() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let dir = tempfile::tempdir().unwrap();
    let fleet_dir = dir.path().join("dev");
    let (mut fleet, env) = DevUp::start(&fleet_dir, 2).unwrap();
    let fleet = &mut fleet.child;
    let keys: Vec<&str> = env.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "LAZARET_CONTROLLER",
            "LAZARET_AGENT",
            "LAZARET_AGENTS",
            "LAZARET_NODES",
            "LAZARET_TLS_DIR",
            "LAZARET_SIGNING_KEY",
            "LAZARET_DETECTIONS",
            "LAZARET_DETECTIONS_TOKEN",
            "LAZARET_GOSSIP_SEED"
        ]
    );
    // What a user who ran `source DIR/env` types: through the controller.
    let lazaretctl = |args: &[&str]| {
        let mut command = Command::new(workspace_binary("lazaretctl").unwrap());
        command.args(args).envs(env.iter().cloned());
        run(command)
    };
    let target = containers
        .run("readme", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let name = containers.container_name("readme");
    let deadline = std::time::Instant::now() + DEADLINE;
    while !String::from_utf8_lossy(&lazaretctl(&["containers"]).stdout).contains(&target[..12]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never listed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let quarantined = lazaretctl(&["quarantine", &name, "--reason", "trying Lazaret"]);
    assert!(quarantined.status.success(), "{}", stderr(&quarantined));
    let state = |id: &str| {
        containers
            .docker(&["inspect", "-f", "{{.State.Status}}", id])
            .unwrap()
    };
    // The agent pauses Docker containers through containerd; Docker follows within moments.
    let becomes = |id: &str, wanted: &str, within: Duration| {
        let deadline = std::time::Instant::now() + within;
        while state(id) != wanted {
            assert!(std::time::Instant::now() < deadline, "{id} never {wanted}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    becomes(&target, "paused", Duration::from_secs(5));
    let released = lazaretctl(&["release", &name, "--reason", "done"]);
    assert!(released.status.success(), "{}", stderr(&released));
    assert_eq!(state(&target), "running");

    // The README's bundle roll-out: signed with the dev key, applied to node-1, enforced by
    // node-2 on the container it owns (the policy is scoped to this test's containers).
    let demo = dir.path().join("demo");
    std::fs::create_dir(&demo).unwrap();
    std::fs::write(
        demo.join("bad.yaml"),
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: demo-bad\nmode: enforce\n\
             match: {{labels: {{demo: bad, lazaret.test: \"{}\"}}}}\n\
             rules: [{{expr: \"true\"}}]\nactions: [pause]\n",
            containers.run_id()
        ),
    )
    .unwrap();
    let signing_key = &env
        .iter()
        .find(|(key, _)| key == "LAZARET_SIGNING_KEY")
        .unwrap()
        .1;
    let bundle = dir.path().join("demo.bundle");
    let signed = lazaretctl(&[
        "bundle",
        "sign",
        "--kind",
        "policies",
        "--key",
        signing_key,
        "--out",
        bundle.to_str().unwrap(),
        demo.to_str().unwrap(),
    ]);
    assert!(signed.status.success(), "{}", stderr(&signed));
    let applied = lazaretctl(&["bundle", "apply", bundle.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let node_2 = env
        .iter()
        .find(|(key, _)| key == "LAZARET_AGENTS")
        .unwrap()
        .1
        .split(',')
        .nth(1)
        .unwrap()
        .to_string();
    let bad = containers
        .run(
            "readme-bad",
            &[
                "--label",
                "demo=bad",
                "--label",
                "lazaret.io/node=node-2",
                BUSYBOX_IMAGE,
                "sleep",
                "600",
            ],
        )
        .unwrap();
    // Gossip carries the bundle to node-2, which judges the container under it.
    becomes(&bad, "paused", DEADLINE);
    let on_node_2 = lazaretctl(&["--agent", &node_2, "quarantines", "-o", "json"]);
    let records: Value = serde_json::from_slice(&on_node_2.stdout).unwrap();
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .any(|record| record["container"] == bad.as_str() && record["node"] == "node-2"),
        "{records}"
    );

    // Ctrl-C stops the agents too.
    let interrupted = Command::new("kill")
        .args(["-INT", &fleet.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = std::time::Instant::now() + DEADLINE;
    while fleet.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "dev up did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let leftover = Command::new("pgrep")
        .arg("-f")
        .arg(fleet_dir.to_str().unwrap())
        .output()
        .unwrap();
    assert!(
        leftover.stdout.is_empty(),
        "agents left running: {}",
        String::from_utf8_lossy(&leftover.stdout)
    );
}
