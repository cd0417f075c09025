//! The commands that go through the controller (`--controller ADDR`, or `LAZARET_CONTROLLER`):
//! each maps to one RPC of `lazaret.v1.FleetService`. Fleet-wide answers name every agent left
//! out: one that did not answer, or answered without a runtime's containers because it has not
//! listed them yet (a `warning: … left out:` line on stderr; `unreachable` in JSON): nothing is
//! skipped silently.
//!
//! JSON: nodes are `{name, status, role, grpc, detections, version, generation, bundles,
//! audit_only, containers, quarantined, audit_sequence, audit_problem, problem}` (`bundles`: kind
//! → `{version, digest}`); containers and quarantine records as in [`crate::agent`], with `node`.

use std::time::Duration;

use lazaret_proto::v1;
use serde_json::{Value, json};

use crate::Output;
use crate::agent::{
    container_json, failed_checks, json_text, quarantine_cell, record_json, short, table,
};
use crate::client::{Failure, Target, connect_controller, request};

pub(crate) fn warn_unreachable(unreachable: &[v1::Unreachable]) {
    for agent in unreachable {
        eprintln!("warning: {} left out: {}", agent.node, agent.error);
    }
}

fn unreachable_json(unreachable: &[v1::Unreachable]) -> Value {
    Value::Array(
        unreachable
            .iter()
            .map(|agent| json!({"node": agent.node, "error": agent.error}))
            .collect(),
    )
}

fn node_json(node: &v1::NodeStatus) -> Value {
    let bundles: serde_json::Map<String, Value> = node
        .acks
        .iter()
        .map(|ack| {
            (
                ack.kind.clone(),
                json!({"version": ack.version, "digest": ack.digest}),
            )
        })
        .collect();
    let text = |value: &str| (!value.is_empty()).then(|| value.to_string());
    json!({
        "name": node.name,
        "status": node.status,
        "role": text(&node.role),
        "grpc": text(&node.grpc),
        "detections": text(&node.detections),
        "version": text(&node.version),
        "generation": node.generation,
        "bundles": bundles,
        "audit_only": node.audit_only,
        "containers": node.containers,
        "quarantined": node.quarantined,
        "audit_sequence": node.audit_sequence,
        "audit_problem": text(&node.audit_problem),
        "problem": text(&node.problem),
    })
}

/// The `nodes` output: the table says `audit` for audit-only, `-` for a controller's mode.
pub fn render_nodes(output: Output, nodes: &v1::ListNodesResponse) -> String {
    match output {
        Output::Json => json_text(&json!({
            "fleet_mode": (!nodes.fleet_mode.is_empty()).then_some(&nodes.fleet_mode),
            "nodes": nodes.nodes.iter().map(node_json).collect::<Vec<_>>(),
        })),
        Output::Table => {
            let mut rows = table(&[
                "NODE", "STATUS", "POLICY", "INDIC", "MODE", "CTRS", "Q", "AUDIT",
            ]);
            for node in &nodes.nodes {
                let version = |kind: &str| {
                    node.acks
                        .iter()
                        .find(|ack| ack.kind == kind)
                        .map_or("-".to_string(), |ack| format!("v{}", ack.version))
                };
                let agent = matches!(node.role.as_str(), "node" | "");
                let audit = match (node.audit_problem.is_empty(), node.problem.is_empty()) {
                    (false, _) => "rewritten".to_string(),
                    (_, false) => "untrusted".to_string(),
                    _ => node.audit_sequence.to_string(),
                };
                let mode = match (agent, node.audit_only) {
                    (false, _) => "-",
                    (true, true) => "audit",
                    (true, false) => "enforce",
                };
                rows.add_row([
                    node.name.clone(),
                    node.status.clone(),
                    version("policies"),
                    version("indicators"),
                    mode.to_string(),
                    node.containers.to_string(),
                    node.quarantined.to_string(),
                    audit,
                ]);
            }
            let mode = match nodes.fleet_mode.as_str() {
                "" => String::new(),
                mode => format!("fleet-wide switch: {mode}\n"),
            };
            let problems: String = nodes
                .nodes
                .iter()
                .filter(|node| !node.audit_problem.is_empty() || !node.problem.is_empty())
                .map(|node| {
                    let problem = [node.audit_problem.as_str(), node.problem.as_str()]
                        .into_iter()
                        .filter(|text| !text.is_empty())
                        .collect::<Vec<_>>()
                        .join("; ");
                    format!("{}: {problem}\n", node.name)
                })
                .collect();
            format!("{rows}\n{mode}{problems}")
        }
    }
}

