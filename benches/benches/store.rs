//! The cost of the durable write the quarantine manager makes before every action (DESIGN.md §2:
//! stored first, then acted), in both durability modes. Run:
//! `cargo bench -p lazaret-benches --bench store`. Set `LAZARET_STORE_BENCH_DIR` to measure on
//! the file system the agent will use.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lazaret_agent::store::{Durability, Store};
use lazaret_core::ContainerId;
use lazaret_core::quarantine::{Action, QuarantineRecord, QuarantineRequest, QuarantineSource};

fn transition(index: u64) -> QuarantineRecord {
    // 100 containers, each write a new transition (sled skips rewriting an identical value).
    let mut record = QuarantineRecord::requested(
        QuarantineRequest {
            container: ContainerId::new(format!("{:064x}", index % 100)),
            node: "node-a".into(),
            actions: vec![Action::NetworkCut, Action::Pause],
            ttl: Some(Duration::from_secs(3600)),
            reason: "privileged container".into(),
            actor: "agent".into(),
            source: QuarantineSource::Policy("no-privileged".into()),
            scope: Default::default(),
        },
        1_700_000_000_000,
    );
    record.since_unix_ms += i64::try_from(index).unwrap_or(0);
    record
}

fn bench_store(criterion: &mut Criterion) {
    for (name, durability) in [("process", Durability::Process), ("disk", Durability::Disk)] {
        let directory = match std::env::var_os("LAZARET_STORE_BENCH_DIR") {
            Some(base) => tempfile::TempDir::new_in(base),
            None => tempfile::TempDir::new(),
        }
        .expect("a temporary directory");
        let store = Store::open(directory.path(), durability).expect("the store opens");
        let mut index = 0;
        criterion.bench_function(&format!("store/put_quarantine_{name}"), |bencher| {
            bencher.iter(|| {
                index += 1;
                store
                    .put_quarantine(black_box(&transition(index)))
                    .expect("write")
            })
        });
    }
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
