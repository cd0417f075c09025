//! Indicator lookups (issue 8/11 goals: ≥ 10 M lookups/s on one core at 100k entries; building a
//! 100k set ≤ 100 ms). The set mixes every exact type, single addresses and CIDRs; lookups mix
//! hits and misses. Run: `cargo bench -p lazaret-benches --bench indicators`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lazaret_core::indicator::index::IndicatorIndex;
use lazaret_core::indicator::{Indicator, IndicatorSet};
use lazaret_core::policy::IndicatorKind;
use lazaret_core::severity::Severity;

const ENTRIES: u32 = 100_000;

fn set() -> IndicatorSet {
    let indicator = |n: u32, kind: IndicatorKind, value: String| Indicator {
        id: format!("i{n}"),
        kind,
        value,
        severity: Severity::High,
        source: "bench".into(),
        valid_until: None,
    };
    let indicators = (0..ENTRIES)
        .map(|n| match n % 4 {
            0 => indicator(n, IndicatorKind::ImageId, format!("sha256:{n:064x}")),
            1 => indicator(n, IndicatorKind::ProcessName, format!("proc-{n}")),
            2 => indicator(
                n,
                IndicatorKind::Ip,
                Ipv4Addr::from(0x0a00_0000 + n).to_string(),
            ),
            _ => indicator(
                n,
                IndicatorKind::Ip,
                format!("{}/24", Ipv4Addr::from(0xac00_0000 + (n << 8))),
            ),
        })
        .collect();
    IndicatorSet { indicators }
}

fn lookups(c: &mut Criterion) {
    let set = set();
    c.bench_function("build an index of 100k indicators", |bench| {
        bench.iter(|| IndicatorIndex::build(black_box(&set), 1_800_000_000))
    });
    let index = IndicatorIndex::build(&set, 1_800_000_000);
    let names: Vec<String> = (0..1024u32)
        .map(|n| format!("proc-{}", n * 2 + 1))
        .collect();
    let addresses: Vec<IpAddr> = (0..1024u32)
        .map(|n| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n * 7)))
        .collect();
    let mut group = c.benchmark_group("lookups at 100k");
    group.throughput(Throughput::Elements(1024));
    group.bench_function("process names (half hits)", |bench| {
        bench.iter(|| {
            names
                .iter()
                .filter(|name| index.lookup(IndicatorKind::ProcessName, name).is_some())
                .count()
        })
    });
    group.bench_function("addresses (addresses and CIDRs)", |bench| {
        bench.iter(|| {
            addresses
                .iter()
                .filter(|address| index.address(**address).is_some())
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
