//! The live inventory against the machine's real Docker engine: a zoo of containers with
//! different configurations gives exactly the expected result for every (container, check).

use std::collections::{BTreeMap, BTreeSet};

use lazaret_core::posture::{self, CheckResult};
use lazaret_core::{ContainerId, ContainerState};
use lazaret_tests::agent::{DEFAULT_DOCKER_SOCKET, TestAgent};
use lazaret_tests::{BUSYBOX_IMAGE, TestContainers, ensure_busybox_image};

/// One zoo member: docker options, whether it is started, and the checks it must fail beyond
/// (or instead of) the baseline.
struct Member {
    suffix: &'static str,
    options: &'static [&'static str],
    start: bool,
    extra_failures: &'static [&'static str],
    passes_instead: &'static [&'static str],
}

/// What a plain `docker create busybox` fails on any host: root user, no memory/CPU/PIDs
/// limits, writable root, no no-new-privileges, no health check. 5.2/5.3 depend on whether
/// the host has AppArmor/SELinux (computed from `docker info`).
const BASELINE_FAILURES: [&str; 7] = ["4.1", "5.11", "5.12", "5.13", "5.26", "5.27", "5.29"];

const ZOO: &[Member] = &[
    Member {
        suffix: "plain",
        options: &[],
        start: true,
        extra_failures: &[],
        passes_instead: &[],
    },
    Member {
        suffix: "nonroot",
        options: &["-u", "1000:1000"],
        start: true,
        extra_failures: &[],
        passes_instead: &["4.1"],
    },
    Member {
        suffix: "caps",
        options: &["--cap-add", "SYS_ADMIN", "--cap-add", "net_admin"],
        start: true,
        extra_failures: &["5.4"],
        passes_instead: &[],
    },
    Member {
        suffix: "default-cap",
        options: &["--cap-add", "CHOWN"],
        start: false,
        extra_failures: &[],
        passes_instead: &[],
    },
    Member {
        suffix: "docker-sock",
        options: &["-v", "/var/run/docker.sock:/var/run/docker.sock"],
        start: false,
        extra_failures: &["5.32"],
        passes_instead: &[],
    },
    Member {
        suffix: "etc-rw",
        options: &["-v", "/etc:/host-etc"],
        start: false,
        extra_failures: &["5.6"],
        passes_instead: &[],
    },
    Member {
        suffix: "etc-ro",
        options: &["-v", "/etc:/host-etc:ro"],
        start: false,
        extra_failures: &[],
        passes_instead: &[],
    },
    Member {
        suffix: "host-pid",
        options: &["--pid", "host"],
        start: false,
        extra_failures: &["5.16"],
        passes_instead: &[],
    },
    Member {
        suffix: "host-net",
        options: &["--network", "host"],
        start: false,
        extra_failures: &["5.10"],
        passes_instead: &[],
    },
    Member {
        suffix: "host-ipc",
        options: &["--ipc", "host"],
        start: false,
        extra_failures: &["5.17"],
        passes_instead: &[],
    },
    Member {
        suffix: "host-uts",
        options: &["--uts", "host"],
        start: false,
        extra_failures: &["5.21"],
        passes_instead: &[],
    },
    Member {
        suffix: "host-userns",
        options: &["--userns", "host"],
        start: false,
        extra_failures: &["5.31"],
        passes_instead: &[],
    },
    Member {
        suffix: "hardened",
        options: &[
            "-u",
            "1000",
            "--read-only",
            "--memory",
            "64m",
            "--cpu-shares",
            "512",
            "--pids-limit",
            "100",
            "--security-opt",
            "no-new-privileges",
            "--health-cmd",
            "true",
        ],
        start: true,
        extra_failures: &[],
        passes_instead: &["4.1", "5.11", "5.12", "5.13", "5.26", "5.27", "5.29"],
    },
    Member {
        suffix: "limits",
        options: &["--memory", "32m", "--cpus", "0.5", "--pids-limit", "20"],
        start: false,
        extra_failures: &[],
        passes_instead: &["5.11", "5.12", "5.29"],
    },
    Member {
        suffix: "low-port",
        options: &["-p", "999:80"],
        start: true,
        extra_failures: &["5.8", "5.14"],
        passes_instead: &[],
    },
    Member {
        suffix: "loopback-port",
        options: &["-p", "127.0.0.1:18080:8080"],
        start: true,
        extra_failures: &[],
        passes_instead: &[],
    },
    Member {
        suffix: "seccomp",
        options: &["--security-opt", "seccomp=unconfined"],
        start: false,
        extra_failures: &["5.22"],
        passes_instead: &[],
    },
    Member {
        suffix: "device",
        options: &["--device", "/dev/null:/dev/xnull"],
        start: false,
        extra_failures: &["5.18"],
        passes_instead: &[],
    },
    // Privileged containers cannot start on these machines; their configuration is judged.
    Member {
        suffix: "privileged",
        options: &["--privileged"],
        start: false,
        extra_failures: &["5.5", "5.22"],
        passes_instead: &[],
    },
    Member {
        suffix: "restart",
        options: &["--restart", "on-failure:10"],
        start: false,
        extra_failures: &["5.15"],
        passes_instead: &[],
    },
    Member {
        suffix: "cgroup-parent",
        options: &["--cgroup-parent", "/lazaret-test"],
        start: false,
        extra_failures: &["5.25"],
        passes_instead: &[],
    },
    Member {
        suffix: "rshared",
        options: &[
            "--mount",
            "type=bind,source=/tmp,target=/shared,bind-propagation=rshared",
        ],
        start: false,
        extra_failures: &["5.20"],
        passes_instead: &[],
    },
];

