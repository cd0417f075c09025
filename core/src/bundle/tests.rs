use super::*;

fn key(seed: u8) -> BundleSigningKey {
    BundleSigningKey::from_seed([seed; 32])
}

fn item(name: &str, content: &str) -> BundleItem {
    BundleItem {
        name: name.into(),
        content: content.into(),
    }
}

fn bundle(version: u64, signer: &BundleSigningKey) -> Bundle {
    Bundle::new(
        BundleKind::Policies,
        version,
        1_700_000_000,
        1_700_086_400,
        vec![item("b.yaml", "second"), item("a.yaml", "first")],
        signer.id(),
    )
    .unwrap()
}

#[test]
fn a_signed_bundle_survives_its_file_and_verifies_with_a_trusted_key() {
    let signer = key(1);
    let signed = bundle(3, &signer).sign(&signer).unwrap();
    let parsed = SignedBundle::parse(&signed.to_file_bytes()).unwrap();
    assert_eq!(parsed, signed);
    let trusted = TrustedKeys::new([signer.public()]);
    let verified = trusted.verify(&parsed).unwrap();
    assert_eq!(verified.version, 3);
    assert_eq!(
        verified
            .items
            .iter()
            .map(|item| item.name.as_str())
            .collect::<Vec<_>>(),
        ["a.yaml", "b.yaml"],
        "items are sorted by name"
    );
}

#[test]
fn the_canonical_encoding_is_pinned() {
    let signed = bundle(3, &key(1)).sign(&key(1)).unwrap();
    assert_eq!(
        String::from_utf8(signed.unverified().canonical_bytes()).unwrap(),
        format!(
            r#"{{"kind":"policies","version":3,"created":1700000000,"expires":1700086400,"items":[{{"name":"a.yaml","content":"first"}},{{"name":"b.yaml","content":"second"}}],"signer":"{}"}}"#,
            key(1).id()
        )
    );
    // Changing the encoding changes every digest in the fleet: it needs a new SIGNING_CONTEXT.
    assert_eq!(
        signed.digest().to_hex(),
        hex::encode(Sha256::digest(signed.unverified().canonical_bytes()))
    );
    assert_eq!(key(1).id().0.len(), 16);
}

#[test]
fn reformatting_the_file_keeps_the_digest_and_the_signature() {
    let signer = key(1);
    let signed = bundle(3, &signer).sign(&signer).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&signed.to_file_bytes()).unwrap();
    let compact = serde_json::to_vec(&value).unwrap();
    let parsed = SignedBundle::parse(&compact).unwrap();
    assert_eq!(parsed.digest(), signed.digest());
    TrustedKeys::new([signer.public()]).verify(&parsed).unwrap();
}

#[test]
fn content_altered_after_signing_is_refused() {
    let signer = key(1);
    let signed = bundle(3, &signer).sign(&signer).unwrap();
    let text = String::from_utf8(signed.to_file_bytes())
        .unwrap()
        .replace("\"first\"", "\"forged\"");
    let parsed = SignedBundle::parse(text.as_bytes()).unwrap();
    assert_ne!(parsed.digest(), signed.digest());
    let error = TrustedKeys::new([signer.public()])
        .verify(&parsed)
        .unwrap_err();
    assert!(matches!(error, BundleError::BadSignature { .. }), "{error}");
    assert_eq!(error.reason(), "bad-signature");

    let bumped = String::from_utf8(signed.to_file_bytes())
        .unwrap()
        .replace("\"version\": 3", "\"version\": 4");
    let error = TrustedKeys::new([signer.public()])
        .verify(&SignedBundle::parse(bumped.as_bytes()).unwrap())
        .unwrap_err();
    assert!(matches!(error, BundleError::BadSignature { .. }), "{error}");
}

#[test]
fn a_bundle_from_an_untrusted_key_is_refused_and_rotation_trusts_both_keys() {
    let (old, new, stranger) = (key(1), key(2), key(3));
    let trusted = TrustedKeys::new([old.public(), new.public()]);
    for signer in [&old, &new] {
        trusted
            .verify(&bundle(1, signer).sign(signer).unwrap())
            .unwrap();
    }
    let error = trusted
        .verify(&bundle(1, &stranger).sign(&stranger).unwrap())
        .unwrap_err();
    assert_eq!(
        error,
        BundleError::Untrusted {
            signer: stranger.id()
        }
    );
    // A bundle that names a trusted signer but is signed by another key fails the signature.
    let mut lying = bundle(1, &stranger);
    lying.signer = old.id();
    let forged = SignedBundle::from_parts(
        lying.clone(),
        lying.canonical_bytes(),
        stranger.key.sign(&signed_message(&lying.canonical_bytes())),
    );
    assert!(matches!(
        trusted.verify(&forged),
        Err(BundleError::BadSignature { .. })
    ));
}

#[test]
fn signing_with_a_key_other_than_the_named_signer_is_refused() {
    let error = bundle(1, &key(1)).sign(&key(2)).unwrap_err();
    assert!(error.to_string().contains("names signer"), "{error}");
}

