//! `deploy/prometheus/alerts.yaml`: well-formed rule groups, and every `lazaret_*` metric an
//! expression reads is one the agent registers or the controller documents.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

fn repo(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("{}: {error}", full.display()))
}

/// The metric names (`lazaret_…`) in a PromQL expression.
fn metric_names(expression: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expression;
    while let Some(start) = rest.find("lazaret_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// A sample name's family: without the suffix Prometheus adds to counters and histograms.
fn family(name: &str) -> &str {
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

#[test]
fn every_alert_reads_metrics_that_exist() {
    let rules: Value = serde_yaml_ng::from_str(&repo("deploy/prometheus/alerts.yaml")).unwrap();
    let agent = lazaret_agent::metrics::Metrics::new().encode();
    let controller_docs = repo("docs/controller.md");
    let mut alerts = 0;
    for group in rules["groups"].as_array().unwrap() {
        assert!(group["name"].is_string());
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            let expression = rule["expr"].as_str().unwrap();
            assert!(
                rule["annotations"]["summary"].is_string()
                    && rule["annotations"]["description"].is_string()
                    && rule["labels"]["severity"].is_string(),
                "{name}: summary, description and severity"
            );
            let names = metric_names(expression);
            assert!(!names.is_empty(), "{name}: reads no Lazaret metric");
            for metric in names {
                let known = match metric.strip_prefix("lazaret_controller_") {
                    Some(_) => controller_docs.contains(family(&metric)),
                    None => agent.contains(&format!("# TYPE {} ", family(&metric))),
                };
                assert!(known, "{name}: {metric} is no metric of the project");
            }
            alerts += 1;
        }
    }
    assert!(
        alerts >= 6,
        "no bundle ack, tamper, gap, budget, stale, certificates"
    );
}

#[test]
fn metric_names_are_read_out_of_expressions() {
    assert_eq!(
        metric_names("increase(lazaret_a_total[5m]) > 0 and lazaret_b{x=\"y\"} == 1"),
        BTreeSet::from(["lazaret_a_total".to_string(), "lazaret_b".to_string()])
    );
    assert_eq!(
        family("lazaret_start_to_enforced_seconds_bucket"),
        "lazaret_start_to_enforced_seconds"
    );
}
