//! Detections (DESIGN.md §3): alerts from detectors, turned into what `kind: Response` rules see.
//! Falco's `http_output` JSON is taken unchanged ([`FalcoAlert`]); its priority maps to a
//! [`Severity`] per DESIGN.md §3. [`respond`] picks the response rule that acts, and
//! [`DedupWindow`] keeps the same (container, rule) from acting twice within a window. Pure: the
//! agent passes the time in.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use crate::container::ContainerInfo;
use crate::policy::{Detection, PolicyMode, PolicySet, ResponseRule};
use crate::severity::Severity;

/// Falco's `http_output` body. Unknown fields are ignored: Falco adds some between releases.
#[derive(Debug, Clone, Deserialize)]
pub struct FalcoAlert {
    pub rule: String,
    pub priority: String,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub output: String,
    #[serde(default)]
    pub output_fields: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Falco's event source (`syscall`, `k8s_audit`); the detection's source is `falco`.
    #[serde(default)]
    pub source: Option<String>,
}

/// A detection about one container: what responses see, and the container it names (a full id
/// or a prefix, such as Falco's 12-character `container.id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDetection {
    pub detection: Detection,
    pub container: String,
    /// The detector's own text, for the audit trail.
    pub output: String,
}

/// A Falco priority as a severity: Emergency/Alert/Critical → critical, Error → high, Warning →
/// medium, Notice/Informational → low, Debug → info.
pub fn falco_severity(priority: &str) -> Result<Severity, String> {
    Ok(match priority.trim().to_ascii_lowercase().as_str() {
        "emergency" | "alert" | "critical" => Severity::Critical,
        "error" => Severity::High,
        "warning" => Severity::Medium,
        "notice" | "informational" | "info" => Severity::Low,
        "debug" => Severity::Info,
        other => {
            return Err(format!(
                "priority {other:?} is not a Falco priority (Emergency, Alert, Critical, Error, \
                 Warning, Notice, Informational, Debug)"
            ));
        }
    })
}

impl FalcoAlert {
    /// Parses a Falco `http_output` body; the error says what is wrong with it.
    pub fn parse(body: &[u8]) -> Result<FalcoAlert, String> {
        serde_json::from_slice(body).map_err(|error| format!("not a Falco alert: {error}"))
    }

    /// The detection, and the container it concerns; an error for an alert about the host (no
    /// `container.id`, or Falco's `host`).
    pub fn into_detection(self) -> Result<ContainerDetection, String> {
        let severity = falco_severity(&self.priority)?;
        let container = self
            .output_fields
            .get("container.id")
            .and_then(|value| value.as_str())
            .map(str::trim)
            .filter(|id| !id.is_empty() && *id != "host")
            .ok_or("the alert names no container (output_fields.container.id)")?
            .to_string();
        if !container.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(format!("container.id {container:?} is not a container id"));
        }
        Ok(ContainerDetection {
            detection: Detection {
                rule: self.rule,
                tags: self.tags,
                severity,
                // The detector, as `match.sources` names it (Falco's own `source` is its event
                // source, e.g. `syscall`).
                source: "falco".into(),
            },
            container,
            output: self.output,
        })
    }
}

/// The response that acts on `detection` about `container`: the first enforce-mode response
/// (by name) that applies; `Err` with the audit-mode ones that would have, when only those apply.
pub fn respond<'a>(
    set: &'a PolicySet,
    detection: &Detection,
    container: &ContainerInfo,
) -> Result<&'a ResponseRule, Vec<&'a ResponseRule>> {
    let applying: Vec<&ResponseRule> = set
        .responses
        .iter()
        .filter(|response| response.applies(detection, container))
        .collect();
    match applying
        .iter()
        .find(|response| response.mode == PolicyMode::Enforce)
    {
        Some(response) => Ok(response),
        None => Err(applying),
    }
}

/// Acts once per (container, rule) within a window.
#[derive(Debug, Clone)]
pub struct DedupWindow {
    window: Duration,
    last: HashMap<(String, String), i64>,
}

impl DedupWindow {
    pub fn new(window: Duration) -> DedupWindow {
        DedupWindow {
            window,
            last: HashMap::new(),
        }
    }

