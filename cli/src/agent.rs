//! The commands that talk to one agent (`--agent ADDR`): each maps to one RPC of
//! `lazaret.v1.AgentService` and prints a table (fits 80 columns) or stable JSON.
//!
//! JSON field names are part of the interface: containers are `{id, name, node, runtime, state,
//! image, findings, quarantine}` (`findings`: the ids of failed checks; `quarantine`: the record
//! of docs/audit-and-quarantine.md, or null); quarantine records `{container, node, state,
//! actions, since_unix_ms, expires_unix_ms, reason, actor, source, scope}`; audit records
//! `{sequence, time_unix_ms, actor, on_behalf_of, action, target, reason, source, outcome,
//! hash}`.

use std::time::Duration;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use lazaret_proto::v1;
use serde_json::{Value, json};

use crate::Output;
use crate::client::{Failure, Target, connect, request};

/// Table width: a terminal of 80 columns.
const TABLE_WIDTH: u16 = 80;

pub(crate) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(TABLE_WIDTH)
        .set_header(header.to_vec());
    table
}

pub(crate) fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

pub fn record_json(record: &v1::QuarantineRecord) -> Value {
    json!({
        "container": record.container,
        "node": record.node,
        "state": record.state,
        "actions": record.actions,
        "since_unix_ms": record.since_unix_ms,
        "expires_unix_ms": (record.expires_unix_ms != 0).then_some(record.expires_unix_ms),
        "reason": record.reason,
        "actor": record.actor,
        "source": record.source,
        "scope": record.scope,
    })
}

pub(crate) fn failed_checks(container: &v1::Container) -> Vec<String> {
    container
        .findings
        .iter()
        .filter(|finding| finding.result() == v1::CheckResult::Fail)
        .map(|finding| finding.check.clone())
        .collect()
}

pub fn container_json(view: &v1::ContainerView) -> Value {
    let container = view.container.clone().unwrap_or_default();
    json!({
        "id": container.id,
        "name": container.name,
        "node": container.node,
        "runtime": container.runtime,
        "state": container.state,
        "image": container.image,
        "findings": failed_checks(&container),
        "quarantine": view.quarantine.as_ref().map(record_json),
    })
}

pub fn audit_json(record: &v1::AuditEvent) -> Value {
    json!({
        "sequence": record.sequence,
        "time_unix_ms": record.time_unix_ms,
        "actor": record.actor,
        "on_behalf_of": (!record.on_behalf_of.is_empty()).then_some(&record.on_behalf_of),
        "action": record.action,
        "target": record.target,
        "reason": record.reason,
        "source": record.source,
        "outcome": record.outcome,
        "hash": record.hash,
    })
}

pub(crate) fn json_text(value: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).expect("JSON values serialise")
    )
}

pub(crate) fn print_json(value: &Value) {
    print!("{}", json_text(value));
}

/// `STATE` column: the engine's state, and the quarantine's when one is in force.
pub(crate) fn quarantine_cell(view: &v1::ContainerView) -> String {
    match &view.quarantine {
        Some(record) if !matches!(record.state.as_str(), "released" | "gone") => {
            format!("{} ({})", record.state, record.actions.join(","))
        }
        _ => "-".into(),
    }
}

pub async fn containers(
    target: &Target,
    output: Output,
    quarantined: bool,
    with_findings: bool,
) -> Result<(), Failure> {
    let mut client = connect(target).await?;
    let listed = client
        .list_containers(request(v1::ListContainersRequest {
            quarantined,
            with_findings,
        }))
        .await?
        .into_inner();
    if !listed.unlisted_runtimes.is_empty() {
        eprintln!(
            "warning: the agent has not listed its {} containers yet (it started moments ago): \
             they are missing here",
            listed.unlisted_runtimes.join(", ")
        );
    }
    print!("{}", render_containers(output, &listed.containers));
    Ok(())
}

