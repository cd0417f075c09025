//! The store's schema and how an older one is brought up to date at open.
//!
//! The `meta` tree's `schema` key holds the version of the layout the data was written in. At
//! open ([`Store::open`]):
//! - no version (a new directory): the current one is written;
//! - the current version: nothing to do;
//! - an older version: each [`Migration`] from that version on runs in order, and the version it
//!   reaches is written (and flushed) right after it, so a crash or a failure leaves the store at
//!   the last step that finished and the next start goes on from there. Steps must therefore be
//!   safe to run again on a store they half changed (rewrite records from one form to the
//!   other, never depend on a count);
//! - a newer version (written by a newer agent): refused, never read or rewritten. Downgrading
//!   past a schema change means restoring the directory from before the upgrade.
//!
//! [`MIGRATIONS`] is empty: schema 1 is the first, and every change since (optional record
//! fields such as a release under way) has been one that schema-1 readers still read. The first
//! incompatible change adds its step here, which raises
//! [`SCHEMA_VERSION`](super::SCHEMA_VERSION); the unit tests drive the machinery with steps of
//! their own.

use super::{META_SCHEMA, Store, StoreError, StoreResult, TREE_META, sled_error};

/// One step of the schema: rewrites a store of version `from` into version `from + 1`.
pub struct Migration {
    pub from: u32,
    /// What it changes, for the log.
    pub what: &'static str,
    pub apply: fn(&Store) -> StoreResult<()>,
}

/// Every step, oldest first, ending at [`SCHEMA_VERSION`](super::SCHEMA_VERSION).
pub const MIGRATIONS: &[Migration] = &[];

