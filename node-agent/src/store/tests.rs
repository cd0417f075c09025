//! Tests for the store: round trips, reopening, a real SIGKILL of a writer process, concurrent
//! audit appends, corrupt records, schema refusal. Write latency is measured in
//! `benches/benches/store.rs`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use lazaret_core::ContainerId;
use lazaret_core::audit::{AuditEntry, AuditHead, BreakKind};
use lazaret_core::quarantine::{
    Action, Exemption, QuarantineRecord, QuarantineRequest, QuarantineSource, QuarantineState,
};
use tempfile::TempDir;

use super::*;

const NOW: i64 = 1_700_000_000_000;

pub(super) fn record(index: usize) -> QuarantineRecord {
    QuarantineRecord::requested(
        QuarantineRequest {
            container: ContainerId::new(format!("{index:064x}")),
            node: "node-a".to_string(),
            actions: vec![Action::NetworkCut, Action::Pause],
            ttl: Some(Duration::from_secs(3600)),
            reason: format!("privileged container {index}"),
            actor: "agent".to_string(),
            source: QuarantineSource::Policy("no-privileged".to_string()),
            scope: Default::default(),
        },
        NOW,
    )
}

fn exemption(container: &str, policy: &str, until_unix_ms: i64) -> Exemption {
    Exemption {
        container: ContainerId::new(container),
        policy: policy.to_string(),
        until_unix_ms,
        actor: "CN=alice".to_string(),
        reason: "false positive".to_string(),
    }
}

fn entry(index: usize) -> AuditEntry {
    AuditEntry {
        actor: "agent".to_string(),
        on_behalf_of: None,
        action: "quarantine".to_string(),
        target: format!("{index:064x}"),
        reason: "privileged container".to_string(),
        source: "policy:no-privileged".to_string(),
        outcome: "applied".to_string(),
    }
}

fn open(dir: &TempDir) -> Store {
    Store::open(dir.path(), Durability::Process).unwrap()
}

/// Writes into the store's sled database behind its back, as corruption or tampering would.
fn raw_insert(dir: &TempDir, tree: &str, key: &[u8], value: &[u8]) {
    let db = lazaret_fleet::state_dir::open_sled(dir.path()).unwrap();
    db.open_tree(tree).unwrap().insert(key, value).unwrap();
    db.flush().unwrap();
}

#[test]
fn quarantine_round_trip() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let first = record(1);
    assert_eq!(store.quarantine(&first.container).unwrap(), None);

    store.put_quarantine(&first).unwrap();
    store.put_quarantine(&record(2)).unwrap();
    assert_eq!(
        store.quarantine(&first.container).unwrap(),
        Some(first.clone())
    );

    let applied = QuarantineRecord {
        state: QuarantineState::Applied,
        since_unix_ms: NOW + 5,
        ..first.clone()
    };
    store.put_quarantine(&applied).unwrap();
    let loaded = store.quarantines().unwrap();
    assert_eq!(loaded.records, vec![applied, record(2)]);
    assert!(loaded.corrupt.is_empty());

    assert!(store.remove_quarantine(&first.container).unwrap());
    assert!(!store.remove_quarantine(&first.container).unwrap());
    assert_eq!(store.quarantine(&first.container).unwrap(), None);
    assert_eq!(store.quarantines().unwrap().records, vec![record(2)]);
}

#[test]
fn exemptions_round_trip_and_prune() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    store
        .put_exemption(&exemption("c1", "no-privileged", NOW + 10))
        .unwrap();
    store
        .put_exemption(&exemption("c1", "indicator:ioc-1", NOW + 20))
        .unwrap();
    store
        .put_exemption(&exemption("c2", "no-privileged", NOW + 30))
        .unwrap();
    // A newer decision for the same pair replaces the old one, even when it ends sooner.
    store
        .put_exemption(&exemption("c2", "no-privileged", NOW + 5))
        .unwrap();

    let loaded = store.exemptions().unwrap();
    assert!(loaded.corrupt.is_empty());
    assert_eq!(loaded.records.len(), 3);
    let c2 = ContainerId::new("c2");
    assert_eq!(
        loaded
            .records
            .get(&c2, "no-privileged")
            .unwrap()
            .until_unix_ms,
        NOW + 5
    );

    let pruned = store.prune_exemptions(NOW + 10).unwrap();
    let mut pruned_pairs: Vec<_> = pruned
        .iter()
        .map(|e| (e.container.as_str(), e.policy.as_str()))
        .collect();
    pruned_pairs.sort();
    assert_eq!(
        pruned_pairs,
        vec![("c1", "no-privileged"), ("c2", "no-privileged")]
    );
    let remaining = store.exemptions().unwrap().records;
    assert_eq!(remaining.len(), 1);
    assert!(remaining.is_exempt(&ContainerId::new("c1"), "indicator:ioc-1", NOW + 10));
    assert!(store.prune_exemptions(NOW + 10).unwrap().is_empty());

    assert!(
        store
            .remove_exemption(&ContainerId::new("c1"), "indicator:ioc-1")
            .unwrap()
    );
    assert!(store.exemptions().unwrap().records.is_empty());
}

