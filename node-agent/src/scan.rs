//! The scan (DESIGN.md §2): a bounded periodic look inside every running container through
//! `/proc` ([`procfs`]): its processes' names, their executables' SHA-256 ([`hashes`], each
//! version of a file hashed once) and the remote addresses of its sockets.
//!
//! Every `interval` the task
//! 1. rebuilds the indicators index when one of its entries has expired (the bundle book hands it
//!    to the enforcement task, which judges every container again);
//! 2. when the indicators in force list process names, executables or addresses, looks inside
//!    every running container of the inventory on a blocking thread;
//! 3. hands each container in which something an indicator lists was seen to the enforcement
//!    task ([`EnforcerHandle::scanned`]), where the policies' `indicator` rules decide, with the
//!    same budgets, audit-only switch and protection as every other automated action.
//!
//! A look costs one pass over `/proc` plus, per container, a few small reads per process (bounded
//! by [`Limits`]) and the hash of executables not seen before; `lazaret_scan_seconds` and the
//! `scan` benchmark report it.

pub mod hashes;
pub mod procfs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lazaret_core::{ContainerId, ContainerState};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::hashes::ExeHashes;
use self::procfs::{Limits, ProcFs, Wanted};
use crate::bundles::BundleBook;
use crate::enforce::engine::EnforcerHandle;
use crate::inventory::InventorySnapshot;
use crate::metrics::ScanMetrics;

/// How often expired indicators are looked for when the scan itself is off.
const REINDEX_EVERY: Duration = Duration::from_secs(60);

/// The `[scan]` settings.
#[derive(Debug, Clone, Copy)]
pub struct ScanSettings {
    /// `None`: no look inside containers (expired indicators are still dropped).
    pub interval: Option<Duration>,
    pub limits: Limits,
}

/// What the scan task needs.
pub struct Scanner {
    pub settings: ScanSettings,
    pub procfs: ProcFs,
    pub inventory: watch::Receiver<Arc<InventorySnapshot>>,
    pub book: Arc<BundleBook>,
    pub enforcer: EnforcerHandle,
    pub metrics: ScanMetrics,
}

impl Scanner {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let every = self.settings.interval.unwrap_or(REINDEX_EVERY);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut hashes = Some(ExeHashes::default());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.book.reindex_expired().await;
            if self.settings.interval.is_some() {
                hashes = self.cycle(hashes.take().unwrap_or_default()).await;
            }
        }
    }

    /// One look inside every running container; gives the hash cache back.
    async fn cycle(&self, mut hashes: ExeHashes) -> Option<ExeHashes> {
        let index = self.book.indicators();
        if !index.watches_inside() {
            return Some(hashes);
        }
        let targets: Vec<(ContainerId, u32)> = self
            .inventory
            .borrow()
            .containers
            .values()
            .filter(|entry| entry.info.state == ContainerState::Running)
            .filter_map(|entry| Some((entry.info.id.clone(), entry.info.pid?)))
            .collect();
        let (procfs, limits) = (self.procfs.clone(), self.settings.limits);
        let wanted = Wanted::of(&index);
        let started = Instant::now();
        let hashed_before = hashes.hashed;
        let looked = tokio::task::spawn_blocking(move || {
            let seen = procfs.look(&targets, limits, wanted, &mut hashes);
            (seen, hashes)
        })
        .await;
        let Ok((seen, hashes)) = looked else {
            warn!("the scan's thread failed; scanning again next interval");
            return None;
        };
        let containers = seen.len();
        let processes = seen
            .iter()
            .map(|(_, observed)| observed.processes.len())
            .sum();
        let matched: Vec<_> = seen
            .into_iter()
            .filter(|(_, observed)| observed.matches_any(&index))
            .collect();
        self.metrics.observe_cycle(
            started.elapsed(),
            containers,
            processes,
            hashes.hashed - hashed_before,
            matched.len(),
        );
        for (container, observed) in matched {
            match self.enforcer.scanned(container.clone(), observed).await {
                Ok(outcome) => info!(%container, %outcome, "scan: indicator seen inside"),
                Err(error) => {
                    warn!(%container, %error, "scan: the enforcement task did not answer")
                }
            }
        }
        debug!(took = ?started.elapsed(), "scan done");
        Some(hashes)
    }
}
