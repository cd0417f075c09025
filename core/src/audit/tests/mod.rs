//! Audit chain tests for the pinned encoding, appending and honest verification, plus helpers.

mod properties;
mod tables;

use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn entry(number: u64) -> AuditEntry {
    AuditEntry {
        actor: "CN=alice,O=ops".to_string(),
        on_behalf_of: number.is_multiple_of(2).then(|| "bob".to_string()),
        action: "quarantine".to_string(),
        target: format!("container-{number}"),
        reason: "privileged container".to_string(),
        source: "policy:no-privileged".to_string(),
        outcome: "applied".to_string(),
    }
}

/// An honest chain of `length` records and its head.
fn honest_chain(length: u64) -> (Vec<AuditRecord>, AuditHead) {
    let mut records = Vec::new();
    let mut head = None;
    for number in 1..=length {
        let time_unix_ms = 1_700_000_000_000 + i64::try_from(number).unwrap() * 1000;
        let (record, new_head) = append(head.as_ref(), entry(number), time_unix_ms);
        records.push(record);
        head = Some(new_head);
    }
    (records, head.unwrap_or(AuditHead::GENESIS))
}

fn fixed_record() -> AuditRecord {
    AuditRecord {
        sequence: 17,
        time_unix_ms: 1_717_171_717_171,
        actor: "CN=controller".to_string(),
        on_behalf_of: Some("alice".to_string()),
        action: "quarantine".to_string(),
        target: "4f3c2a1b0e9d".to_string(),
        reason: "reverse shell detected".to_string(),
        source: "detection:Reverse shell".to_string(),
        outcome: "applied".to_string(),
        previous_hash: AuditHash([0xab; 32]),
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding and hash
// ---------------------------------------------------------------------------------------------

#[test]
fn hash_of_a_fixed_record_never_changes() {
    // If this fails, the canonical encoding changed: every stored chain stops verifying. Change
    // AUDIT_ENCODING_TAG and keep the old encoding for old records instead.
    assert_eq!(
        fixed_record().hash().to_hex(),
        "b50800e50122786e5967947c9a1345d45e789cc62152a98b1867b4a3adb01610"
    );
}

#[test]
fn canonical_bytes_start_with_the_length_prefixed_tag() {
    let bytes = fixed_record().canonical_bytes();
    let tag_length = AUDIT_ENCODING_TAG.len();
    assert_eq!(bytes[..8], (tag_length as u64).to_be_bytes());
    assert_eq!(&bytes[8..8 + tag_length], AUDIT_ENCODING_TAG.as_bytes());
    assert_eq!(bytes[8 + tag_length..16 + tag_length], 17u64.to_be_bytes());
    assert_eq!(bytes[bytes.len() - 32..], [0xab; 32]);
}

#[test]
fn encoding_separates_fields_unambiguously() {
    let mut shifted_boundary = fixed_record();
    shifted_boundary.action = "quarantin".to_string();
    shifted_boundary.target = format!("e{}", fixed_record().target);
    assert_ne!(shifted_boundary.hash(), fixed_record().hash());

    let mut absent = fixed_record();
    absent.on_behalf_of = None;
    let mut empty = fixed_record();
    empty.on_behalf_of = Some(String::new());
    assert_ne!(absent.hash(), empty.hash());
}

#[test]
fn hash_text_round_trips_and_rejects_bad_input() {
    let hash = fixed_record().hash();
    assert_eq!(hash.to_string().parse::<AuditHash>(), Ok(hash));
    assert_eq!(hash.short().len(), 12);
    assert_eq!(AuditHash::GENESIS.to_string(), "0".repeat(64));
    for bad in ["", "abc", &"g".repeat(64), &"0".repeat(66)] {
        let error = bad.parse::<AuditHash>().unwrap_err();
        assert!(
            error.to_string().contains("expected 64 hex digits"),
            "{bad}"
        );
    }
}

#[test]
fn serde_round_trip_keeps_the_hash_and_writes_hex() {
    let record = fixed_record();
    let json = serde_json::to_string(&record).unwrap();
    assert!(json.contains(&format!("\"previous_hash\":\"{}\"", "ab".repeat(32))));
    let back: AuditRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, record);
    assert_eq!(back.hash(), record.hash());

    let head = record.head();
    let head_json = serde_json::to_string(&head).unwrap();
    assert_eq!(
        head_json,
        format!("{{\"sequence\":17,\"hash\":\"{}\"}}", head.hash)
    );
    assert!(serde_json::from_str::<AuditHead>(r#"{"sequence":1,"hash":"zz"}"#).is_err());
}

// ---------------------------------------------------------------------------------------------
// Append and honest verification
// ---------------------------------------------------------------------------------------------

#[test]
fn append_starts_at_one_and_links_to_the_previous_record() {
    let (first, first_head) = append(None, entry(1), 10);
    assert_eq!(first.sequence, 1);
    assert_eq!(first.previous_hash, AuditHash::GENESIS);
    assert_eq!(first_head, first.head());

    let (second, second_head) = append(Some(&first_head), entry(2), 5);
    assert_eq!(second.sequence, 2);
    assert_eq!(second.previous_hash, first.hash());
    assert_eq!(second.time_unix_ms, 5);
    assert_eq!(second_head.sequence, 2);
    assert_eq!(second.actor, entry(2).actor);
    assert_eq!(second.on_behalf_of, entry(2).on_behalf_of);
}

#[test]
fn honest_chain_verifies_against_every_head_it_published() {
    let (records, head) = honest_chain(25);
    assert_eq!(verify(&records, None), Ok(head));
    for record in &records {
        assert_eq!(verify(&records, Some(&record.head())), Ok(head));
    }
    assert_eq!(verify(&records, Some(&AuditHead::GENESIS)), Ok(head));
}

#[test]
fn empty_chain_verifies_to_genesis_unless_an_anchor_says_otherwise() {
    assert_eq!(verify(&[], None), Ok(AuditHead::GENESIS));
    let (_, head) = honest_chain(3);
    let error = verify(&[], Some(&head)).unwrap_err();
    assert_eq!(error.position, 0);
    assert_eq!(
        error.kind,
        BreakKind::AnchorMissing {
            anchor_sequence: 3,
            last_sequence: 0
        }
    );
}

#[test]
fn a_stretch_verifies_from_a_trusted_checkpoint() {
    let (records, head) = honest_chain(20);
    let checkpoint = records[9].head();
    assert_eq!(
        verify_from(&checkpoint, &records[10..], Some(&head)),
        Ok(head)
    );
    assert_eq!(verify_from(&checkpoint, &[], None), Ok(checkpoint));
    // An anchor before the stretch cannot be checked and is ignored; one at the checkpoint is
    // compared with it.
    assert_eq!(
        verify_from(&checkpoint, &records[10..], Some(&records[3].head())),
        Ok(head)
    );
    let forged_checkpoint = AuditHead {
        sequence: 10,
        hash: AuditHash([7; 32]),
    };
    let error = verify_from(&checkpoint, &records[10..], Some(&forged_checkpoint)).unwrap_err();
    assert!(matches!(error.kind, BreakKind::AnchorMismatch { .. }));
    // Starting from the wrong checkpoint breaks the first link.
    let error = verify_from(&records[8].head(), &records[10..], None).unwrap_err();
    assert_eq!(error.position, 0);
    assert!(matches!(error.kind, BreakKind::SequenceGap { .. }));
}