    /// Whether `rule` on `container` at `now_unix_ms` is new (and notes it); false for a repeat
    /// within the window. Old entries are dropped as it goes.
    pub fn admit(&mut self, container: &str, rule: &str, now_unix_ms: i64) -> bool {
        let window = self.window.as_millis() as i64;
        self.last.retain(|_, at| now_unix_ms - *at < window);
        let key = (container.to_string(), rule.to_string());
        if self.last.contains_key(&key) {
            return false;
        }
        self.last.insert(key, now_unix_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySource;
    use crate::{ContainerId, RuntimeKind};

    const ALERT: &str = r#"{"hostname":"h","output":"12:00:00 Critical Shell spawned (user=root container_id=3f2a9c1b7d4e)","priority":"Critical","rule":"Terminal shell in container","source":"syscall","tags":["container","shell","mitre_execution"],"time":"2026-11-29T12:00:00.000000000Z","output_fields":{"container.id":"3f2a9c1b7d4e","container.name":"web","proc.name":"sh","evt.time":1795000000000000000}}"#;

    #[test]
    fn a_falco_alert_becomes_a_detection_about_its_container() {
        let found = FalcoAlert::parse(ALERT.as_bytes())
            .unwrap()
            .into_detection()
            .unwrap();
        assert_eq!(found.container, "3f2a9c1b7d4e");
        assert_eq!(found.detection.rule, "Terminal shell in container");
        assert_eq!(found.detection.severity, Severity::Critical);
        assert_eq!(found.detection.source, "falco");
        assert!(found.detection.tags.contains(&"shell".to_string()));
    }

    #[test]
    fn bad_alerts_say_what_is_wrong() {
        assert!(
            FalcoAlert::parse(b"{")
                .unwrap_err()
                .contains("not a Falco alert")
        );
        let no_rule = FalcoAlert::parse(br#"{"priority":"Critical"}"#).unwrap_err();
        assert!(no_rule.contains("rule"), "{no_rule}");
        let host = r#"{"rule":"r","priority":"Warning","output_fields":{"container.id":"host"}}"#;
        let error = FalcoAlert::parse(host.as_bytes())
            .unwrap()
            .into_detection()
            .unwrap_err();
        assert!(error.contains("names no container"), "{error}");
        let odd = r#"{"rule":"r","priority":"Loud","output_fields":{"container.id":"abc"}}"#;
        let error = FalcoAlert::parse(odd.as_bytes())
            .unwrap()
            .into_detection()
            .unwrap_err();
        assert!(error.contains("Falco priority"), "{error}");
    }

    #[test]
    fn priorities_map_per_the_design() {
        let severity = |priority| falco_severity(priority).unwrap();
        assert_eq!(severity("Emergency"), Severity::Critical);
        assert_eq!(severity("ALERT"), Severity::Critical);
        assert_eq!(severity("Error"), Severity::High);
        assert_eq!(severity("Warning"), Severity::Medium);
        assert_eq!(severity("Notice"), Severity::Low);
        assert_eq!(severity("Informational"), Severity::Low);
        assert_eq!(severity("Debug"), Severity::Info);
    }

    #[test]
    fn the_enforce_response_acts_and_audit_ones_only_would() {
        let text = "apiVersion: lazaret.dev/v1\nkind: Response\nname: b-shell\nmode: enforce\n\
            match: {rules: ['Terminal shell*'], min_severity: critical}\nactions: [network-cut, pause]\n---\n\
            apiVersion: lazaret.dev/v1\nkind: Response\nname: a-watch\nmatch: {tags: [shell]}\nactions: [alert]\n";
        let set = PolicySet::load(&[PolicySource::new("r.yaml", text)]).unwrap();
        let container =
            ContainerInfo::unknown(ContainerId::new("3f2a9c1b7d4e"), RuntimeKind::Docker);
        let found = FalcoAlert::parse(ALERT.as_bytes())
            .unwrap()
            .into_detection()
            .unwrap();
        assert_eq!(
            respond(&set, &found.detection, &container).unwrap().name,
            "b-shell"
        );
        let mut warning = found.detection.clone();
        warning.severity = Severity::Medium;
        let would = respond(&set, &warning, &container).unwrap_err();
        assert_eq!(
            would.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["a-watch"]
        );
    }

    #[test]
    fn the_same_rule_on_the_same_container_acts_once_per_window() {
        let mut window = DedupWindow::new(Duration::from_secs(60));
        assert!(window.admit("c1", "r", 0));
        assert!(!window.admit("c1", "r", 59_000));
        assert!(window.admit("c1", "other", 59_000));
        assert!(window.admit("c2", "r", 59_000));
        assert!(window.admit("c1", "r", 60_000));
    }
}
