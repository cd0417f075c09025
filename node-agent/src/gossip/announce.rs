//! What this node says about itself, kept current: `node`, `mode`, `stats`, `audit_head`,
//! `ack:*` and a `q:<container>` summary per quarantine in force (DESIGN.md §3). Acks go out the
//! moment a bundle is applied; the rest every interval. Only changed payloads are set again.

use std::sync::Arc;
use std::time::Duration;

use lazaret_core::gossip::{AuditHeadValue, GossipKey, ModeValue, NodeValue, StatsValue};
use lazaret_core::quarantine::QuarantineRecord;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Gossip;
use crate::bundles::BundleBook;
use crate::enforce::engine::EnforcerHandle;
use crate::inventory::InventoryHandle;
use crate::store::Store;

/// The longest reason carried in a `q:` summary.
const SUMMARY_REASON_CHARS: usize = 200;

/// The sources of this node's values.
pub struct Announcer {
    pub gossip: Arc<Gossip>,
    pub node: NodeValue,
    pub book: Arc<BundleBook>,
    pub enforcer: EnforcerHandle,
    pub inventory: InventoryHandle,
    pub store: Store,
    pub interval: Duration,
}

impl Announcer {
    /// Publishes until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut acks = self.book.acks();
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.announce_acks().await;
            self.announce_status().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = acks.changed() => if changed.is_err() { break },
                _ = ticker.tick() => {}
            }
        }
    }

    async fn announce_acks(&self) {
        let acks = self.book.acks().borrow().clone();
        for (kind, stamp) in acks {
            self.publish(&GossipKey::Ack(kind), &stamp).await;
        }
    }

    async fn announce_status(&self) {
        self.publish(&GossipKey::Node, &self.node).await;
        if let Ok(audit_only) = self.enforcer.audit_only().await {
            self.publish(&GossipKey::Mode, &ModeValue { audit_only })
                .await;
        }
        let store = self.store.clone();
        let read = tokio::task::spawn_blocking(move || {
            let head = store.audit_head()?;
            let quarantines = store.quarantines()?.records;
            Ok::<_, crate::store::StoreError>((head, quarantines))
        })
        .await;
        let (head, quarantines) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(error)) => {
                warn!(%error, "cannot read the store for gossip");
                return;
            }
            Err(_) => return,
        };
        if let Some(head) = head {
            let value = AuditHeadValue {
                sequence: head.sequence,
                hash: head.hash.to_hex(),
            };
            self.publish(&GossipKey::AuditHead, &value).await;
        }
        let in_force: Vec<QuarantineRecord> = quarantines
            .into_iter()
            .filter(|record| !record.state.is_terminal())
            .collect();
        let containers = self.inventory.snapshots.borrow().containers.len();
        let stats = StatsValue {
            containers: containers as u64,
            quarantined: in_force.len() as u64,
        };
        self.publish(&GossipKey::Stats, &stats).await;
        let mut current = Vec::new();
        for mut record in in_force {
            let key = GossipKey::Quarantine(record.container.to_string());
            record.reason = record.reason.chars().take(SUMMARY_REASON_CHARS).collect();
            self.publish(&key, &record).await;
            current.push(key.to_string());
        }
        for stale in self.gossip.published_keys("q:").await {
            if !current.contains(&stale)
                && let Some(key) = GossipKey::parse(&stale)
            {
                self.gossip.remove(&key).await;
            }
        }
    }

    async fn publish<T: serde::Serialize>(&self, key: &GossipKey, value: &T) {
        if let Err(error) = self.gossip.publish(key, value).await {
            warn!(%error, "not gossiped");
        }
    }
}
