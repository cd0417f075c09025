//! Opening a sled database in a state directory, as the agent's store and the controller's state
//! both do.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long [`open_sled`] waits for a lock that a just-dropped handle is releasing.
const LOCK_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Opens sled's database in `dir`, waiting briefly for its lock. sled 0.34 releases the lock of
/// a dropped `Db` only when its background threads finish, a moment later (spacejam/sled#1234,
/// #1289), so reopening in the same process can find it still held. A lock held by a live
/// process is held far longer than the wait, so a real second owner is still refused.
pub fn open_sled(dir: &Path) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_RELEASE_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        match sled::Config::new().path(dir).open() {
            Err(sled::Error::Io(io_error))
                if io_error.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            outcome => return outcome,
        }
    }
}
