//! The agent's wall clock, behind a trait: quarantine TTLs, exemptions after a release and
//! bundle expiry all read it, so that tests move time forward through a [`ManualClock`] instead
//! of the machine's clock. Timers (re-check intervals, backoff) use tokio's monotonic time and
//! are not affected.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The time, in Unix milliseconds.
pub trait Clock: Send + Sync + 'static {
    fn now_unix_ms(&self) -> i64;

    /// The time in Unix seconds.
    fn now_unix(&self) -> i64 {
        self.now_unix_ms().div_euclid(1000)
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when a test says so ([`ManualClock::advance`]): either the system
/// clock plus an offset ([`ManualClock::new`]: time goes on as usual and jumps an hour of TTL in
/// a second of test), or a clock stopped at a given instant ([`ManualClock::stopped_at`]: unit
/// tests that compare exact times).
#[derive(Debug, Default)]
pub struct ManualClock {
    offset_ms: AtomicI64,
    /// Stopped: the time is this plus the offset, whatever the system clock says.
    stopped: bool,
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// A clock that reads `unix_ms` until advanced.
    pub fn stopped_at(unix_ms: i64) -> ManualClock {
        ManualClock {
            offset_ms: AtomicI64::new(unix_ms),
            stopped: true,
        }
    }

    /// Moves this clock (only) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> i64 {
        let offset = self.offset_ms.load(Ordering::SeqCst);
        if self.stopped {
            offset
        } else {
            SystemClock.now_unix_ms().saturating_add(offset)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_jumps_when_told_and_only_then() {
        let clock = ManualClock::new();
        let before = clock.now_unix_ms();
        assert!(before - SystemClock.now_unix_ms() <= 0);
        clock.advance(Duration::from_secs(7_200));
        let after = clock.now_unix();
        let system = SystemClock.now_unix();
        assert!(
            (7_199..=7_201).contains(&(after - system)),
            "{after} vs {system}"
        );
    }

    #[test]
    fn a_stopped_clock_reads_its_instant_until_advanced() {
        let clock = ManualClock::stopped_at(1_700_000_000_000);
        assert_eq!(clock.now_unix_ms(), 1_700_000_000_000);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now_unix_ms(), 1_700_000_000_000);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(clock.now_unix_ms(), 1_700_000_001_500);
        assert_eq!(clock.now_unix(), 1_700_000_001);
    }
}
