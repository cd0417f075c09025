//! Tests for the audit chain: the pinned encoding, honest chains, every kind of tampering in a
//! table, and property tests over arbitrary chains and single-record mutations.

use proptest::prelude::*;

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

// ---------------------------------------------------------------------------------------------
// Tampering, one case at a time
// ---------------------------------------------------------------------------------------------

type Tamper = fn(&mut Vec<AuditRecord>);

/// Each way of tampering with a 10-record chain, with where verification (anchored at the honest
/// head) must report it and what kind of break it is.
fn tampering_cases() -> Vec<(&'static str, Tamper, usize, &'static str)> {
    vec![
        (
            "edit sequence of record 5",
            |chain| chain[4].sequence = 50,
            4,
            "gap",
        ),
        (
            "edit time of record 5",
            |chain| chain[4].time_unix_ms += 1,
            5,
            "hash",
        ),
        (
            "edit actor of record 5",
            |chain| chain[4].actor.push('x'),
            5,
            "hash",
        ),
        (
            "remove on_behalf_of of record 6",
            |chain| chain[5].on_behalf_of = None,
            6,
            "hash",
        ),
        (
            "add on_behalf_of to record 5",
            |chain| chain[4].on_behalf_of = Some("eve".into()),
            5,
            "hash",
        ),
        (
            "edit action of record 5",
            |chain| chain[4].action = "release".into(),
            5,
            "hash",
        ),
        (
            "edit target of record 5",
            |chain| chain[4].target.clear(),
            5,
            "hash",
        ),
        (
            "edit reason of record 5",
            |chain| chain[4].reason = "routine".into(),
            5,
            "hash",
        ),
        (
            "edit source of record 5",
            |chain| chain[4].source = "operator".into(),
            5,
            "hash",
        ),
        (
            "edit outcome of record 5",
            |chain| chain[4].outcome = "failed".into(),
            5,
            "hash",
        ),
        (
            "edit previous hash of record 5",
            |chain| chain[4].previous_hash.0[0] ^= 1,
            4,
            "hash",
        ),
        (
            "delete record 5",
            |chain| {
                chain.remove(4);
            },
            4,
            "gap",
        ),
        (
            "delete record 1",
            |chain| {
                chain.remove(0);
            },
            0,
            "gap",
        ),
        (
            "insert a well-linked forgery before record 5",
            |chain| {
                let head = chain[3].head();
                let (forged, _) = append(Some(&head), entry(99), 0);
                chain.insert(4, forged);
            },
            5,
            "gap",
        ),
        (
            "insert a copy of record 3 before record 5",
            |chain| {
                let copy = chain[2].clone();
                chain.insert(4, copy);
            },
            4,
            "gap",
        ),
        ("swap records 4 and 7", |chain| chain.swap(3, 6), 3, "gap"),
        (
            "move the last record to the front",
            |chain| chain.rotate_right(1),
            0,
            "gap",
        ),
        (
            "edit the last record",
            |chain| chain[9].outcome = "denied".into(),
            9,
            "anchor",
        ),
        (
            "truncate the last record",
            |chain| {
                chain.pop();
            },
            9,
            "missing",
        ),
        (
            "truncate the last three records",
            |chain| chain.truncate(7),
            7,
            "missing",
        ),
        (
            "rewrite the last three records with consistent links",
            |chain| {
                chain.truncate(7);
                let mut head = chain[6].head();
                for number in 8..=10 {
                    let (record, new_head) = append(Some(&head), entry(number + 100), 0);
                    chain.push(record);
                    head = new_head;
                }
            },
            9,
            "anchor",
        ),
    ]
}

fn kind_name(kind: &BreakKind) -> &'static str {
    match kind {
        BreakKind::SequenceGap { .. } => "gap",
        BreakKind::HashMismatch { .. } => "hash",
        BreakKind::AnchorMismatch { .. } => "anchor",
        BreakKind::AnchorMissing { .. } => "missing",
    }
}

#[test]
fn every_kind_of_tampering_is_reported_where_it_happened() {
    let (honest, head) = honest_chain(10);
    for (name, tamper, expected_position, expected_kind) in tampering_cases() {
        let mut chain = honest.clone();
        tamper(&mut chain);
        let error = verify(&chain, Some(&head)).expect_err(name);
        assert_eq!(error.position, expected_position, "{name}: {error}");
        assert_eq!(kind_name(&error.kind), expected_kind, "{name}: {error}");
        let expected_sequence = chain
            .get(error.position)
            .map_or(u64::try_from(chain.len()).unwrap() + 1, |record| {
                record.sequence
            });
        assert_eq!(error.sequence, expected_sequence, "{name}");
    }
}

#[test]
fn without_an_anchor_only_the_end_of_the_chain_can_be_rewritten_unnoticed() {
    let (honest, _) = honest_chain(10);
    let mut truncated = honest.clone();
    truncated.truncate(6);
    assert!(verify(&truncated, None).is_ok());
    let mut edited_last = honest.clone();
    edited_last[9].reason = "nothing to see".into();
    assert!(verify(&edited_last, None).is_ok());
    // Anything in the middle is still caught without an anchor.
    for (name, tamper, _, kind) in tampering_cases() {
        if kind == "anchor" || kind == "missing" {
            continue;
        }
        let mut chain = honest.clone();
        tamper(&mut chain);
        assert!(verify(&chain, None).is_err(), "{name}");
    }
}

