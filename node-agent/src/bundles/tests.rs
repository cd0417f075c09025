use lazaret_core::bundle::{Bundle, BundleItem, BundleSigningKey};
use lazaret_core::policy::IndicatorKind;

use super::*;
use crate::metrics::Metrics;
use crate::store::Durability;

const POLICY: &str = "apiVersion: lazaret.dev/v1\nkind: Policy\nname: p\nmode: enforce\n\
                      rules: [{check: privileged}]\nactions: [pause]\n";

fn signed(key: &BundleSigningKey, version: u64, content: &str) -> Vec<u8> {
    signed_kind(
        key,
        BundleKind::Policies,
        version,
        (1_700_000_000, 1_700_086_400),
        content,
    )
}

/// A bundle of `kind` valid over `(created, expires)` (Unix seconds), one file of `content`.
fn signed_kind(
    key: &BundleSigningKey,
    kind: BundleKind,
    version: u64,
    (created, expires): (i64, i64),
    content: &str,
) -> Vec<u8> {
    Bundle::new(
        kind,
        version,
        created as u64,
        expires as u64,
        vec![BundleItem {
            name: "content.yaml".into(),
            content: content.into(),
        }],
        key.id(),
    )
    .unwrap()
    .sign(key)
    .unwrap()
    .to_file_bytes()
}

fn book(dir: &std::path::Path, key: &BundleSigningKey) -> (BundleBook, Metrics) {
    let store = Store::open(dir, Durability::Process).unwrap();
    let metrics = Metrics::new();
    let book = BundleBook::open(
        "node-1",
        TrustedKeys::new([key.public()]),
        store,
        metrics.fleet.clone(),
    )
    .unwrap();
    (book, metrics)
}

#[tokio::test]
async fn an_accepted_bundle_survives_a_restart_and_older_ones_stay_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = BundleSigningKey::from_seed([9; 32]);
    {
        let (book, metrics) = book(dir.path(), &key);
        assert!(book.policies().is_none());
        let applied = book
            .offer(signed(&key, 5, POLICY), "admin", true)
            .await
            .unwrap();
        assert!(matches!(applied, Offered::Applied { previous: None, .. }));
        assert_eq!(book.acks().borrow()[&BundleKind::Policies].version, 5);
        let text = metrics.encode();
        assert!(
            text.contains("lazaret_bundle_version{kind=\"policies\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("lazaret_bundle_stale{kind=\"policies\"} 1"),
            "expired in 2023: {text}"
        );
    }
    let (book, metrics) = book(dir.path(), &key);
    assert_eq!(book.held(BundleKind::Policies).unwrap().from, "store");
    assert_eq!(book.policies().unwrap().policies[0].name, "p");
    assert!(!book.wants(
        BundleKind::Policies,
        book.held(BundleKind::Policies).unwrap().stamp
    ));
    let older = book
        .offer(signed(&key, 4, POLICY), "admin", true)
        .await
        .unwrap_err();
    assert!(matches!(older, OfferError::Older { .. }), "{older}");
    let same = book
        .offer(signed(&key, 5, POLICY), "peer node-2", false)
        .await
        .unwrap();
    assert!(matches!(same, Offered::AlreadyHave { .. }));
    let text = metrics.encode();
    assert!(
        text.contains("lazaret_bundles_refused_total{kind=\"policies\",reason=\"older\"} 1"),
        "{text}"
    );
    // The refusal an operator caused is audited; the chain holds the application too.
    let lines = book.store.audit_lines();
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("bundle applied v5")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|line| line.starts_with("bundle refused:")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn bad_content_untrusted_keys_and_garbage_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = BundleSigningKey::from_seed([9; 32]);
    let (book, _metrics) = book(dir.path(), &key);
    let invalid = book
        .offer(
            signed(&key, 1, "kind: Policy\nname: [broken"),
            "admin",
            true,
        )
        .await
        .unwrap_err();
    assert!(matches!(invalid, OfferError::Invalid { .. }), "{invalid}");
    let stranger = BundleSigningKey::from_seed([1; 32]);
    let untrusted = book
        .offer(signed(&stranger, 2, POLICY), "admin", true)
        .await
        .unwrap_err();
    assert_eq!(untrusted.reason(), "untrusted");
    let garbage = book.offer(b"{}".to_vec(), "admin", true).await.unwrap_err();
    assert_eq!(garbage.reason(), "malformed");
    assert!(book.held(BundleKind::Policies).is_none());
    // Nothing was accepted, so even version 1 is still wanted.
    assert!(
        book.offer(signed(&key, 1, POLICY), "admin", true)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_canary_for_other_nodes_is_not_taken_and_the_promotion_is() {
    let dir = tempfile::tempdir().unwrap();
    let key = BundleSigningKey::from_seed([9; 32]);
    let (book, metrics) = book(dir.path(), &key);
    let canary = |version: u64, nodes: &[&str]| {
        Bundle::new(
            BundleKind::Policies,
            version,
            1_700_000_000,
            1_700_086_400,
            vec![BundleItem {
                name: "p.yaml".into(),
                content: POLICY.into(),
            }],
            key.id(),
        )
        .unwrap()
        .for_nodes(nodes.iter().map(ToString::to_string).collect())
        .sign(&key)
        .unwrap()
        .to_file_bytes()
    };
    let refused = book
        .offer(canary(6, &["node-2"]), "peer node-2", false)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, OfferError::NotForThisNode { .. }),
        "{refused}"
    );
    assert!(book.held(BundleKind::Policies).is_none(), "nothing applied");
    assert!(metrics.encode().contains(
        "lazaret_bundles_refused_total{kind=\"policies\",reason=\"not-for-this-node\"} 1"
    ));
    // Its own canary, then the promotion to every node.
    book.offer(canary(6, &["node-1", "node-2"]), "admin", true)
        .await
        .unwrap();
    book.offer(canary(7, &[]), "admin", true).await.unwrap();
    assert_eq!(book.acks().borrow()[&BundleKind::Policies].version, 7);
}

