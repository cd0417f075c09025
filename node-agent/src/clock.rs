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

/// The system clock plus an offset that only [`ManualClock::advance`] changes: time goes on as
/// usual and jumps when a test says so (an hour of TTL in a second of test).
#[derive(Debug, Default)]
pub struct ManualClock {
    offset_ms: AtomicI64,
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Moves this clock (only) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> i64 {
        SystemClock
            .now_unix_ms()
            .saturating_add(self.offset_ms.load(Ordering::SeqCst))
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
}