#[test]
fn a_chain_forked_after_the_anchor_is_refused() {
    let (records, _) = honest_chain(5);
    let published = records[4].head();
    let (_, other_head) = honest_chain(4);
    let (forked_record, _) = append(Some(&other_head), entry(42), 0);
    let mut forked = records[..4].to_vec();
    forked.push(forked_record);
    let error = verify(&forked, Some(&published)).unwrap_err();
    assert_eq!(error.position, 4);
    assert!(matches!(error.kind, BreakKind::AnchorMismatch { .. }));
}

#[test]
fn messages_say_where_and_what() {
    let (mut chain, head) = honest_chain(20);
    chain[15].reason = "edited".into();
    let error = verify(&chain, Some(&head)).unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("audit chain broken at record 17 (sequence 17): its previous hash "),
        "{message}"
    );
    assert!(
        message.contains("that record or this link was altered"),
        "{message}"
    );

    chain.truncate(12);
    let message = verify(&chain, Some(&head)).unwrap_err().to_string();
    assert_eq!(
        message,
        "audit chain broken at record 13 (sequence 13): the chain ends at sequence 12 but a head \
         published earlier names sequence 20: records were removed from the end"
    );

    chain.remove(3);
    let message = verify(&chain, None).unwrap_err().to_string();
    assert_eq!(
        message,
        "audit chain broken at record 4 (sequence 5): expected sequence 4 but found 5: a record \
         was deleted, inserted or moved"
    );
}

#[test]
fn sequence_overflow_is_reported_not_panicked() {
    let start = AuditHead {
        sequence: u64::MAX,
        hash: AuditHash::GENESIS,
    };
    let (record, _) = append(Some(&start), entry(1), 0);
    assert_eq!(record.sequence, u64::MAX);
    let error = verify_from(&start, &[record], None).unwrap_err();
    assert!(matches!(error.kind, BreakKind::SequenceGap { .. }));
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

fn arbitrary_text() -> impl Strategy<Value = String> {
    ".{0,12}"
}

fn arbitrary_entry() -> impl Strategy<Value = AuditEntry> {
    (
        arbitrary_text(),
        proptest::option::of(arbitrary_text()),
        arbitrary_text(),
        arbitrary_text(),
        arbitrary_text(),
        arbitrary_text(),
        arbitrary_text(),
    )
        .prop_map(
            |(actor, on_behalf_of, action, target, reason, source, outcome)| AuditEntry {
                actor,
                on_behalf_of,
                action,
                target,
                reason,
                source,
                outcome,
            },
        )
}

fn arbitrary_chain() -> impl Strategy<Value = (Vec<AuditRecord>, AuditHead)> {
    proptest::collection::vec((arbitrary_entry(), any::<i64>()), 1..40).prop_map(|entries| {
        let mut records = Vec::new();
        let mut head = AuditHead::GENESIS;
        for (entry, time_unix_ms) in entries {
            let (record, new_head) = append(Some(&head), entry, time_unix_ms);
            records.push(record);
            head = new_head;
        }
        (records, head)
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Change field number `field` (0..10, in declaration order) of one record.
    Edit {
        index: prop::sample::Index,
        field: u8,
    },
    Delete {
        index: prop::sample::Index,
    },
    /// Insert a record before `index` (or at the end); `well_linked` forgeries carry the right
    /// sequence and previous hash for their place, the strongest an attacker can do.
    Insert {
        index: prop::sample::Index,
        forged: Box<AuditEntry>,
        well_linked: bool,
        raw_sequence: u64,
        raw_previous_hash: [u8; 32],
    },
    Swap {
        first: prop::sample::Index,
        second: prop::sample::Index,
    },
}

fn arbitrary_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..10)
            .prop_map(|(index, field)| Mutation::Edit { index, field }),
        any::<prop::sample::Index>().prop_map(|index| Mutation::Delete { index }),
        (
            any::<prop::sample::Index>(),
            arbitrary_entry(),
            any::<bool>(),
            any::<u64>(),
            any::<[u8; 32]>()
        )
            .prop_map(
                |(index, forged, well_linked, raw_sequence, raw_previous_hash)| {
                    Mutation::Insert {
                        index,
                        forged: Box::new(forged),
                        well_linked,
                        raw_sequence,
                        raw_previous_hash,
                    }
                }
            ),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(first, second)| Mutation::Swap { first, second }),
    ]
}

fn edit_field(record: &mut AuditRecord, field: u8) {
    fn change(text: &mut String) {
        text.push('\u{2022}');
    }
    match field {
        0 => record.sequence = record.sequence.wrapping_add(1),
        1 => record.time_unix_ms = record.time_unix_ms.wrapping_add(1),
        2 => change(&mut record.actor),
        3 => {
            record.on_behalf_of = match record.on_behalf_of.take() {
                None => Some(String::new()),
                Some(_) => None,
            }
        }
        4 => change(&mut record.action),
        5 => change(&mut record.target),
        6 => change(&mut record.reason),
        7 => change(&mut record.source),
        8 => change(&mut record.outcome),
        _ => record.previous_hash.0[31] ^= 0x80,
    }
}