/// The host's LSMs decide 5.2 and 5.3 for every container without explicit options.
fn host_lsm_failures() -> Vec<&'static str> {
    let info =
        lazaret_tests::docker::docker(None, &["info", "--format", "{{json .SecurityOptions}}"])
            .expect("docker info");
    let mut failures = Vec::new();
    if !info.contains("apparmor") {
        failures.push("5.2");
    }
    if !info.contains("selinux") {
        failures.push("5.3");
    }
    failures
}

fn expected_results(member: &Member, lsm_failures: &[&str]) -> BTreeMap<&'static str, CheckResult> {
    let mut failing: BTreeSet<&str> = BASELINE_FAILURES
        .iter()
        .chain(lsm_failures)
        .copied()
        .collect();
    failing.extend(member.extra_failures);
    for passing in member.passes_instead {
        failing.remove(passing);
    }
    posture::catalogue()
        .iter()
        .map(|check| {
            let result = if check.id == "5.7" {
                CheckResult::Unknown
            } else if failing.contains(check.id) {
                CheckResult::Fail
            } else {
                CheckResult::Pass
            };
            (check.id, result)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoo_gives_the_expected_result_for_every_container_and_check() {
    lazaret_tests::init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let make = |member: &Member| {
        let mut args: Vec<&str> = member.options.to_vec();
        args.extend([BUSYBOX_IMAGE, "sleep", "600"]);
        if member.start {
            containers.run(member.suffix, &args)
        } else {
            containers.create(member.suffix, &args)
        }
        .unwrap_or_else(|error| panic!("zoo member {}: {error:#}", member.suffix))
    };

    // The first member exists before the agent starts (found by the list), the rest are
    // created while it runs (found through events).
    let mut ids = vec![ContainerId::new(make(&ZOO[0]))];
    let agent = TestAgent::start_docker(DEFAULT_DOCKER_SOCKET)
        .await
        .unwrap();
    ids.extend(ZOO[1..].iter().map(|member| ContainerId::new(make(member))));

    let expected_states: Vec<ContainerState> = ZOO
        .iter()
        .map(|member| {
            if member.start {
                ContainerState::Running
            } else {
                ContainerState::Created
            }
        })
        .collect();
    let snapshot = agent
        .wait_for_inventory("every zoo member in its state", |snapshot| {
            ids.iter().zip(&expected_states).all(|(id, state)| {
                snapshot
                    .get(id)
                    .is_some_and(|entry| entry.info.state == *state)
            })
        })
        .await
        .unwrap();

    let lsm_failures = host_lsm_failures();
    let mut mismatches = Vec::new();
    for (member, id) in ZOO.iter().zip(&ids) {
        let entry = snapshot.get(id).unwrap();
        assert_eq!(entry.info.name, containers.container_name(member.suffix));
        assert_eq!(entry.info.image, BUSYBOX_IMAGE);
        assert_eq!(
            entry.info.image_digest, None,
            "imported images have no registry digest"
        );
        assert_eq!(
            entry
                .info
                .labels
                .get(lazaret_tests::TEST_LABEL)
                .map(String::as_str),
            Some(containers.run_id())
        );
        let expected = expected_results(member, &lsm_failures);
        for finding in &entry.findings {
            let wanted = expected[finding.check];
            if finding.result != wanted {
                mismatches.push(format!(
                    "{} check {}: expected {:?}, got {:?} ({})",
                    member.suffix, finding.check, wanted, finding.result, finding.detail
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "posture mismatches:\n{}",
        mismatches.join("\n")
    );

    // Removal is followed too, and the metrics reflect the inventory.
    containers.docker(&["rm", "-f", ids[0].as_str()]).unwrap();
    agent
        .wait_for_inventory("the removed container to leave", |snapshot| {
            snapshot.get(&ids[0]).is_none()
        })
        .await
        .unwrap();
    let metrics = agent.metrics_text();
    let privileged_failures: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("lazaret_findings{check=\"5.5\",result=\"fail\"} "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no 5.5 fail series in\n{metrics}"));
    assert!(privileged_failures >= 1, "{metrics}");
    assert!(
        metrics.contains("lazaret_runtime_connected{runtime=\"docker\"} 1"),
        "{metrics}"
    );
    agent.stop().await;
}
