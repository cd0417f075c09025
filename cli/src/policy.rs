//! `lazaretctl policy …`: offline work on policy files.

use std::path::PathBuf;
use std::process::ExitCode;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use lazaret_core::policy::{PolicySet, files};

use crate::Output;

/// Validates files and directories as one set. Prints the set (table or JSON) and exits 0, or
/// prints every problem with its location and exits 1.
pub fn validate(paths: &[PathBuf], output: Output) -> ExitCode {
    let loaded = files::read_sources(paths)
        .and_then(|sources| PolicySet::load(&sources).map(|set| (sources.len(), set)));
    let (file_count, set) = match loaded {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in &errors.errors {
                eprintln!("{error}");
            }
            eprintln!(
                "invalid: {} problem(s); fix them and validate again",
                errors.errors.len()
            );
            return ExitCode::from(1);
        }
    };
    match output {
        Output::Json => {
            let policies: Vec<serde_json::Value> = set
                .policies
                .iter()
                .map(|policy| {
                    serde_json::json!({
                        "kind": "Policy",
                        "name": policy.name,
                        "mode": policy.mode,
                        "severity": policy.severity,
                        "actions": policy.actions,
                        "rules": policy.rules.iter().map(|rule| rule.label()).collect::<Vec<_>>(),
                        "ttl": policy.ttl.map(|ttl| humantime::format_duration(ttl).to_string()),
                    })
                })
                .chain(set.responses.iter().map(|response| {
                    serde_json::json!({
                        "kind": "Response",
                        "name": response.name,
                        "mode": response.mode,
                        "actions": response.actions,
                        "ttl": response.ttl.map(|ttl| humantime::format_duration(ttl).to_string()),
                    })
                }))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&policies).expect("policies serialise")
            );
        }
        Output::Table => {
            let mut table = Table::new();
            table
                .load_preset(UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_header([
                    "KIND", "NAME", "MODE", "SEVERITY", "ACTIONS", "TTL", "RULES",
                ]);
            let actions_text = |actions: &[lazaret_core::quarantine::Action]| {
                actions
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let ttl_text = |ttl: Option<std::time::Duration>| {
                ttl.map_or_else(
                    || "-".to_string(),
                    |ttl| humantime::format_duration(ttl).to_string(),
                )
            };
            for policy in &set.policies {
                let rules: Vec<String> = policy.rules.iter().map(|rule| rule.label()).collect();
                table.add_row([
                    "Policy".to_string(),
                    policy.name.clone(),
                    policy.mode.as_str().to_string(),
                    policy.severity.to_string(),
                    actions_text(&policy.actions),
                    ttl_text(policy.ttl),
                    rules.join("\n"),
                ]);
            }
            for response in &set.responses {
                table.add_row([
                    "Response".to_string(),
                    response.name.clone(),
                    response.mode.as_str().to_string(),
                    "-".to_string(),
                    actions_text(&response.actions),
                    ttl_text(response.ttl),
                    "-".to_string(),
                ]);
            }
            println!("{table}");
            println!(
                "valid: {} policies and {} responses from {file_count} file(s)",
                set.policies.len(),
                set.responses.len()
            );
        }
    }
    ExitCode::SUCCESS
}

/// The files of `paths` (as an agent reads them), to send to `TestPolicies`; problems reading
/// them are printed and exit 1.
pub fn files_for_test(paths: &[PathBuf]) -> Result<Vec<lazaret_proto::v1::PolicyFile>, ExitCode> {
    match files::read_sources(paths) {
        Ok(sources) => Ok(sources
            .into_iter()
            .map(|source| lazaret_proto::v1::PolicyFile {
                name: source.name,
                text: source.text,
            })
            .collect()),
        Err(errors) => {
            for error in &errors.errors {
                eprintln!("{error}");
            }
            Err(ExitCode::from(1))
        }
    }
}