/// Applies the mutation; returns the index it touched first, or `None` when the result is an
/// honest chain after all (a well-linked record appended at the end, a swap of a record with
/// itself).
fn mutate(chain: &mut Vec<AuditRecord>, mutation: Mutation) -> Option<usize> {
    match mutation {
        Mutation::Edit { index, field } => {
            let index = index.index(chain.len());
            edit_field(&mut chain[index], field);
            Some(index)
        }
        Mutation::Delete { index } => {
            let index = index.index(chain.len());
            chain.remove(index);
            Some(index)
        }
        Mutation::Insert {
            index,
            forged,
            well_linked,
            raw_sequence,
            raw_previous_hash,
        } => {
            let index = index.index(chain.len() + 1);
            let previous = match index {
                0 => AuditHead::GENESIS,
                _ => chain[index - 1].head(),
            };
            let (mut record, _) = append(Some(&previous), *forged, 0);
            if !well_linked {
                record.sequence = raw_sequence;
                record.previous_hash = AuditHash(raw_previous_hash);
            }
            let honest_append = index == chain.len()
                && record.sequence == previous.sequence + 1
                && record.previous_hash == previous.hash;
            chain.insert(index, record);
            (!honest_append).then_some(index)
        }
        Mutation::Swap { first, second } => {
            let first = first.index(chain.len());
            let second = second.index(chain.len());
            chain.swap(first, second);
            (first != second).then_some(first.min(second))
        }
    }
}

fn arbitrary_hash() -> impl Strategy<Value = AuditHash> {
    prop_oneof![
        Just(AuditHash::GENESIS),
        any::<[u8; 32]>().prop_map(AuditHash)
    ]
}

fn arbitrary_head() -> impl Strategy<Value = AuditHead> {
    (
        prop_oneof![0u64..50, any::<u64>(), Just(u64::MAX)],
        arbitrary_hash(),
    )
        .prop_map(|(sequence, hash)| AuditHead { sequence, hash })
}

fn arbitrary_record() -> impl Strategy<Value = AuditRecord> {
    (
        prop_oneof![0u64..50, any::<u64>(), Just(u64::MAX)],
        any::<i64>(),
        arbitrary_entry(),
        arbitrary_hash(),
    )
        .prop_map(
            |(sequence, time_unix_ms, entry, previous_hash)| AuditRecord {
                sequence,
                time_unix_ms,
                actor: entry.actor,
                on_behalf_of: entry.on_behalf_of,
                action: entry.action,
                target: entry.target,
                reason: entry.reason,
                source: entry.source,
                outcome: entry.outcome,
                previous_hash,
            },
        )
}

proptest! {
    #[test]
    fn honest_chains_verify_from_genesis_and_from_any_checkpoint(
        (records, head) in arbitrary_chain(),
        split in any::<prop::sample::Index>(),
    ) {
        prop_assert_eq!(verify(&records, Some(&head)), Ok(head));
        let split = split.index(records.len() + 1);
        let checkpoint = match split {
            0 => AuditHead::GENESIS,
            _ => records[split - 1].head(),
        };
        prop_assert_eq!(verify(&records[..split], Some(&checkpoint)), Ok(checkpoint));
        prop_assert_eq!(verify_from(&checkpoint, &records[split..], Some(&head)), Ok(head));
    }

    #[test]
    fn any_single_mutation_is_detected_against_the_honest_head(
        (honest, head) in arbitrary_chain(),
        mutation in arbitrary_mutation(),
    ) {
        let mut chain = honest.clone();
        let touched = mutate(&mut chain, mutation);
        let result = verify(&chain, Some(&head));
        match touched {
            None => prop_assert!(result.is_ok(), "an honest append must verify: {:?}", result),
            Some(index) => {
                let error = result.expect_err("mutation went unnoticed");
                prop_assert!(
                    error.position <= index + 1,
                    "mutation at {} reported at {}: {}", index, error.position, error
                );
                prop_assert!(!error.to_string().is_empty());
            }
        }
    }

    #[test]
    fn verify_never_panics_on_arbitrary_input(
        records in proptest::collection::vec(arbitrary_record(), 0..8),
        start in arbitrary_head(),
        anchor in proptest::option::of(arbitrary_head()),
    ) {
        let from_genesis = verify(&records, anchor.as_ref());
        let from_start = verify_from(&start, &records, anchor.as_ref());
        for result in [from_genesis, from_start] {
            if let Err(error) = result {
                prop_assert!(error.position <= records.len());
                prop_assert!(error.to_string().starts_with("audit chain broken at record "));
            }
        }
    }

    #[test]
    fn distinct_records_hash_differently(
        first in arbitrary_record(),
        second in arbitrary_record(),
    ) {
        prop_assert_eq!(first == second, first.hash() == second.hash());
        prop_assert_eq!(first == second, first.canonical_bytes() == second.canonical_bytes());
    }
}
