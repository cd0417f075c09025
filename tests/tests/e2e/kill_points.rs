//! Fault: the agent SIGKILLed at random points while an operator's `lazaretctl quarantine` and
//! `lazaretctl release` are in flight, on the real Docker engine. After each restart the
//! container must settle in one of the two consistent states and stay there:
//!
//! - **quarantined**: its record `applied`, the container paused, the cut table intact;
//! - **free**: no record in force, the container running, no cut table.
//!
//! A quarantine the agent stored is finished (rolled forward); a release it stored is finished
//! too (never re-applied as "tampering"); one it never received leaves things as they were. The
//! audit chain verifies after every crash. The kill delays come from a seed printed at the start
//! (set `LAZARET_KILL_SEED` to replay a run).

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use lazaret_agent::enforce::netns::CutStatus;
use lazaret_tests::fleet::{FAST_RECHECK, Placement, TestFleet, owned, paused};
use lazaret_tests::inside::cut_status;
use lazaret_tests::{TestContainers, ensure_busybox_image, init_tracing};
use serde_json::Value;

const ROUNDS: u64 = 6;
const SETTLE: Duration = Duration::from_secs(60);
/// How long a settled state must hold (the re-check runs every 5 s by default; 1 s here).
const HOLD: Duration = Duration::from_secs(3);
/// Kill delays after the command starts, in ms: `lazaretctl` needs 10 to 60 ms to connect (more
/// on a busy machine), the quarantine ~20 ms more, so the range covers before, during and after.
const MAX_DELAY_MS: u64 = 120;
/// What the agent logs once its stored quarantines are rolled forward after a start.
const ROLLED_FORWARD: &str = "stored quarantines rolled forward";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    Quarantined,
    Free,
}

/// A tiny deterministic generator (xorshift) for the kill delays.
struct Delays(u64);

impl Delays {
    fn next_ms(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % MAX_DELAY_MS
    }
}

fn record_of(fleet: &TestFleet, id: &str) -> Option<Value> {
    let quarantines = fleet.json(0, &["quarantines"]).ok()?;
    quarantines
        .as_array()?
        .iter()
        .find(|record| record["container"] == id)
        .cloned()
}

/// What the container looks like now, when it is consistent; `None` while in between.
async fn settled(fleet: &TestFleet, containers: &TestContainers, id: &str) -> Option<Settled> {
    let state =
        record_of(fleet, id).map(|record| record["state"].as_str().unwrap_or("").to_string());
    let paused = paused(containers, id);
    let cut = cut_status(containers, id).await.ok()?;
    match (state.as_deref(), paused, cut) {
        (Some("applied"), true, CutStatus::Intact) => Some(Settled::Quarantined),
        (None | Some("released"), false, CutStatus::Absent) => Some(Settled::Free),
        _ => None,
    }
}

/// Waits until the container is consistent, and checks it stays so for [`HOLD`].
async fn wait_settled(fleet: &TestFleet, containers: &TestContainers, id: &str) -> Settled {
    let start = Instant::now();
    loop {
        if let Some(found) = settled(fleet, containers, id).await {
            tokio::time::sleep(HOLD).await;
            let again = settled(fleet, containers, id).await;
            assert_eq!(again, Some(found), "{id} did not stay {found:?}");
            return found;
        }
        assert!(
            start.elapsed() < SETTLE,
            "{id} never settled: record {:?}, paused {}, cut {:?}\n{}",
            record_of(fleet, id),
            paused(containers, id),
            cut_status(containers, id).await,
            fleet.agents[0].process.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `lazaretctl ARGS` against node-1 and SIGKILLs the agent `delay_ms` after it started;
/// restarts the agent and waits until its API answers again.
fn kill_during(fleet: &mut TestFleet, args: &[&str], delay_ms: u64) {
    let mut command = fleet.ctl(0, args);
    let mut child: Child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lazaretctl starts");
    std::thread::sleep(Duration::from_millis(delay_ms));
    fleet.agents[0].process.kill().unwrap();
    // The command ends either way: done before the kill, or refused with the connection gone.
    let _ended = child.wait();
    let rolled = |log: &str| log.matches(ROLLED_FORWARD).count();
    let before = rolled(&fleet.agents[0].process.log());
    fleet.agents[0].process.restart().unwrap();
    let agent = &fleet.agents[0].process;
    agent
        .wait_for("the restarted agent rolling forward", SETTLE, || {
            rolled(&agent.log()) > before
        })
        .unwrap();
}

/// Kills the agent `delay_ms` into `lazaretctl VERB ID`, waits until the container settles and
/// the audit chain verifies after the restart, and returns how it settled. When the command did
/// not take effect (the agent died before it), the same command now must, and settle `done`.
async fn kill_round(
    fleet: &mut TestFleet,
    containers: &TestContainers,
    id: &str,
    verb: &str,
    delay_ms: u64,
    done: Settled,
) -> Settled {
    kill_during(fleet, &[verb, id, "--reason", "kill point"], delay_ms);
    let settled = wait_settled(fleet, containers, id).await;
    audit_verifies(fleet);
    if settled != done {
        let output = fleet.run_ctl(0, &[verb, id, "--reason", "again"]).unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_eq!(wait_settled(fleet, containers, id).await, done);
    }
    settled
}

fn audit_verifies(fleet: &TestFleet) {
    let verified = fleet.json(0, &["audit", "--verify"]).unwrap();
    assert_eq!(verified["intact"], true, "{verified}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantines_and_releases_roll_forward_across_sigkill_at_random_points() {
    init_tracing();
    ensure_busybox_image(None).unwrap();
    let containers = TestContainers::new(None);
    let mut fleet = TestFleet::new().unwrap();
    fleet
        .add_agent_with(Placement::loopback(), &[], FAST_RECHECK)
        .unwrap();
    let seed = std::env::var("LAZARET_KILL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill points: LAZARET_KILL_SEED={seed}");
    let mut delays = Delays(seed);
    let mut seen = Vec::new();
    for round in 0..ROUNDS {
        let id = owned(&containers, &format!("kill-{round}"), "node-1", "none");
        fleet.wait_listed(0, &id).unwrap();

        for (verb, done) in [
            ("quarantine", Settled::Quarantined),
            ("release", Settled::Free),
        ] {
            let delay = delays.next_ms();
            let settled = kill_round(&mut fleet, &containers, &id, verb, delay, done).await;
            seen.push(format!("{verb} killed at {delay} ms: {settled:?}"));
        }
    }
    let log = fleet.agents[0].process.log();
    eprintln!(
        "kill points:\n  {}\ncaught mid-way and finished at the restart: {} quarantines, {} releases",
        seen.join("\n  "),
        log.matches("quarantine rolled forward").count(),
        log.matches("finishing a release a restart interrupted")
            .count(),
    );
    let audit = fleet.json(0, &["audit", "--limit", "1000"]).unwrap();
    let text = audit.to_string();
    assert!(
        !text.contains("\"action\":\"tamper\""),
        "a crash mid-way was taken for tampering: {text}"
    );
}
