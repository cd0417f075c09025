//! Feeds arbitrary bytes to `FalcoAlert::parse` (Falco's `http_output` JSON body, as the agent's
//! detections endpoint receives it), then `FalcoAlert::into_detection` (priority → severity,
//! `output_fields."container.id"` → the container), `falco_severity`, and the response choice
//! `detection::respond` against a small fixed response set.
//!
//! Must hold: nothing panics; bad bodies are errors; a detection names a non-empty, all-hex
//! container id that is not `host`, with the `falco` source and the severity `falco_severity`
//! gives for the alert's priority.
#![no_main]

use std::sync::OnceLock;

use lazaret_core::detection::{FalcoAlert, falco_severity, respond};
use lazaret_core::policy::{PolicySet, PolicySource};
use lazaret_core::{ContainerId, ContainerInfo, RuntimeKind};
use libfuzzer_sys::fuzz_target;

const RESPONSES: &str = "apiVersion: lazaret.dev/v1\nkind: Response\nname: b-shell\nmode: enforce\n\
    match: {rules: ['Terminal shell*'], min_severity: critical, sources: [falco]}\n\
    actions: [network-cut, pause]\nttl: 1h\n---\n\
    apiVersion: lazaret.dev/v1\nkind: Response\nname: a-watch\nmatch: {tags: [shell]}\n\
    containers: {labels: {env: prod}}\nactions: [alert]\n";

fn responses() -> &'static PolicySet {
    static SET: OnceLock<PolicySet> = OnceLock::new();
    SET.get_or_init(|| {
        PolicySet::load(&[PolicySource::new("responses.yaml", RESPONSES)])
            .expect("the fixed responses load")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(alert) = FalcoAlert::parse(data) else {
        return;
    };
    let priority = alert.priority.clone();
    let severity = falco_severity(&priority);
    match alert.into_detection() {
        Ok(found) => {
            assert!(!found.container.is_empty());
            assert_ne!(found.container, "host");
            assert!(found.container.bytes().all(|byte| byte.is_ascii_hexdigit()));
            assert_eq!(found.detection.source, "falco");
            assert_eq!(Ok(found.detection.severity), severity);
            let container = ContainerInfo::unknown(
                ContainerId::new(found.container.clone()),
                RuntimeKind::Docker,
            );
            let _ = respond(responses(), &found.detection, &container);
        }
        Err(error) => assert!(!error.is_empty()),
    }
});