/// The `containers` output: a table or a JSON array.
pub fn render_containers(output: Output, containers: &[v1::ContainerView]) -> String {
    match output {
        Output::Json => json_text(&Value::Array(
            containers.iter().map(container_json).collect(),
        )),
        Output::Table => {
            let mut rows = table(&["ID", "NAME", "STATE", "FAILED", "QUARANTINE"]);
            for view in containers {
                let container = view.container.clone().unwrap_or_default();
                rows.add_row([
                    short(&container.id).to_string(),
                    container.name.clone(),
                    container.state.clone(),
                    failed_checks(&container).len().to_string(),
                    quarantine_cell(view),
                ]);
            }
            format!("{rows}\n")
        }
    }
}

pub async fn container(
    target: &Target,
    output: Output,
    name: &str,
    evidence: bool,
) -> Result<(), Failure> {
    let mut client = connect(target).await?;
    let detail = client
        .get_container(request(v1::GetContainerRequest {
            target: name.to_string(),
        }))
        .await?
        .into_inner();
    print_container(output, detail, evidence);
    Ok(())
}

/// What `container` prints: the container, its quarantine and its history.
/// `container`'s output; with `evidence`, the evidence taken at quarantine too.
pub(crate) fn print_container(output: Output, detail: v1::ContainerDetail, evidence: bool) {
    let view = detail.view.unwrap_or_default();
    let taken: Option<Value> = serde_json::from_str(&detail.evidence).ok();
    match output {
        Output::Json => {
            let mut value = container_json(&view);
            value["history"] = Value::Array(detail.history.iter().map(audit_json).collect());
            if evidence {
                value["evidence"] = taken.unwrap_or(Value::Null);
            }
            print_json(&value);
        }
        Output::Table => {
            let container = view.container.clone().unwrap_or_default();
            println!("id:          {}", container.id);
            println!("name:        {}", container.name);
            println!("node:        {}", container.node);
            println!("runtime:     {} {}", container.runtime, container.namespace);
            println!("state:       {}", container.state);
            println!("image:       {}", container.image);
            println!("failed:      {}", failed_checks(&container).join(", "));
            match &view.quarantine {
                Some(record) => println!(
                    "quarantine:  {} [{}] by {} ({}): {}",
                    record.state,
                    record.actions.join(", "),
                    record.actor,
                    record.source,
                    record.reason
                ),
                None => println!("quarantine:  none"),
            }
            if !detail.history.is_empty() {
                println!("history:");
                print_audit_table(&detail.history);
            }
            if evidence {
                print!("{}", crate::evidence::render(taken.as_ref()));
            }
        }
    }
}

fn print_record(output: Output, record: Option<v1::QuarantineRecord>) {
    print!("{}", render_record(output, &record.unwrap_or_default()));
}

/// What `quarantine` and `release` print: one line, or the record as JSON.
pub fn render_record(output: Output, record: &v1::QuarantineRecord) -> String {
    match output {
        Output::Json => json_text(&record_json(record)),
        Output::Table => format!(
            "{} {}: {} [{}]\n",
            short(&record.container),
            record.state,
            record.reason,
            record.actions.join(", ")
        ),
    }
}

pub struct QuarantineArgs {
    pub name: String,
    pub actions: Vec<String>,
    pub reason: String,
    pub ttl: Option<Duration>,
    pub force: bool,
}

pub async fn quarantine(
    target: &Target,
    output: Output,
    args: QuarantineArgs,
) -> Result<(), Failure> {
    let mut client = connect(target).await?;
    let response = client
        .quarantine(request(v1::QuarantineRequest {
            target: args.name,
            actions: args.actions,
            reason: args.reason,
            ttl_seconds: args.ttl.map_or(0, |ttl| ttl.as_secs().max(1)),
            force: args.force,
        }))
        .await?
        .into_inner();
    print_record(output, response.record);
    Ok(())
}

