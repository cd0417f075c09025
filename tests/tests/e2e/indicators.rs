//! Threat indicators with a real agent process on the real Docker engine: an indicators bundle
//! that lists the image of an already-running container sweeps every container, and the policy
//! whose `indicator` rule matches it quarantines that container; the scan sees what runs inside
//! containers (a renamed copy of busybox, a modified one, a connection to a listed address) and
//! the policies act on it.

use std::time::Duration;

use lazaret_core::bundle::BundleKind;
use lazaret_tests::fleet::{Placement, TestFleet};
use lazaret_tests::{
    BUSYBOX_IMAGE, TestContainers, ensure_busybox_image, init_tracing, wait_until,
};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn an_indicators_bundle_sweeps_running_containers() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let mut fleet = TestFleet::new().unwrap();
    fleet.add_agent(Placement::loopback(), &[]).unwrap();
    let running = containers
        .run("ioc-running", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let image_id = containers.field(&running, "{{.Image}}").unwrap();

    // A policy that acts on listed images, scoped to this run's containers; nothing listed yet.
    apply(
        &fleet,
        BundleKind::Policies,
        &format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: known-bad-images\nmode: enforce\n\
             match:\n  labels: {{lazaret.test: \"{}\"}}\n\
             rules: [{{indicator: [image-id, image-digest]}}]\nactions: [pause]\n",
            containers.run_id()
        ),
    );
    let paused = || containers.field(&running, "{{.State.Paused}}").unwrap() == "true";
    std::thread::sleep(Duration::from_secs(1));
    assert!(!paused(), "no indicator lists its image yet");

    // The indicators bundle lists the running container's image: the sweep quarantines it.
    apply(
        &fleet,
        BundleKind::Indicators,
        &format!(
            "apiVersion: lazaret.dev/v1\nkind: Indicators\nsource: e2e\nindicators:\n\
             - {{id: bad-busybox, type: image-id, value: '{image_id}', severity: critical}}\n\
             - {{id: expired, type: image-id, value: 'sha256:{}', valid_until: '2020-01-01T00:00:00Z'}}\n",
            "0".repeat(64)
        ),
    );
    wait_until("the running container is quarantined", DEADLINE, paused);
    let record = quarantine_of(&fleet, &running).unwrap_or_default();
    assert_eq!(record["source"], "policy:known-bad-images", "{record}");
    assert!(
        record["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("bad-busybox")),
        "the reason names the indicator: {record}"
    );
}

/// Writes `yaml` as the only file of a `kind` bundle, signs it (version 1) and applies it to the
/// first agent.
fn apply(fleet: &TestFleet, kind: BundleKind, yaml: &str) {
    let dir = fleet.dir().join(kind.to_string());
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("doc.yaml"), yaml).unwrap();
    let bundle = fleet
        .sign_kind(kind, &format!("{kind}.bundle"), 1, &dir)
        .unwrap();
    fleet
        .json(0, &["bundle", "apply", bundle.to_str().unwrap()])
        .unwrap();
}

/// The first agent's quarantine record of `container`, if any.
fn quarantine_of(fleet: &TestFleet, container: &str) -> Option<Value> {
    let quarantines = fleet.json(0, &["quarantines"]).unwrap();
    quarantines
        .as_array()
        .unwrap()
        .iter()
        .find(|record| record["container"] == container)
        .cloned()
}

/// `sha256sum` of `(cat FILE; echo)`: the hash of a copy of FILE with a newline appended.
fn sha256_with_newline(file: &str) -> String {
    let output = std::process::Command::new("sh")
        .args(["-c", &format!("(cat {file}; echo) | sha256sum")])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap()[..64].to_string()
}

/// Whether the web server at `address` answers this test (on the host, through the bridge: a
/// container asking it would itself have connected to a listed address).
fn answers_host(address: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(
        &format!("{address}:8080").parse().unwrap(),
        Duration::from_secs(2),
    ) else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut answer = String::new();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/")
}

/// What `nc` gets back from the web server at `address`, asked from inside `client`.
fn http_from(containers: &TestContainers, client: &str, address: &str) -> String {
    let probe = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {address} 8080 | head -1");
    containers
        .docker(&["exec", client, "sh", "-c", &probe])
        .unwrap_or_default()
}

#[test]
fn the_scan_acts_on_what_runs_inside_containers() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let mut fleet = TestFleet::new().unwrap();
    fleet
        .add_agent_with(Placement::loopback(), &[], "[scan]\ninterval = \"500ms\"\n")
        .unwrap();
    // A web server whose address will be listed, a client that keeps connecting to it, a copy of
    // busybox renamed `xmrig`, a modified copy of busybox (one byte appended), and a bystander
    // that runs nothing listed and connects nowhere.
    let server = containers
        .run(
            "scan-server",
            &[
                BUSYBOX_IMAGE,
                "busybox",
                "httpd",
                "-f",
                "-p",
                "8080",
                "-h",
                "/tmp",
            ],
        )
        .unwrap();
    let address = containers
        .field(&server, "{{.NetworkSettings.IPAddress}}")
        .unwrap();
    let client = containers
        .run(
            "scan-client",
            &[
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                &format!(
                    "while true; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 1 {address} 8080 >/dev/null; sleep 0.2; done"
                ),
            ],
        )
        .unwrap();
    let miner = containers
        .run(
            "scan-miner",
            &[
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                "cp /bin/busybox /tmp/xmrig && exec -a sleep /tmp/xmrig 600",
            ],
        )
        .unwrap();
    let modified = containers
        .run(
            "scan-modified",
            &[
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                "cp /bin/busybox /tmp/tool && echo >> /tmp/tool && exec -a sleep /tmp/tool 600",
            ],
        )
        .unwrap();
    let bystander = containers
        .run("scan-bystander", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    assert!(
        answers_host(&address),
        "the server answers before anything is cut"
    );

    apply(
        &fleet,
        BundleKind::Policies,
        &format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: known-bad-programs\nmode: enforce\n\
             match:\n  labels: {{lazaret.test: \"{run}\"}}\n\
             rules: [{{indicator: [process-name, exe-sha256]}}]\nactions: [pause]\n\
             ---\napiVersion: lazaret.dev/v1\nkind: Policy\nname: known-bad-destinations\nmode: enforce\n\
             match:\n  labels: {{lazaret.test: \"{run}\"}}\n\
             rules: [{{indicator: [ip]}}]\nactions: [network-cut]\n",
            run = containers.run_id()
        ),
    );
    apply(
        &fleet,
        BundleKind::Indicators,
        &format!(
            "apiVersion: lazaret.dev/v1\nkind: Indicators\nsource: e2e\nindicators:\n\
             - {{id: miner-name, type: process-name, value: xmrig}}\n\
             - {{id: tool-hash, type: exe-sha256, value: '{}'}}\n\
             - {{id: bad-server, type: ip, value: '{address}'}}\n",
            sha256_with_newline("/bin/busybox")
        ),
    );

    let paused =
        |container: &str| containers.field(container, "{{.State.Paused}}").unwrap() == "true";
    let record = |container: &str| quarantine_of(&fleet, container);
    wait_until(
        "the renamed and the modified busybox are paused",
        DEADLINE,
        || paused(&miner) && paused(&modified),
    );
    wait_until("the client is quarantined", DEADLINE, || {
        record(&client).is_some_and(|record| record["state"] == "applied")
    });
    for (container, indicator, policy) in [
        (&miner, "miner-name", "known-bad-programs"),
        (&modified, "tool-hash", "known-bad-programs"),
        (&client, "bad-server", "known-bad-destinations"),
    ] {
        let record = record(container).unwrap();
        assert_eq!(record["source"], format!("policy:{policy}"), "{record}");
        let reason = record["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(indicator) && reason.contains("seen inside by the scan"),
            "the reason names the indicator and the scan: {record}"
        );
    }
    // The evidence taken at quarantine shows what each was running and talking to.
    let evidence = |container: &str| {
        fleet
            .json(0, &["container", container, "--evidence"])
            .unwrap()["evidence"]
            .clone()
    };
    wait_until("the evidence is taken", DEADLINE, || {
        evidence(&miner)["processes"]
            .as_array()
            .is_some_and(|processes| processes.iter().any(|p| p["name"] == "xmrig"))
            && evidence(&client)["remote_addresses"]
                .as_array()
                .is_some_and(|addresses| addresses.iter().any(|a| a == address.as_str()))
    });
    assert_eq!(evidence(&miner)["container"]["id"], miner.as_str());

    // The client's cut is real: the server no longer answers it; it still answers others.
    wait_until("the client's connections are cut", DEADLINE, || {
        http_from(&containers, &client, &address).is_empty()
    });
    assert!(answers_host(&address), "the server still answers others");
    std::thread::sleep(Duration::from_secs(2));
    for container in [&server, &bystander] {
        assert!(
            record(container).is_none() && !paused(container),
            "{container} runs nothing listed and is left alone"
        );
    }
}