#[test]
fn malformed_files_are_refused_with_the_reason() {
    let signer = key(1);
    let good: serde_json::Value =
        serde_json::from_slice(&bundle(1, &signer).sign(&signer).unwrap().to_file_bytes()).unwrap();
    let mutate = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut value = good.clone();
        edit(&mut value);
        SignedBundle::parse(&serde_json::to_vec(&value).unwrap()).unwrap_err()
    };
    let unknown = mutate(&|value| value["bundle"]["extra"] = 1.into());
    assert!(unknown.to_string().contains("unknown field"), "{unknown}");
    let duplicate = mutate(&|value| value["bundle"]["items"][1]["name"] = "a.yaml".into());
    assert!(
        duplicate.to_string().contains("appears twice"),
        "{duplicate}"
    );
    let unsorted = mutate(&|value| value["bundle"]["items"][1]["name"] = "0.yaml".into());
    assert!(unsorted.to_string().contains("not sorted"), "{unsorted}");
    let expiry = mutate(&|value| value["bundle"]["expires"] = 5.into());
    assert!(expiry.to_string().contains("must be after"), "{expiry}");
    let signature = mutate(&|value| value["signature"] = "zz".into());
    assert!(signature.to_string().contains("128 hex"), "{signature}");
    assert!(SignedBundle::parse(b"not json").is_err());
}

#[test]
fn order_is_version_then_digest_and_older_bundles_are_refused() {
    let low = BundleDigest([1; 32]);
    let high = BundleDigest([2; 32]);
    let stamp = |version, digest| BundleStamp { version, digest };
    assert_eq!(
        admit(None, stamp(1, low)),
        Admission::Accept { conflict: false }
    );
    assert_eq!(
        admit(Some(stamp(1, low)), stamp(2, low)),
        Admission::Accept { conflict: false }
    );
    assert_eq!(
        admit(Some(stamp(2, low)), stamp(2, low)),
        Admission::AlreadyHave
    );
    assert_eq!(
        admit(Some(stamp(2, low)), stamp(2, high)),
        Admission::Accept { conflict: true }
    );
    assert_eq!(
        admit(Some(stamp(2, high)), stamp(2, low)),
        Admission::Older {
            current: stamp(2, high)
        }
    );
    assert_eq!(
        admit(Some(stamp(3, low)), stamp(2, high)),
        Admission::Older {
            current: stamp(3, low)
        }
    );
}

#[test]
fn keys_round_trip_through_pem() {
    let signer = key(7);
    let again = BundleSigningKey::from_pem(&signer.to_pem()).unwrap();
    assert_eq!(again.id(), signer.id());
    let public = BundlePublicKey::from_pem(&signer.public().to_pem()).unwrap();
    assert_eq!(public, signer.public());
    assert!(
        signer
            .public()
            .to_pem()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    let error = BundlePublicKey::from_pem(&signer.to_pem()).unwrap_err();
    assert!(error.to_string().contains("public key"), "{error}");
    assert!(BundleSigningKey::from_pem("garbage").is_err());
}

#[test]
fn a_bundle_is_stale_from_its_expiry_on() {
    let bundle = bundle(1, &key(1));
    assert!(!bundle.is_stale(bundle.expires - 1));
    assert!(bundle.is_stale(bundle.expires));
}

#[test]
fn kinds_parse_and_print() {
    for kind in BundleKind::ALL {
        assert_eq!(kind.to_string().parse::<BundleKind>().unwrap(), kind);
    }
    assert!("policy".parse::<BundleKind>().is_err());
}

#[test]
fn a_canary_bundle_names_its_nodes_and_is_signed_with_them() {
    let signer = key(1);
    let everyone = bundle(4, &signer);
    assert!(everyone.is_for("node-9"));
    let canary =
        bundle(4, &signer).for_nodes(vec!["node-2".into(), "node-1".into(), "node-2".into()]);
    assert_eq!(canary.nodes, ["node-1", "node-2"]);
    assert!(canary.is_for("node-1") && !canary.is_for("node-3"));
    let signed = canary.sign(&signer).unwrap();
    let parsed = SignedBundle::parse(&signed.to_file_bytes()).unwrap();
    assert_eq!(parsed.unverified().nodes, ["node-1", "node-2"]);
    assert_ne!(
        parsed.stamp().digest,
        everyone.sign(&signer).unwrap().stamp().digest,
        "the scope is signed"
    );
    // Widening the scope after signing breaks the signature.
    let mut text: serde_json::Value = serde_json::from_slice(&signed.to_file_bytes()).unwrap();
    text["bundle"]["nodes"] = serde_json::json!(["node-1", "node-2", "node-3"]);
    let widened = SignedBundle::parse(&serde_json::to_vec(&text).unwrap()).unwrap();
    assert!(
        TrustedKeys::new([signer.public()])
            .verify(&widened)
            .is_err()
    );
}
