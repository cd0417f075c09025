//! Time moved forward through an injected clock ([`ManualClock`]), never the machine's: an
//! agent in process on the real Docker engine, with three things that wait for the wall clock:
//!
//! - a quarantine with a one-hour TTL ends two (injected) hours later;
//! - a container released from a policy's verdict stays free while its exemption holds and is
//!   quarantined again once it lapses (nothing about the container changed: the sweep notices);
//! - an indicators bundle past its expiry puts its indicators in doubt: a `fail-closed` policy
//!   with an `indicator` rule then quarantines the container it could no longer clear, and the
//!   gap is audited.

use std::sync::Arc;
use std::time::Duration;

use lazaret_agent::clock::ManualClock;
use lazaret_agent::store::{Durability, Store};
use lazaret_core::ContainerId;
use lazaret_core::bundle::{Bundle, BundleItem, BundleKind, BundleSigningKey, TrustedKeys};
use lazaret_core::quarantine::{DEFAULT_QUARANTINE_ACTIONS, QuarantineRequest, QuarantineSource};
use lazaret_tests::agent::TestAgent;
use lazaret_tests::{BUSYBOX_IMAGE, TestContainers, ensure_busybox_image, init_tracing};

const HOUR: Duration = Duration::from_secs(3_600);
const DEADLINE: Duration = Duration::from_secs(30);

fn policies(run: &str) -> String {
    format!(
        "apiVersion: lazaret.dev/v1\nkind: Policy\nname: clock-policy\nmode: enforce\n\
         match:\n  labels: {{lazaret.test: \"{run}\", lazaret.clock: policy}}\n\
         rules: [{{expr: \"true\"}}]\nactions: [pause]\n\
         ---\n\
         apiVersion: lazaret.dev/v1\nkind: Policy\nname: clock-indicators\nmode: enforce\n\
         match:\n  labels: {{lazaret.test: \"{run}\", lazaret.clock: indicators}}\n\
         rules: [{{indicator: [image-id, image-digest]}}]\nactions: [pause]\n\
         on_error: fail-closed\n"
    )
}

/// An indicators bundle (nothing this test runs matches it) expiring an hour from `now`.
fn indicators_bundle(key: &BundleSigningKey, now: i64) -> Vec<u8> {
    Bundle::new(
        BundleKind::Indicators,
        1,
        now as u64,
        (now + 3_600) as u64,
        vec![BundleItem {
            name: "miners.yaml".into(),
            content: "apiVersion: lazaret.dev/v1\nkind: Indicators\nsource: clock-test\n\
                      indicators:\n- {id: miner, type: process-name, value: xmrig-clock-test}\n"
                .into(),
        }],
        key.id(),
    )
    .unwrap()
    .sign(key)
    .unwrap()
    .to_file_bytes()
}

async fn wait_status(containers: &TestContainers, id: &str, status: &str, what: &str) {
    let waited = tokio::time::timeout(DEADLINE, async {
        while containers.field(id, "{{.State.Status}}").unwrap() != status {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "never {status}: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_exemptions_and_bundle_expiry_follow_the_injected_clock() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let state = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let key = BundleSigningKey::from_seed([42; 32]);
    let trusted = TrustedKeys::new([key.public()]);
    let agent = TestAgent::start_enforcing_with(
        state.path(),
        &policies(containers.run_id()),
        Duration::from_millis(300),
        clock.clone(),
        |config| {
            config.trusted_keys = trusted;
            // The indicators' expiry is looked at on the scan's tick.
            config.scan.interval = Some(Duration::from_millis(500));
        },
    )
    .await
    .unwrap();
    let book = agent.bundles().clone();
    let offered = book
        .offer(indicators_bundle(&key, clock_now(&clock)), "test", true)
        .await;
    assert!(offered.is_ok(), "{offered:?}");

    let ttl = containers
        .run("ttl", &[BUSYBOX_IMAGE, "sleep", "600"])
        .unwrap();
    let policy = containers
        .run(
            "policy",
            &[
                "--label",
                "lazaret.clock=policy",
                BUSYBOX_IMAGE,
                "sleep",
                "600",
            ],
        )
        .unwrap();
    let doubted = containers
        .run(
            "indicators",
            &[
                "--label",
                "lazaret.clock=indicators",
                BUSYBOX_IMAGE,
                "sleep",
                "600",
            ],
        )
        .unwrap();
    wait_status(&containers, &policy, "paused", "the policy's verdict").await;

    // A quarantine with a TTL of an hour, and a release leaving an exemption of an hour.
    agent
        .enforcer()
        .quarantine(
            QuarantineRequest {
                container: ContainerId::new(ttl.as_str()),
                node: "clock".into(),
                actions: DEFAULT_QUARANTINE_ACTIONS.to_vec(),
                ttl: Some(HOUR),
                reason: "an hour".into(),
                actor: "CN=e2e".into(),
                source: QuarantineSource::Operator,
                scope: Default::default(),
            },
            false,
        )
        .await
        .unwrap();
    wait_status(&containers, &ttl, "paused", "the operator's quarantine").await;
    agent
        .enforcer()
        .release(
            ContainerId::new(policy.as_str()),
            "CN=e2e",
            "reviewed",
            HOUR,
        )
        .await
        .unwrap();
    wait_status(&containers, &policy, "running", "the release").await;

    // Half an hour: nothing is due.
    clock.advance(HOUR / 2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (id, status) in [
        (&ttl, "paused"),
        (&policy, "running"),
        (&doubted, "running"),
    ] {
        assert_eq!(
            containers.field(id, "{{.State.Status}}").unwrap(),
            status,
            "{id}"
        );
    }

    // Two hours on: the TTL ran out, the exemption lapsed, the indicators bundle expired.
    clock.advance(HOUR * 3 / 2);
    wait_status(&containers, &ttl, "running", "the TTL ran out").await;
    wait_status(&containers, &policy, "paused", "the exemption lapsed").await;
    wait_status(&containers, &doubted, "paused", "fail-closed on doubt").await;
    let doubt = book
        .indicators()
        .doubt
        .clone()
        .expect("indicators in doubt");
    assert!(doubt.contains("expired"), "{doubt}");
    // The book holds the store open.
    drop(book);
    agent.stop().await;

    let store = Store::open(state.path(), Durability::Process).unwrap();
    let audit = store.audit_records(1, 10_000).unwrap();
    assert!(
        audit
            .iter()
            .any(|record| record.action == "expire" && record.target == ttl),
        "no expiry audited"
    );
    assert!(
        audit.iter().any(|record| record.action == "enforcement-gap"
            && record.target == doubted
            && record.outcome.starts_with("fail-closed")
            && record.reason.contains("in doubt")),
        "no gap audited for the doubted container"
    );
}

fn clock_now(clock: &ManualClock) -> i64 {
    use lazaret_agent::clock::Clock;
    clock.now_unix()
}
