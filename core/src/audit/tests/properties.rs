//! Property tests for the audit chain over arbitrary chains, records and single-record mutations.

use proptest::prelude::*;

use super::*;

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
