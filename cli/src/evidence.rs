//! `lazaretctl container ID --evidence` as a table: what the container was running and talking
//! to when it was quarantined (the agent's evidence document, docs/audit-and-quarantine.md).

use serde_json::Value;

use crate::agent::table;

/// The evidence section of `container`'s table output.
pub fn render(evidence: Option<&Value>) -> String {
    let Some(evidence) = evidence else {
        return "evidence:    none (taken when a quarantine is applied)\n".into();
    };
    let taken = evidence["taken_unix_ms"].as_i64().unwrap_or_default();
    let taken = std::time::UNIX_EPOCH + std::time::Duration::from_millis(taken.max(0) as u64);
    let mut text = format!(
        "evidence:    taken {}{}\n",
        humantime::format_rfc3339_seconds(taken),
        if evidence["truncated"] == true {
            " (truncated)"
        } else {
            ""
        }
    );
    if evidence["seen_inside"] != true {
        text.push_str("  its processes could not be read (no PID, or not on this host)\n");
        return text;
    }
    let mut processes = table(&["PID", "NAME", "EXE SHA-256"]);
    for process in evidence["processes"].as_array().into_iter().flatten() {
        let hash = process["exe_sha256"].as_str().unwrap_or("-");
        processes.add_row([
            process["pid"].to_string(),
            process["name"].as_str().unwrap_or_default().to_string(),
            hash.chars().take(16).collect::<String>(),
        ]);
    }
    text.push_str(&format!("{processes}\n"));
    let addresses: Vec<&str> = evidence["remote_addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    text.push_str(&format!(
        "remote addresses: {}\n",
        if addresses.is_empty() {
            "none".to_string()
        } else {
            addresses.join(", ")
        }
    ));
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn processes_and_addresses_are_listed() {
        let evidence = json!({
            "taken_unix_ms": 1_795_000_000_000i64,
            "seen_inside": true,
            "truncated": false,
            "processes": [{"pid": 42, "name": "xmrig", "exe_sha256": "ab".repeat(32)}],
            "remote_addresses": ["203.0.113.7"],
        });
        let text = render(Some(&evidence));
        assert!(text.contains("taken 2026-11-18T"), "{text}");
        assert!(
            text.contains("xmrig") && text.contains("abababababababab"),
            "{text}"
        );
        assert!(text.contains("remote addresses: 203.0.113.7"), "{text}");
        assert!(render(None).contains("none"));
    }
}
