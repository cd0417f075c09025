//! Fault: the agent's state directory fills up, then turns read-only, under a running agent on
//! the real Docker engine (the directory is a file system this test mounts; nothing else is
//! touched). The agent must say so loudly (an ALERT in its log), keep enforcing what it stored
//! (a quarantine undone behind its back is re-applied, unrecorded), refuse what it cannot record
//! (a new quarantine, a release) and never release silently (a TTL that runs out while nothing
//! can be written leaves the quarantine in force). After the disk is freed (or repaired) and the
//! agent restarted, it records again. On a read-only directory the agent refuses to start (exit,
//! the path and the reason) rather than enforce with no record.
//!
//! Full: a 16 MiB tmpfs, filled. Read-only under the running agent: an ext4 image on a loop
//! device mounted `errors=remount-ro`, whose kernel error is raised through ext4's
//! `trigger_fs_error` (what a failing disk makes the kernel do; a plain `remount,ro` is refused
//! while the agent holds the store open for writing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lazaret_tests::fleet::{FAST_RECHECK, Placement, TestFleet, owned, paused};
use lazaret_tests::{TestContainers, ensure_busybox_image, init_tracing};

const DEADLINE: Duration = Duration::from_secs(60);
const ALERT: &str = "ALERT: the state store cannot write";
/// What a write to a file system the kernel turned read-only fails with.
const READ_ONLY: &[&str] = &["Read-only file system", "Input/output error"];

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

/// An ext4 file system in an image file on a loop device, mounted `errors=remount-ro` at a path
/// for the test's lifetime (lazily unmounted on drop; the loop device goes with the mount).
struct Ext4 {
    image: PathBuf,
    path: PathBuf,
}