/// The newest (version, digest) of `kind` any node acks.
fn newest<'a>(nodes: &'a v1::ListNodesResponse, kind: &str) -> Option<&'a v1::PeerBundle> {
    nodes
        .nodes
        .iter()
        .flat_map(|node| node.acks.iter())
        .filter(|ack| ack.kind == kind)
        .max_by(|a, b| (a.version, &a.digest).cmp(&(b.version, &b.digest)))
}

/// `node`'s bundle of `kind` and how it compares with the newest in the fleet.
fn lag<'a>(
    nodes: &'a v1::ListNodesResponse,
    node: &'a v1::NodeStatus,
    kind: &str,
) -> (Option<&'a v1::PeerBundle>, &'static str) {
    let ours = node.acks.iter().find(|ack| ack.kind == kind);
    let lag = match (ours, newest(nodes, kind)) {
        (None, _) => "none",
        (Some(ours), Some(best)) if ours.digest == best.digest => "same",
        _ => "behind",
    };
    (ours, lag)
}

/// The `bundle status` output through the controller: each agent's bundles against the newest
/// in the fleet (`same`, `behind`, or `none`).
pub fn render_bundle_status(output: Output, nodes: &v1::ListNodesResponse) -> String {
    const KINDS: [&str; 2] = ["policies", "indicators"];
    let agents = nodes.nodes.iter().filter(|node| node.role == "node");
    match output {
        Output::Json => {
            let newest_json: serde_json::Map<String, Value> = KINDS
                .iter()
                .filter_map(|kind| {
                    newest(nodes, kind).map(|best| {
                        (
                            kind.to_string(),
                            json!({"version": best.version, "digest": best.digest}),
                        )
                    })
                })
                .collect();
            let rows: Vec<Value> = agents
                .map(|node| {
                    let bundles: serde_json::Map<String, Value> = KINDS
                        .iter()
                        .map(|kind| {
                            let (ours, lag) = lag(nodes, node, kind);
                            let value = json!({
                                "version": ours.map(|ack| ack.version),
                                "digest": ours.map(|ack| ack.digest.clone()),
                                "lag": lag,
                            });
                            (kind.to_string(), value)
                        })
                        .collect();
                    json!({"name": node.name, "status": node.status, "bundles": bundles})
                })
                .collect();
            json_text(&json!({"newest": newest_json, "nodes": rows}))
        }
        Output::Table => {
            let mut rows = table(&["NODE", "STATUS", "POLICIES", "INDICATORS"]);
            for node in agents {
                let text = |kind: &str| {
                    let (ours, lag) = lag(nodes, node, kind);
                    match ours {
                        None => "-".to_string(),
                        Some(ack) => format!("v{} {} {lag}", ack.version, short(&ack.digest)),
                    }
                };
                rows.add_row([
                    node.name.clone(),
                    node.status.clone(),
                    text("policies"),
                    text("indicators"),
                ]);
            }
            format!("{rows}\n")
        }
    }
}

pub async fn bundle_status(target: &Target, output: Output) -> Result<(), Failure> {
    let mut client = connect_controller(target).await?;
    let nodes = client
        .list_nodes(request(v1::ListNodesRequest {}))
        .await?
        .into_inner();
    print!("{}", render_bundle_status(output, &nodes));
    Ok(())
}

