//! Threat indicators with a real agent process on the real Docker engine: an indicators bundle
//! that lists the image of an already-running container sweeps every container, and the policy
//! whose `indicator` rule matches it quarantines that container.

use std::time::Duration;

use lazaret_core::bundle::BundleKind;
use lazaret_tests::fleet::{Placement, TestFleet};
use lazaret_tests::{
    BUSYBOX_IMAGE, TestContainers, ensure_busybox_image, init_tracing, wait_until,
};

const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn an_indicators_bundle_sweeps_running_containers() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let mut fleet = TestFleet::new().unwrap();
    fleet.add_agent(Placement::loopback(), &[]).unwrap();
    let running = containers
        .run("ioc-running", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let image_id = containers.field(&running, "{{.Image}}").unwrap();

    // A policy that acts on listed images, scoped to this run's containers; nothing listed yet.
    let policies = fleet.dir().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("iocs.yaml"),
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: known-bad-images\nmode: enforce\n\
             match:\n  labels: {{lazaret.test: \"{}\"}}\n\
             rules: [{{indicator: [image-id, image-digest]}}]\nactions: [pause]\n",
            containers.run_id()
        ),
    )
    .unwrap();
    let bundle = fleet.sign("policies.bundle", 1, &policies).unwrap();
    fleet
        .json(0, &["bundle", "apply", bundle.to_str().unwrap()])
        .unwrap();
    let paused = || containers.field(&running, "{{.State.Paused}}").unwrap() == "true";
    std::thread::sleep(Duration::from_secs(1));
    assert!(!paused(), "no indicator lists its image yet");

    // The indicators bundle lists the running container's image: the sweep quarantines it.
    let indicators = fleet.dir().join("indicators");
    std::fs::create_dir(&indicators).unwrap();
    std::fs::write(
        indicators.join("intel.yaml"),
        format!(
            "apiVersion: lazaret.dev/v1\nkind: Indicators\nsource: e2e\nindicators:\n\
             - {{id: bad-busybox, type: image-id, value: '{image_id}', severity: critical}}\n\
             - {{id: expired, type: image-id, value: 'sha256:{}', valid_until: '2020-01-01T00:00:00Z'}}\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let bundle = fleet
        .sign_kind(BundleKind::Indicators, "indicators.bundle", 1, &indicators)
        .unwrap();
    fleet
        .json(0, &["bundle", "apply", bundle.to_str().unwrap()])
        .unwrap();
    wait_until("the running container is quarantined", DEADLINE, paused);
    let quarantines = fleet.json(0, &["quarantines"]).unwrap();
    let record = quarantines
        .as_array()
        .unwrap()
        .iter()
        .find(|record| record["container"] == running.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(record["source"], "policy:known-bad-images", "{quarantines}");
    assert!(
        record["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("bad-busybox")),
        "the reason names the indicator: {record}"
    );
}
