//! How far behind the fleet's newest bundle each agent is, for `/metrics`: per bundle kind, the
//! live agents whose ack is older than the newest any live agent acks, and for how long the
//! longest-waiting of them has been behind (`lazaret_controller_bundle_lag_seconds`, which the
//! shipped alert "no bundle ack for 5 minutes" reads). A canary shows the nodes outside it as
//! behind until it is promoted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lazaret_core::bundle::{BundleKind, BundleStamp};
use lazaret_core::roles::Role;
use lazaret_fleet::gossip::Gossip;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Per kind, the agents (by name) whose ack is older than the newest acked by any of them; an
/// agent that acks nothing of a kind others ack is behind too.
pub fn behind(
    acks: &[(String, BTreeMap<BundleKind, BundleStamp>)],
) -> BTreeMap<BundleKind, Vec<String>> {
    let mut behind = BTreeMap::new();
    for kind in BundleKind::ALL {
        let Some(newest) = acks.iter().filter_map(|(_, acks)| acks.get(&kind)).max() else {
            continue;
        };
        let late: Vec<String> = acks
            .iter()
            .filter(|(_, acks)| acks.get(&kind) != Some(newest))
            .map(|(node, _)| node.clone())
            .collect();
        behind.insert(kind, late);
    }
    behind
}

/// The gauges and the task that keeps them current.
pub struct LagWatch {
    gossip: Arc<Gossip>,
    interval: Duration,
    nodes_behind: Family<KindLabels, Gauge>,
    lag_seconds: Family<KindLabels, Gauge>,
    /// Since when each (node, kind) has been behind.
    since: HashMap<(String, BundleKind), Instant>,
}

impl LagWatch {
    pub fn register(registry: &mut Registry, gossip: Arc<Gossip>, interval: Duration) -> LagWatch {
        let watch = LagWatch {
            gossip,
            interval,
            nodes_behind: Family::default(),
            lag_seconds: Family::default(),
            since: HashMap::new(),
        };
        registry.register(
            "bundle_nodes_behind",
            "Live agents whose bundle ack is older than the fleet's newest, by kind",
            watch.nodes_behind.clone(),
        );
        registry.register(
            "bundle_lag_seconds",
            "How long the longest-waiting live agent has been behind the fleet's newest bundle, by kind (0: none behind)",
            watch.lag_seconds.clone(),
        );
        watch
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            self.round().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    async fn round(&mut self) {
        let acks: Vec<_> = self
            .gossip
            .peers()
            .await
            .into_iter()
            .filter(|view| view.live && view.role == Some(Role::Node) && view.problem.is_none())
            .map(|view| (view.node, view.acks))
            .collect();
        let now = Instant::now();
        let behind = behind(&acks);
        self.since
            .retain(|(node, kind), _| behind.get(kind).is_some_and(|late| late.contains(node)));
        for kind in BundleKind::ALL {
            let late = behind.get(&kind).map(Vec::as_slice).unwrap_or(&[]);
            let mut longest = Duration::ZERO;
            for node in late {
                let since = *self.since.entry((node.clone(), kind)).or_insert(now);
                longest = longest.max(now - since);
            }
            let labels = KindLabels {
                kind: kind.as_str(),
            };
            self.nodes_behind
                .get_or_create(&labels)
                .set(late.len() as i64);
            self.lag_seconds
                .get_or_create(&labels)
                .set(longest.as_secs() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use lazaret_core::bundle::BundleDigest;

    use super::*;

    fn stamp(version: u64) -> BundleStamp {
        BundleStamp {
            version,
            digest: BundleDigest::of(version.to_string().as_bytes()),
        }
    }

    #[test]
    fn agents_older_than_the_newest_or_without_the_kind_are_behind() {
        let acks = vec![
            (
                "a".to_string(),
                BTreeMap::from([(BundleKind::Policies, stamp(3))]),
            ),
            (
                "b".to_string(),
                BTreeMap::from([
                    (BundleKind::Policies, stamp(2)),
                    (BundleKind::Indicators, stamp(1)),
                ]),
            ),
            ("c".to_string(), BTreeMap::new()),
        ];
        let behind = behind(&acks);
        assert_eq!(behind[&BundleKind::Policies], ["b", "c"]);
        assert_eq!(behind[&BundleKind::Indicators], ["a", "c"]);
        assert!(super::behind(&[]).is_empty());
    }
}
