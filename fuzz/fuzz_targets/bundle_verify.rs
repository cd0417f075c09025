//! Feeds signed bundle files to `SignedBundle::parse` and `TrustedKeys::verify` (what an agent
//! does with a bundle from a file or from gRPC `GetBundle`), in two modes chosen by the first
//! byte:
//!
//! - even: the rest of the input is the file, as is. A verified bundle is then loaded
//!   (`Bundle::content`: the policy set or the indicator set it carries).
//! - odd: the rest of the input is a list of edits (overwrite, insert, delete, xor) applied to a
//!   validly signed file built here with a fixed test key, or to its signature only.
//!
//! Must hold: nothing panics; a parsed bundle survives its file form unchanged
//! (`to_file_bytes` → `parse`), and keeps the digest of its canonical bytes; only a trusted
//! signer's bundle verifies; and an altered file verifies only if it still says exactly what was
//! signed (the same bundle, the same canonical bytes and digest): a person may re-indent or
//! re-order a file, but nothing that changes its meaning may verify.
#![no_main]

use std::sync::OnceLock;

use lazaret_core::bundle::{
    Bundle, BundleItem, BundleKind, BundleSigningKey, SignedBundle, TrustedKeys,
};
use libfuzzer_sys::fuzz_target;

const POLICY: &str = "apiVersion: lazaret.dev/v1\nkind: Policy\nname: no-privileged\nmode: enforce\n\
    rules:\n  - check: privileged\n  - expr: 'container.user == \"\"'\nactions: [network-cut, pause]\n";

struct Fixture {
    trusted: TrustedKeys,
    /// A bundle signed by key 1, which is trusted.
    signed: SignedBundle,
    file: Vec<u8>,
}

fn key(seed: u8) -> BundleSigningKey {
    BundleSigningKey::from_seed([seed; 32])
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let signer = key(1);
        let bundle = Bundle::new(
            BundleKind::Policies,
            7,
            1_700_000_000,
            1_700_086_400,
            vec![
                BundleItem {
                    name: "b.yaml".into(),
                    content: POLICY.into(),
                },
                BundleItem {
                    name: "a.yaml".into(),
                    content: "# empty\n".into(),
                },
            ],
            signer.id(),
        )
        .expect("a valid bundle")
        .for_nodes(vec!["node-1".into(), "node-2".into()]);
        let signed = bundle.sign(&signer).expect("signs");
        let file = signed.to_file_bytes();
        Fixture {
            trusted: TrustedKeys::new([key(1).public(), key(2).public()]),
            signed,
            file,
        }
    })
}

/// Checks what holds for any parsed bundle; returns whether it verified.
fn check_parsed(parsed: &SignedBundle, trusted: &TrustedKeys) -> bool {
    let bundle = parsed.unverified();
    let again = SignedBundle::parse(&parsed.to_file_bytes()).expect("a parsed bundle re-parses");
    assert_eq!(&again, parsed, "the file form round-trips");
    assert_eq!(
        parsed.digest(),
        lazaret_core::bundle::BundleDigest::of(&bundle.canonical_bytes())
    );
    assert!(bundle.expires > bundle.created);
    assert!(
        bundle
            .items
            .windows(2)
            .all(|pair| pair[0].name < pair[1].name)
    );
    assert!(bundle.nodes.windows(2).all(|pair| pair[0] < pair[1]));
    match trusted.verify(parsed) {
        Ok(verified) => {
            assert_eq!(verified, bundle);
            assert!(trusted.ids().any(|id| *id == verified.signer));
            true
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
            let _ = error.reason();
            false
        }
    }
}

fn apply_edits(mut bytes: Vec<u8>, edits: &[u8]) -> Vec<u8> {
    for edit in edits.chunks_exact(4) {
        if bytes.is_empty() {
            break;
        }
        let at = usize::from(u16::from_le_bytes([edit[1], edit[2]])) % bytes.len();
        let value = edit[3];
        match edit[0] % 4 {
            0 => bytes[at] = value,
            1 => bytes.insert(at, value),
            2 => {
                bytes.remove(at);
            }
            _ => bytes[at] ^= value.max(1),
        }
    }
    bytes
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    if mode % 2 == 0 {
        let Ok(parsed) = SignedBundle::parse(rest) else {
            return;
        };
        if check_parsed(&parsed, &fixture.trusted) {
            let _ = parsed.unverified().content();
        }
        return;
    }
    let altered = if mode & 2 == 0 {
        apply_edits(fixture.file.clone(), rest)
    } else {
        // Edit the signature alone: never verifies unless it is the same signature.
        let file = String::from_utf8(fixture.file.clone()).expect("JSON is UTF-8");
        let start = file.find("\"signature\": \"").expect("has a signature") + 14;
        let mut bytes = file.into_bytes();
        let signature = apply_edits(bytes[start..start + 128].to_vec(), rest);
        bytes.splice(start..start + 128, signature);
        bytes
    };
    let Ok(parsed) = SignedBundle::parse(&altered) else {
        return;
    };
    if check_parsed(&parsed, &fixture.trusted) {
        assert_eq!(
            parsed.unverified(),
            fixture.signed.unverified(),
            "an altered bundle verified:\n{}",
            String::from_utf8_lossy(&altered)
        );
        assert_eq!(parsed.digest(), fixture.signed.digest());
        assert_eq!(
            parsed.unverified().canonical_bytes(),
            fixture.signed.unverified().canonical_bytes()
        );
    }
});
