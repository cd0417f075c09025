//! The `[scan]` section: how often the agent looks inside running containers for what the
//! indicators list (process names, executables, remote addresses), and how much one look reads.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::scan::ScanSettings;
use crate::scan::procfs::Limits;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawScan {
    /// Between two looks inside every running container; `0s`: never look (only images are then
    /// matched).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Processes read per container per look (the init first, then the lowest PIDs).
    pub max_processes: usize,
    /// Remote addresses read per container per look.
    pub max_addresses: usize,
    /// Executables larger than this (MiB) are not hashed.
    pub max_exe_mib: u64,
}

impl Default for RawScan {
    fn default() -> Self {
        RawScan {
            interval: Duration::from_secs(30),
            max_processes: 256,
            max_addresses: 4096,
            max_exe_mib: 64,
        }
    }
}

impl RawScan {
    pub(super) fn validate(self) -> Result<ScanSettings, ConfigError> {
        if self.max_processes == 0 {
            return Err(ConfigError::new(
                "scan.max_processes",
                "must be at least 1 (set scan.interval = \"0s\" to turn the scan off)",
            ));
        }
        if !self.interval.is_zero() && self.interval < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "scan.interval",
                "at least 100ms (or 0s to turn the scan off)",
            ));
        }
        Ok(ScanSettings {
            interval: Some(self.interval).filter(|every| !every.is_zero()),
            limits: Limits {
                max_processes: self.max_processes,
                max_addresses: self.max_addresses,
                max_exe_bytes: self.max_exe_mib.saturating_mul(1 << 20),
            },
        })
    }
}
