//! Prometheus metrics of the agent and the `/metrics` endpoint that serves them.
//!
//! Counters are updated by the task that owns the data (watchers count their own reconnects,
//! enforcement its reloads); the inventory gauges are computed from the newest inventory snapshot
//! when the metrics are read ([`Metrics::follow_inventory`]), so an inventory update costs
//! nothing here. Names carry the
//! `lazaret_` prefix and are documented in `docs/metrics.md`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use lazaret_core::ContainerState;
use lazaret_core::posture::{self, CheckResult};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::inventory::InventorySnapshot;

mod fleet;
mod scan;

pub use self::fleet::FleetMetrics;
pub use self::scan::ScanMetrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    check: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuarantineLabels {
    action: &'static str,
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReleaseLabels {
    /// `release` or `expiry`.
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabels {
    runtime: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    /// `ca` or the certificate's name.
    certificate: String,
}

/// The agent's metrics; cheap to clone (every metric is shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    containers: Family<StateLabels, Gauge>,
    findings: Family<FindingLabels, Gauge>,
    runtime_connected: Family<RuntimeLabels, Gauge>,
    runtime_reconnects: Family<RuntimeLabels, Counter>,
    runtime_events: Family<RuntimeLabels, Counter>,
    inventory_resyncs: Family<RuntimeLabels, Counter>,
    fast_path_dropped: Counter,
    start_to_enforced: Histogram,
    blast_radius_exceeded: Counter,
    quarantines: Family<QuarantineLabels, Counter>,
    tampering: Counter,
    enforcement_gaps: Counter,
    releases: Family<ReleaseLabels, Counter>,
    policy_reloads: Family<ResultLabels, Counter>,
    certificate_expiry: Family<CertificateLabels, Gauge>,
    /// Bundles and gossip.
    pub fleet: FleetMetrics,
    /// The look inside running containers.
    pub scan: ScanMetrics,
    /// The inventory whose gauges [`Metrics::encode`] computes first.
    inventory: Arc<Mutex<Option<watch::Receiver<Arc<InventorySnapshot>>>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lazaret");
        let containers = Family::<StateLabels, Gauge>::default();
        registry.register(
            "containers",
            "Containers in the inventory by state",
            containers.clone(),
        );
        let findings = Family::<FindingLabels, Gauge>::default();
        registry.register(
            "findings",
            "Containers by CIS posture check and result (fail, pass, unknown)",
            findings.clone(),
        );
        let runtime_connected = Family::<RuntimeLabels, Gauge>::default();
        registry.register(
            "runtime_connected",
            "1 while the agent is connected to the runtime's event stream",
            runtime_connected.clone(),
        );
        let runtime_reconnects = Family::<RuntimeLabels, Counter>::default();
        registry.register(
            "runtime_reconnects",
            "Times the agent reconnected to a runtime after losing it",
            runtime_reconnects.clone(),
        );
        let runtime_events = Family::<RuntimeLabels, Counter>::default();
        registry.register(
            "runtime_events",
            "Container events received from a runtime",
            runtime_events.clone(),
        );
        let inventory_resyncs = Family::<RuntimeLabels, Counter>::default();
        registry.register(
            "inventory_resyncs",
            "Full inventory resyncs (one per (re)connect)",
            inventory_resyncs.clone(),
        );
        let fast_path_dropped = Counter::default();
        registry.register(
            "fast_path_signals_dropped",
            "Start events the enforcement fast lane had no room for (enforced after the inspect)",
            fast_path_dropped.clone(),
        );
        // 1 ms … ~4 s.
        let start_to_enforced = Histogram::new(exponential_buckets(0.001, 2.0, 13));
        registry.register(
            "start_to_enforced_seconds",
            "Fast path: from reading a start event to the quarantine's actions done",
            start_to_enforced.clone(),
        );
        let quarantines = Family::<QuarantineLabels, Counter>::default();
        registry.register(
            "quarantines",
            "Quarantines carried out, by action applied and source kind (policy, indicator, detection, operator)",
            quarantines.clone(),
        );
        let tampering = Counter::default();
        registry.register(
            "tampering",
            "Quarantines found undone (unpaused, restarted, cut table changed) and applied again",
            tampering.clone(),
        );
        let enforcement_gaps = Counter::default();
        registry.register(
            "enforcement_gaps",
            "Quarantines that could not be carried out (failed state, or an error before acting)",
            enforcement_gaps.clone(),
        );
        let releases = Family::<ReleaseLabels, Counter>::default();
        registry.register(
            "releases",
            "Quarantines ended by a release or an expiry, by outcome: released, failed (an action \
             could not be undone: it stays), unrecorded (the store cannot write: it stays)",
            releases.clone(),
        );
        let blast_radius_exceeded = Counter::default();
        registry.register(
            "blast_radius_exceeded",
            "Automated quarantines refused because the per-minute budget was spent (ALERT)",
            blast_radius_exceeded.clone(),
        );
        let policy_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy directory reloads by result (applied, rejected)",
            policy_reloads.clone(),
        );
        let certificate_expiry = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the API's certificates (its own and the CA) stop being valid, Unix seconds",
            certificate_expiry.clone(),
        );
        let fleet = FleetMetrics::register(&mut registry);
        let scan = ScanMetrics::register(&mut registry);
        let metrics = Metrics {
            fleet,
            scan,
            registry: Arc::new(registry),
            certificate_expiry,
            inventory: Arc::new(Mutex::new(None)),
            fast_path_dropped,
            start_to_enforced,
            blast_radius_exceeded,
            quarantines,
            tampering,
            enforcement_gaps,
            releases,
            policy_reloads,
            containers,
            findings,
            runtime_connected,
            runtime_reconnects,
            runtime_events,
            inventory_resyncs,
        };
        // Every inventory series exists (at zero) from the start.
        metrics.record_inventory(&InventorySnapshot::default());
        metrics
    }

    /// Computes the inventory gauges from `snapshots`' newest value at every [`Metrics::encode`].
    pub fn follow_inventory(&self, snapshots: watch::Receiver<Arc<InventorySnapshot>>) {
        *self
            .inventory
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(snapshots);
    }

    /// Sets the inventory gauges from a snapshot. Every (state) and (check, result) series is
    /// written, zeros included, so a series never goes stale.
    pub fn record_inventory(&self, snapshot: &InventorySnapshot) {
        for state in ContainerState::ALL {
            let count = snapshot
                .containers
                .values()
                .filter(|entry| entry.info.state == state)
                .count();
            self.containers
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        for check in posture::catalogue() {
            for result in CheckResult::ALL {
                let count = snapshot
                    .containers
                    .values()
                    .filter(|entry| {
                        entry
                            .findings
                            .iter()
                            .any(|finding| finding.check == check.id && finding.result == result)
                    })
                    .count();
                self.findings
                    .get_or_create(&FindingLabels {
                        check: check.id,
                        result: result.as_str(),
                    })
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
    }

    pub fn set_runtime_connected(&self, runtime: &'static str, connected: bool) {
        self.runtime_connected
            .get_or_create(&RuntimeLabels { runtime })
            .set(i64::from(connected));
    }

    pub fn count_reconnect(&self, runtime: &'static str) {
        self.runtime_reconnects
            .get_or_create(&RuntimeLabels { runtime })
            .inc();
    }

    pub fn count_event(&self, runtime: &'static str) {
        self.runtime_events
            .get_or_create(&RuntimeLabels { runtime })
            .inc();
    }

    pub fn count_fast_path_dropped(&self) {
        self.fast_path_dropped.inc();
    }

    pub fn observe_start_to_enforced(&self, elapsed: std::time::Duration) {
        self.start_to_enforced.observe(elapsed.as_secs_f64());
    }

    /// A quarantine carried out: one count per action it applied.
    pub fn count_quarantine(&self, record: &lazaret_core::QuarantineRecord) {
        for action in &record.actions {
            self.quarantines
                .get_or_create(&QuarantineLabels {
                    action: action.as_str(),
                    source: record.source.kind(),
                })
                .inc();
        }
    }

    pub fn count_tampering(&self) {
        self.tampering.inc();
    }

    pub fn count_enforcement_gap(&self) {
        self.enforcement_gaps.inc();
    }

    /// A release or an expiry (`kind`) that `released` the container, `failed` (an action could
    /// not be undone) or stayed `unrecorded` (the store could not write its start).
    pub fn count_release(&self, kind: lazaret_core::quarantine::UndoKind, outcome: &'static str) {
        self.releases
            .get_or_create(&ReleaseLabels {
                kind: kind.as_str(),
                outcome,
            })
            .inc();
    }

    pub fn count_blast_radius_exceeded(&self) {
        self.blast_radius_exceeded.inc();
    }

    /// Records when `certificate` (`ca` or a name) expires.
    pub fn set_certificate_expiry(&self, certificate: &str, not_after_unix: i64) {
        self.certificate_expiry
            .get_or_create(&CertificateLabels {
                certificate: certificate.to_string(),
            })
            .set(not_after_unix);
    }

    /// `result`: `applied` or `rejected`.
    pub fn count_policy_reload(&self, result: &'static str) {
        self.policy_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn count_resync(&self, runtime: &'static str) {
        self.inventory_resyncs
            .get_or_create(&RuntimeLabels { runtime })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let current = self
            .inventory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|snapshots| snapshots.borrow().clone());
        if let Some(snapshot) = current {
            self.record_inventory(&snapshot);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.fleet.refresh_stale(now);
        let mut text = String::new();
        // Writing into a String cannot fail.
        encode(&mut text, &self.registry).expect("encoding metrics into a string");
        text
    }
}

/// Binds `listen` and serves `GET /metrics` until `shutdown`. Returns the bound address (so a
/// `:0` port can be discovered) and the server task.
pub async fn serve(
    metrics: Metrics,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    lazaret_fleet::metrics_endpoint::serve(move || metrics.encode(), listen, shutdown).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lazaret_core::{ContainerId, ContainerInfo, RuntimeKind};

    use super::*;
    use crate::inventory::InventoryEntry;

    #[test]
    fn inventory_gauges_count_states_and_findings() {
        let metrics = Metrics::new();
        let mut info = ContainerInfo::unknown(ContainerId::new("a"), RuntimeKind::Docker);
        info.state = ContainerState::Running;
        info.privileged = Some(true);
        let entry = InventoryEntry {
            findings: posture::assess(&info),
            info,
            observed_at: std::time::SystemTime::now(),
        };
        let snapshot = InventorySnapshot {
            containers: BTreeMap::from([(ContainerId::new("a"), Arc::new(entry))]),
            version: 1,
            ..InventorySnapshot::default()
        };
        metrics.record_inventory(&snapshot);
        metrics.count_reconnect("docker");
        let text = metrics.encode();
        assert!(
            text.contains("lazaret_containers{state=\"running\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("lazaret_containers{state=\"paused\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("lazaret_findings{check=\"5.5\",result=\"fail\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("lazaret_findings{check=\"5.4\",result=\"unknown\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("lazaret_runtime_reconnects_total{runtime=\"docker\"} 1"),
            "{text}"
        );
    }
}
