//! The audit chain: a tamper-evident, append-only record of every action Lazaret takes, who asked
//! for it (through the controller too) and how it turned out (DESIGN.md §5).
//!
//! Each [`AuditRecord`] carries the hash of the record before it, so editing, inserting, deleting
//! or reordering any record breaks a link that [`verify`] reports. Deleting or rewriting the
//! *last* records leaves no broken link behind; that is caught only against an [`AuditHead`]
//! published earlier off the host (the agents gossip theirs as `audit_head`), passed to [`verify`]
//! as the anchor.
//!
//! The hash is computed over a canonical binary encoding ([`AuditRecord::canonical_bytes`]),
//! never over JSON or any serde form, so that re-serialising a record can never change its hash.
//! That encoding must never change silently: a test pins the hash of a fixed record, and a new
//! encoding needs a new version tag.
//!
//! This module must never do I/O or read the clock: the store persists records, and the caller
//! passes the time in.

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// The version tag that opens every record's canonical encoding. Changing the encoding in any way
/// means a new tag, so that old chains still verify under the old rules.
pub const AUDIT_ENCODING_TAG: &str = "lazaret-audit-record-v1";

/// A SHA-256 hash in the chain. Shown and serialised as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuditHash(pub [u8; 32]);

impl AuditHash {
    /// The `previous_hash` of the first record (sequence 1): there is nothing before it.
    pub const GENESIS: AuditHash = AuditHash([0; 32]);

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, enough for a person to compare two hashes in a message.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for AuditHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}

impl fmt::Debug for AuditHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "AuditHash({})", self.to_hex())
    }
}

/// The error for text that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid audit hash {given:?}: expected 64 hex digits")]
pub struct InvalidAuditHash {
    pub given: String,
}

impl FromStr for AuditHash {
    type Err = InvalidAuditHash;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| InvalidAuditHash {
            given: text.to_string(),
        })?;
        Ok(AuditHash(bytes))
    }
}

impl Serialize for AuditHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for AuditHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a caller knows about an action before it is put on the chain: everything but the
/// sequence, the link and the time, which [`append`] fills in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The authenticated identity that did it: a certificate subject, or `agent` for the agent's
    /// own decisions.
    pub actor: String,
    /// The user a `controller` actor forwarded the request for; both are audited (DESIGN.md §3,
    /// roles).
    pub on_behalf_of: Option<String>,
    /// What was done, e.g. `quarantine`, `release`, `set-mode`.
    pub action: String,
    /// What it was done to, e.g. a container id or a bundle digest.
    pub target: String,
    pub reason: String,
    /// What caused it, e.g. `policy:no-privileged`, `operator`.
    pub source: String,
    /// How it turned out, e.g. `applied`, `failed: pause refused`.
    pub outcome: String,
}

/// One record of the chain, as stored, served by `GetAudit` and verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// 1 for the first record, then consecutive.
    pub sequence: u64,
    /// When the record was appended, as the agent's clock said. Not checked for order: clocks
    /// step back, and that is no sign of tampering.
    pub time_unix_ms: i64,
    pub actor: String,
    pub on_behalf_of: Option<String>,
    pub action: String,
    pub target: String,
    pub reason: String,
    pub source: String,
    pub outcome: String,
    /// The hash of the record before this one; [`AuditHash::GENESIS`] for sequence 1.
    pub previous_hash: AuditHash,
}