#[test]
fn audit_append_page_and_verify() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    assert_eq!(store.audit_head().unwrap(), None);
    assert_eq!(store.verify_audit(None).unwrap(), Ok(AuditHead::GENESIS));

    let records: Vec<_> = (0..5)
        .map(|index| {
            store
                .append_audit(entry(index), NOW + index as i64)
                .unwrap()
        })
        .collect();
    assert_eq!(
        records.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let head = records[4].head();
    assert_eq!(store.audit_head().unwrap(), Some(head));
    assert_eq!(store.audit_records(0, 100).unwrap(), records);
    assert_eq!(store.audit_records(2, 2).unwrap(), records[1..3]);
    assert_eq!(store.verify_audit(None).unwrap(), Ok(head));
    assert_eq!(
        store.verify_audit(Some(&records[2].head())).unwrap(),
        Ok(head)
    );
    // Batches smaller than the chain, with the anchor in every position.
    for anchor in &records {
        let anchor = anchor.head();
        assert_eq!(
            store.verify_audit_in_batches(Some(&anchor), 2).unwrap(),
            Ok(head)
        );
    }
    let future = AuditHead {
        sequence: 7,
        hash: head.hash,
    };
    let chain_break = store
        .verify_audit_in_batches(Some(&future), 2)
        .unwrap()
        .unwrap_err();
    assert_eq!(chain_break.position, 5);
    assert!(matches!(
        chain_break.kind,
        BreakKind::AnchorMissing {
            anchor_sequence: 7,
            ..
        }
    ));
}

#[test]
fn verify_reports_tampering_and_truncation() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let records: Vec<_> = (0..4)
        .map(|index| store.append_audit(entry(index), NOW).unwrap())
        .collect();
    drop(store);

    // Alter record 2: record 3's link no longer matches.
    let mut altered = records[1].clone();
    altered.outcome = "skipped".to_string();
    raw_insert(
        &dir,
        TREE_AUDIT,
        &2u64.to_be_bytes(),
        &serde_json::to_vec(&altered).unwrap(),
    );
    let store = open(&dir);
    let chain_break = store.verify_audit_in_batches(None, 2).unwrap().unwrap_err();
    assert_eq!((chain_break.position, chain_break.sequence), (2, 3));
    assert!(matches!(chain_break.kind, BreakKind::HashMismatch { .. }));
    drop(store);

    // Remove the last record: no link breaks, but the stored head names it.
    let raw = lazaret_fleet::state_dir::open_sled(dir.path()).unwrap();
    let audit_tree = raw.open_tree(TREE_AUDIT).unwrap();
    audit_tree
        .insert(2u64.to_be_bytes(), serde_json::to_vec(&records[1]).unwrap())
        .unwrap();
    audit_tree.remove(4u64.to_be_bytes()).unwrap();
    raw.flush().unwrap();
    drop((audit_tree, raw));
    let store = open(&dir);
    let chain_break = store.verify_audit(None).unwrap().unwrap_err();
    assert_eq!((chain_break.position, chain_break.sequence), (3, 4));
    assert!(matches!(
        chain_break.kind,
        BreakKind::AnchorMissing {
            anchor_sequence: 4,
            ..
        }
    ));
}

#[test]
fn reopen_after_drop_keeps_everything() {
    for durability in [Durability::Process, Durability::Disk] {
        let dir = TempDir::new().unwrap();
        let store = Store::open(dir.path(), durability).unwrap();
        store.put_quarantine(&record(1)).unwrap();
        store
            .put_exemption(&exemption("c1", "no-privileged", NOW))
            .unwrap();
        let appended = store.append_audit(entry(1), NOW).unwrap();
        drop(store);

        let store = Store::open(dir.path(), durability).unwrap();
        assert_eq!(store.quarantines().unwrap().records, vec![record(1)]);
        assert_eq!(store.exemptions().unwrap().records.len(), 1);
        assert_eq!(store.audit_head().unwrap(), Some(appended.head()));
        // The chain continues from the stored head.
        let next = store.append_audit(entry(2), NOW).unwrap();
        assert_eq!(next.previous_hash, appended.hash());
        assert!(store.verify_audit(None).unwrap().is_ok());
    }
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = TempDir::new().unwrap();
    let _store = open(&dir);
    let error = Store::open(dir.path(), Durability::Process).unwrap_err();
    assert!(matches!(error, StoreError::Open { .. }), "{error}");
    assert!(error.to_string().contains("another agent"), "{error}");
}

const CRASH_DIR_ENV: &str = "LAZARET_STORE_CRASH_TEST_DIR";
const CRASH_WRITES: usize = 200;
const CRASH_READY: &str = "lazaret-store-crash-child-ready";

