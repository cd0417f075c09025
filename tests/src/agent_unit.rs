//! The shipped systemd unit of the agent (`deploy/systemd/lazaret-agent.service`), read the way
//! systemd reads it: the one list of capabilities that the hardening e2e (with `setpriv`) and the
//! Kubernetes manifest test both hold the agent to.

use std::path::{Path, PathBuf};

/// Where the unit lives in the repository.
pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/lazaret-agent.service")
}

/// The unit's `KEY=` value (the last one wins, as systemd reads them).
pub fn setting(key: &str) -> Option<String> {
    let unit = std::fs::read_to_string(path()).ok()?;
    unit.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        .map(|value| value.trim().to_string())
}

/// The capabilities of `CapabilityBoundingSet`, without `CAP_`, upper case as written
/// (`SYS_ADMIN`, …).
pub fn capabilities() -> Vec<String> {
    setting("CapabilityBoundingSet")
        .expect("the unit bounds the agent's capabilities")
        .split_whitespace()
        .map(|name| name.trim_start_matches("CAP_").to_string())
        .collect()
}
