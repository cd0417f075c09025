//! Feeds arbitrary text to the policy loader as one or two policy files: `PolicySet::load`
//! (which runs `document::parse_file`, the strict serde YAML parse of `kind: Policy` and
//! `kind: Response` documents, glob compilation of selectors and CEL compilation and checking of
//! every `expr`), then judges the loaded set against a few fixed containers (so that compiled
//! CEL programs are evaluated too) and checks every detection response.
//!
//! Must hold: nothing panics; bad input comes back as `PolicyErrors`, each one naming the file
//! it is in, with a 1-based line when it has one; a set that loads has its policies sorted by
//! name and unique.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use lazaret_core::container::{HostNamespaces, Mount};
use lazaret_core::policy::{Detection, JudgeInput, NoIndicators, PolicySet, PolicySource, judge};
use lazaret_core::{
    ContainerId, ContainerInfo, ContainerState, Finding, RuntimeKind, Severity, posture,
};
use libfuzzer_sys::fuzz_target;

/// The containers every loaded set is judged on, with their CIS findings (built once).
fn containers() -> &'static [(ContainerInfo, Vec<Finding>)] {
    static CONTAINERS: OnceLock<Vec<(ContainerInfo, Vec<Finding>)>> = OnceLock::new();
    CONTAINERS.get_or_init(|| {
        build_containers()
            .into_iter()
            .map(|container| {
                let findings = posture::assess(&container);
                (container, findings)
            })
            .collect()
    })
}

fn build_containers() -> Vec<ContainerInfo> {
    let unknown = ContainerInfo::unknown(ContainerId::new("0123456789ab"), RuntimeKind::Docker);
    let mut known = ContainerInfo::unknown(
        ContainerId::new("3f2a9c1b7d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"),
        RuntimeKind::Containerd,
    );
    known.name = "web".into();
    known.namespace = "k8s.io".into();
    known.state = ContainerState::Running;
    known.image = "registry.example.com/team/app:1.2".into();
    known.image_id = "sha256:00".into();
    known.image_digest = Some("registry.example.com/team/app@sha256:00".into());
    known.labels = BTreeMap::from([
        ("env".to_string(), "prod".to_string()),
        ("lazaret.io/protected".to_string(), "false".to_string()),
    ]);
    known.user = Some(String::new());
    known.privileged = Some(true);
    known.cap_add = Some(vec!["SYS_ADMIN".into(), "NET_ADMIN".into()]);
    known.cap_drop = Some(vec![]);
    known.host_namespaces = HostNamespaces {
        network: Some(true),
        pid: Some(false),
        ipc: Some(true),
        uts: Some(false),
        user: Some(false),
    };
    known.mounts = Some(vec![Mount {
        source: "/var/run/docker.sock".into(),
        destination: "/var/run/docker.sock".into(),
        read_write: true,
        kind: "bind".into(),
        propagation: "rprivate".into(),
    }]);
    known.devices = Some(vec![]);
    known.ports = Some(vec![]);
    known.read_only_rootfs = Some(false);
    vec![unknown, known]
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Split at the first NUL: two files (duplicate names across files are a set-level check).
    let sources: Vec<PolicySource> = match text.split_once('\0') {
        Some((first, second)) => vec![
            PolicySource::new("a.yaml", first),
            PolicySource::new("b.yaml", second),
        ],
        None => vec![PolicySource::new("a.yaml", text)],
    };
    let loaded = PolicySet::load(&sources);
    match &loaded {
        Err(errors) => {
            assert!(!errors.errors.is_empty(), "a refused set names a problem");
            for error in &errors.errors {
                assert!(
                    sources.iter().any(|source| source.name == error.file),
                    "{error}"
                );
                assert_ne!(error.line, Some(0), "lines are 1-based: {error}");
                let _ = error.to_string();
            }
            let _ = errors.to_string();
        }
        Ok(set) => {
            for pair in set.policies.windows(2) {
                assert!(pair[0].name < pair[1].name, "policies sorted and unique");
            }
            let _ = set.cel_fields();
            for (container, findings) in containers() {
                let verdict = judge(
                    set,
                    &JudgeInput {
                        container,
                        posture: findings,
                        indicators: &NoIndicators,
                        is_exempt: &|name| name.len() % 2 == 0,
                    },
                );
                let _ = format!("{verdict:?}");
                let detection = Detection {
                    rule: "Terminal shell in container".into(),
                    tags: vec!["shell".into()],
                    severity: Severity::Critical,
                    source: "falco".into(),
                };
                let _ = lazaret_core::detection::respond(set, &detection, container);
            }
        }
    }
});