pub async fn nodes(target: &Target, output: Output) -> Result<(), Failure> {
    let mut client = connect_controller(target).await?;
    let nodes = client
        .list_nodes(request(v1::ListNodesRequest {}))
        .await?
        .into_inner();
    print!("{}", render_nodes(output, &nodes));
    Ok(())
}

/// The `containers` output through the controller: a NODE column.
pub fn render_containers(output: Output, listed: &v1::FleetListContainersResponse) -> String {
    match output {
        Output::Json => json_text(&json!({
            "containers": listed.containers.iter().map(|container| {
                let mut value = container_json(&container.view.clone().unwrap_or_default());
                value["node"] = container.node.clone().into();
                value
            }).collect::<Vec<_>>(),
            "unreachable": unreachable_json(&listed.unreachable),
        })),
        Output::Table => {
            let mut rows = table(&["NODE", "ID", "NAME", "STATE", "FAILED", "QUARANTINE"]);
            for container in &listed.containers {
                let view = container.view.clone().unwrap_or_default();
                let inner = view.container.clone().unwrap_or_default();
                rows.add_row([
                    container.node.clone(),
                    short(&inner.id).to_string(),
                    inner.name.clone(),
                    inner.state.clone(),
                    failed_checks(&inner).len().to_string(),
                    quarantine_cell(&view),
                ]);
            }
            format!("{rows}\n")
        }
    }
}

pub async fn containers(
    target: &Target,
    output: Output,
    filter: v1::ContainerFilter,
) -> Result<(), Failure> {
    let mut client = connect_controller(target).await?;
    let listed = client
        .list_containers(request(v1::FleetListContainersRequest {
            filter: Some(filter),
        }))
        .await?
        .into_inner();
    print!("{}", render_containers(output, &listed));
    warn_unreachable(&listed.unreachable);
    Ok(())
}

pub async fn quarantines(
    target: &Target,
    output: Output,
    node: String,
    all: bool,
) -> Result<(), Failure> {
    let mut client = connect_controller(target).await?;
    let listed = client
        .list_quarantines(request(v1::FleetListQuarantinesRequest { node, all }))
        .await?
        .into_inner();
    match output {
        Output::Json => print!(
            "{}",
            json_text(&json!({
                "quarantines": listed.records.iter().map(record_json).collect::<Vec<_>>(),
                "unreachable": unreachable_json(&listed.unreachable),
            }))
        ),
        Output::Table => {
            let mut rows = table(&["NODE", "CONTAINER", "STATE", "SOURCE", "ACTOR", "REASON"]);
            for record in &listed.records {
                rows.add_row([
                    record.node.clone(),
                    short(&record.container).to_string(),
                    record.state.clone(),
                    record.source.clone(),
                    record.actor.clone(),
                    record.reason.clone(),
                ]);
            }
            println!("{rows}");
        }
    }
    warn_unreachable(&listed.unreachable);
    Ok(())
}

/// What `quarantine` and `release` print through the controller. Exit 1 when any agent refused
/// or was left out.
pub fn render_outcomes(output: Output, response: &v1::FleetActionResponse) -> String {
    match output {
        Output::Json => json_text(&json!({
            "outcomes": response.outcomes.iter().map(|outcome| json!({
                "node": outcome.node,
                "container": outcome.container,
                "record": outcome.record.as_ref().map(record_json),
                "error": (!outcome.error.is_empty()).then_some(&outcome.error),
            })).collect::<Vec<_>>(),
            "unreachable": unreachable_json(&response.unreachable),
        })),
        Output::Table => {
            if response.outcomes.is_empty() {
                return "no container matched\n".into();
            }
            let mut rows = table(&["NODE", "CONTAINER", "RESULT"]);
            for outcome in &response.outcomes {
                let result = match &outcome.record {
                    Some(record) => format!("{} [{}]", record.state, record.actions.join(",")),
                    None => outcome.error.clone(),
                };
                rows.add_row([
                    outcome.node.clone(),
                    short(&outcome.container).to_string(),
                    result,
                ]);
            }
            format!("{rows}\n")
        }
    }
}

