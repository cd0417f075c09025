//! Runtime advisories: the node's Docker, containerd and runc versions checked against known
//! container-escape and isolation CVEs.
//!
//! Distributions backport fixes without changing the upstream version (Debian's runc
//! `1.1.5+ds1-1+deb12u1`, for instance), so a match here means "upstream version is affected:
//! check your vendor's changelog", never proof. Every advisory says so.

use serde::Serialize;

use crate::severity::Severity;

/// A runtime component whose version can be affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Docker,
    Containerd,
    Runc,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Docker => "docker",
            Component::Containerd => "containerd",
            Component::Runc => "runc",
        }
    }
}

/// A known vulnerability and the upstream versions that fix it, one per maintained branch.
#[derive(Debug, Clone, Copy)]
pub struct KnownVulnerability {
    pub cve: &'static str,
    pub component: Component,
    pub severity: Severity,
    pub summary: &'static str,
    /// Fixed versions, one per release branch (`major.minor`), ascending.
    pub fixed_in: &'static [&'static str],
}

/// Versions of the runtime components on one node, as their APIs report them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeVersions {
    pub docker: Option<String>,
    pub containerd: Option<String>,
    pub runc: Option<String>,
}

/// One advisory for this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Advisory {
    pub cve: &'static str,
    pub component: Component,
    pub severity: Severity,
    pub installed: String,
    /// The upstream fix for the installed branch, or the lowest fix of a newer branch.
    pub fixed_in: String,
    pub summary: &'static str,
    pub note: &'static str,
}

const BACKPORT_NOTE: &str = "upstream version is affected; distributions backport fixes without \
     changing it, so check your vendor's changelog before acting";

/// The table of known container-escape and isolation CVEs. Sources: the projects' security
/// advisories (GHSA) for each CVE.
pub static KNOWN_VULNERABILITIES: &[KnownVulnerability] = &[
    KnownVulnerability {
        cve: "CVE-2019-5736",
        component: Component::Runc,
        severity: Severity::Critical,
        summary: "a container process can overwrite the host's runc binary (/proc/self/exe) and run as root on the host",
        fixed_in: &["1.0.0-rc7"],
    },
    KnownVulnerability {
        cve: "CVE-2021-30465",
        component: Component::Runc,
        severity: Severity::High,
        summary: "symlink-exchange race in volume mounts lets a container mount host paths",
        fixed_in: &["1.0.0-rc95"],
    },
    KnownVulnerability {
        cve: "CVE-2023-27561",
        component: Component::Runc,
        severity: Severity::High,
        summary: "AppArmor bypass through a symlinked /proc in a malicious image",
        fixed_in: &["1.1.5"],
    },
    KnownVulnerability {
        cve: "CVE-2024-21626",
        component: Component::Runc,
        severity: Severity::Critical,
        summary: "leaked file descriptor lets a container's working directory point into the host filesystem (Leaky Vessels)",
        fixed_in: &["1.1.12"],
    },
    KnownVulnerability {
        cve: "CVE-2025-31133",
        component: Component::Runc,
        severity: Severity::High,
        summary: "maskedPaths bypass through a /dev/null symlink allows writes to host procfs files and container escape",
        fixed_in: &["1.2.8", "1.3.3", "1.4.0-rc.3"],
    },
    KnownVulnerability {
        cve: "CVE-2025-52565",
        component: Component::Runc,
        severity: Severity::High,
        summary: "/dev/console bind-mount race redirects writes to host procfs and allows container escape",
        fixed_in: &["1.2.8", "1.3.3", "1.4.0-rc.3"],
    },
    KnownVulnerability {
        cve: "CVE-2025-52881",
        component: Component::Runc,
        severity: Severity::High,
        summary: "procfs write redirection bypasses LSM labels and masked paths, allowing container escape",
        fixed_in: &["1.2.8", "1.3.3", "1.4.0-rc.3"],
    },
    KnownVulnerability {
        cve: "CVE-2020-15257",
        component: Component::Containerd,
        severity: Severity::High,
        summary: "containerd-shim API reachable from host-network containers through an abstract socket",
        fixed_in: &["1.3.9", "1.4.3"],
    },
    KnownVulnerability {
        cve: "CVE-2022-23648",
        component: Component::Containerd,
        severity: Severity::High,
        summary: "image volume path traversal lets a container read host files through the CRI plugin",
        fixed_in: &["1.4.13", "1.5.10", "1.6.1"],
    },
    KnownVulnerability {
        cve: "CVE-2024-40635",
        component: Component::Containerd,
        severity: Severity::Medium,
        summary: "integer overflow in a numeric User makes a container run as root",
        fixed_in: &["1.6.38", "1.7.27", "2.0.4"],
    },
    KnownVulnerability {
        cve: "CVE-2021-41091",
        component: Component::Docker,
        severity: Severity::Medium,
        summary: "permissive data directory lets unprivileged host users run setuid binaries of containers",
        fixed_in: &["20.10.9"],
    },
    KnownVulnerability {
        cve: "CVE-2024-41110",
        component: Component::Docker,
        severity: Severity::Critical,
        summary: "AuthZ plugin bypass with a zero-length request body (affects hosts using authorization plugins)",
        fixed_in: &["23.0.15", "26.1.5", "27.1.1"],
    },
];

