//! The posture report of one host (`lazaret-agent scan`): runtimes, advisories and every
//! container's findings, as JSON (stable field names) or as tables for people.

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use lazaret_core::advisory::{self, Advisory, RuntimeVersions};
use lazaret_core::policy::Verdict;
use lazaret_core::posture::{CheckResult, Finding};
use lazaret_core::{ContainerInfo, Severity};
use serde::Serialize;

use crate::runtime::RuntimeVersion;

/// One configured runtime as `scan` found it.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeReport {
    pub runtime: String,
    pub endpoint: String,
    pub reachable: bool,
    /// Why it could not be reached, when it could not.
    pub error: Option<String>,
    pub version: Option<RuntimeVersion>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContainerReport {
    pub id: String,
    pub name: String,
    pub runtime: String,
    pub namespace: String,
    pub image: String,
    pub state: String,
    pub findings: Vec<Finding>,
    /// What the policies say, when `scan --policy-dir` gave some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

impl ContainerReport {
    pub fn new(info: &ContainerInfo, findings: Vec<Finding>, verdict: Option<Verdict>) -> Self {
        ContainerReport {
            id: info.id.to_string(),
            name: info.name.clone(),
            runtime: info.runtime.to_string(),
            namespace: info.namespace.clone(),
            image: info.image.clone(),
            state: info.state.to_string(),
            findings,
            verdict,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PostureReport {
    pub node: String,
    pub runtimes: Vec<RuntimeReport>,
    pub advisories: Vec<Advisory>,
    pub containers: Vec<ContainerReport>,
}

impl PostureReport {
    /// Builds the report; advisories come from the versions the reachable runtimes reported.
    pub fn new(
        node: String,
        runtimes: Vec<RuntimeReport>,
        mut containers: Vec<ContainerReport>,
    ) -> Self {
        let mut versions = RuntimeVersions::default();
        for version in runtimes
            .iter()
            .filter_map(|runtime| runtime.version.as_ref())
        {
            if versions.docker.is_none() && !version.version.is_empty() {
                versions.docker = Some(version.version.clone());
            }
            versions.containerd = versions
                .containerd
                .take()
                .or_else(|| version.containerd.clone());
            versions.runc = versions.runc.take().or_else(|| version.runc.clone());
        }
        containers.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        PostureReport {
            node,
            runtimes,
            advisories: advisory::advisories_for(&versions),
            containers,
        }
    }

    /// True when some container fails a check of at least `threshold`, or an advisory of at
    /// least `threshold` applies: what `scan --fail-on` exits non-zero for.
    pub fn has_failures_at_or_above(&self, threshold: Severity) -> bool {
        let failing_check = self
            .containers
            .iter()
            .flat_map(|container| &container.findings)
            .any(|finding| finding.result == CheckResult::Fail && finding.severity >= threshold);
        failing_check
            || self
                .advisories
                .iter()
                .any(|advisory| advisory.severity >= threshold)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serialises")
    }

    /// Tables for a terminal: runtimes, advisories, then one row per container listing the
    /// failed checks, worst first.
    pub fn to_table(&self) -> String {
        let mut out = format!("node {}\n\n", self.node);
        let mut runtimes = new_table([
            "RUNTIME",
            "ENDPOINT",
            "STATUS",
            "VERSION",
            "CONTAINERD",
            "RUNC",
        ]);
        for runtime in &self.runtimes {
            let version = runtime.version.as_ref();
            runtimes.add_row([
                runtime.runtime.clone(),
                runtime.endpoint.clone(),
                match &runtime.error {
                    None => "reachable".to_string(),
                    Some(error) => format!("UNREACHABLE: {error}"),
                },
                version.map(|v| v.version.clone()).unwrap_or_default(),
                version
                    .and_then(|v| v.containerd.clone())
                    .unwrap_or_default(),
                version.and_then(|v| v.runc.clone()).unwrap_or_default(),
            ]);
        }
        out.push_str(&runtimes.to_string());
        out.push_str("\n\n");
        if !self.advisories.is_empty() {
            let mut advisories = new_table([
                "CVE",
                "COMPONENT",
                "INSTALLED",
                "FIXED IN",
                "SEVERITY",
                "SUMMARY",
            ]);
            for advisory in &self.advisories {
                advisories.add_row([
                    advisory.cve.to_string(),
                    advisory.component.as_str().to_string(),
                    advisory.installed.clone(),
                    advisory.fixed_in.clone(),
                    advisory.severity.to_string(),
                    advisory.summary.to_string(),
                ]);
            }
            out.push_str(&advisories.to_string());
            out.push_str("\n(advisories compare upstream versions; distributions backport fixes: check your vendor)\n\n");
        }
        let mut containers = new_table([
            "CONTAINER",
            "ID",
            "STATE",
            "IMAGE",
            "WORST",
            "FAILED CHECKS",
        ]);
        for container in &self.containers {
            let mut failed: Vec<&Finding> = container
                .findings
                .iter()
                .filter(|finding| finding.result == CheckResult::Fail)
                .collect();
            failed.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
            let worst = failed
                .first()
                .map(|finding| finding.severity.to_string())
                .unwrap_or_else(|| "-".into());
            let listed: Vec<&str> = failed.iter().map(|finding| finding.check).collect();
            let mut row = vec![
                container.name.clone(),
                container.id.chars().take(12).collect(),
                container.state.clone(),
                container.image.clone(),
                worst,
                listed.join(" "),
            ];
            if let Some(verdict) = &container.verdict {
                row.push(describe_verdict(verdict));
            }
            containers.add_row(row);
        }
        out.push_str(&containers.to_string());
        out.push('\n');
        out
    }
}

/// One cell: what the enforcing policy would do, then what audit policies would have done.
fn describe_verdict(verdict: &Verdict) -> String {
    let actions = |list: &[lazaret_core::quarantine::Action]| {
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut lines = Vec::new();
    if let Some(policy) = &verdict.enforcing_policy {
        lines.push(format!("ENFORCE {policy}: {}", actions(&verdict.actions)));
    }
    for would in &verdict.would_have {
        lines.push(format!(
            "audit {}: would {}",
            would.policy,
            actions(&would.actions)
        ));
    }
    if lines.is_empty() {
        lines.push("-".into());
    }
    lines.join("\n")
}

fn new_table<H: Into<comfy_table::Row>>(header: H) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    table
}

#[cfg(test)]
mod tests {
    use lazaret_core::{ContainerId, RuntimeKind, posture};

    use super::*;

    fn report_with_privileged_container() -> PostureReport {
        let mut info =
            ContainerInfo::unknown(ContainerId::new("0123456789abcdef"), RuntimeKind::Docker);
        info.name = "risky".into();
        info.privileged = Some(true);
        let container = ContainerReport::new(&info, posture::assess(&info), None);
        let runtime = RuntimeReport {
            runtime: "docker".into(),
            endpoint: "/var/run/docker.sock".into(),
            reachable: true,
            error: None,
            version: Some(RuntimeVersion {
                version: "20.10.24+dfsg1".into(),
                api_version: "1.41".into(),
                containerd: Some("1.6.20~ds1".into()),
                runc: Some("1.1.5+ds1".into()),
            }),
        };
        PostureReport::new("node-1".into(), vec![runtime], vec![container])
    }

    #[test]
    fn json_has_the_documented_shape() {
        let report = report_with_privileged_container();
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["node"], "node-1");
        assert_eq!(json["runtimes"][0]["runtime"], "docker");
        let container = &json["containers"][0];
        for field in [
            "id",
            "name",
            "runtime",
            "namespace",
            "image",
            "state",
            "findings",
        ] {
            assert!(container.get(field).is_some(), "missing {field}");
        }
        let privileged = container["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|finding| finding["check"] == "5.5")
            .unwrap();
        assert_eq!(privileged["result"], "fail");
        assert_eq!(privileged["severity"], "critical");
        for field in ["title", "detail"] {
            assert!(privileged.get(field).is_some(), "missing {field}");
        }
        assert!(
            json["advisories"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["cve"] == "CVE-2024-21626")
        );
    }

    #[test]
    fn fail_on_threshold() {
        let report = report_with_privileged_container();
        assert!(report.has_failures_at_or_above(Severity::Critical));
        let clean = PostureReport::new("n".into(), vec![], vec![]);
        assert!(!clean.has_failures_at_or_above(Severity::Info));
    }

    #[test]
    fn table_lists_failed_checks_and_unreachable_runtimes() {
        let mut report = report_with_privileged_container();
        report.runtimes.push(RuntimeReport {
            runtime: "docker".into(),
            endpoint: "/nowhere.sock".into(),
            reachable: false,
            error: Some("socket not found".into()),
            version: None,
        });
        let table = report.to_table();
        assert!(table.contains("risky"));
        assert!(table.contains("5.5"));
        assert!(table.contains("UNREACHABLE: socket not found"));
        assert!(table.contains("CVE-2024-21626"));
    }
}
