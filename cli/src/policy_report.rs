//! `lazaretctl policy report NAME [--since 24h]`: what a policy would have done across the fleet
//! while in audit mode, from every agent's audit trail through the controller (the agents record
//! each (container, policy) once: `quarantine` records with source `policy:NAME` and outcome
//! `would-have: …`), by node and container, so it can be switched to enforce knowing its blast
//! radius. Only the newest `--limit` records of each agent are read.

use std::collections::BTreeMap;
use std::time::Duration;

use lazaret_proto::v1;
use serde_json::json;

use crate::Output;
use crate::agent::{json_text, short, table};
use crate::client::{Failure, Target, connect_controller, request};
use crate::fleet::warn_unreachable;

/// One container a policy would have acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub node: String,
    pub container: String,
    /// When it was first recorded, Unix ms.
    pub since_unix_ms: i64,
    pub would_have: String,
    pub why: String,
}

/// The hits of `policy` recorded at or after `since_unix_ms`, one per (node, container), oldest
/// first.
pub fn hits(records: &[v1::NodeAuditEvent], policy: &str, since_unix_ms: i64) -> Vec<Hit> {
    let source = format!("policy:{policy}");
    let mut hits: BTreeMap<(String, String), Hit> = BTreeMap::new();
    for record in records {
        let Some(event) = &record.event else { continue };
        let Some(would_have) = event.outcome.strip_prefix("would-have: ") else {
            continue;
        };
        if event.source != source || event.time_unix_ms < since_unix_ms {
            continue;
        }
        let key = (record.node.clone(), event.target.clone());
        let hit = Hit {
            node: record.node.clone(),
            container: event.target.clone(),
            since_unix_ms: event.time_unix_ms,
            would_have: would_have.to_string(),
            why: event.reason.clone(),
        };
        hits.entry(key)
            .and_modify(|kept| {
                if hit.since_unix_ms < kept.since_unix_ms {
                    *kept = hit.clone();
                }
            })
            .or_insert(hit);
    }
    let mut hits: Vec<Hit> = hits.into_values().collect();
    hits.sort_by_key(|hit| hit.since_unix_ms);
    hits
}

pub async fn report(
    target: &Target,
    output: Output,
    policy: String,
    since: Duration,
    limit: u32,
) -> Result<(), Failure> {
    let mut client = connect_controller(target).await?;
    let audit = client
        .get_audit(request(v1::FleetGetAuditRequest {
            node: String::new(),
            limit,
        }))
        .await?
        .into_inner();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let since_unix_ms = now.saturating_sub(since).as_millis() as i64;
    let hits = hits(&audit.records, &policy, since_unix_ms);
    let mut by_node: BTreeMap<&str, usize> = BTreeMap::new();
    for hit in &hits {
        *by_node.entry(&hit.node).or_default() += 1;
    }
    match output {
        Output::Json => println!(
            "{}",
            json_text(&json!({
                "policy": policy,
                "since_unix_ms": since_unix_ms,
                "containers": hits.len(),
                "by_node": by_node,
                "hits": hits.iter().map(|hit| json!({
                    "node": hit.node,
                    "container": hit.container,
                    "since_unix_ms": hit.since_unix_ms,
                    "would_have": hit.would_have,
                    "why": hit.why,
                })).collect::<Vec<_>>(),
            }))
        ),
        Output::Table => {
            let mut rows = table(&["NODE", "CONTAINER", "WOULD HAVE", "WHY"]);
            for hit in &hits {
                rows.add_row([
                    hit.node.clone(),
                    short(&hit.container).to_string(),
                    hit.would_have.clone(),
                    hit.why.clone(),
                ]);
            }
            println!("{rows}");
            let nodes: Vec<String> = by_node
                .iter()
                .map(|(node, count)| format!("{node} {count}"))
                .collect();
            println!(
                "{policy}: {} container(s) on {} node(s) in the last {} ({})",
                hits.len(),
                by_node.len(),
                humantime::format_duration(since),
                if nodes.is_empty() {
                    "none".to_string()
                } else {
                    nodes.join(", ")
                }
            );
        }
    }
    warn_unreachable(&audit.unreachable);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        node: &str,
        target: &str,
        at: i64,
        source: &str,
        outcome: &str,
    ) -> v1::NodeAuditEvent {
        v1::NodeAuditEvent {
            node: node.into(),
            event: Some(v1::AuditEvent {
                time_unix_ms: at,
                target: target.into(),
                source: source.into(),
                outcome: outcome.into(),
                reason: "runs privileged".into(),
                action: "quarantine".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn hits_are_the_policys_would_haves_since_then_once_per_container() {
        let would = "would-have: network-cut, pause (audit mode)";
        let records = [
            record("node-1", "c1", 100, "policy:p", would),
            record("node-1", "c1", 50, "policy:p", would),
            record("node-2", "c1", 70, "policy:p", would),
            record("node-2", "c2", 10, "policy:p", would),
            record("node-2", "c3", 90, "policy:other", would),
            record("node-2", "c4", 90, "policy:p", "applied: pause"),
        ];
        let hits = hits(&records, "p", 20);
        let seen: Vec<(&str, &str, i64)> = hits
            .iter()
            .map(|hit| (hit.node.as_str(), hit.container.as_str(), hit.since_unix_ms))
            .collect();
        assert_eq!(seen, [("node-1", "c1", 50), ("node-2", "c1", 70)]);
        assert_eq!(hits[0].would_have, "network-cut, pause (audit mode)");
    }
}