fn finish(output: Output, response: &v1::FleetActionResponse) -> Result<(), Failure> {
    print!("{}", render_outcomes(output, response));
    warn_unreachable(&response.unreachable);
    let refused = response
        .outcomes
        .iter()
        .filter(|outcome| outcome.record.is_none())
        .count();
    match refused + response.unreachable.len() {
        0 => Ok(()),
        failed => Err(Failure {
            message: format!(
                "{refused} refused, {} agents left out (see above)",
                failed - refused
            ),
            code: crate::client::EXIT_REFUSED,
        }),
    }
}

/// What a quarantine or release through the controller is about.
pub struct Selection {
    pub target: Option<String>,
    pub selector: Option<String>,
    pub policy: Option<String>,
    pub node: Option<String>,
}

impl Selection {
    fn message(self) -> v1::FleetTarget {
        v1::FleetTarget {
            target: self.target.unwrap_or_default(),
            selector: self.selector.unwrap_or_default(),
            policy: self.policy.unwrap_or_default(),
            node: self.node.unwrap_or_default(),
        }
    }
}

pub async fn quarantine(
    target: &Target,
    output: Output,
    selection: Selection,
    args: crate::agent::QuarantineArgs,
) -> Result<(), Failure> {
    let mut client = connect_controller(target).await?;
    let response = client
        .quarantine(request(v1::FleetQuarantineRequest {
            target: Some(selection.message()),
            actions: args.actions,
            reason: args.reason,
            ttl_seconds: args.ttl.map_or(0, |ttl| ttl.as_secs().max(1)),
            force: args.force,
        }))
        .await?
        .into_inner();
    finish(output, &response)
}

pub async fn release(
    target: &Target,
    output: Output,
    selection: Selection,
    reason: String,
    exempt_for: Option<Duration>,
) -> Result<(), Failure> {
    let mut client = connect_controller(target).await?;
    let response = client
        .release(request(v1::FleetReleaseRequest {
            target: Some(selection.message()),
            reason,
            exempt_for_seconds: exempt_for.map_or(0, |time| time.as_secs().max(1)),
        }))
        .await?
        .into_inner();
    finish(output, &response)
}

