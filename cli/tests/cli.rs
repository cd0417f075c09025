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
