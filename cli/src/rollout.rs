//! Rolling policies and indicators out through the controller: `policy apply` / `indicators
//! apply` (the controller validates whole, signs the next version and hands it to the fleet;
//! `--canary NODES` first, with what the policies do there; then the same files without
//! `--canary` promote), with progress until every target agent acks; `policy list` and `policy
//! diff` against what the fleet enforces.

use std::path::PathBuf;
use std::time::Duration;

use lazaret_core::bundle::{BundleContent, BundleKind, SignedBundle};
use lazaret_core::policy::PolicySource;
use lazaret_core::policy::diff::{Change, diff};
use lazaret_proto::v1;
use lazaretctl::signing;
use serde_json::{Value, json};

use crate::Output;
use crate::agent::{json_text, short, table};
use crate::client::{EXIT_REFUSED, Failure, Target, connect_controller, request};

fn refused(message: String) -> Failure {
    Failure {
        message,
        code: EXIT_REFUSED,
    }
}

/// `policy apply` / `indicators apply`.
pub async fn apply(
    target: &Target,
    output: Output,
    kind: BundleKind,
    paths: Vec<PathBuf>,
    canary: Vec<String>,
    wait: Duration,
) -> Result<(), Failure> {
    let files: Vec<v1::PolicyFile> = signing::bundle_items(&paths)
        .map_err(|error| refused(format!("{error:#}")))?
        .into_iter()
        .map(|item| v1::PolicyFile {
            name: item.name,
            text: item.content,
        })
        .collect();
    let mut client = connect_controller(target).await?;
    let message = v1::ApplyContentRequest { files, canary };
    let applied = match kind {
        BundleKind::Policies => client.apply_policies(request(message)).await?,
        BundleKind::Indicators => client.apply_indicators(request(message)).await?,
    }
    .into_inner();
    if matches!(output, Output::Table) {
        print!("{}", render_applied(&applied));
    }
    // Progress until every target agent acks the new version.
    let deadline = tokio::time::Instant::now() + wait;
    let (acked, targets) = loop {
        let nodes = client
            .list_nodes(request(v1::ListNodesRequest {}))
            .await?
            .into_inner()
            .nodes;
        let targets: Vec<&v1::NodeStatus> = nodes
            .iter()
            .filter(|node| node.role == "node" && node.status == "live")
            .filter(|node| applied.canary.is_empty() || applied.canary.contains(&node.name))
            .collect();
        let acked = targets
            .iter()
            .filter(|node| {
                node.acks
                    .iter()
                    .any(|ack| ack.kind == applied.kind && ack.digest == applied.digest)
            })
            .count();
        if matches!(output, Output::Table) {
            eprint!("\racked by {acked}/{} agents", targets.len());
        }
        if acked == targets.len() || tokio::time::Instant::now() >= deadline {
            break (acked, targets.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    match output {
        Output::Table => eprintln!(),
        Output::Json => print!("{}", json_text(&applied_json(&applied, acked, targets))),
    }
    if acked < targets {
        return Err(refused(format!(
            "{} of {targets} agents did not ack v{} within {}s (`lazaretctl nodes` shows who)",
            targets - acked,
            applied.version,
            wait.as_secs()
        )));
    }
    if matches!(output, Output::Table) && !applied.canary.is_empty() {
        println!(
            "canary in force on {}; promote: the same command without --canary",
            applied.canary.join(", ")
        );
    }
    Ok(())
}

fn applied_json(applied: &v1::ApplyContentResponse, acked: usize, targets: usize) -> Value {
    json!({
        "kind": applied.kind,
        "version": applied.version,
        "digest": applied.digest,
        "node": applied.node,
        "canary": applied.canary,
        "acked": acked,
        "targets": targets,
        "verdicts": applied.verdicts.iter().map(|verdict| json!({
            "node": verdict.node,
            "error": (!verdict.error.is_empty()).then_some(&verdict.error),
            "outcomes": verdict.outcomes.iter().map(|outcome| json!({
                "container": outcome.container,
                "name": outcome.name,
                "enforcing_policy": (!outcome.enforcing_policy.is_empty()).then_some(&outcome.enforcing_policy),
                "actions": outcome.actions,
                "violations": outcome.violations,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// The table output of an apply: what was signed, and the canary nodes' verdicts.
pub fn render_applied(applied: &v1::ApplyContentResponse) -> String {
    let mut text = format!(
        "signed {} v{} ({}) and handed it to {}{}\n",
        applied.kind,
        applied.version,
        short(&applied.digest),
        applied.node,
        match applied.canary.is_empty() {
            true => String::new(),
            false => format!("; canary: {}", applied.canary.join(", ")),
        }
    );
    if applied.verdicts.is_empty() {
        return text;
    }
    let mut rows = table(&["NODE", "CONTAINER", "WOULD BE DECIDED BY", "ACTIONS"]);
    for verdict in &applied.verdicts {
        if !verdict.error.is_empty() {
            rows.add_row([
                verdict.node.clone(),
                "-".into(),
                verdict.error.clone(),
                "-".into(),
            ]);
        }
        for outcome in verdict.outcomes.iter().filter(|o| !o.violations.is_empty()) {
            let decided = match outcome.enforcing_policy.as_str() {
                "" => "(audit only)".to_string(),
                policy => policy.to_string(),
            };
            rows.add_row([
                verdict.node.clone(),
                outcome.name.clone(),
                decided,
                outcome.actions.join(","),
            ]);
        }
    }
    text.push_str(&format!("verdicts on the canary nodes:\n{rows}\n"));
    text
}

/// The fleet's newest bundle of `kind` (as a live agent serves it), parsed.
pub(crate) async fn fleet_bundle(
    target: &Target,
    kind: BundleKind,
) -> Result<(String, SignedBundle), Failure> {
    let mut client = connect_controller(target).await?;
    let fetched = client
        .get_bundle(request(v1::FleetGetBundleRequest {
            kind: kind.to_string(),
        }))
        .await?
        .into_inner();
    let signed = SignedBundle::parse(&fetched.bundle).map_err(|error| {
        refused(format!(
            "{} served a bundle that does not parse: {error}",
            fetched.node
        ))
    })?;
    Ok((fetched.node, signed))
}

/// `policy list`: the policies the fleet enforces.
pub async fn list(target: &Target, output: Output) -> Result<(), Failure> {
    let (node, signed) = fleet_bundle(target, BundleKind::Policies).await?;
    let bundle = signed.unverified();
    let Ok(BundleContent::Policies(set)) = bundle.content() else {
        return Err(refused(format!(
            "the policies bundle {node} serves does not load"
        )));
    };
    match output {
        Output::Json => print!(
            "{}",
            json_text(&json!({
                "version": bundle.version,
                "digest": signed.stamp().digest.to_hex(),
                "signer": bundle.signer.to_string(),
                "canary": bundle.nodes,
                "policies": set.policies.iter().map(|policy| json!({
                    "name": policy.name,
                    "mode": policy.mode.as_str(),
                    "severity": policy.severity.as_str(),
                    "actions": policy.actions.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }))
        ),
        Output::Table => {
            println!(
                "policies v{} ({}) signed by {}{}",
                bundle.version,
                short(&signed.stamp().digest.to_hex()),
                bundle.signer,
                match bundle.nodes.is_empty() {
                    true => String::new(),
                    false => format!(", canary on {}", bundle.nodes.join(", ")),
                }
            );
            let mut rows = table(&["POLICY", "MODE", "SEVERITY", "ACTIONS"]);
            for policy in &set.policies {
                rows.add_row([
                    policy.name.clone(),
                    policy.mode.as_str().to_string(),
                    policy.severity.as_str().to_string(),
                    policy
                        .actions
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ]);
            }
            println!("{rows}");
        }
    }
    Ok(())
}

/// `policy diff PATHS`: what applying these files would change against the fleet's policies.
pub async fn show_diff(
    target: &Target,
    output: Output,
    paths: Vec<PathBuf>,
) -> Result<(), Failure> {
    let local: Vec<PolicySource> = signing::bundle_items(&paths)
        .map_err(|error| refused(format!("{error:#}")))?
        .into_iter()
        .map(|item| PolicySource::new(item.name, item.content))
        .collect();
    let (_, signed) = fleet_bundle(target, BundleKind::Policies).await?;
    let fleet: Vec<PolicySource> = signed
        .unverified()
        .items
        .iter()
        .map(|item| PolicySource::new(item.name.as_str(), item.content.as_str()))
        .collect();
    let changes = diff(&fleet, &local).map_err(refused)?;
    let word = |change: Change| match change {
        Change::Added => "added",
        Change::Removed => "removed",
        Change::Changed => "changed",
    };
    match output {
        Output::Json => print!(
            "{}",
            json_text(&Value::Array(
                changes
                    .iter()
                    .map(|change| json!({"kind": change.kind, "name": change.name, "change": word(change.change)}))
                    .collect()
            ))
        ),
        Output::Table if changes.is_empty() => {
            println!("no change against policies v{}", signed.unverified().version)
        }
        Output::Table => {
            println!("against policies v{}:", signed.unverified().version);
            for change in &changes {
                let sign = match change.change {
                    Change::Added => '+',
                    Change::Removed => '-',
                    Change::Changed => '~',
                };
                println!("{sign} {} {}", change.kind, change.name);
            }
        }
    }
    Ok(())
}