/// The child half of [`writes_survive_sigkill_in_process_mode`]; does nothing when run by
/// itself. Writes, announces it is done, and waits to be killed.
#[test]
fn crash_child_writes_then_waits_for_sigkill() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let store = Store::open(std::path::Path::new(&dir), Durability::Process).unwrap();
    // Audit appends first: sled's transactions push some of its buffer out by themselves, so
    // plain inserts last make the test fail (without the flush) rather than pass by luck.
    for index in 0..CRASH_WRITES {
        store.append_audit(entry(index), NOW).unwrap();
    }
    for index in 0..CRASH_WRITES {
        store.put_quarantine(&record(index)).unwrap();
    }
    println!("{CRASH_READY}");
    std::thread::sleep(Duration::from_secs(60));
    std::process::exit(3);
}

/// Kills a writer with SIGKILL the instant its last write returned: without the flush after
/// every write, sled 0.34 loses most of these (they are still in its in-process buffer).
#[test]
fn writes_survive_sigkill_in_process_mode() {
    let dir = TempDir::new().unwrap();
    let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("{module}::crash_child_writes_then_waits_for_sigkill"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // The harness prints `test … ` before the child's line, on the same line.
    let ready = stdout
        .lines()
        .map_while(Result::ok)
        .any(|line| line.ends_with(CRASH_READY));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(ready, "the child exited without writing: {status}");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    let store = open(&dir);
    let loaded = store.quarantines().unwrap();
    assert!(loaded.corrupt.is_empty());
    assert_eq!(loaded.records.len(), CRASH_WRITES);
    let head = store.verify_audit(None).unwrap().unwrap();
    assert_eq!(head.sequence, CRASH_WRITES as u64);
    assert_eq!(store.audit_head().unwrap(), Some(head));
}

#[test]
fn concurrent_audit_appends_form_one_chain() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 50;
    let dir = TempDir::new().unwrap();
    let store = Arc::new(open(&dir));
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|index| {
                        let record = store.append_audit(entry(thread * 1000 + index), NOW);
                        record.unwrap().sequence
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut sequences: Vec<u64> = handles
        .into_iter()
        .flat_map(|handle| handle.join().unwrap())
        .collect();
    sequences.sort_unstable();
    let expected: Vec<u64> = (1..=(THREADS * PER_THREAD) as u64).collect();
    assert_eq!(sequences, expected);
    let head = store.verify_audit(None).unwrap().unwrap();
    assert_eq!(head.sequence, (THREADS * PER_THREAD) as u64);
    assert_eq!(store.audit_head().unwrap(), Some(head));
}

#[test]
fn a_corrupt_quarantine_is_reported_by_key_and_the_rest_load() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    for index in 0..3 {
        store.put_quarantine(&record(index)).unwrap();
    }
    drop(store);
    raw_insert(&dir, TREE_QUARANTINE, b"deadbeef", b"{\"container\": ");
    // A valid record filed under another container's key is corrupt too.
    raw_insert(
        &dir,
        TREE_QUARANTINE,
        b"c0ffee",
        &serde_json::to_vec(&record(1)).unwrap(),
    );

    let store = open(&dir);
    let loaded = store.quarantines().unwrap();
    assert_eq!(loaded.records, vec![record(0), record(1), record(2)]);
    let corrupt_keys: Vec<_> = loaded.corrupt.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(corrupt_keys, ["c0ffee", "deadbeef"]);
    assert!(loaded.corrupt.iter().all(|c| c.tree == TREE_QUARANTINE));

    let error = store.quarantine(&ContainerId::new("deadbeef")).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, StoreError::Corrupt(_)));
    assert!(
        message.contains("`quarantine`") && message.contains("\"deadbeef\""),
        "{message}"
    );
}

#[test]
fn corrupt_exemptions_and_audit_records_are_reported_by_key() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    store.put_exemption(&exemption("c1", "p", NOW)).unwrap();
    store.append_audit(entry(1), NOW).unwrap();
    drop(store);
    raw_insert(&dir, TREE_EXEMPTIONS, b"c2\0p", b"not json");
    raw_insert(&dir, TREE_AUDIT, &2u64.to_be_bytes(), b"not json");

    let store = open(&dir);
    let loaded = store.exemptions().unwrap();
    assert_eq!(loaded.records.len(), 1);
    assert_eq!(loaded.corrupt.len(), 1);
    assert_eq!(loaded.corrupt[0].key, "c2\0p");
    // Pruning leaves the corrupt one alone rather than failing.
    assert_eq!(store.prune_exemptions(NOW).unwrap().len(), 1);

    let error = store.audit_records(0, 10).unwrap_err();
    assert!(matches!(&error, StoreError::Corrupt(c) if c.tree == TREE_AUDIT && c.key == "2"));
    let error = store.verify_audit(None).unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt(c) if c.key == "2"),
        "{error}"
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = TempDir::new().unwrap();
    drop(open(&dir));
    raw_insert(&dir, TREE_META, META_SCHEMA.as_bytes(), b"2");
    let error = Store::open(dir.path(), Durability::Process).unwrap_err();
    assert!(
        matches!(&error, StoreError::UnsupportedSchema { found, supported: 1, .. } if found == "2")
    );
    assert!(error.to_string().contains("schema version 2"), "{error}");

    raw_insert(&dir, TREE_META, META_SCHEMA.as_bytes(), b"1");
    open(&dir);
}
