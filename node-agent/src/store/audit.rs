//! The audit chain on disk: records in the `audit` tree under their sequence (8 bytes
//! big-endian, so sled's order is the chain's order), and the head in `meta`, written together in
//! one sled transaction. The transaction reads the head it links to, so two appends racing from
//! different threads are serialised by sled (one retries) and can never fork the chain.
//!
//! Hashing, linking and verification are `lazaret_core::audit`'s; this module only stores and
//! streams records. It must never rewrite or delete a record.

use lazaret_core::audit::{self, AuditEntry, AuditHead, AuditRecord, BreakKind, ChainBreak};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use lazaret_core::quarantine::QuarantineRecord;

use super::{
    CorruptRecord, META_AUDIT_HEAD, Store, StoreError, StoreResult, TREE_AUDIT, TREE_META,
    TREE_QUARANTINE, decode, encode, sled_error,
};

/// How many records verification holds in memory at once.
const VERIFY_BATCH: usize = 1024;

impl Store {
    /// Every record as `action outcome`, after checking the chain verifies: what unit tests
    /// compare.
    #[cfg(test)]
    pub fn audit_lines(&self) -> Vec<String> {
        self.verify_audit(None)
            .expect("the audit tree reads")
            .expect("the audit chain verifies");
        self.audit_records(1, usize::MAX)
            .expect("the audit tree reads")
            .into_iter()
            .map(|record| format!("{} {}", record.action, record.outcome))
            .collect()
    }

    /// Wakes on every change to the audit tree (an append): await it, then read past the last
    /// sequence seen. For the API's live event stream.
    pub fn watch_audit(&self) -> sled::Subscriber {
        self.audit.watch_prefix(Vec::<u8>::new())
    }

    /// Puts `entry` on the chain at `time_unix_ms` and returns the stored record. The record and
    /// the new head are written atomically, and durably (see [`super::Durability`]) before this
    /// returns.
    pub fn append_audit(&self, entry: AuditEntry, time_unix_ms: i64) -> StoreResult<AuditRecord> {
        let mut records = self.append_audit_with(vec![entry], time_unix_ms, None)?;
        Ok(records.pop().expect("one entry, one record"))
    }

    /// Puts `entries` on the chain in order and, in the same transaction, stores `quarantine`
    /// (when given): one durable write for a quarantine's outcome records and its new state,
    /// where one write each would cost a flush each.
    pub fn append_audit_with(
        &self,
        entries: Vec<AuditEntry>,
        time_unix_ms: i64,
        quarantine: Option<&QuarantineRecord>,
    ) -> StoreResult<Vec<AuditRecord>> {
        let quarantine_value = quarantine
            .map(|record| {
                let key = record.container.as_str();
                encode(TREE_QUARANTINE, key, record).map(|value| (key, value))
            })
            .transpose()?;
        let outcome = (&self.audit, &self.meta, &self.quarantine).transaction(
            |(audit_tree, meta_tree, quarantine_tree)| {
                let abort = ConflictableTransactionError::Abort;
                let mut head = match meta_tree.get(META_AUDIT_HEAD)? {
                    None => None,
                    Some(bytes) => Some(
                        decode::<AuditHead>(TREE_META, META_AUDIT_HEAD.as_bytes(), &bytes)
                            .map_err(|corrupt| abort(StoreError::from(corrupt)))?,
                    ),
                };
                let mut records = Vec::with_capacity(entries.len());
                for entry in &entries {
                    let (record, new_head) =
                        audit::append(head.as_ref(), entry.clone(), time_unix_ms);
                    let key = record.sequence.to_be_bytes();
                    if audit_tree.get(key)?.is_some() {
                        return Err(abort(StoreError::AuditPastHead {
                            head_sequence: head.map_or(0, |head| head.sequence),
                            found_sequence: record.sequence,
                        }));
                    }
                    let key_text = record.sequence.to_string();
                    let value = encode(TREE_AUDIT, &key_text, &record).map_err(abort)?;
                    audit_tree.insert(&key, value)?;
                    head = Some(new_head);
                    records.push(record);
                }
                if let Some(head) = &head {
                    let head_value = encode(TREE_META, META_AUDIT_HEAD, head).map_err(abort)?;
                    meta_tree.insert(META_AUDIT_HEAD, head_value)?;
                }
                if let Some((key, value)) = &quarantine_value {
                    quarantine_tree.insert(*key, value.clone())?;
                }
                Ok(records)
            },
        );
        let records = match outcome {
            Ok(records) => records,
            Err(TransactionError::Abort(error)) => return Err(error),
            Err(TransactionError::Storage(source)) => {
                return Err(StoreError::Sled {
                    operation: "append",
                    tree: TREE_AUDIT,
                    key: None,
                    source,
                });
            }
        };
        self.persist()?;
        Ok(records)
    }

    /// Replaces the whole chain with `records`' entries, hashed anew from the start: a chain that
    /// verifies but is not the one the agent wrote, as an intruder with the agent's disk could
    /// make. Only for tests of audit anchoring; the agent never rewrites its chain.
    #[cfg(any(test, feature = "testsuite"))]
    pub fn rewrite_audit_for_tests(&self, records: Vec<AuditRecord>) -> StoreResult<()> {
        let failed = |source| StoreError::Sled {
            operation: "rewrite",
            tree: TREE_AUDIT,
            key: None,
            source,
        };
        self.audit.clear().map_err(failed)?;
        self.meta.remove(META_AUDIT_HEAD).map_err(failed)?;
        for record in records {
            let entry = AuditEntry {
                actor: record.actor,
                on_behalf_of: record.on_behalf_of,
                action: record.action,
                target: record.target,
                reason: record.reason,
                source: record.source,
                outcome: record.outcome,
            };
            self.append_audit(entry, record.time_unix_ms)?;
        }
        Ok(())
    }