#[tokio::test]
async fn the_index_is_rebuilt_once_an_indicator_expires() {
    let dir = tempfile::tempdir().unwrap();
    let key = BundleSigningKey::from_seed([9; 32]);
    let (book, _metrics) = book(dir.path(), &key);
    let now = chrono::Utc::now();
    let until = now + chrono::Duration::hours(1);
    let content = format!(
        "apiVersion: lazaret.dev/v1\nkind: Indicators\nsource: t\nindicators:\n\
         - {{id: short, type: process-name, value: xmrig, valid_until: '{}'}}\n\
         - {{id: long, type: process-name, value: kdevtmpfsi}}\n",
        until.to_rfc3339()
    );
    let created = now.timestamp();
    let bundle = signed_kind(
        &key,
        BundleKind::Indicators,
        1,
        (created, created + 86_400),
        &content,
    );
    book.offer(bundle, "admin", true).await.unwrap();
    assert_eq!(book.indicators().len(), 2);
    assert!(!book.reindex_expired_at(now.timestamp()).await);
    assert!(book.reindex_expired_at(until.timestamp() + 1).await);
    let index = book.indicators();
    assert_eq!((index.len(), index.expired), (1, 1));
    assert!(index.lookup(IndicatorKind::ProcessName, "xmrig").is_none());
    assert!(
        !book.reindex_expired_at(until.timestamp() + 1).await,
        "once"
    );
}

#[tokio::test]
async fn past_the_bundles_expiry_the_indicators_are_in_doubt() {
    let dir = tempfile::tempdir().unwrap();
    let key = BundleSigningKey::from_seed([9; 32]);
    let (book, _metrics) = book(dir.path(), &key);
    let now = chrono::Utc::now().timestamp();
    let expires = now + 3_600;
    let bundle = signed_kind(
        &key,
        BundleKind::Indicators,
        1,
        (now, expires),
        "apiVersion: lazaret.dev/v1\nkind: Indicators\nsource: t\nindicators:\n\
         - {id: miner, type: process-name, value: xmrig}\n",
    );
    book.offer(bundle, "admin", true).await.unwrap();
    assert!(book.indicators().doubt.is_none());
    assert!(!book.reindex_expired_at(expires - 1).await, "not yet");
    assert!(book.reindex_expired_at(expires).await, "at the expiry");
    let index = book.indicators();
    let doubt = index.doubt.as_deref().expect("in doubt");
    assert!(doubt.contains("expired") && doubt.contains("v1"), "{doubt}");
    assert_eq!(index.len(), 1, "the entries still match");
    assert!(!book.reindex_expired_at(expires + 60).await, "once");
}