impl AuditRecord {
    /// The canonical encoding the hash is computed over. Unambiguous by construction, so that no
    /// two different records encode alike:
    ///
    /// 1. the tag [`AUDIT_ENCODING_TAG`] as a string (below),
    /// 2. `sequence` as 8 bytes big-endian,
    /// 3. `time_unix_ms` as 8 bytes big-endian two's complement,
    /// 4. `actor` as a string,
    /// 5. `on_behalf_of`: one byte `0x00` when absent, or `0x01` followed by the string,
    /// 6. `action`, `target`, `reason`, `source`, `outcome`, each as a string,
    /// 7. `previous_hash` as its 32 raw bytes.
    ///
    /// A string is its UTF-8 byte length as 8 bytes big-endian, then those bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut encoding = CanonicalEncoding::default();
        encoding.string(AUDIT_ENCODING_TAG);
        encoding.bytes(&self.sequence.to_be_bytes());
        encoding.bytes(&self.time_unix_ms.to_be_bytes());
        encoding.string(&self.actor);
        encoding.optional_string(self.on_behalf_of.as_deref());
        encoding.string(&self.action);
        encoding.string(&self.target);
        encoding.string(&self.reason);
        encoding.string(&self.source);
        encoding.string(&self.outcome);
        encoding.bytes(&self.previous_hash.0);
        encoding.into_bytes()
    }

    /// SHA-256 over [`AuditRecord::canonical_bytes`]: what the next record links to.
    pub fn hash(&self) -> AuditHash {
        AuditHash(Sha256::digest(self.canonical_bytes()).into())
    }

    /// The head of the chain if this record is its last.
    pub fn head(&self) -> AuditHead {
        AuditHead {
            sequence: self.sequence,
            hash: self.hash(),
        }
    }
}

#[derive(Default)]
struct CanonicalEncoding {
    output: Vec<u8>,
}

impl CanonicalEncoding {
    fn bytes(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    fn string(&mut self, text: &str) {
        // usize is at most 64 bits on every target Rust supports, so this never truncates.
        self.bytes(&(text.len() as u64).to_be_bytes());
        self.bytes(text.as_bytes());
    }

    fn optional_string(&mut self, text: Option<&str>) {
        match text {
            None => self.bytes(&[0x00]),
            Some(text) => {
                self.bytes(&[0x01]);
                self.string(text);
            }
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        self.output
    }
}

/// The last record's sequence and hash: all a verifier needs to know where a chain stood. Agents
/// gossip theirs (`audit_head`) so that a chain rewritten later on the host no longer contains a
/// head the fleet has already seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuditHead {
    pub sequence: u64,
    pub hash: AuditHash,
}

impl AuditHead {
    /// The head of an empty chain: sequence 0, hash [`AuditHash::GENESIS`].
    pub const GENESIS: AuditHead = AuditHead {
        sequence: 0,
        hash: AuditHash::GENESIS,
    };
}

/// Puts `entry` on the chain after `head` (`None` for an empty chain) and returns the record to
/// store and the new head.
///
/// Sequences start at 1. The caller must store the record and the new head together, and never
/// append twice after the same head: that forks the chain, which [`verify`] reports.
pub fn append(
    head: Option<&AuditHead>,
    entry: AuditEntry,
    time_unix_ms: i64,
) -> (AuditRecord, AuditHead) {
    let previous = head.copied().unwrap_or(AuditHead::GENESIS);
    let AuditEntry {
        actor,
        on_behalf_of,
        action,
        target,
        reason,
        source,
        outcome,
    } = entry;
    let record = AuditRecord {
        // 2^64 records are out of reach; saturating keeps this total, and verify would report
        // the repeated sequence.
        sequence: previous.sequence.saturating_add(1),
        time_unix_ms,
        actor,
        on_behalf_of,
        action,
        target,
        reason,
        source,
        outcome,
        previous_hash: previous.hash,
    };
    let new_head = record.head();
    (record, new_head)
}

/// What is wrong at the place a chain breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BreakKind {
    /// The record's sequence is not the one after the record before it: a record was deleted,
    /// inserted, duplicated or moved, or the sequence itself was edited.
    #[error(
        "expected sequence {expected} but found {found}: a record was deleted, inserted or moved"
    )]
    SequenceGap { expected: u64, found: u64 },
    /// The record's `previous_hash` is not the hash of the record before it: that record was
    /// altered, or this record's link was, or records were spliced in from elsewhere.
    #[error(
        "its previous hash {} is not the hash of the record before it ({}): \
         that record or this link was altered",
        .found.short(),
        .expected.short()
    )]
    HashMismatch {
        expected: AuditHash,
        found: AuditHash,
    },
    /// The record at the anchor's sequence does not hash to the anchor's hash: the record was
    /// altered after the head was published.
    #[error(
        "the record hashes to {} but the head published earlier for this sequence is {}: \
         the record was altered after that head was published",
        .found.short(),
        .expected.short()
    )]
    AnchorMismatch {
        expected: AuditHash,
        found: AuditHash,
    },
    /// The chain ends before the anchor's sequence: records were removed from the end.
    #[error(
        "the chain ends at sequence {last_sequence} but a head published earlier names sequence \
         {anchor_sequence}: records were removed from the end"
    )]
    AnchorMissing {
        anchor_sequence: u64,
        last_sequence: u64,
    },
}