/// Parses the versions runtimes report (`1.1.5+ds1`, `1.6.20~ds1`, `v1.7.0`, `1.0.0-rc6`,
/// `1.0-rc95`, `20.10.24+dfsg1`) into semver, dropping distribution suffixes.
pub fn parse_version(text: &str) -> Option<semver::Version> {
    let trimmed = text.trim().trim_start_matches('v');
    let without_build = trimmed.split(['+', '~']).next()?;
    let (numbers, prerelease) = match without_build.split_once('-') {
        Some((numbers, prerelease)) => (numbers, Some(prerelease)),
        None => (without_build, None),
    };
    let mut parts: Vec<&str> = numbers.split('.').collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|part| part.parse::<u64>().is_err())
    {
        return None;
    }
    while parts.len() < 3 {
        parts.push("0");
    }
    let mut normalized = parts.join(".");
    if let Some(prerelease) = prerelease.filter(|value| !value.is_empty()) {
        normalized.push('-');
        normalized.push_str(prerelease);
    }
    semver::Version::parse(&normalized).ok()
}

fn branch(version: &semver::Version) -> (u64, u64) {
    (version.major, version.minor)
}

/// The fix that applies to `installed`, if it is affected: the same branch's fix when there is
/// one, otherwise (an unmaintained branch) the lowest fix of a newer branch.
fn applicable_fix<'a>(installed: &semver::Version, fixed_in: &[&'a str]) -> Option<&'a str> {
    let fixes: Vec<(semver::Version, &str)> = fixed_in
        .iter()
        .filter_map(|text| parse_version(text).map(|version| (version, *text)))
        .collect();
    if let Some((fix, text)) = fixes
        .iter()
        .find(|(fix, _)| branch(fix) == branch(installed))
    {
        return (installed < fix).then_some(*text);
    }
    fixes
        .iter()
        .find(|(fix, _)| branch(fix) > branch(installed))
        .map(|(_, text)| *text)
}

