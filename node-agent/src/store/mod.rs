//! The agent's durable state (DESIGN.md §2, `store.rs`): quarantine records, exemptions and the
//! audit chain, in one sled database under the agent's state directory.
//!
//! **The write happens before the action.** Every write method returns only once the write is
//! durable against the agent's own crash, so the quarantine manager stores a transition, then
//! acts; after a crash it rolls forward from what [`Store::quarantines`] returns.
//!
//! **What sled 0.34 guarantees, measured.** sled buffers writes in an in-process log buffer and
//! hands them to the kernel only when the buffer is sealed: by `flush()`, by its background
//! flusher (every 500 ms by default), or when the buffer fills. A write that returned `Ok` is
//! therefore *lost* by a SIGKILL or `abort` that comes before the next seal: with the flush
//! below removed, `tests::writes_survive_sigkill_in_process_mode` finds 0 of 200 quarantine
//! records after killing the writer (its transactions leak some of the buffer out, so audit
//! appends lose only their tail). So both [`Durability`] modes call sled's `flush()` after every
//! write; on Linux that is `pwrite` plus `sync_file_range(WAIT_AFTER)`, i.e. the bytes reach the
//! kernel and are written back to the device, but the file's metadata and the device's volatile
//! cache are not synced. [`Durability::Disk`] adds an `fsync` of sled's file for power loss
//! (sled never syncs its blob files, used only for values over ~128 KiB; ours are far smaller).
//! `tests::measure_put_quarantine_latency` (ignored) measures both against the raw insert.
//!
//! **Encoding.** Values are JSON (the core types' serde forms): simple, inspectable with any sled
//! dump, and tolerant of added optional fields. Keys: the container id for quarantines,
//! `container \0 policy` for exemptions, the sequence as 8 big-endian bytes for audit records (so
//! sled's byte order is sequence order). The `meta` tree holds the schema version and the audit
//! head.
//!
//! Every method is synchronous and **blocking** (disk I/O, flushes): async callers run it in
//! `tokio::task::spawn_blocking` (STYLE.md 10). [`Store`] is cheap to clone and shared between
//! threads. This module must never decide anything: it stores what `lazaret_core` computed, and
//! a corrupt record is reported by key, never a panic and never silently dropped.

mod audit;
mod bundles;
mod error;
mod evidence;
pub mod migrate;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lazaret_core::ContainerId;
use lazaret_core::quarantine::{Exemption, ExemptionSet, QuarantineRecord};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use self::error::{CorruptRecord, StoreError, StoreResult};

/// Quarantine records by container id.
pub const TREE_QUARANTINE: &str = "quarantine";
/// Exemptions by container and policy.
pub const TREE_EXEMPTIONS: &str = "exemptions";
/// The audit chain by sequence (8 bytes big-endian).
pub const TREE_AUDIT: &str = "audit";
/// The newest accepted bundle of each kind, and its stamp (`store/bundles.rs`).
pub const TREE_BUNDLES: &str = "bundles";
/// Reserved: runtime event cursors (a later issue).
pub const TREE_CURSOR: &str = "cursor";
/// Store-wide values: [`META_SCHEMA`], [`META_AUDIT_HEAD`], [`META_GENERATION`],
/// [`META_FLEET_MODE`].
pub const TREE_META: &str = "meta";
/// Evidence taken at quarantine, by container id (JSON, bounded).
pub const TREE_EVIDENCE: &str = "evidence";
/// The schema version, as decimal text.
pub const META_SCHEMA: &str = "schema";
/// The audit chain's head, as JSON, written in the same transaction as each record.
pub const META_AUDIT_HEAD: &str = "audit_head";
/// The gossip generation of the last start, as JSON.
pub const META_GENERATION: &str = "generation";
pub const META_FLEET_MODE: &str = "fleet_mode";
/// The schema this code reads and writes. An older store is migrated at open, a newer one is
/// refused ([`migrate`]).
pub const SCHEMA_VERSION: u32 = migrate::latest(migrate::MIGRATIONS);