/// A schema version, read from the store.
fn stored_version(store: &Store) -> StoreResult<Option<String>> {
    let found =
        store
            .meta
            .get(META_SCHEMA)
            .map_err(sled_error("read", TREE_META, Some(META_SCHEMA)))?;
    Ok(found.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

fn write_version(store: &Store, version: u32) -> StoreResult<()> {
    store
        .meta
        .insert(META_SCHEMA, version.to_string().as_bytes())
        .map_err(sled_error("write", TREE_META, Some(META_SCHEMA)))?;
    store.persist()
}

/// Brings `store` to `current` with `steps` (see the module docs); returns the version it was
/// at (`None` for a new store).
pub(super) fn migrate(
    store: &Store,
    steps: &[Migration],
    current: u32,
) -> StoreResult<Option<u32>> {
    let Some(text) = stored_version(store)? else {
        if !is_empty(store) {
            // Data without a version: not written by any agent (each writes the version at its
            // first open). Never guessed at.
            return Err(StoreError::UnsupportedSchema {
                path: store.path.clone(),
                found: "none (the directory holds data but no schema version)".into(),
                supported: current,
            });
        }
        write_version(store, current)?;
        return Ok(None);
    };
    let unsupported = || StoreError::UnsupportedSchema {
        path: store.path.clone(),
        found: text.clone(),
        supported: current,
    };
    let found: u32 = text.parse().map_err(|_| unsupported())?;
    if found > current || found == 0 {
        return Err(unsupported());
    }
    let mut version = found;
    while version < current {
        let step = steps
            .iter()
            .find(|step| step.from == version)
            .ok_or_else(unsupported)?;
        tracing::warn!(store = %store.path.display(), from = version, to = version + 1, what = step.what, "migrating the store's schema");
        (step.apply)(store).map_err(|source| StoreError::Migration {
            path: store.path.clone(),
            from: version,
            what: step.what,
            source: Box::new(source),
        })?;
        version += 1;
        write_version(store, version)?;
    }
    if found < current {
        tracing::warn!(store = %store.path.display(), from = found, to = current, "store schema migrated");
    }
    Ok(Some(found))
}

/// Whether `store` holds nothing at all (a new directory).
fn is_empty(store: &Store) -> bool {
    [
        &store.quarantine,
        &store.exemptions,
        &store.audit,
        &store.bundles,
        &store.meta,
        &store.evidence,
    ]
    .iter()
    .all(|tree| tree.is_empty())
}

/// Whether `steps` go 1 → 2, 2 → 3, … with none missing or repeated.
pub const fn contiguous(steps: &[Migration]) -> bool {
    let mut index = 0;
    while index < steps.len() {
        if steps[index].from as usize != index + 1 {
            return false;
        }
        index += 1;
    }
    true
}

/// The schema this build migrates to: one past the last step, 1 when there is none.
pub const fn latest(steps: &[Migration]) -> u32 {
    match steps.last() {
        Some(step) => step.from + 1,
        None => 1,
    }
}

const _: () = assert!(contiguous(MIGRATIONS));

#[cfg(test)]
mod tests {
    use lazaret_core::quarantine::QuarantineRecord;

    use super::*;
    use crate::store::tests::record;
    use crate::store::{Durability, SCHEMA_VERSION, TREE_QUARANTINE};

    /// Test step 1 → 2: every quarantine's reason gains a suffix (rewriting each record is what
    /// a real step does; this one is idempotent: a record already rewritten is left alone).
    fn suffix_reasons(store: &Store) -> StoreResult<()> {
        for record in store.quarantines()?.records {
            if record.reason.ends_with(" (v2)") {
                continue;
            }
            store.put_quarantine(&QuarantineRecord {
                reason: format!("{} (v2)", record.reason),
                ..record
            })?;
        }
        Ok(())
    }

    /// Test step 2 → 3 that fails the first time (as a full disk would) and works after.
    fn fails_once(store: &Store) -> StoreResult<()> {
        if store.meta.get("failed-once").unwrap().is_none() {
            store.meta.insert("failed-once", b"yes").unwrap();
            return Err(StoreError::Corrupt(crate::store::CorruptRecord {
                tree: TREE_QUARANTINE,
                key: "x".into(),
                reason: "injected".into(),
            }));
        }
        Ok(())
    }

    const STEPS: &[Migration] = &[
        Migration {
            from: 1,
            what: "suffix reasons",
            apply: suffix_reasons,
        },
        Migration {
            from: 2,
            what: "fails once",
            apply: fails_once,
        },
    ];

    fn version(store: &Store) -> String {
        stored_version(store).unwrap().unwrap()
    }

    #[test]
    fn an_older_store_is_migrated_step_by_step_and_a_failed_step_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Process).unwrap();
        assert_eq!(version(&store), "1");
        store.put_quarantine(&record(1)).unwrap();

        // Step 1 → 2 runs and is written; 2 → 3 fails: the store stays at 2, says why.
        let error = migrate(&store, STEPS, latest(STEPS)).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("from schema 2") && text.contains("fails once"),
            "{text}"
        );
        assert_eq!(version(&store), "2");
        let reason = |store: &Store| store.quarantines().unwrap().records[0].reason.clone();
        assert!(reason(&store).ends_with(" (v2)"));

        // The next start goes on from 2 and does not run 1 → 2 again.
        assert_eq!(migrate(&store, STEPS, 3).unwrap(), Some(2));
        assert_eq!(version(&store), "3");
        assert!(!reason(&store).ends_with(" (v2) (v2)"));
        assert_eq!(migrate(&store, STEPS, 3).unwrap(), Some(3));
    }

    #[test]
    fn a_new_store_gets_the_current_version_and_gaps_or_newer_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Process).unwrap();
        store.meta.remove(META_SCHEMA).unwrap();
        assert_eq!(migrate(&store, STEPS, 3).unwrap(), None);
        assert_eq!(version(&store), "3");
        // No step from 1 to 2 (a build that lacks it): refused, nothing changed.
        write_version(&store, 1).unwrap();
        let error = migrate(&store, &STEPS[1..], 3).unwrap_err();
        assert!(
            matches!(error, StoreError::UnsupportedSchema { .. }),
            "{error}"
        );
        assert_eq!(version(&store), "1");
        for newer in ["4", "0", "two"] {
            store.meta.insert(META_SCHEMA, newer.as_bytes()).unwrap();
            let error = migrate(&store, STEPS, 3).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains(&format!("schema version {newer}")),
                "{error}"
            );
        }
    }

    #[test]
    fn the_current_schema_is_one_past_the_last_of_contiguous_steps() {
        assert_eq!(latest(&[]), 1);
        assert_eq!(latest(STEPS), 3);
        assert_eq!(latest(MIGRATIONS), SCHEMA_VERSION);
        assert!(contiguous(STEPS) && contiguous(MIGRATIONS) && contiguous(&[]));
        assert!(!contiguous(&STEPS[1..]));
    }

    #[test]
    fn data_without_a_schema_version_is_refused_not_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Process).unwrap();
        store.put_quarantine(&record(1)).unwrap();
        store.meta.remove(META_SCHEMA).unwrap();
        let error = migrate(&store, STEPS, 3).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("holds data but no schema version"),
            "{error}"
        );
        assert_eq!(stored_version(&store).unwrap(), None);
    }
}
