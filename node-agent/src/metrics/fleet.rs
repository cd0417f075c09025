//! The fleet's metrics: bundles (applied, refused, in force, stale) and gossip (peers, values
//! refused). Registered with the agent's other metrics in [`super::Metrics`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use lazaret_core::bundle::BundleKind;
use lazaret_fleet::gossip::GossipMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    kind: &'static str,
    reason: &'static str,
}

/// See the module docs.
#[derive(Clone)]
pub struct FleetMetrics {
    applied: Family<KindLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    version: Family<KindLabels, Gauge>,
    expiry: Family<KindLabels, Gauge>,
    stale: Family<KindLabels, Gauge>,
    /// Gossip's (peers, values refused).
    pub gossip: GossipMetrics,
    /// Expiry (Unix seconds) of the bundle in force, by kind: `stale` is computed from it at
    /// every scrape.
    expires: Arc<Mutex<BTreeMap<BundleKind, u64>>>,
}

impl FleetMetrics {
    pub(super) fn register(registry: &mut Registry) -> FleetMetrics {
        let metrics = FleetMetrics {
            applied: Family::default(),
            refused: Family::default(),
            version: Family::default(),
            expiry: Family::default(),
            stale: Family::default(),
            gossip: GossipMetrics::register(registry),
            expires: Arc::default(),
        };
        registry.register(
            "bundles_applied",
            "Signed bundles accepted and put in force, by kind",
            metrics.applied.clone(),
        );
        registry.register(
            "bundles_refused",
            "Bundles refused, by kind and reason (untrusted, bad-signature, older, invalid, malformed)",
            metrics.refused.clone(),
        );
        registry.register(
            "bundle_version",
            "Version of the bundle in force, by kind (absent: none)",
            metrics.version.clone(),
        );
        registry.register(
            "bundle_expiry_timestamp_seconds",
            "When the bundle in force expires, Unix seconds",
            metrics.expiry.clone(),
        );
        registry.register(
            "bundle_stale",
            "1 while the bundle in force is past its expiry (still enforced: re-sign and publish one)",
            metrics.stale.clone(),
        );
        metrics
    }

    pub fn count_bundle_applied(&self, kind: BundleKind) {
        self.applied
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    pub fn count_bundle_refused(&self, kind: BundleKind, reason: &'static str) {
        self.refused
            .get_or_create(&RefusedLabels {
                kind: kind.as_str(),
                reason,
            })
            .inc();
    }

    /// The bundle of `kind` now in force.
    pub fn set_bundle_in_force(&self, kind: BundleKind, version: u64, expires: u64) {
        let labels = KindLabels {
            kind: kind.as_str(),
        };
        self.version
            .get_or_create(&labels)
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.expiry
            .get_or_create(&labels)
            .set(i64::try_from(expires).unwrap_or(i64::MAX));
        self.expires
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind, expires);
    }

    /// Sets `bundle_stale` for `now` (Unix seconds); called at every scrape.
    pub(super) fn refresh_stale(&self, now: u64) {
        let expires = self
            .expires
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (kind, expires) in expires {
            self.stale
                .get_or_create(&KindLabels {
                    kind: kind.as_str(),
                })
                .set(i64::from(now >= expires));
        }
    }
}
