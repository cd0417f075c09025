//! docs/operators.md, "Add a node by hand, next to the dev fleet", followed to the letter: `dev
//! up` runs, then the block between the `join-by-hand` markers runs as written in a shell, and
//! the new agent joins (the controller lists it live). If the document's commands stop working,
//! this fails.

use std::process::Command;
use std::time::Duration;

use lazaret_tests::agent_process::workspace_binary;
use lazaret_tests::dev_fleet::DevUp;
use lazaret_tests::{init_tracing, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

/// The shell block of docs/operators.md between the join-by-hand markers.
fn documented_commands() -> String {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operators.md"),
    )
    .unwrap();
    let (_, rest) = doc.split_once("<!-- join-by-hand:begin -->").unwrap();
    let (block, _) = rest.split_once("<!-- join-by-hand:end -->").unwrap();
    let block = block.trim();
    let block = block.strip_prefix("```sh").expect("a sh block");
    block
        .strip_suffix("```")
        .expect("a closed block")
        .to_string()
}

/// Stops the hand-started agent (its PID is in `node-hand/agent.pid`).
struct HandAgent(std::path::PathBuf);

impl Drop for HandAgent {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join("node-hand/agent.pid")) {
            let _killed = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

#[test]
fn an_agent_installed_by_hand_following_the_docs_joins_the_dev_fleet() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (_fleet, env) = DevUp::start(&dir.path().join(".lazaret/dev"), 1).unwrap();
    let binaries = workspace_binary("lazaret-agent")
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        binaries.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let _agent = HandAgent(dir.path().to_path_buf());
    let ran = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &documented_commands()])
        .current_dir(dir.path())
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "the documented commands: {}",
        String::from_utf8_lossy(&ran.stderr)
    );

    let nodes = || {
        let output = Command::new(workspace_binary("lazaretctl").unwrap())
            .args(["nodes", "-o", "json"])
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap_or_default()
    };
    let log =
        || std::fs::read_to_string(dir.path().join("node-hand/agent.log")).unwrap_or_default();
    wait_until("node-hand is live in the fleet", DEADLINE, || {
        nodes()["nodes"].as_array().is_some_and(|nodes| {
            nodes
                .iter()
                .any(|node| node["name"] == "node-hand" && node["status"] == "live")
        })
    });
    assert!(!log().contains("ERROR"), "{}", log());
}
