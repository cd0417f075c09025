//! Fault: the agent's state directory fills up, then turns read-only, under a running agent on
//! the real Docker engine (the directory is a small tmpfs this test mounts; nothing else is
//! touched). The agent must say so loudly (an ALERT in its log), keep enforcing what it stored
//! (a quarantine undone behind its back is re-applied, unrecorded), refuse what it cannot record
//! (a new quarantine, a release) and never release silently (a TTL that runs out while nothing
//! can be written leaves the quarantine in force). After the disk is freed and the agent
//! restarted, it records again and the expired quarantine ends. On a read-only directory the
//! agent refuses to start (exit, the path and the reason) rather than enforce with no record.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lazaret_tests::fleet::{FAST_RECHECK, Placement, TestFleet, owned, paused};
use lazaret_tests::{TestContainers, ensure_busybox_image, init_tracing};

const DEADLINE: Duration = Duration::from_secs(60);
const ALERT: &str = "ALERT: the state store cannot write";

/// A tmpfs mounted at a path for the test's lifetime (lazily unmounted on drop: the agent may
/// still hold files in it).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .unwrap();
        assert!(
            mounted.success(),
            "cannot mount a tmpfs at {}",
            path.display()
        );
        Tmpfs(path.to_path_buf())
    }

    /// Fills it up with one file.
    fn fill(&self) {
        let filler = format!("of={}", self.0.join("filler").display());
        // dd stops with "No space left on device": that is the point.
        let _full = Command::new("dd")
            .args(["if=/dev/zero", &filler, "bs=64k"])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }

    fn remount(&self, option: &str) {
        let remounted = Command::new("mount")
            .args(["-o", &format!("remount,{option}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(remounted.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _unmounted = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn ctl_ok(fleet: &TestFleet, args: &[&str]) {
    let output = fleet.run_ctl(0, args).unwrap();
    assert!(
        output.status.success(),
        "lazaretctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `lazaretctl ARGS` must fail; its stderr.
fn ctl_refused(fleet: &TestFleet, args: &[&str]) -> String {
    let output = fleet.run_ctl(0, args).unwrap();
    assert!(!output.status.success(), "lazaretctl {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn wait_paused(fleet: &TestFleet, containers: &TestContainers, id: &str, what: &str) {
    fleet.agents[0]
        .process
        .wait_for(what, DEADLINE, || paused(containers, id))
        .unwrap();
}

/// Unpauses `id` behind the agent's back and waits until the agent has paused it again.
fn undone_and_repaired(fleet: &TestFleet, containers: &TestContainers, id: &str) {
    containers.docker(&["unpause", id]).unwrap();
    wait_paused(fleet, containers, id, "the unpaused quarantine re-applied");
}

#[test]
fn a_full_state_directory_keeps_enforcement_and_releases_nothing_and_a_read_only_one_is_refused() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let mut fleet = TestFleet::new().unwrap();
    // The agent's state directory (TestFleet puts node-1's in DIR/node-1/state) on 16 MiB.
    let state = Tmpfs::mount(&fleet.dir().join("node-1").join("state"), "16m");
    fleet
        .add_agent_with(Placement::loopback(), &[], FAST_RECHECK)
        .unwrap();
    let held = owned(&containers, "held", "node-1", "none");
    let expiring = owned(&containers, "expiring", "node-1", "none");
    let newcomer = owned(&containers, "newcomer", "node-1", "none");
    for id in [&held, &expiring, &newcomer] {
        fleet.wait_listed(0, id).unwrap();
    }
    ctl_ok(&fleet, &["quarantine", &held, "--reason", "held"]);
    ctl_ok(
        &fleet,
        &[
            "quarantine",
            &expiring,
            "--reason",
            "expiring",
            "--ttl",
            "20s",
        ],
    );
    wait_paused(&fleet, &containers, &held, "held paused");
    wait_paused(&fleet, &containers, &expiring, "expiring paused");

    // Full.
    state.fill();
    let refused = ctl_refused(&fleet, &["quarantine", &newcomer, "--reason", "disk full"]);
    assert!(refused.contains("No space left"), "{refused}");
    assert!(!paused(&containers, &newcomer), "acted without a record");
    assert!(fleet.agents[0].process.log().contains(ALERT));
    undone_and_repaired(&fleet, &containers, &held);
    let refused = ctl_refused(&fleet, &["release", &held, "--reason", "disk full"]);
    assert!(refused.contains("No space left"), "{refused}");
    // The TTL runs out while nothing can be written: the quarantine stays.
    std::thread::sleep(Duration::from_secs(25));
    assert!(paused(&containers, &expiring), "released without a record");
    assert!(paused(&containers, &held));

    // Freed and restarted: records again; the expired quarantine ends.
    state.free();
    fleet.agents[0].process.restart().unwrap();
    fleet.agents[0]
        .process
        .wait_for("the expired quarantine released", DEADLINE, || {
            !paused(&containers, &expiring)
        })
        .unwrap();
    ctl_ok(&fleet, &["quarantine", &newcomer, "--reason", "disk freed"]);
    wait_paused(&fleet, &containers, &newcomer, "newcomer paused");

    // Read-only. A running writer keeps a tmpfs from being remounted read-only, so this is the
    // restart onto a read-only directory (a kernel that remounted it after I/O errors): the agent
    // refuses to run without a store it can write, with the path and the reason, rather than
    // enforce with no record.
    fleet.agents[0].process.kill().unwrap();
    state.remount("ro");
    fleet.agents[0].process.restart().unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while fleet.agents[0].process.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent ran on a read-only store"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = fleet.agents[0].process.log();
    assert!(log.contains("Read-only file system"), "{log}");
    assert!(
        paused(&containers, &held),
        "a stopped agent releases nothing"
    );
    state.remount("rw");
}