pub async fn release(
    target: &Target,
    output: Output,
    name: String,
    reason: String,
    exempt_for: Option<Duration>,
) -> Result<(), Failure> {
    let mut client = connect(target).await?;
    let response = client
        .release(request(v1::ReleaseRequest {
            target: name,
            reason,
            exempt_for_seconds: exempt_for.map_or(0, |time| time.as_secs().max(1)),
        }))
        .await?
        .into_inner();
    print_record(output, response.record);
    Ok(())
}

pub async fn quarantines(target: &Target, output: Output, all: bool) -> Result<(), Failure> {
    let mut client = connect(target).await?;
    let listed = client
        .list_quarantines(request(v1::ListQuarantinesRequest { all }))
        .await?
        .into_inner();
    match output {
        Output::Json => print_json(&Value::Array(
            listed.records.iter().map(record_json).collect(),
        )),
        Output::Table => {
            let mut rows = table(&["CONTAINER", "STATE", "ACTIONS", "SOURCE", "REASON"]);
            for record in &listed.records {
                rows.add_row([
                    short(&record.container).to_string(),
                    record.state.clone(),
                    record.actions.join(","),
                    record.source.clone(),
                    record.reason.clone(),
                ]);
            }
            println!("{rows}");
        }
    }
    Ok(())
}

fn print_audit_table(records: &[v1::AuditEvent]) {
    let mut rows = table(&["SEQ", "ACTOR", "ACTION", "TARGET", "OUTCOME"]);
    for record in records {
        rows.add_row([
            record.sequence.to_string(),
            record.actor.clone(),
            record.action.clone(),
            short(&record.target).to_string(),
            record.outcome.clone(),
        ]);
    }
    println!("{rows}");
}

pub(crate) fn print_event_line(output: Output, record: &v1::AuditEvent) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string(&audit_json(record)).expect("JSON values serialise")
        ),
        Output::Table => println!(
            "{:>6} {:<10} {:<14} {:<12} {}",
            record.sequence,
            record.actor,
            record.action,
            short(&record.target),
            record.outcome
        ),
    }
}

pub async fn audit(
    target: &Target,
    output: Output,
    verify: bool,
    from: u64,
    limit: u32,
) -> Result<(), Failure> {
    let mut client = connect(target).await?;
    if verify {
        let verified = client
            .verify_audit(request(v1::VerifyAuditRequest {}))
            .await?
            .into_inner();
        match output {
            Output::Json => print_json(&json!({
                "intact": verified.intact,
                "records": verified.records,
                "head_sequence": verified.head_sequence,
                "head_hash": verified.head_hash,
                "problem": (!verified.intact).then_some(&verified.problem),
            })),
            Output::Table if verified.intact => println!(
                "intact: {} records, head {} {}",
                verified.records, verified.head_sequence, verified.head_hash
            ),
            Output::Table => println!("BROKEN: {}", verified.problem),
        }
        if !verified.intact {
            return Err(Failure {
                message: format!("the audit chain is broken: {}", verified.problem),
                code: crate::client::EXIT_REFUSED,
            });
        }
        return Ok(());
    }
    let records = client
        .get_audit(request(v1::GetAuditRequest {
            from_sequence: from,
            limit,
        }))
        .await?
        .into_inner()
        .records;
    match output {
        Output::Json => print_json(&Value::Array(records.iter().map(audit_json).collect())),
        Output::Table => print_audit_table(&records),
    }
    Ok(())
}

/// Prints the audit trail from `from`; with `follow`, keeps printing new records as they come,
/// one line each (JSON lines with `-o json`), until interrupted.
pub async fn events(
    target: &Target,
    output: Output,
    follow: bool,
    from: u64,
) -> Result<(), Failure> {
    let mut client = connect(target).await?;
    if !follow {
        let records = client
            .get_audit(request(v1::GetAuditRequest {
                from_sequence: from,
                limit: 0,
            }))
            .await?
            .into_inner()
            .records;
        for record in &records {
            print_event_line(output, record);
        }
        return Ok(());
    }
    let mut stream = client
        .watch_events(tonic::Request::new(v1::WatchEventsRequest {
            from_sequence: from,
        }))
        .await?
        .into_inner();
    while let Some(record) = stream.message().await? {
        print_event_line(output, &record);
    }
    Ok(())
}