/// Every known vulnerability that the node's reported versions are affected by.
pub fn advisories_for(versions: &RuntimeVersions) -> Vec<Advisory> {
    let mut advisories = Vec::new();
    for known in KNOWN_VULNERABILITIES {
        let installed = match known.component {
            Component::Docker => versions.docker.as_deref(),
            Component::Containerd => versions.containerd.as_deref(),
            Component::Runc => versions.runc.as_deref(),
        };
        let Some(installed_text) = installed else {
            continue;
        };
        let Some(installed_version) = parse_version(installed_text) else {
            continue;
        };
        if let Some(fix) = applicable_fix(&installed_version, known.fixed_in) {
            advisories.push(Advisory {
                cve: known.cve,
                component: known.component,
                severity: known.severity,
                installed: installed_text.to_string(),
                fixed_in: fix.to_string(),
                summary: known.summary,
                note: BACKPORT_NOTE,
            });
        }
    }
    advisories
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cves(versions: &RuntimeVersions) -> Vec<&'static str> {
        advisories_for(versions)
            .into_iter()
            .map(|advisory| advisory.cve)
            .collect()
    }

    #[test]
    fn parses_distribution_versions() {
        assert_eq!(
            parse_version("1.1.5+ds1"),
            semver::Version::parse("1.1.5").ok()
        );
        assert_eq!(
            parse_version("1.6.20~ds1"),
            semver::Version::parse("1.6.20").ok()
        );
        assert_eq!(
            parse_version("20.10.24+dfsg1"),
            semver::Version::parse("20.10.24").ok()
        );
        assert_eq!(
            parse_version("v1.7.0"),
            semver::Version::parse("1.7.0").ok()
        );
        assert_eq!(
            parse_version("1.0-rc95"),
            semver::Version::parse("1.0.0-rc95").ok()
        );
        assert_eq!(
            parse_version("1.0.0-rc6"),
            semver::Version::parse("1.0.0-rc6").ok()
        );
        assert_eq!(parse_version("dev"), None);
    }

    #[test]
    fn runc_1_0_rc6_is_affected_by_cve_2019_5736() {
        let versions = RuntimeVersions {
            runc: Some("1.0.0-rc6".into()),
            ..Default::default()
        };
        assert!(cves(&versions).contains(&"CVE-2019-5736"));
    }

    #[test]
    fn debian_bookworm_runtimes_are_flagged_with_backport_note() {
        // The versions this project's machines run (FACTS.md).
        let versions = RuntimeVersions {
            docker: Some("20.10.24+dfsg1".into()),
            containerd: Some("1.6.20~ds1".into()),
            runc: Some("1.1.5+ds1".into()),
        };
        let found = advisories_for(&versions);
        let ids: Vec<_> = found.iter().map(|advisory| advisory.cve).collect();
        assert!(ids.contains(&"CVE-2024-21626"));
        assert!(ids.contains(&"CVE-2024-40635"));
        assert!(ids.contains(&"CVE-2024-41110"));
        assert!(!ids.contains(&"CVE-2019-5736"), "1.1.5 is past rc7");
        assert!(!ids.contains(&"CVE-2023-27561"), "fixed in 1.1.5 itself");
        assert!(!ids.contains(&"CVE-2021-41091"), "fixed in 20.10.9");
        let leaky = found
            .iter()
            .find(|advisory| advisory.cve == "CVE-2024-21626")
            .unwrap();
        assert_eq!(leaky.fixed_in, "1.1.12");
        assert!(leaky.note.contains("backport"));
    }

    #[test]
    fn branch_fixes_apply_per_branch() {
        let patched_branch = RuntimeVersions {
            runc: Some("1.3.3".into()),
            ..Default::default()
        };
        assert!(!cves(&patched_branch).contains(&"CVE-2025-31133"));
        let unpatched_branch = RuntimeVersions {
            runc: Some("1.3.2".into()),
            ..Default::default()
        };
        assert!(cves(&unpatched_branch).contains(&"CVE-2025-31133"));
        let newer_branch = RuntimeVersions {
            runc: Some("1.5.0".into()),
            ..Default::default()
        };
        assert!(cves(&newer_branch).is_empty());
        // 1.5.x is an unmaintained containerd branch between two fixed ones: affected.
        let unmaintained = RuntimeVersions {
            containerd: Some("1.5.3".into()),
            ..Default::default()
        };
        let found = advisories_for(&unmaintained);
        let cve = found
            .iter()
            .find(|advisory| advisory.cve == "CVE-2024-40635")
            .unwrap();
        assert_eq!(cve.fixed_in, "1.6.38");
    }

    #[test]
    fn unparseable_or_missing_versions_yield_nothing() {
        let versions = RuntimeVersions {
            docker: Some("master-dockerproject".into()),
            ..Default::default()
        };
        assert!(advisories_for(&versions).is_empty());
        assert!(advisories_for(&RuntimeVersions::default()).is_empty());
    }
}
