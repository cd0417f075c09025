//! Table tests for the audit chain: every kind of tampering, one case at a time.

use super::*;

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