/// `fleet mode`: sets the switch, then shows it reach every live agent (up to `wait`).
pub async fn set_mode(
    target: &Target,
    output: Output,
    mode: String,
    reason: String,
    wait: Duration,
) -> Result<(), Failure> {
    let mut client = connect_controller(target).await?;
    let set = client
        .set_fleet_mode(request(v1::SetFleetModeRequest {
            mode: mode.clone(),
            reason,
        }))
        .await?
        .into_inner();
    let audit_only = mode == "audit-only";
    let deadline = tokio::time::Instant::now() + wait;
    let (reached, live) = loop {
        let nodes = client
            .list_nodes(request(v1::ListNodesRequest {}))
            .await?
            .into_inner();
        let agents: Vec<&v1::NodeStatus> = nodes
            .nodes
            .iter()
            .filter(|node| node.role == "node" && node.status == "live")
            .collect();
        let live = agents.len();
        let reached = agents
            .iter()
            .filter(|node| node.audit_only == audit_only)
            .count();
        if matches!(output, Output::Table) {
            eprint!("\rfleet mode {mode}: {reached}/{live} agents");
        }
        if reached == live || tokio::time::Instant::now() >= deadline {
            break (reached, live);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    match output {
        Output::Json => print!(
            "{}",
            json_text(&json!({
                "mode": set.mode, "since_unix_ms": set.since_unix_ms,
                "agents_live": live, "agents_reached": reached,
            }))
        ),
        Output::Table => eprintln!(),
    }
    match reached == live {
        true => Ok(()),
        false => Err(Failure {
            message: format!(
                "{} of {live} live agents did not report {mode} within {}s (the switch stays set; they follow it when they can)",
                live - reached,
                wait.as_secs()
            ),
            code: crate::client::EXIT_REFUSED,
        }),
    }
}

pub async fn apply_bundle(target: &Target, output: Output, bundle: Vec<u8>) -> Result<(), Failure> {
    let mut client = connect_controller(target).await?;
    let response = client
        .apply_bundle(request(v1::ApplyBundleRequest { bundle }))
        .await?
        .into_inner();
    let applied = response.applied.unwrap_or_default();
    match output {
        Output::Json => print!(
            "{}",
            json_text(&json!({
                "node": response.node, "kind": applied.kind, "version": applied.version,
                "digest": applied.digest, "outcome": applied.outcome,
            }))
        ),
        Output::Table => println!(
            "{} {} bundle v{} ({}) through {}; gossip takes it to every node (`lazaretctl nodes`)",
            applied.outcome,
            applied.kind,
            applied.version,
            short(&applied.digest),
            response.node
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> v1::ListNodesResponse {
        v1::ListNodesResponse {
            nodes: vec![
                v1::NodeStatus {
                    name: "controller".into(),
                    status: "live".into(),
                    role: "controller".into(),
                    ..Default::default()
                },
                v1::NodeStatus {
                    name: "node-1".into(),
                    status: "live".into(),
                    role: "node".into(),
                    grpc: "10.0.0.1:7443".into(),
                    acks: vec![v1::PeerBundle {
                        kind: "policies".into(),
                        version: 4,
                        digest: "ab".repeat(32),
                    }],
                    containers: 12,
                    quarantined: 1,
                    audit_sequence: 88,
                    ..Default::default()
                },
                v1::NodeStatus {
                    name: "node-2".into(),
                    status: "dead".into(),
                    role: "node".into(),
                    audit_only: true,
                    audit_problem: "record 5 changed hash from aa to bb".into(),
                    ..Default::default()
                },
            ],
            fleet_mode: "enforce".into(),
        }
    }

    #[test]
    fn nodes_table_and_json() {
        let text = render_nodes(Output::Table, &nodes());
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line}");
        }
        insta::assert_snapshot!(text);
        insta::assert_snapshot!(render_nodes(Output::Json, &nodes()));
    }

    #[test]
    fn bundle_status_shows_each_agents_lag() {
        let mut fleet = nodes();
        fleet.nodes[2].acks = vec![v1::PeerBundle {
            kind: "policies".into(),
            version: 3,
            digest: "cd".repeat(32),
        }];
        let text = render_bundle_status(Output::Table, &fleet);
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line}");
        }
        insta::assert_snapshot!(text);
        insta::assert_snapshot!(render_bundle_status(Output::Json, &fleet));
    }

    #[test]
    fn outcomes_name_refusals() {
        let response = v1::FleetActionResponse {
            outcomes: vec![
                v1::NodeOutcome {
                    node: "node-3".into(),
                    container: "abc123def4567890".into(),
                    record: Some(v1::QuarantineRecord {
                        state: "applied".into(),
                        actions: vec!["network-cut".into(), "pause".into()],
                        ..Default::default()
                    }),
                    error: String::new(),
                },
                v1::NodeOutcome {
                    node: "node-4".into(),
                    container: "fff".into(),
                    record: None,
                    error: "FailedPrecondition: protected".into(),
                },
            ],
            unreachable: vec![v1::Unreachable {
                node: "node-5".into(),
                error: "Unavailable: cannot connect".into(),
            }],
        };
        insta::assert_snapshot!(render_outcomes(Output::Table, &response));
        insta::assert_snapshot!(render_outcomes(Output::Json, &response));
    }
}
