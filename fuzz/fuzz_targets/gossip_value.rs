//! Feeds a gossip key and value to the decoding an agent does on every peer's value
//! (`lazaret_core::gossip`): `GossipKey::parse` on the key (the first line), `gossip::open` on
//! the value (the rest: `<signature hex>.<payload>`), then the payload's JSON as the typed value
//! the key names (`NodeValue`, `StatsValue`, `ModeValue`, `AuditHeadValue`, `BundleStamp` for
//! `ack:`/`manifest:`, `QuarantineRecord` for `q:`, `FleetModeValue`), as `lazaret-fleet` does
//! once a seal verified; plus `signing_message` and `checked_value`.
//!
//! The seal check an agent makes on every peer's value (`gossip::verify_seal`, which
//! `lazaret_fleet`'s `PeerTrust::open` calls with the key of the peer's verified certificate)
//! runs under a real ECDSA P-256 key made at the target's start: on the fuzzer's value as it
//! is, and (for one input in 16, signing is slow) on the value sealed for real and then altered.
//! The certificate checks before it (chain, validity, name, role) are not fuzzed here: they read
//! the clock and parse X.509 with `x509-parser`, which is fuzzed upstream.
//!
//! Must hold: nothing panics; a parsed key prints back to the same wire name; a value that opens
//! seals back to a value that opens to the same parts; a typed value survives a JSON round trip;
//! the signed message starts with the context tag and ends with the payload; a value sealed by
//! the key verifies, and no longer does once its payload, signature, slot or node changes.
#![no_main]

use lazaret_core::QuarantineRecord;
use lazaret_core::bundle::BundleStamp;
use lazaret_core::gossip::{
    self, AuditHeadValue, FleetModeValue, GossipKey, MAX_VALUE_BYTES, ModeValue, NodeValue, Slot,
    StatsValue,
};
use libfuzzer_sys::fuzz_target;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::OnceLock;

/// The node key this process seals with.
fn signer() -> &'static (EcdsaKeyPair, SystemRandom) {
    static SIGNER: OnceLock<(EcdsaKeyPair, SystemRandom)> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let random = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random)
            .expect("a P-256 key is generated");
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random)
                .expect("a generated key loads");
        (pair, random)
    })
}

/// The seal check on `value` as the fuzzer made it, and on `value` sealed for real and altered.
fn check_seal(key: &GossipKey, value: &str, seal_for_real: bool) {
    let (pair, random) = signer();
    let public = pair.public_key().as_ref();
    let slot = Slot {
        generation: 1,
        version: value.len() as u64,
    };
    // The fuzzer cannot sign: whatever it made is refused, or (when it kept a value sealed
    // below, in another run of this process) opens to its payload.
    if let Ok(payload) = gossip::verify_seal(public, "fleet", "node-1", slot, key, value) {
        assert!(value.ends_with(payload));
    }
    if !seal_for_real {
        return;
    }
    let payload = value;
    let message = gossip::signing_message("fleet", "node-1", slot, key, payload);
    let signature = pair.sign(random, &message).expect("signing does not fail");
    let sealed = gossip::seal(signature.as_ref(), payload);
    assert_eq!(
        gossip::verify_seal(public, "fleet", "node-1", slot, key, &sealed),
        Ok(payload),
        "a value sealed by the node's key verifies"
    );
    let mut forged_signature = signature.as_ref().to_vec();
    forged_signature[payload.len() % 64] ^= 1 << (payload.len() % 8);
    let altered = [
        (format!("{sealed}x"), slot, "node-1"),
        (gossip::seal(&forged_signature, payload), slot, "node-1"),
        (
            sealed.clone(),
            Slot {
                version: slot.version + 1,
                ..slot
            },
            "node-1",
        ),
        (sealed.clone(), slot, "node-2"),
    ];
    for (value, slot, node) in altered {
        assert_eq!(
            gossip::verify_seal(public, "fleet", node, slot, key, &value),
            Err(gossip::SealError::BadSeal),
            "an altered seal is refused"
        );
    }
}

/// Parses `payload` as `T`; a value that parses must survive serialising and parsing again.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(payload: &str) {
    let Ok(value) = serde_json::from_str::<T>(payload) else {
        return;
    };
    let text = serde_json::to_string(&value).expect("a gossip value serialises");
    let again: T = serde_json::from_str(&text).expect("a serialised gossip value parses");
    assert_eq!(again, value);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (name, value) = text.split_once('\n').unwrap_or((text, ""));
    let key = GossipKey::parse(name);
    if let Some(key) = &key {
        assert_eq!(
            key.to_string(),
            name,
            "a parsed key prints back to its name"
        );
        assert_eq!(GossipKey::parse(&key.to_string()).as_ref(), Some(key));
        let _ = gossip::checked_value(key, value.to_string());
        if value.len() <= MAX_VALUE_BYTES {
            assert!(gossip::checked_value(key, value.to_string()).is_ok());
        }
        check_seal(key, value, data.len().is_multiple_of(16));
    }
    let Some((signature, payload)) = gossip::open(value) else {
        return;
    };
    assert!(value.ends_with(payload));
    let sealed = gossip::seal(&signature, payload);
    assert_eq!(
        gossip::open(&sealed),
        Some((signature.clone(), payload)),
        "a sealed value opens to its parts"
    );
    let Some(key) = key else {
        return;
    };
    let slot = Slot {
        generation: signature.len() as u64,
        version: payload.len() as u64,
    };
    let message = gossip::signing_message("fleet", "node-1", slot, &key, payload);
    assert!(message.starts_with(gossip::SIGNING_CONTEXT.as_bytes()));
    assert!(message.ends_with(payload.as_bytes()));
    match key {
        GossipKey::Cert => {}
        GossipKey::Node => round_trip::<NodeValue>(payload),
        GossipKey::Stats => round_trip::<StatsValue>(payload),
        GossipKey::Mode => round_trip::<ModeValue>(payload),
        GossipKey::AuditHead => round_trip::<AuditHeadValue>(payload),
        GossipKey::Ack(_) | GossipKey::Manifest(_) => round_trip::<BundleStamp>(payload),
        GossipKey::Quarantine(_) => round_trip::<QuarantineRecord>(payload),
        GossipKey::FleetMode => round_trip::<FleetModeValue>(payload),
    }
});
