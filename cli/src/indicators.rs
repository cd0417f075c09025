//! `lazaretctl indicators list|stats`, through the controller: the indicators the fleet enforces
//! (its newest indicators bundle, as a live agent serves it).

use std::collections::BTreeMap;

use lazaret_core::bundle::{BundleContent, BundleKind};
use lazaret_core::indicator::Indicator;
use serde_json::{Value, json};

use crate::Output;
use crate::agent::{json_text, short, table};
use crate::client::{EXIT_REFUSED, Failure, Target};
use crate::rollout::fleet_bundle;

async fn indicators(target: &Target) -> Result<(u64, String, Vec<Indicator>), Failure> {
    let (node, signed) = fleet_bundle(target, BundleKind::Indicators).await?;
    let bundle = signed.unverified();
    match bundle.content() {
        Ok(BundleContent::Indicators(set)) => Ok((
            bundle.version,
            signed.stamp().digest.to_hex(),
            set.indicators,
        )),
        _ => Err(Failure {
            message: format!("the indicators bundle {node} serves does not load"),
            code: EXIT_REFUSED,
        }),
    }
}

/// The `indicators list` output.
pub fn render_list(output: Output, version: u64, indicators: &[Indicator]) -> String {
    match output {
        Output::Json => json_text(&Value::Array(
            indicators
                .iter()
                .map(|indicator| {
                    json!({
                        "id": indicator.id, "type": indicator.kind.to_string(),
                        "value": indicator.value, "severity": indicator.severity.as_str(),
                        "source": indicator.source, "valid_until": indicator.valid_until,
                    })
                })
                .collect(),
        )),
        Output::Table => {
            let mut rows = table(&["ID", "TYPE", "VALUE", "SEVERITY", "SOURCE"]);
            for indicator in indicators {
                rows.add_row([
                    indicator.id.clone(),
                    indicator.kind.to_string(),
                    indicator.value.clone(),
                    indicator.severity.as_str().to_string(),
                    indicator.source.clone(),
                ]);
            }
            format!("indicators v{version}\n{rows}\n")
        }
    }
}

/// The `indicators stats` output: counts by type and by severity.
pub fn render_stats(
    output: Output,
    version: u64,
    digest: &str,
    indicators: &[Indicator],
) -> String {
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_severity: BTreeMap<&str, usize> = BTreeMap::new();
    for indicator in indicators {
        *by_type.entry(indicator.kind.to_string()).or_default() += 1;
        *by_severity.entry(indicator.severity.as_str()).or_default() += 1;
    }
    match output {
        Output::Json => json_text(&json!({
            "version": version, "digest": digest, "total": indicators.len(),
            "by_type": by_type, "by_severity": by_severity,
        })),
        Output::Table => {
            let mut rows = table(&["COUNTED BY", "VALUE", "INDICATORS"]);
            for (kind, count) in &by_type {
                rows.add_row(["type".to_string(), kind.clone(), count.to_string()]);
            }
            for (severity, count) in &by_severity {
                rows.add_row([
                    "severity".to_string(),
                    severity.to_string(),
                    count.to_string(),
                ]);
            }
            format!(
                "indicators v{version} ({}): {} in all\n{rows}\n",
                short(digest),
                indicators.len()
            )
        }
    }
}

pub async fn list(target: &Target, output: Output) -> Result<(), Failure> {
    let (version, _, indicators) = indicators(target).await?;
    print!("{}", render_list(output, version, &indicators));
    Ok(())
}

pub async fn stats(target: &Target, output: Output) -> Result<(), Failure> {
    let (version, digest, indicators) = indicators(target).await?;
    print!("{}", render_stats(output, version, &digest, &indicators));
    Ok(())
}

#[cfg(test)]
mod tests {
    use lazaret_core::indicator::import::from_list;

    use super::*;

    #[test]
    fn list_and_stats() {
        let imported = from_list(
            "intel",
            "ip 203.0.113.0/24 critical\nprocess-name xmrig\nprocess-name minerd low\n",
        );
        insta::assert_snapshot!(render_list(Output::Table, 3, &imported.indicators));
        insta::assert_snapshot!(render_stats(
            Output::Table,
            3,
            &"ab".repeat(32),
            &imported.indicators
        ));
    }
}