impl Ext4 {
    fn mount(image: &Path, path: &Path, size: &str) -> Ext4 {
        let status = |command: &mut Command| command.status().unwrap().success();
        assert!(status(
            Command::new("truncate").args(["-s", size]).arg(image)
        ));
        assert!(status(
            Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image)
        ));
        let ext4 = Ext4 {
            image: image.to_path_buf(),
            path: path.to_path_buf(),
        };
        std::fs::create_dir_all(path).unwrap();
        ext4.mount_again();
        ext4
    }

    fn mount_again(&self) {
        let mounted = Command::new("mount")
            // commit=1: what the agent wrote reaches ext4's journal within a second.
            .args(["-o", "loop,errors=remount-ro,commit=1"])
            .arg(&self.image)
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(mounted.success(), "cannot mount {}", self.image.display());
        std::fs::set_permissions(
            &self.path,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
    }

    /// Raises an ext4 error: the kernel remounts the file system read-only under its writers.
    fn fail(&self) {
        let source = Command::new("findmnt")
            .args(["-no", "SOURCE"])
            .arg(&self.path)
            .output()
            .unwrap();
        let device = String::from_utf8_lossy(&source.stdout);
        let device = device.trim().trim_start_matches("/dev/");
        let trigger = format!("/sys/fs/ext4/{device}/trigger_fs_error");
        std::fs::write(&trigger, "lazaret store_faults test").unwrap_or_else(|error| {
            panic!("{trigger}: {error} (this kernel's ext4 cannot be made to fail on demand)")
        });
    }

    /// Unmounts, repairs with `e2fsck` (what an operator does) and mounts again read-write.
    ///
    /// The repaired image is mounted as a copy: container shims started while it was mounted
    /// (by this test or a parallel one) hold copies of the mount in their own namespaces, which
    /// keep the failed, read-only file system alive; `mount -o loop` would reuse its loop device
    /// and get that same read-only file system back.
    fn repair(&mut self) {
        let status = |command: &mut Command| command.status().unwrap();
        assert!(status(Command::new("umount").arg(&self.path)).success());
        let checked = status(Command::new("e2fsck").arg("-fy").arg(&self.image));
        // 0: clean, 1: errors corrected.
        assert!(matches!(checked.code(), Some(0 | 1)), "e2fsck: {checked}");
        let repaired = self.image.with_extension("repaired.ext4");
        assert!(
            status(
                Command::new("cp")
                    .arg("--sparse=always")
                    .arg(&self.image)
                    .arg(&repaired)
            )
            .success()
        );
        self.image = repaired;
        self.mount_again();
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _unmounted = Command::new("umount").arg("-l").arg(&self.path).status();
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
    cannot_record(&fleet, &containers, &newcomer, &held, &["No space left"]);
    // The TTL runs out while nothing can be written: the quarantine stays.
    std::thread::sleep(Duration::from_secs(25));
    assert!(paused(&containers, &expiring), "released without a record");
    assert!(paused(&containers, &held));
    for kind in ["release", "expiry"] {
        let series = format!(r#"lazaret_releases_total{{kind="{kind}",outcome="unrecorded"}}"#);
        let text = lazaret_tests::agent_process::scrape_metrics(&fleet.agents[0].metrics).unwrap();
        assert!(fleet.metric(0, &series).unwrap() >= 1.0, "{series}\n{text}");
    }

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
    refuses_to_start(&mut fleet, &containers, &held);
    state.remount("rw");
}

/// While the store cannot write (one of `errors` says why): a quarantine of `newcomer` and a
/// release of `held` are refused with the reason, the agent logs the ALERT, and `held`, unpaused behind its
/// back, is paused again.
fn cannot_record(
    fleet: &TestFleet,
    containers: &TestContainers,
    newcomer: &str,
    held: &str,
    errors: &[&str],
) {
    let says_why = |text: &str| errors.iter().any(|error| text.contains(error));
    let refused = ctl_refused(fleet, &["quarantine", newcomer, "--reason", "no store"]);
    assert!(says_why(&refused), "{refused}");
    assert!(!paused(containers, newcomer), "acted without a record");
    assert!(fleet.agents[0].process.log().contains(ALERT));
    undone_and_repaired(fleet, containers, held);
    let refused = ctl_refused(fleet, &["release", held, "--reason", "no store"]);
    assert!(says_why(&refused), "{refused}");
}

/// Restarts the agent on a read-only state directory: it must exit, naming the reason, and
/// leave `held` quarantined.
fn refuses_to_start(fleet: &mut TestFleet, containers: &TestContainers, held: &str) {
    fleet.agents[0].process.restart().unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while fleet.agents[0].process.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent ran on a read-only store"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = fleet.agents[0].process.log_tail();
    assert!(READ_ONLY.iter().any(|error| log.contains(error)), "{log}");
    assert!(paused(containers, held), "a stopped agent releases nothing");
}

/// `lazaretctl quarantine ID` and waits until it is paused.
fn quarantined(fleet: &TestFleet, containers: &TestContainers, id: &str, reason: &str) {
    ctl_ok(fleet, &["quarantine", id, "--reason", reason]);
    wait_paused(fleet, containers, id, reason);
}

#[test]
fn a_state_directory_the_kernel_turns_read_only_under_the_agent_keeps_enforcement() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let mut fleet = TestFleet::new().unwrap();
    let mut state = Ext4::mount(
        &fleet.dir().join("state.ext4"),
        &fleet.dir().join("node-1").join("state"),
        "64M",
    );
    fleet
        .add_agent_with(Placement::loopback(), &[], FAST_RECHECK)
        .unwrap();
    let held = owned(&containers, "held", "node-1", "none");
    let newcomer = owned(&containers, "newcomer", "node-1", "none");
    for id in [&held, &newcomer] {
        fleet.wait_listed(0, id).unwrap();
    }
    quarantined(&fleet, &containers, &held, "held");
    // Past ext4's journal commit (commit=1): what was stored is on the disk when it fails.
    std::thread::sleep(Duration::from_secs(3));

    state.fail();
    // Kernels differ: EROFS after the remount, or EIO while ext4 is shut down after its error.
    cannot_record(&fleet, &containers, &newcomer, &held, READ_ONLY);
    assert!(paused(&containers, &held));
    fleet.agents[0].process.kill().unwrap();
    refuses_to_start(&mut fleet, &containers, &held);

    // Repaired (e2fsck) and restarted: the stored quarantine is still there and in force, and
    // the agent records again.
    state.repair();
    fleet.agents[0].process.restart().unwrap();
    fleet.agents[0]
        .process
        .wait_for(
            "the stored quarantine listed after the repair",
            DEADLINE,
            || {
                fleet
                    .json(0, &["quarantines"])
                    .is_ok_and(|listed| listed.to_string().contains(held.as_str()))
            },
        )
        .unwrap();
    assert!(paused(&containers, &held));
    quarantined(&fleet, &containers, &newcomer, "repaired");
    ctl_ok(&fleet, &["release", &held, "--reason", "repaired"]);
    fleet.agents[0]
        .process
        .wait_for("held released", DEADLINE, || !paused(&containers, &held))
        .unwrap();
}
