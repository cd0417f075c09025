//! The judge against 50 policies (goal: ≤ 20 µs per container), and loading such a set.
//! Run: `cargo bench -p lazaret-benches --bench judge`.
//!
//! Every policy applies to the container (the worst case: no selector filters anything out),
//! and a third of them carry CEL expressions, so the CEL view of the container is built.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lazaret_core::policy::{JudgeInput, NoIndicators, PolicySet, PolicySource, Verdict, judge};
use lazaret_core::{ContainerId, ContainerInfo, ContainerState, Finding, RuntimeKind, posture};

fn fifty_policies() -> String {
    policies_with(50, true)
}

fn policies_with(count: usize, with_cel: bool) -> String {
    let mut documents = Vec::new();
    for index in 0..count {
        let kind = if with_cel {
            index % 3
        } else {
            [0, 2][index % 2]
        };
        let rules = match kind {
            0 => "  - {check: \"5.4\", capabilities: [SYS_ADMIN, NET_ADMIN]}\n  - check: privileged\n".to_string(),
            // Distinct expressions per policy, as in real sets.
            1 => format!("  - expr: 'container.user == \"\" && container.image.startsWith(\"registry.example.com/\") && container.name != \"skip-{index}\"'\n  - expr: 'container.mounts.exists(m, m.rw && m.source.startsWith(\"/etc/{index}\"))'\n"),
            _ => "  - {check: image-not-from, registries: [registry.example.com, docker.io/library]}\n  - check: \"5.32\"\n".to_string(),
        };
        documents.push(format!(
            "apiVersion: lazaret.dev/v1\nkind: Policy\nname: policy-{index}\nmode: enforce\nseverity: high\nmatch:\n  labels: {{env: prod}}\nrules:\n{rules}actions: [network-cut, pause]\n"
        ));
    }
    documents.join("---\n")
}

fn container() -> ContainerInfo {
    let mut info = ContainerInfo::unknown(ContainerId::new("0".repeat(64)), RuntimeKind::Docker);
    info.name = "api".into();
    info.state = ContainerState::Running;
    info.image = "registry.example.com/payments/api:2.1".into();
    info.user = Some(String::new());
    info.privileged = Some(false);
    info.cap_add = Some(vec!["NET_ADMIN".into()]);
    info.mounts = Some(vec![]);
    info.labels = BTreeMap::from([
        ("env".into(), "prod".into()),
        ("team".into(), "payments".into()),
    ]);
    info
}

/// Judges one container (its CIS findings given) with no indicators and no exemptions.
fn judge_once(set: &PolicySet, subject: &ContainerInfo, findings: &[Finding]) -> Verdict {
    judge(
        set,
        &JudgeInput {
            container: subject,
            posture: findings,
            indicators: &NoIndicators,
            is_exempt: &|_| false,
        },
    )
}

fn bench_judge(criterion: &mut Criterion) {
    let text = fifty_policies();
    let set = PolicySet::load(&[PolicySource::new("bench.yaml", text.clone())])
        .expect("bench policies load");
    let subject = container();
    let findings = posture::assess(&subject);
    criterion.bench_function("judge/one_container_50_policies", |bencher| {
        bencher.iter(|| judge_once(black_box(&set), black_box(&subject), &findings))
    });
    let mut clean = container();
    clean.user = Some("app".into());
    clean.cap_add = Some(vec![]);
    let clean_findings = posture::assess(&clean);
    criterion.bench_function("judge/clean_container_50_policies", |bencher| {
        bencher.iter(|| judge_once(black_box(&set), black_box(&clean), &clean_findings))
    });
    criterion.bench_function("judge/assess_and_judge_50_policies", |bencher| {
        bencher.iter(|| {
            let findings = posture::assess(black_box(&subject));
            judge_once(&set, &subject, &findings)
        })
    });
    let without_cel = PolicySet::load(&[PolicySource::new("bench.yaml", policies_with(50, false))])
        .expect("load");
    criterion.bench_function("judge/one_container_50_policies_without_cel", |bencher| {
        bencher.iter(|| judge_once(black_box(&without_cel), black_box(&subject), &findings))
    });
    let one_cel = PolicySet::load(&[PolicySource::new(
        "bench.yaml",
        "apiVersion: lazaret.dev/v1\nkind: Policy\nname: one\nmatch:\n  labels: {env: prod}\nrules:\n  - expr: 'container.user == \"\" && container.image.startsWith(\"registry.example.com/\")'\n",
    )])
    .expect("load");
    criterion.bench_function("judge/one_cel_policy", |bencher| {
        bencher.iter(|| judge_once(black_box(&one_cel), black_box(&subject), &findings))
    });
    criterion.bench_function("policy/load_50_policies", |bencher| {
        bencher
            .iter(|| PolicySet::load(&[PolicySource::new("bench.yaml", black_box(text.clone()))]))
    });
}

criterion_group!(benches, bench_judge);
criterion_main!(benches);