    /// The stored head: what the agent gossips as `audit_head`. `None` for an empty chain.
    pub fn audit_head(&self) -> StoreResult<Option<AuditHead>> {
        let Some(bytes) = self.meta.get(META_AUDIT_HEAD).map_err(sled_error(
            "read",
            TREE_META,
            Some(META_AUDIT_HEAD),
        ))?
        else {
            return Ok(None);
        };
        Ok(Some(decode(TREE_META, META_AUDIT_HEAD.as_bytes(), &bytes)?))
    }

    /// Up to `limit` records from `from_sequence` on (0 and 1 both mean the start), in order, as
    /// `GetAudit` pages them. A corrupt record is an error naming its sequence: the chain is
    /// evidence, and a page with a hole would hide that.
    pub fn audit_records(&self, from_sequence: u64, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        self.audit
            .range(from_sequence.to_be_bytes()..)
            .take(limit)
            .map(|item| {
                let (key, value) = item.map_err(sled_error("scan", TREE_AUDIT, None::<&str>))?;
                Ok(decode_audit(&key, &value)?)
            })
            .collect()
    }

    /// Checks the whole stored chain with `lazaret_core::audit` and returns its head, or where it
    /// breaks. `anchor` is a head published earlier (from gossip): it catches records removed or
    /// altered at the end. The stored head is checked against the chain too, which catches a
    /// chain cut short behind the store's back.
    ///
    /// The outer error is a failure to read (sled, or a record that is not JSON, by sequence);
    /// the inner one is the chain's verdict. Reads in batches, so memory does not grow with the
    /// chain.
    pub fn verify_audit(
        &self,
        anchor: Option<&AuditHead>,
    ) -> StoreResult<Result<AuditHead, ChainBreak>> {
        self.verify_audit_in_batches(anchor, VERIFY_BATCH)
    }

    pub(super) fn verify_audit_in_batches(
        &self,
        anchor: Option<&AuditHead>,
        batch_size: usize,
    ) -> StoreResult<Result<AuditHead, ChainBreak>> {
        let mut records = self.audit.iter();
        let mut head = AuditHead::GENESIS;
        let mut verified = 0usize;
        loop {
            let mut batch = Vec::with_capacity(batch_size);
            for item in records.by_ref().take(batch_size) {
                let (key, value) = item.map_err(sled_error("scan", TREE_AUDIT, None::<&str>))?;
                batch.push(decode_audit(&key, &value)?);
            }
            // `verify_from` reports an anchor past the batch as missing, so it only sees the
            // anchor once the batch reaches it; the final, empty batch settles the rest.
            let batch_anchor = anchor.filter(|anchor| {
                batch
                    .last()
                    .is_none_or(|last| anchor.sequence <= last.sequence)
            });
            match audit::verify_from(&head, &batch, batch_anchor) {
                Ok(batch_head) => head = batch_head,
                Err(mut chain_break) => {
                    chain_break.position += verified;
                    return Ok(Err(chain_break));
                }
            }
            if batch.is_empty() {
                break;
            }
            verified += batch.len();
        }
        self.check_stored_head(head, verified)
    }

    /// Compares the verified chain's `head` (after `count` records) with the stored head.
    fn check_stored_head(
        &self,
        head: AuditHead,
        count: usize,
    ) -> StoreResult<Result<AuditHead, ChainBreak>> {
        let Some(stored) = self.audit_head()? else {
            if head.sequence == 0 {
                return Ok(Ok(head));
            }
            return Err(StoreError::AuditPastHead {
                head_sequence: 0,
                found_sequence: head.sequence,
            });
        };
        if stored.sequence > head.sequence {
            return Ok(Err(ChainBreak {
                position: count,
                sequence: head.sequence.saturating_add(1),
                kind: BreakKind::AnchorMissing {
                    anchor_sequence: stored.sequence,
                    last_sequence: head.sequence,
                },
            }));
        }
        if stored.sequence < head.sequence {
            return Err(StoreError::AuditPastHead {
                head_sequence: stored.sequence,
                found_sequence: stored.sequence.saturating_add(1),
            });
        }
        if stored.hash != head.hash {
            return Ok(Err(ChainBreak {
                position: count.saturating_sub(1),
                sequence: head.sequence,
                kind: BreakKind::AnchorMismatch {
                    expected: stored.hash,
                    found: head.hash,
                },
            }));
        }
        Ok(Ok(head))
    }
}

fn decode_audit(key: &[u8], value: &[u8]) -> Result<AuditRecord, CorruptRecord> {
    let Ok(sequence_bytes) = <[u8; 8]>::try_from(key) else {
        return Err(CorruptRecord {
            tree: TREE_AUDIT,
            key: hex_key(key),
            reason: format!("an audit key is 8 bytes, this one is {}", key.len()),
        });
    };
    let sequence = u64::from_be_bytes(sequence_bytes);
    let record: AuditRecord = decode(TREE_AUDIT, sequence.to_string().as_bytes(), value)?;
    if record.sequence != sequence {
        return Err(CorruptRecord {
            tree: TREE_AUDIT,
            key: sequence.to_string(),
            reason: format!("the record says sequence {}", record.sequence),
        });
    }
    Ok(record)
}

fn hex_key(key: &[u8]) -> String {
    key.iter().map(|byte| format!("{byte:02x}")).collect()
}
