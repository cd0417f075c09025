//! `lazaretctl detections`: what detectors reported and what was done, read from the audit
//! trail (through the controller: every agent's, merged; with `--agent`: that agent's). A
//! detection that acted shows as its quarantine's outcome; one that did not (unmatched, repeated,
//! no response) as its own record.

use lazaret_proto::v1;
use serde_json::{Value, json};

use crate::Output;
use crate::agent::{json_text, short, table};
use crate::client::{Failure, Target, connect, connect_controller, request};
use crate::fleet::warn_unreachable;

/// Records per page when reading one agent's trail.
const PAGE: u32 = 1000;

/// Whether `event` is about a detection: its own record, or the outcome of the quarantine it
/// caused.
fn is_detection(event: &v1::AuditEvent) -> bool {
    event.source.starts_with("detection:")
        && matches!(event.action.as_str(), "detection" | "quarantine")
}

fn rule(event: &v1::AuditEvent) -> &str {
    event.source.strip_prefix("detection:").unwrap_or_default()
}

/// The `detections` output: (node, record) pairs, oldest first.
pub fn render(output: Output, records: &[(String, v1::AuditEvent)]) -> String {
    match output {
        Output::Json => json_text(&Value::Array(
            records
                .iter()
                .map(|(node, event)| {
                    json!({
                        "node": (!node.is_empty()).then_some(node),
                        "sequence": event.sequence,
                        "time_unix_ms": event.time_unix_ms,
                        "rule": rule(event),
                        "container": event.target,
                        "action": event.action,
                        "outcome": event.outcome,
                        "reason": event.reason,
                    })
                })
                .collect(),
        )),
        Output::Table => {
            let mut rows = table(&["NODE", "CONTAINER", "RULE", "WHAT WAS DONE"]);
            for (node, event) in records {
                let done = match event.action.as_str() {
                    "quarantine" => format!("quarantine {}", event.outcome),
                    _ => event.outcome.clone(),
                };
                rows.add_row([
                    node.clone(),
                    short(&event.target).to_string(),
                    rule(event).to_string(),
                    done,
                ]);
            }
            format!("{rows}\n")
        }
    }
}

pub async fn list(target: &Target, output: Output, node: String) -> Result<(), Failure> {
    let records: Vec<(String, v1::AuditEvent)> = if target.controller.is_some() {
        let mut client = connect_controller(target).await?;
        let audit = client
            .get_audit(request(v1::FleetGetAuditRequest { node, limit: PAGE }))
            .await?
            .into_inner();
        warn_unreachable(&audit.unreachable);
        audit
            .records
            .into_iter()
            .filter_map(|record| Some((record.node, record.event?)))
            .filter(|(_, event)| is_detection(event))
            .collect()
    } else {
        let mut client = connect(target).await?;
        let mut found = Vec::new();
        let mut from = 1;
        loop {
            let page = client
                .get_audit(request(v1::GetAuditRequest {
                    from_sequence: from,
                    limit: PAGE,
                }))
                .await?
                .into_inner()
                .records;
            let full = page.len() == PAGE as usize;
            from = page.last().map_or(from, |event| event.sequence + 1);
            found.extend(
                page.into_iter()
                    .filter(is_detection)
                    .map(|event| (String::new(), event)),
            );
            if !full {
                break found;
            }
        }
    };
    print!("{}", render(output, &records));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detections_show_what_was_done() {
        let event = |sequence, action: &str, outcome: &str| v1::AuditEvent {
            sequence,
            action: action.into(),
            outcome: outcome.into(),
            source: "detection:Terminal shell in container".into(),
            target: "3f2a9c1b7d4e5f60".into(),
            ..Default::default()
        };
        let records = vec![
            ("node-1".to_string(), event(4, "quarantine", "applied")),
            (
                "node-1".to_string(),
                event(9, "detection", "repeated within the dedup window"),
            ),
            ("node-2".to_string(), event(2, "pause", "applied")),
        ];
        let kept: Vec<(String, v1::AuditEvent)> = records
            .into_iter()
            .filter(|(_, event)| is_detection(event))
            .collect();
        assert_eq!(kept.len(), 2, "per-action records are not listed");
        let text = render(Output::Table, &kept);
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line}");
        }
        insta::assert_snapshot!(text);
    }
}
