//! Detections with a real agent process on the real Docker engine: a Falco-format alert posted
//! with `curl` and the token quarantines its container through the policies' `kind: Response`;
//! the same alert again within the window does not act twice; no token or a wrong one → 401; a
//! malformed body → 400 with the reason; an alert about a container this node does not have is
//! recorded as unmatched. The intake's unix socket answers the same way (and wants the token too).

use std::process::Command;
use std::time::Duration;

use lazaret_tests::fleet::{Placement, TestFleet};
use lazaret_tests::{BUSYBOX_IMAGE, TestContainers, ensure_busybox_image, free_port, init_tracing};
use serde_json::Value;

const TOKEN: &str = "e2e-token-0123456789abcdef";
const RULE: &str = "Terminal shell in container";

/// `curl -X POST` of `body` to the intake; (HTTP status, body).
fn post(url: &str, token: Option<&str>, body: &str) -> (u16, String) {
    post_via(None, url, token, body)
}

/// [`post`], through the unix socket `socket` when given.
fn post_via(
    socket: Option<&std::path::Path>,
    url: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut command = Command::new("curl");
    if let Some(socket) = socket {
        command.arg("--unix-socket").arg(socket);
    }
    command.args([
        "-sS",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
    ]);
    command.args([
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
        url,
    ]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let output = command.output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_string())
}

fn alert(container: &str, priority: &str) -> String {
    serde_json::json!({
        "hostname": "e2e",
        "output": format!("Critical A shell was spawned in a container (container_id={container})"),
        "priority": priority,
        "rule": RULE,
        "source": "syscall",
        "tags": ["container", "shell"],
        "time": "2026-11-29T12:00:00.000000000Z",
        "output_fields": {"container.id": container, "proc.name": "sh"},
    })
    .to_string()
}

#[test]
fn a_falco_alert_with_the_token_quarantines_its_container_once() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let mut fleet = TestFleet::new().unwrap();
    let token_file = fleet.dir().join("detections.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let port = free_port();
    let socket = fleet.dir().join("detections.sock");
    fleet
        .add_agent_with(
            Placement::loopback(),
            &[],
            &format!(
                "[detections]\nlisten = \"127.0.0.1:{port}\"\nsocket = \"{}\"\ntoken_file = \"{}\"\n",
                socket.display(),
                token_file.display()
            ),
        )
        .unwrap();
    let policies = fleet.dir().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("response.yaml"),
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Response\nname: shell-critical\nmode: enforce\n\
             match: {{rules: ['{RULE}'], min_severity: critical}}\n\
             containers: {{labels: {{lazaret.test: \"{}\"}}}}\nactions: [network-cut, pause]\n",
            containers.run_id()
        ),
    )
    .unwrap();
    let bundle = fleet.sign("policies.bundle", 1, &policies).unwrap();
    fleet
        .json(0, &["bundle", "apply", bundle.to_str().unwrap()])
        .unwrap();
    let target = containers
        .run("falco-target", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let short = &target[..12];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !fleet
        .run_ctl(0, &["container", short])
        .unwrap()
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never listed the container"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("http://127.0.0.1:{port}/falco");

    // Refused before anything is read: no token, a wrong one; then a malformed body.
    assert_eq!(post(&url, None, &alert(short, "Critical")).0, 401);
    assert_eq!(
        post(
            &url,
            Some("wrong-token-0123456789"),
            &alert(short, "Critical")
        )
        .0,
        401
    );
    let (status, body) = post(&url, Some(TOKEN), "{\"rule\": 5}");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a Falco alert"), "{body}");
    let paused = || containers.field(&target, "{{.State.Paused}}").unwrap() == "true";
    assert!(!paused(), "refused alerts act on nothing");

    // Below the response's minimum: nothing acts; asked on the unix socket the same (which is
    // private to the agent's user and wants the token too).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let on_socket = "http://localhost/falco";
    assert_eq!(
        post_via(Some(&socket), on_socket, None, &alert(short, "Critical")).0,
        401
    );
    for (via, url) in [(None, url.as_str()), (Some(socket.as_path()), on_socket)] {
        let (status, body) = post_via(via, url, Some(TOKEN), &alert(short, "Warning"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["outcome"],
            "no-response"
        );
    }

    // The real thing: quarantined (cut and paused) by the response.
    let (status, body) = post(&url, Some(TOKEN), &alert(short, "Critical"));
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["outcome"], "quarantined", "{answer}");
    assert_eq!(answer["container"], target.as_str());
    assert_eq!(answer["response"], "shell-critical");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !paused() {
        assert!(std::time::Instant::now() < deadline, "never paused");
        std::thread::sleep(Duration::from_millis(50));
    }
    let record = fleet.json(0, &["container", short]).unwrap();
    assert_eq!(
        record["quarantine"]["source"],
        format!("detection:{RULE}"),
        "{record}"
    );
    assert_eq!(
        record["quarantine"]["actions"],
        serde_json::json!(["network-cut", "pause"])
    );

    // The same alert again within the window: recorded, not acted on twice.
    let (_, body) = post(&url, Some(TOKEN), &alert(short, "Critical"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["outcome"],
        "repeated",
        "{body}"
    );

    // A container this node does not have: recorded as unmatched.
    let (_, body) = post(&url, Some(TOKEN), &alert("0123456789ab", "Critical"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["outcome"],
        "unmatched",
        "{body}"
    );
    // `lazaretctl detections` shows each with what was done.
    let listed = fleet.json(0, &["detections"]).unwrap();
    let outcomes: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            (
                record["action"].as_str().unwrap_or_default(),
                record["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert!(outcomes.contains(&("quarantine", "applied")), "{listed}");
    assert!(
        outcomes
            .iter()
            .any(|(_, outcome)| outcome.starts_with("repeated")),
        "{listed}"
    );
    let audit = fleet.json(0, &["audit"]).unwrap();
    assert!(
        audit.as_array().unwrap().iter().any(|record| {
            record["action"] == "detection"
                && record["target"] == "0123456789ab"
                && record["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("unmatched"))
        }),
        "{audit}"
    );
}