/// How far a write has gone when a write method returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Survives the agent's own crash (SIGKILL, abort, OOM kill): sled's `flush()` after every
    /// write, which sled 0.34 needs for that (see the module docs). Power loss may still lose the
    /// last writes, up to sled's 500 ms background `fsync`.
    #[default]
    Process,
    /// Also survives power loss: `flush()` and then an `fsync` of sled's file after every write.
    /// Costs a journal commit and a device cache flush per write.
    Disk,
}

/// What a bulk read found: the records that loaded, and the ones that did not, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded<T> {
    pub records: T,
    pub corrupt: Vec<CorruptRecord>,
}

/// The agent's sled database. Clones share it.
#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    durability: Durability,
    db: sled::Db,
    quarantine: sled::Tree,
    exemptions: sled::Tree,
    audit: sled::Tree,
    bundles: sled::Tree,
    meta: sled::Tree,
    evidence: sled::Tree,
    /// sled's data file, opened a second time for `Durability::Disk`'s `fsync` (on Linux an
    /// `fsync` through any descriptor syncs the file).
    data_file: Option<Arc<File>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Store")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, reading back everything written before. Refuses a
    /// store of a newer schema, and a directory another process has open (sled locks it).
    pub fn open(dir: &Path, durability: Durability) -> StoreResult<Store> {
        let open_error = |source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        };
        let db = lazaret_fleet::state_dir::open_sled(dir).map_err(open_error)?;
        let open_tree = |name: &'static str| {
            db.open_tree(name).map_err(|source| StoreError::Sled {
                operation: "open",
                tree: name,
                key: None,
                source,
            })
        };
        let data_file = match durability {
            Durability::Process => None,
            Durability::Disk => {
                let data_path = dir.join("db");
                let file = File::open(&data_path).map_err(|source| StoreError::Sync {
                    path: data_path,
                    source,
                })?;
                Some(Arc::new(file))
            }
        };
        let store = Store {
            path: dir.to_path_buf(),
            durability,
            quarantine: open_tree(TREE_QUARANTINE)?,
            exemptions: open_tree(TREE_EXEMPTIONS)?,
            audit: open_tree(TREE_AUDIT)?,
            bundles: open_tree(TREE_BUNDLES)?,
            meta: open_tree(TREE_META)?,
            evidence: open_tree(TREE_EVIDENCE)?,
            db,
            data_file,
        };
        store.check_schema()?;
        if durability == Durability::Disk {
            // The directory entries of the files sled just created.
            sync_path(dir)?;
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Writes the schema version of a new store, migrates an older one, refuses a newer one
    /// ([`migrate`]).
    fn check_schema(&self) -> StoreResult<()> {
        migrate::migrate(self, migrate::MIGRATIONS, SCHEMA_VERSION).map(drop)
    }

    /// Makes every write so far as durable as [`Durability`] promises. Called by every write
    /// method before it returns.
    ///
    /// A failure (disk full, file system read-only) is logged as an ALERT ([`alarm`]): sled
    /// keeps refusing writes after one (reads go on) until the agent restarts on a directory it
    /// can write again. Callers refuse what they cannot record (a new quarantine, a release, an
    /// expiry) and keep enforcing what is stored.
    fn persist(&self) -> StoreResult<()> {
        let persisted = self
            .db
            .flush()
            .map(drop)
            .map_err(sled_error("flush", "(all)", None::<&str>))
            .and_then(|()| match &self.data_file {
                Some(data_file) => data_file.sync_all().map_err(|source| StoreError::Sync {
                    path: self.path.join("db"),
                    source,
                }),
                None => Ok(()),
            });
        if let Err(error @ StoreError::Sync { .. }) = &persisted {
            alarm(error);
        }
        persisted
    }

    /// Stores `record` under its container, replacing the one before: call it at every
    /// transition, before the next action.
    pub fn put_quarantine(&self, record: &QuarantineRecord) -> StoreResult<()> {
        let key = record.container.as_str();
        let value = encode(TREE_QUARANTINE, key, record)?;
        self.quarantine.insert(key, value).map_err(sled_error(
            "write",
            TREE_QUARANTINE,
            Some(key),
        ))?;
        self.persist()
    }

    /// The stored record of `container`'s quarantine; an error naming the key if it is corrupt.
    pub fn quarantine(&self, container: &ContainerId) -> StoreResult<Option<QuarantineRecord>> {
        let key = container.as_str();
        let Some(value) =
            self.quarantine
                .get(key)
                .map_err(sled_error("read", TREE_QUARANTINE, Some(key)))?
        else {
            return Ok(None);
        };
        Ok(Some(decode_quarantine(key.as_bytes(), &value)?))
    }

    /// Every stored quarantine, for the roll-forward at start. Corrupt records are listed by key
    /// and the rest still load, so the agent keeps enforcing what it can; only a sled failure is
    /// an error.
    pub fn quarantines(&self) -> StoreResult<Loaded<Vec<QuarantineRecord>>> {
        let mut loaded = Loaded::<Vec<QuarantineRecord>>::default();
        for item in self.quarantine.iter() {
            let (key, value) = item.map_err(sled_error("scan", TREE_QUARANTINE, None::<&str>))?;
            match decode_quarantine(&key, &value) {
                Ok(record) => loaded.records.push(record),
                Err(corrupt) => loaded.corrupt.push(corrupt),
            }
        }
        Ok(loaded)
    }

    /// Deletes `container`'s record (it is gone, or released and no longer worth keeping).
    /// Returns whether there was one.
    pub fn remove_quarantine(&self, container: &ContainerId) -> StoreResult<bool> {
        let key = container.as_str();
        let removed = self.quarantine.remove(key).map_err(sled_error(
            "delete",
            TREE_QUARANTINE,
            Some(key),
        ))?;
        self.persist()?;
        Ok(removed.is_some())
    }

    /// Files `exemption`, replacing any for the same container and policy (the latest operator
    /// decision wins, as in [`ExemptionSet::insert`]).
    pub fn put_exemption(&self, exemption: &Exemption) -> StoreResult<()> {
        let key = exemption_key(&exemption.container, &exemption.policy);
        let key_text = key_text(&key);
        let value = encode(TREE_EXEMPTIONS, &key_text, exemption)?;
        self.exemptions.insert(key, value).map_err(sled_error(
            "write",
            TREE_EXEMPTIONS,
            Some(&key_text),
        ))?;
        self.persist()
    }

    /// Withdraws an exemption early. Returns whether there was one.
    pub fn remove_exemption(&self, container: &ContainerId, policy: &str) -> StoreResult<bool> {
        let key = exemption_key(container, policy);
        let removed = self.exemptions.remove(&key).map_err(sled_error(
            "delete",
            TREE_EXEMPTIONS,
            Some(key_text(&key)),
        ))?;
        self.persist()?;
        Ok(removed.is_some())
    }

    /// The exemption filed for `container` and `policy`, expired or not.
    pub fn exemption(
        &self,
        container: &ContainerId,
        policy: &str,
    ) -> StoreResult<Option<Exemption>> {
        let key = exemption_key(container, policy);
        let key_text = key_text(&key);
        let Some(value) = self.exemptions.get(&key).map_err(sled_error(
            "read",
            TREE_EXEMPTIONS,
            Some(&key_text),
        ))?
        else {
            return Ok(None);
        };
        decode_exemption(&key, &value)
            .map(Some)
            .map_err(StoreError::Corrupt)
    }

    /// Every stored exemption, expired or not; corrupt ones listed by key.
    pub fn exemptions(&self) -> StoreResult<Loaded<ExemptionSet>> {
        let mut loaded = Loaded::<ExemptionSet>::default();
        for item in self.exemptions.iter() {
            let (key, value) = item.map_err(sled_error("scan", TREE_EXEMPTIONS, None::<&str>))?;
            match decode_exemption(&key, &value) {
                Ok(exemption) => {
                    loaded.records.insert(exemption);
                }
                Err(corrupt) => loaded.corrupt.push(corrupt),
            }
        }
        Ok(loaded)
    }

    /// Deletes every exemption that has expired at `now_unix_ms` and returns them, so the caller
    /// can audit their end. Each deletion is a compare-and-swap, so an exemption replaced
    /// meanwhile by a newer one survives. Corrupt records are left for [`Store::exemptions`] to
    /// report.
    pub fn prune_exemptions(&self, now_unix_ms: i64) -> StoreResult<Vec<Exemption>> {
        let mut pruned = Vec::new();
        for item in self.exemptions.iter() {
            let (key, value) = item.map_err(sled_error("scan", TREE_EXEMPTIONS, None::<&str>))?;
            let Ok(exemption) = decode_exemption(&key, &value) else {
                continue;
            };
            if exemption.is_active(now_unix_ms) {
                continue;
            }
            let swapped = self
                .exemptions
                .compare_and_swap(&key, Some(&value), None::<&[u8]>)
                .map_err(sled_error("delete", TREE_EXEMPTIONS, Some(key_text(&key))))?;
            if swapped.is_ok() {
                pruned.push(exemption);
            }
        }
        if !pruned.is_empty() {
            self.persist()?;
        }
        Ok(pruned)
    }
}

