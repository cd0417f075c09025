//! `lazaretctl` as an operator runs it.

use assert_cmd::Command;

#[test]
fn checks_lists_the_catalogue_as_json() {
    let output = Command::cargo_bin("lazaretctl")
        .unwrap()
        .args(["checks", "-o", "json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(checks.len(), lazaret_core::posture::catalogue().len());
    assert_eq!(checks[0]["check"], "4.1");
    assert!(
        checks
            .iter()
            .any(|check| check["check"] == "5.32" && check["severity"] == "critical")
    );
}

#[test]
fn help_explains_every_command() {
    let output = Command::cargo_bin("lazaretctl")
        .unwrap()
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("checks"));
    assert!(help.contains("CIS Docker Benchmark"));
}

fn deploy_policies() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/policies")
}

#[test]
fn policy_validate_accepts_the_shipped_packs() {
    let output = Command::cargo_bin("lazaretctl")
        .unwrap()
        .args(["policy", "validate"])
        .arg(deploy_policies())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("strict-host-takeover"), "{stdout}");
    assert!(stdout.contains("valid: "), "{stdout}");
}

#[test]
fn policy_validate_prints_located_errors_and_exits_1() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: lazaret.dev/v1\nkind: Policy\nname: p\nrules:\n  - check: \"5.99\"\n",
    )
    .unwrap();
    let output = Command::cargo_bin("lazaretctl")
        .unwrap()
        .args(["policy", "validate"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("bad.yaml:5:"), "{stderr}");
    assert!(stderr.contains("unknown check"), "{stderr}");
    let missing = Command::cargo_bin("lazaretctl")
        .unwrap()
        .args(["policy", "validate", "/nonexistent.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

#[test]
fn completions_cover_the_commands_and_an_unreachable_agent_exits_3() {
    let bash = Command::cargo_bin("lazaretctl")
        .unwrap()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(bash.status.success());
    let script = String::from_utf8(bash.stdout).unwrap();
    for command in ["quarantine", "release", "events", "pki"] {
        assert!(
            script.contains(command),
            "no {command} in the bash completion"
        );
    }
    // No agent on that port and no PKI: one line that says what to do, exit 3.
    let unreachable = Command::cargo_bin("lazaretctl")
        .unwrap()
        .args([
            "--agent",
            "127.0.0.1:9",
            "--tls-dir",
            "/nonexistent",
            "containers",
        ])
        .env_remove("LAZARET_TLS_DIR")
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));
    let stderr = String::from_utf8(unreachable.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("lazaretctl pki init"), "{stderr}");
}

#[test]
fn a_stix_bundle_is_imported_as_far_as_it_goes_and_the_rest_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let stix = dir.path().join("feed.json");
    std::fs::write(
        &stix,
        serde_json::json!({
            "type": "bundle",
            "id": "bundle--e2e",
            "objects": [
                {"type": "indicator", "id": "indicator--c2", "pattern_type": "stix",
                 "pattern": "[ipv4-addr:value = '198.51.100.7']"},
                {"type": "indicator", "id": "indicator--miner", "pattern_type": "stix",
                 "pattern": "[process:image_ref.name = 'xmrig']"},
                {"type": "indicator", "id": "indicator--domain", "pattern_type": "stix",
                 "pattern": "[domain-name:value = 'evil.example']"}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let out = dir.path().join("feed.yaml");
    let output = Command::cargo_bin("lazaretctl")
        .unwrap()
        .args([
            "indicators",
            "import",
            "--format",
            "stix",
            "-o",
            "json",
            "--out",
        ])
        .arg(&out)
        .arg(&stix)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["imported"], 2, "{report}");
    assert_eq!(report["skipped"][0]["at"], "indicator--domain", "{report}");
    // The file is a valid indicators document: it signs.
    let key = dir.path().join("key");
    lazaretctl::signing::keygen(&key).unwrap();
    let (private, _) = lazaretctl::signing::key_paths(&key);
    let signed = Command::cargo_bin("lazaretctl")
        .unwrap()
        .args(["bundle", "sign", "--kind", "indicators", "--key"])
        .arg(&private)
        .arg("--out")
        .arg(dir.path().join("feed.bundle"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
}