pub async fn set_mode(
    target: &Target,
    output: Output,
    mode: &str,
    reason: String,
) -> Result<(), Failure> {
    let mut client = connect(target).await?;
    let response = client
        .set_mode(request(v1::SetModeRequest {
            mode: mode.to_string(),
            reason,
        }))
        .await?
        .into_inner();
    match output {
        Output::Json => print_json(&json!({ "mode": response.mode })),
        Output::Table => println!("mode: {}", response.mode),
    }
    Ok(())
}

pub async fn test_policies(
    target: &Target,
    output: Output,
    files: Vec<v1::PolicyFile>,
) -> Result<(), Failure> {
    let mut client = connect(target).await?;
    let outcomes = client
        .test_policies(request(v1::TestPoliciesRequest { files }))
        .await?
        .into_inner()
        .outcomes;
    match output {
        Output::Json => print_json(&Value::Array(
            outcomes
                .iter()
                .map(|outcome| {
                    json!({
                        "container": outcome.container,
                        "name": outcome.name,
                        "enforcing_policy": (!outcome.enforcing_policy.is_empty()).then_some(&outcome.enforcing_policy),
                        "actions": outcome.actions,
                        "violations": outcome.violations,
                    })
                })
                .collect(),
        )),
        Output::Table => {
            let mut rows = table(&["ID", "NAME", "WOULD DO", "VIOLATIONS"]);
            for outcome in &outcomes {
                let would = match outcome.enforcing_policy.as_str() {
                    "" => "-".to_string(),
                    policy => format!("{policy}: {}", outcome.actions.join(",")),
                };
                rows.add_row([
                    short(&outcome.container).to_string(),
                    outcome.name.clone(),
                    would,
                    outcome.violations.len().to_string(),
                ]);
            }
            println!("{rows}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<v1::ContainerView> {
        let finding = |check: &str, result: v1::CheckResult| v1::Finding {
            check: check.into(),
            result: result.into(),
            ..v1::Finding::default()
        };
        let container = |id: &str, name: &str, state: &str| v1::Container {
            id: id.into(),
            name: name.into(),
            node: "node-1".into(),
            runtime: "docker".into(),
            state: state.into(),
            image: "registry.example.com/payments/api:1.4.2".into(),
            findings: vec![
                finding("5.4", v1::CheckResult::Fail),
                finding("5.10", v1::CheckResult::Pass),
                finding("5.31", v1::CheckResult::Unknown),
            ],
            ..v1::Container::default()
        };
        vec![
            v1::ContainerView {
                container: Some(container(
                    "4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa99",
                    "payments-api-with-a-rather-long-name",
                    "paused",
                )),
                quarantine: Some(record()),
            },
            v1::ContainerView {
                container: Some(container("0123456789abcdef", "web", "running")),
                quarantine: None,
            },
        ]
    }

    fn record() -> v1::QuarantineRecord {
        v1::QuarantineRecord {
            container: "4f3c2a1b0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa99".into(),
            node: "node-1".into(),
            state: "applied".into(),
            actions: vec!["network-cut".into(), "pause".into()],
            since_unix_ms: 1_790_000_000_000,
            expires_unix_ms: 0,
            reason: "reverse shell seen by Falco".into(),
            actor: "olga".into(),
            source: "operator".into(),
            scope: "container".into(),
        }
    }

    #[test]
    fn containers_table_fits_80_columns() {
        let text = render_containers(Output::Table, &fixture());
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "{} columns: {line}",
                line.chars().count()
            );
        }
        insta::assert_snapshot!(text);
    }

    #[test]
    fn containers_json_has_the_stable_fields() {
        insta::assert_snapshot!(render_containers(Output::Json, &fixture()));
    }

    #[test]
    fn a_record_as_a_line_and_as_json() {
        insta::assert_snapshot!(render_record(Output::Table, &record()));
        insta::assert_snapshot!(render_record(Output::Json, &record()));
    }
}
