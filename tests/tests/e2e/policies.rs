//! `scan --policy-dir deploy/policies` on the real engine: a zoo of containers gets sensible
//! verdicts from the shipped packs (strict enforces on host takeover, the CIS baseline only
//! audits).

use std::path::Path;
use std::sync::Arc;

use lazaret_agent::app;
use lazaret_agent::runtime::docker::DockerRuntime;
use lazaret_core::policy::{PolicySet, files};
use lazaret_core::quarantine::Action;
use lazaret_tests::agent::DEFAULT_DOCKER_SOCKET;
use lazaret_tests::{BUSYBOX_IMAGE, TestContainers, ensure_busybox_image};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_packs_give_sensible_verdicts_for_a_zoo() {
    ensure_busybox_image(None).unwrap();
    let policy_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/policies");
    let set = PolicySet::load(&files::read_sources(&[policy_dir]).unwrap()).unwrap();
    let containers = TestContainers::new(None);
    let create = |suffix: &str, options: &[&str]| {
        let mut args = options.to_vec();
        args.extend([BUSYBOX_IMAGE, "sleep", "600"]);
        containers.create(suffix, &args).unwrap()
    };
    let privileged = create("privileged", &["--privileged"]);
    let socket = create(
        "socket",
        &["-v", "/var/run/docker.sock:/var/run/docker.sock"],
    );
    let admin = create("admin", &["--cap-add", "SYS_ADMIN"]);
    let protected = create(
        "protected",
        &["--privileged", "--label", "lazaret.io/protected=true"],
    );
    let hardened = create(
        "hardened",
        &[
            "-u",
            "1000",
            "--memory",
            "64m",
            "--pids-limit",
            "50",
            "--security-opt",
            "no-new-privileges",
        ],
    );
    let root = create("root", &[]);

    let runtime = Arc::new(DockerRuntime::new(DEFAULT_DOCKER_SOCKET));
    let report = app::scan("test".into(), vec![runtime], Some(&set))
        .await
        .unwrap();
    let verdict = |id: &str| {
        report
            .containers
            .iter()
            .find(|container| container.id == id)
            .and_then(|container| container.verdict.clone())
            .unwrap_or_else(|| panic!("no verdict for {id}"))
    };
    let would = |id: &str| -> Vec<String> {
        verdict(id)
            .would_have
            .into_iter()
            .map(|would| would.policy.to_string())
            .collect()
    };

    for takeover in [&privileged, &socket] {
        let decided = verdict(takeover);
        assert_eq!(
            decided.enforcing_policy.as_deref(),
            Some("strict-host-takeover"),
            "{decided:?}"
        );
        assert_eq!(decided.actions, [Action::NetworkCut, Action::Pause]);
        assert_eq!(decided.ttl, Some(std::time::Duration::from_secs(86_400)));
    }
    assert!(would(&privileged).contains(&"cis-privileged".to_string()));
    assert!(would(&socket).contains(&"cis-docker-socket".to_string()));

    let decided = verdict(&admin);
    assert_eq!(
        decided.enforcing_policy.as_deref(),
        Some("strict-dangerous-capabilities")
    );
    assert!(
        decided
            .findings
            .iter()
            .any(|finding| &*finding.why == "adds SYS_ADMIN")
    );

    let decided = verdict(&protected);
    assert_eq!(
        decided.enforcing_policy, None,
        "protected containers are excluded: {decided:?}"
    );
    assert!(
        would(&protected).contains(&"cis-privileged".to_string()),
        "the baseline still audits them"
    );

    let decided = verdict(&hardened);
    assert_eq!(decided.enforcing_policy, None);
    assert!(!would(&hardened).contains(&"cis-root-user".to_string()));
    assert!(!would(&hardened).contains(&"cis-resource-limits".to_string()));

    let decided = verdict(&root);
    assert_eq!(decided.enforcing_policy, None);
    assert!(would(&root).contains(&"cis-root-user".to_string()));
    assert!(would(&root).contains(&"cis-resource-limits".to_string()));
}
