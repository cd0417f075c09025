//! Feeds a gossip key and value to the decoding an agent does on every peer's value
//! (`lazaret_core::gossip`): `GossipKey::parse` on the key (the first line), `gossip::open` on
//! the value (the rest: `<signature hex>.<payload>`), then the payload's JSON as the typed value
//! the key names (`NodeValue`, `StatsValue`, `ModeValue`, `AuditHeadValue`, `BundleStamp` for
//! `ack:`/`manifest:`, `QuarantineRecord` for `q:`, `FleetModeValue`), as `lazaret-fleet` does
//! once a seal verified; plus `signing_message` and `checked_value`.
//!
//! The ECDSA check of the seal itself (`lazaret_fleet::gossip::identity::PeerTrust::open`) is
//! not fuzzed: its peer key comes only from `PeerTrust::certificate`, which reads the clock, and
//! the fleet crate brings tokio, tonic and chitchat into the fuzz build.
//!
//! Must hold: nothing panics; a parsed key prints back to the same wire name; a value that opens
//! seals back to a value that opens to the same parts; a typed value survives a JSON round trip;
//! the signed message starts with the context tag and ends with the payload.
#![no_main]

use lazaret_core::QuarantineRecord;
use lazaret_core::bundle::BundleStamp;
use lazaret_core::gossip::{
    self, AuditHeadValue, FleetModeValue, GossipKey, MAX_VALUE_BYTES, ModeValue, NodeValue, Slot,
    StatsValue,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

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
