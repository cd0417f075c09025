//! Evidence taken when a container is quarantined (#10: "what was it doing?"): its configuration
//! as the runtime reported it, its processes (name, PID, executable SHA-256) and the remote
//! addresses of its sockets, read the way the scan reads them ([`crate::scan::procfs`]), as one
//! JSON document of at most [`MAX_EVIDENCE_BYTES`], stored per container. Taken after the actions
//! for a cut or a pause (a paused container keeps every process and socket, and the fast path
//! does not wait for it), and before them for `stop` or `kill` (afterwards there is nothing left
//! to see). `lazaretctl container ID --evidence` shows it.

use lazaret_core::{ContainerInfo, RuntimeKind};
use serde_json::{Value, json};

use crate::scan::hashes::ExeHashes;
use crate::scan::procfs::{Limits, ProcFs, Wanted};

/// The largest evidence document kept.
pub const MAX_EVIDENCE_BYTES: usize = 64 * 1024;

/// What one look reads at most.
const LIMITS: Limits = Limits {
    max_processes: 256,
    max_addresses: 512,
    max_exe_bytes: 64 << 20,
};

/// The evidence of `info`'s container now (blocking: reads `/proc`).
pub fn take(info: &ContainerInfo, now_unix_ms: i64) -> String {
    let observed = match (info.runtime, info.pid) {
        // A fake runtime's PIDs are not processes of this host.
        (RuntimeKind::Fake, _) | (_, None) => None,
        (_, Some(pid)) => ProcFs::default()
            .look(
                &[(info.id.clone(), pid)],
                LIMITS,
                Wanted::ALL,
                &mut ExeHashes::default(),
            )
            .pop()
            .map(|(_, observed)| observed),
    };
    let mut processes: Vec<Value> = Vec::new();
    let mut addresses: Vec<String> = Vec::new();
    let mut truncated = false;
    if let Some(observed) = &observed {
        processes = observed
            .processes
            .iter()
            .map(|process| {
                json!({"pid": process.pid, "name": process.name, "exe_sha256": process.exe_sha256})
            })
            .collect();
        addresses = observed
            .remote_addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        truncated = observed.truncated;
    }
    loop {
        let document = json!({
            "taken_unix_ms": now_unix_ms,
            "container": info,
            "processes": processes,
            "remote_addresses": addresses,
            "seen_inside": observed.is_some(),
            "truncated": truncated,
        })
        .to_string();
        if document.len() <= MAX_EVIDENCE_BYTES || (processes.is_empty() && addresses.is_empty()) {
            return document;
        }
        // Too large: keep the first half of each list (the init and the oldest processes).
        truncated = true;
        processes.truncate(processes.len() / 2);
        addresses.truncate(addresses.len() / 2);
    }
}

#[cfg(test)]
mod tests {
    use lazaret_core::ContainerId;

    use super::*;

    #[test]
    fn this_process_is_seen_and_the_document_stays_bounded() {
        let mut info = ContainerInfo::unknown(ContainerId::new("c"), RuntimeKind::Docker);
        info.pid = Some(std::process::id());
        let evidence: Value = serde_json::from_str(&take(&info, 7)).unwrap();
        assert_eq!(evidence["taken_unix_ms"], 7);
        assert_eq!(evidence["container"]["id"], "c");
        assert_eq!(evidence["seen_inside"], true);
        assert_eq!(
            evidence["processes"][0]["pid"],
            std::process::id(),
            "the init first: {evidence}"
        );

        // Huge labels: the lists are cut down, the document stays bounded (labels are kept).
        info.labels
            .insert("big".into(), "x".repeat(MAX_EVIDENCE_BYTES));
        let text = take(&info, 7);
        let evidence: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(evidence["processes"], json!([]));

        let fake = ContainerInfo::unknown(ContainerId::new("f"), RuntimeKind::Fake);
        let evidence: Value = serde_json::from_str(&take(&fake, 7)).unwrap();
        assert_eq!(evidence["seen_inside"], false);
    }
}