fn exemption_key(container: &ContainerId, policy: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(container.as_str().len() + 1 + policy.len());
    key.extend_from_slice(container.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(policy.as_bytes());
    key
}

fn key_text(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn decode_quarantine(key: &[u8], value: &[u8]) -> Result<QuarantineRecord, CorruptRecord> {
    let record: QuarantineRecord = decode(TREE_QUARANTINE, key, value)?;
    if record.container.as_str().as_bytes() != key {
        return Err(CorruptRecord {
            tree: TREE_QUARANTINE,
            key: key_text(key),
            reason: format!("the record is for container {}", record.container),
        });
    }
    Ok(record)
}

fn decode_exemption(key: &[u8], value: &[u8]) -> Result<Exemption, CorruptRecord> {
    let exemption: Exemption = decode(TREE_EXEMPTIONS, key, value)?;
    if exemption_key(&exemption.container, &exemption.policy) != key {
        return Err(CorruptRecord {
            tree: TREE_EXEMPTIONS,
            key: key_text(key),
            reason: format!(
                "the record is for container {} and policy {:?}",
                exemption.container, exemption.policy
            ),
        });
    }
    Ok(exemption)
}

fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    value: &[u8],
) -> Result<T, CorruptRecord> {
    serde_json::from_slice(value).map_err(|error| CorruptRecord {
        tree,
        key: key_text(key),
        reason: format!("invalid JSON: {error}"),
    })
}

fn encode<T: Serialize>(tree: &'static str, key: &str, value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        tree,
        key: key.to_string(),
        source,
    })
}

fn sled_error<K: Into<String>>(
    operation: &'static str,
    tree: &'static str,
    key: Option<K>,
) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| {
        let io = matches!(source, sled::Error::Io(_));
        let error = StoreError::Sled {
            operation,
            tree,
            key: key.map(Into::into),
            source,
        };
        if io {
            alarm(&error);
        }
        error
    }
}

/// Says loudly that the disk under the store failed (full, read-only, I/O error): once per
/// failed call, as an `ALERT` error line.
fn alarm(error: &StoreError) {
    tracing::error!(%error, "ALERT: the state store cannot write; quarantines in force stay enforced, nothing new is recorded or released; free the disk or make it writable, then restart the agent");
}

fn sync_path(path: &Path) -> StoreResult<()> {
    File::open(path)
        .and_then(|directory| directory.sync_all())
        .map_err(|source| StoreError::Sync {
            path: path.to_path_buf(),
            source,
        })
}