/// Where and how a chain fails verification: the first problem only, since everything after a
/// break is unanchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at record {} (sequence {sequence}): {kind}", .position + 1)]
pub struct ChainBreak {
    /// Index into the verified slice of the first bad record (the message counts from 1). For
    /// [`BreakKind::AnchorMissing`] it is the slice's length: the first record that is missing.
    pub position: usize,
    /// The sequence the bad record carries; for [`BreakKind::AnchorMissing`], the first missing
    /// sequence.
    pub sequence: u64,
    pub kind: BreakKind,
}

/// Checks a whole chain, from its first record (sequence 1, linked to [`AuditHash::GENESIS`]),
/// and returns its head.
///
/// With an `anchor` (a head published earlier, e.g. read from gossip), also checks that the
/// chain still contains it: this is what detects edits or deletion of the last records, which
/// leave no broken link. Without an anchor, a chain cut short verifies.
pub fn verify(
    records: &[AuditRecord],
    anchor: Option<&AuditHead>,
) -> Result<AuditHead, ChainBreak> {
    verify_from(&AuditHead::GENESIS, records, anchor)
}

/// Checks a stretch of a chain that continues after `start`, the head of the record just before
/// `records[0]` (a checkpoint the caller trusts), and returns the head after the last record;
/// `start` itself for an empty slice.
///
/// An anchor at or before `start.sequence` lies outside the stretch: it is compared with
/// `start` when the sequences are equal and otherwise cannot be checked, so it is ignored.
pub fn verify_from(
    start: &AuditHead,
    records: &[AuditRecord],
    anchor: Option<&AuditHead>,
) -> Result<AuditHead, ChainBreak> {
    if let Some(anchor) = anchor
        && anchor.sequence == start.sequence
        && anchor.hash != start.hash
    {
        return Err(ChainBreak {
            position: 0,
            sequence: start.sequence,
            kind: BreakKind::AnchorMismatch {
                expected: anchor.hash,
                found: start.hash,
            },
        });
    }

    let mut previous = *start;
    for (position, record) in records.iter().enumerate() {
        let breaks_here = |kind| ChainBreak {
            position,
            sequence: record.sequence,
            kind,
        };
        let expected_sequence = previous.sequence.checked_add(1);
        if expected_sequence != Some(record.sequence) {
            return Err(breaks_here(BreakKind::SequenceGap {
                expected: previous.sequence.saturating_add(1),
                found: record.sequence,
            }));
        }
        if record.previous_hash != previous.hash {
            return Err(breaks_here(BreakKind::HashMismatch {
                expected: previous.hash,
                found: record.previous_hash,
            }));
        }
        let hash = record.hash();
        if let Some(anchor) = anchor
            && anchor.sequence == record.sequence
            && anchor.hash != hash
        {
            return Err(breaks_here(BreakKind::AnchorMismatch {
                expected: anchor.hash,
                found: hash,
            }));
        }
        previous = AuditHead {
            sequence: record.sequence,
            hash,
        };
    }

    if let Some(anchor) = anchor
        && anchor.sequence > previous.sequence
    {
        return Err(ChainBreak {
            position: records.len(),
            sequence: previous.sequence.saturating_add(1),
            kind: BreakKind::AnchorMissing {
                anchor_sequence: anchor.sequence,
                last_sequence: previous.sequence,
            },
        });
    }
    Ok(previous)
}
