//! Reading through the controller what the agents recorded: `container ID|NAME` (found on
//! whichever node owns it), `audit` (every agent's newest records, merged by time) and `events
//! [--follow]` (merged as they are written). Each line or record names its node.

use lazaret_proto::v1;
use serde_json::{Value, json};

use crate::Output;
use crate::agent::{audit_json, json_text, print_container, short, table};
use crate::client::{Failure, Target, connect_controller, request};
use crate::fleet::warn_unreachable;

pub async fn container(
    target: &Target,
    output: Output,
    name: &str,
    evidence: bool,
) -> Result<(), Failure> {
    let mut client = connect_controller(target).await?;
    let found = client
        .get_container(request(v1::FleetGetContainerRequest {
            target: name.to_string(),
        }))
        .await?
        .into_inner();
    print_container(output, found.detail.unwrap_or_default(), evidence);
    Ok(())
}

fn record_json(record: &v1::NodeAuditEvent) -> Value {
    let mut value = record.event.as_ref().map_or(json!({}), audit_json);
    value["node"] = record.node.clone().into();
    value
}

/// The merged `audit` output.
pub fn render_audit(output: Output, audit: &v1::FleetGetAuditResponse) -> String {
    match output {
        Output::Json => json_text(&json!({
            "records": audit.records.iter().map(record_json).collect::<Vec<_>>(),
            "unreachable": audit.unreachable.iter().map(|agent| json!({"node": agent.node, "error": agent.error})).collect::<Vec<_>>(),
        })),
        Output::Table => {
            let mut rows = table(&["NODE", "SEQ", "ACTOR", "ACTION", "TARGET", "OUTCOME"]);
            for record in &audit.records {
                let event = record.event.clone().unwrap_or_default();
                rows.add_row([
                    record.node.clone(),
                    event.sequence.to_string(),
                    event.actor,
                    event.action,
                    short(&event.target).to_string(),
                    event.outcome,
                ]);
            }
            format!("{rows}\n")
        }
    }
}

pub async fn audit(
    target: &Target,
    output: Output,
    node: String,
    limit: u32,
) -> Result<(), Failure> {
    let mut client = connect_controller(target).await?;
    let audit = client
        .get_audit(request(v1::FleetGetAuditRequest { node, limit }))
        .await?
        .into_inner();
    print!("{}", render_audit(output, &audit));
    warn_unreachable(&audit.unreachable);
    Ok(())
}

fn print_line(output: Output, record: &v1::NodeAuditEvent) {
    match (&record.event, output) {
        (None, _) => eprintln!("warning: {}'s stream ended: {}", record.node, record.error),
        (Some(_), Output::Json) => println!(
            "{}",
            serde_json::to_string(&record_json(record)).expect("JSON values serialise")
        ),
        (Some(event), Output::Table) => println!(
            "{:<10} {:>6} {:<10} {:<14} {:<12} {}",
            record.node,
            event.sequence,
            event.actor,
            event.action,
            short(&event.target),
            event.outcome
        ),
    }
}

/// `events`: the newest records of every agent; with `follow`, then every new one as written.
pub async fn events(
    target: &Target,
    output: Output,
    node: String,
    follow: bool,
) -> Result<(), Failure> {
    let mut client = connect_controller(target).await?;
    if !follow {
        let audit = client
            .get_audit(request(v1::FleetGetAuditRequest { node, limit: 0 }))
            .await?
            .into_inner();
        for record in &audit.records {
            print_line(output, record);
        }
        warn_unreachable(&audit.unreachable);
        return Ok(());
    }
    let mut stream = client
        .watch_events(tonic::Request::new(v1::FleetWatchEventsRequest { node }))
        .await?
        .into_inner();
    while let Some(record) = stream.message().await? {
        print_line(output, &record);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_audit_names_each_node() {
        let event = |sequence, action: &str| v1::AuditEvent {
            sequence,
            time_unix_ms: 1_795_000_000_000 + sequence as i64,
            actor: "admin via controller".into(),
            action: action.into(),
            target: "abc123def4567890".into(),
            outcome: "applied".into(),
            ..Default::default()
        };
        let audit = v1::FleetGetAuditResponse {
            records: vec![
                v1::NodeAuditEvent {
                    node: "node-1".into(),
                    event: Some(event(7, "quarantine")),
                    error: String::new(),
                },
                v1::NodeAuditEvent {
                    node: "node-3".into(),
                    event: Some(event(2, "mode")),
                    error: String::new(),
                },
            ],
            unreachable: vec![v1::Unreachable {
                node: "node-2".into(),
                error: "Unavailable: cannot connect".into(),
            }],
        };
        let text = render_audit(Output::Table, &audit);
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line}");
        }
        insta::assert_snapshot!(text);
        insta::assert_snapshot!(render_audit(Output::Json, &audit));
    }
}
