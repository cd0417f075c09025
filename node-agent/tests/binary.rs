//! `lazaret-agent` as a process: exit codes, the scan report against the real Docker engine,
//! and a clean shutdown on SIGTERM.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::labelled_container;

const AGENT: &str = env!("CARGO_BIN_EXE_lazaret-agent");

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(AGENT).args(args).output().expect("agent runs")
}

#[test]
fn bad_configuration_exits_64_naming_the_field() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "[metrics]\nlisten = \"everywhere\"").unwrap();
    let output = agent(&["--config", file.path().to_str().unwrap(), "scan"]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("metrics.listen"), "{stderr}");

    let mut unknown = tempfile::NamedTempFile::new().unwrap();
    writeln!(unknown, "[docker]\nsokcet = \"/x\"").unwrap();
    let output = agent(&["--config", unknown.path().to_str().unwrap(), "scan"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("sokcet"));
}

#[test]
fn unreachable_runtimes_are_reported_and_exit_2() {
    let nowhere = [
        "--docker-socket",
        "/nonexistent/docker.sock",
        "--containerd-socket",
        "/nonexistent/containerd.sock",
        "scan",
    ];
    let output = agent(&[&nowhere[..], &["-o", "json"]].concat());
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let runtimes = report["runtimes"].as_array().unwrap();
    assert_eq!(runtimes.len(), 2);
    assert_eq!(runtimes[0]["runtime"], "docker");
    assert_eq!(runtimes[1]["runtime"], "containerd");
    for (runtime, socket) in runtimes
        .iter()
        .zip(["/nonexistent/docker.sock", "/nonexistent/containerd.sock"])
    {
        assert_eq!(runtime["reachable"], false);
        assert!(
            runtime["error"].as_str().unwrap().contains(socket),
            "{runtime}"
        );
    }
    let table = agent(&nowhere);
    assert!(String::from_utf8_lossy(&table.stdout).contains("UNREACHABLE"));
}

#[test]
fn scan_lists_both_runtimes_of_a_docker_host_and_each_container_once() {
    let name = format!("lzt-binary-running-{}", std::process::id());
    let running = labelled_container(&["run", "-d"], &name, "binary", &[]);
    // Docker's own containerd is found without configuration; the running container is in
    // its `moby` namespace too, and must be reported once, as Docker sees it.
    let output = agent(&["scan", "-o", "json"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let containerd = report["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|runtime| runtime["runtime"] == "containerd")
        .expect("containerd is listed");
    assert_eq!(containerd["reachable"], true, "{containerd}");
    assert!(
        containerd["version"]["version"]
            .as_str()
            .is_some_and(|version| !version.is_empty())
    );
    let entries: Vec<&serde_json::Value> = report["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|container| container["id"] == running.0.as_str())
        .collect();
    assert_eq!(entries.len(), 1, "one entry per container");
    assert_eq!(entries[0]["runtime"], "docker");
    assert_eq!(entries[0]["name"], name.as_str());
}

#[test]
fn scan_reports_a_real_container_and_fail_on_sets_the_exit_code() {
    let name = format!("lzt-binary-{}", std::process::id());
    let created = labelled_container(&["create"], &name, "binary", &["--privileged"]);

    let output = agent(&["scan", "-o", "json", "--fail-on", "critical"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a privileged container is critical"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["runtimes"][0]["reachable"], true);
    let container = report["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|container| container["id"] == created.0.as_str())
        .expect("the created container is in the report");
    assert_eq!(container["name"], name.as_str());
    assert_eq!(container["state"], "created");
    let privileged = container["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "5.5")
        .unwrap();
    assert_eq!(privileged["result"], "fail");

    let table = agent(&["scan"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains(&name));

    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/policies");
    let judged = agent(&["scan", "-o", "json", "--policy-dir", policies]);
    assert_eq!(judged.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&judged.stdout).unwrap();
    let container = report["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|container| container["id"] == created.0.as_str())
        .unwrap();
    assert_eq!(
        container["verdict"]["enforcing_policy"],
        "strict-host-takeover"
    );
    assert_eq!(
        container["verdict"]["actions"],
        serde_json::json!(["network-cut", "pause"])
    );
    assert_eq!(container["verdict"]["ttl"], "1day");
    let table = agent(&["scan", "--policy-dir", policies]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("ENFORCE strict-host-takeover"));
}

#[test]
fn a_bad_policy_directory_exits_64_with_the_location() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join("bad.yaml"),
        "apiVersion: lazaret.dev/v1\nkind: Policy\nname: p\nrules:\n  - expr: 'container.usr == \"\"'\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let policies = directory.path().to_str().unwrap();
    let state = state.path().to_str().unwrap();
    let commands: [&[&str]; 2] = [
        &["scan", "--policy-dir", policies],
        &[
            "run",
            "--metrics-listen",
            "",
            "--state-dir",
            state,
            "--policy-dir",
            policies,
        ],
    ];
    for command in commands {
        let output = agent(command);
        assert_eq!(output.status.code(), Some(64), "{command:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("bad.yaml:5:"), "{stderr}");
        assert!(stderr.contains("no field `usr`"), "{stderr}");
    }
}

#[test]
fn run_serves_metrics_and_stops_cleanly_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(AGENT)
        .args(["--log-format", "json", "run", "--metrics-listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        if let Some(text) = http_get(&listen)
            && text.contains("lazaret_runtime_connected{runtime=\"docker\"} 1")
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never reported a docker connection"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(metrics.contains("lazaret_containers{state=\"running\"}"));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not stop within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let first_line: serde_json::Value =
        serde_json::from_str(stderr.lines().next().unwrap()).unwrap();
    assert!(first_line.get("level").is_some(), "json logs: {stderr}");
    assert!(stderr.contains("shutting down"));
}

fn http_get(address: &str) -> Option<String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}
