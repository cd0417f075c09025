//! The store's errors. Each one names where it happened (the directory, the tree, the key) so
//! that an operator can find the record with `sled` tooling or move the directory aside; none of
//! them is ever a panic, whatever the bytes on disk hold.

use std::path::PathBuf;

/// A record that could not be read back: bytes that are not the JSON of the expected type, a key
/// of the wrong shape, or a record filed under a key that is not its own. Bulk reads return these
/// alongside the records that did load (see [`super::Loaded`]), so the agent keeps enforcing what
/// it can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt record in tree `{tree}` at key {key:?}: {reason}")]
pub struct CorruptRecord {
    pub tree: &'static str,
    /// The key as text (lossy UTF-8; audit keys as their sequence number).
    pub key: String,
    pub reason: String,
}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled refused to open the directory. The most common cause is a second agent (or a
    /// forgotten test) holding the directory's lock.
    #[error(
        "failed to open the store at {}: {source} (is another agent using this directory?)",
        .path.display()
    )]
    Open { path: PathBuf, source: sled::Error },
    /// A sled read, write or flush failed: an I/O error or sled's own corruption check.
    #[error("store {operation} failed in tree `{tree}`{}: {source}", key_suffix(.key.as_deref()))]
    Sled {
        operation: &'static str,
        tree: &'static str,
        key: Option<String>,
        source: sled::Error,
    },
    /// The `fsync` that `Durability::Disk` adds after sled's flush failed, or the file (or
    /// directory) to sync could not be opened.
    #[error("failed to open or fsync {} for the store: {source}", .path.display())]
    Sync {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
    /// A value could not be turned into JSON. Our types always serialise; this exists so that a
    /// future type that does not is an error, not a panic.
    #[error("failed to encode the record for tree `{tree}` at key {key:?}: {source}")]
    Encode {
        tree: &'static str,
        key: String,
        source: serde_json::Error,
    },
    /// The directory was written by a newer agent (or is not a Lazaret store).
    #[error(
        "the store at {} has schema version {found}, but this agent only understands version \
         {supported}: run the agent version that wrote it, or move the directory aside to start \
         empty",
        .path.display()
    )]
    UnsupportedSchema {
        path: PathBuf,
        found: String,
        supported: u32,
    },
    /// A schema migration step failed. The store stays at version `from` (every step before it
    /// is kept); the next start tries the step again.
    #[error(
        "migrating the store at {} from schema {from} ({what}) failed, it stays at schema {from} \
         and the next start tries again: {source}",
        .path.display()
    )]
    Migration {
        path: PathBuf,
        from: u32,
        what: &'static str,
        source: Box<StoreError>,
    },
    /// The audit tree holds records beyond the stored head, which only a write from outside the
    /// store can produce. Appending would overwrite them, so the store refuses.
    #[error(
        "audit record {found_sequence} exists past the stored audit head {head_sequence}: the \
         chain was written outside the store; run `lazaretctl audit verify` and investigate"
    )]
    AuditPastHead {
        head_sequence: u64,
        found_sequence: u64,
    },
}

fn key_suffix(key: Option<&str>) -> String {
    key.map(|key| format!(" at key {key:?}"))
        .unwrap_or_default()
}

pub type StoreResult<T> = Result<T, StoreError>;
