//! Conversions between `lazaret-core` domain types and `lazaret.v1` wire types.

use lazaret_core::audit::AuditRecord;
use lazaret_core::bundle::{BundleKind, BundleStamp};
use lazaret_core::posture::{CheckResult, Finding};
use lazaret_core::quarantine::QuarantineRecord;
use lazaret_core::{ContainerInfo, Severity};

use crate::v1;

impl From<Severity> for v1::Severity {
    fn from(severity: Severity) -> Self {
        match severity {
            Severity::Info => v1::Severity::Info,
            Severity::Low => v1::Severity::Low,
            Severity::Medium => v1::Severity::Medium,
            Severity::High => v1::Severity::High,
            Severity::Critical => v1::Severity::Critical,
        }
    }
}

/// The wire's `UNSPECIFIED` is not a severity: converting it back fails rather than guessing.
impl TryFrom<v1::Severity> for Severity {
    type Error = v1::Severity;

    fn try_from(severity: v1::Severity) -> Result<Self, Self::Error> {
        match severity {
            v1::Severity::Unspecified => Err(severity),
            v1::Severity::Info => Ok(Severity::Info),
            v1::Severity::Low => Ok(Severity::Low),
            v1::Severity::Medium => Ok(Severity::Medium),
            v1::Severity::High => Ok(Severity::High),
            v1::Severity::Critical => Ok(Severity::Critical),
        }
    }
}

impl From<CheckResult> for v1::CheckResult {
    fn from(result: CheckResult) -> Self {
        match result {
            CheckResult::Fail => v1::CheckResult::Fail,
            CheckResult::Pass => v1::CheckResult::Pass,
            CheckResult::Unknown => v1::CheckResult::Unknown,
        }
    }
}

impl From<&Finding> for v1::Finding {
    fn from(finding: &Finding) -> Self {
        v1::Finding {
            check: finding.check.to_string(),
            title: finding.title.to_string(),
            severity: v1::Severity::from(finding.severity).into(),
            result: v1::CheckResult::from(finding.result).into(),
            detail: finding.detail.clone(),
        }
    }
}

/// Builds the wire form of a container as reported by `node`, with its findings.
pub fn container_to_wire(node: &str, info: &ContainerInfo, findings: &[Finding]) -> v1::Container {
    v1::Container {
        id: info.id.to_string(),
        name: info.name.clone(),
        node: node.to_string(),
        runtime: info.runtime.to_string(),
        namespace: info.namespace.clone(),
        state: info.state.to_string(),
        image: info.image.clone(),
        image_id: info.image_id.clone(),
        image_digest: info.image_digest.clone().unwrap_or_default(),
        labels: info
            .labels
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        findings: findings.iter().map(v1::Finding::from).collect(),
    }
}

impl From<&QuarantineRecord> for v1::QuarantineRecord {
    fn from(record: &QuarantineRecord) -> Self {
        v1::QuarantineRecord {
            container: record.container.to_string(),
            node: record.node.clone(),
            state: record.state.to_string(),
            actions: record.actions.iter().map(ToString::to_string).collect(),
            since_unix_ms: record.since_unix_ms,
            expires_unix_ms: record.expires_unix_ms.unwrap_or(0),
            reason: record.reason.clone(),
            actor: record.actor.clone(),
            source: record.source.to_string(),
            scope: match record.scope {
                lazaret_core::policy::EnforcementScope::Container => "container".into(),
                lazaret_core::policy::EnforcementScope::Pod => "pod".into(),
            },
        }
    }
}

impl From<&AuditRecord> for v1::AuditEvent {
    fn from(record: &AuditRecord) -> Self {
        v1::AuditEvent {
            sequence: record.sequence,
            time_unix_ms: record.time_unix_ms,
            actor: record.actor.clone(),
            on_behalf_of: record.on_behalf_of.clone().unwrap_or_default(),
            action: record.action.clone(),
            target: record.target.clone(),
            reason: record.reason.clone(),
            source: record.source.clone(),
            outcome: record.outcome.clone(),
            hash: record.hash().to_hex(),
        }
    }
}

/// A peer's `ack:KIND` as the API shows it.
impl From<(&BundleKind, &BundleStamp)> for v1::PeerBundle {
    fn from((kind, stamp): (&BundleKind, &BundleStamp)) -> Self {
        v1::PeerBundle {
            kind: kind.to_string(),
            version: stamp.version,
            digest: stamp.digest.to_hex(),
        }
    }
}

#[cfg(test)]
mod tests {
    use lazaret_core::{ContainerId, RuntimeKind, posture};

    use super::*;

    #[test]
    fn severities_round_trip_and_unspecified_is_refused() {
        for severity in Severity::ALL {
            let wire = v1::Severity::from(severity);
            assert_eq!(Severity::try_from(wire), Ok(severity));
        }
        assert!(Severity::try_from(v1::Severity::Unspecified).is_err());
    }

    #[test]
    fn container_carries_findings_and_empty_digest_for_local_images() {
        let mut info = ContainerInfo::unknown(ContainerId::new("abc"), RuntimeKind::Docker);
        info.name = "web".into();
        info.labels.insert("env".into(), "prod".into());
        let findings = posture::assess(&info);
        let wire = container_to_wire("node-1", &info, &findings);
        assert_eq!(wire.node, "node-1");
        assert_eq!(wire.runtime, "docker");
        assert_eq!(wire.image_digest, "");
        assert_eq!(wire.labels.get("env").map(String::as_str), Some("prod"));
        assert_eq!(wire.findings.len(), findings.len());
        assert!(
            wire.findings
                .iter()
                .all(|finding| finding.result() == v1::CheckResult::Unknown)
        );
    }
}
