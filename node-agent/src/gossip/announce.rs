//! What this node says about itself, kept current: `node`, `mode`, `stats`, `audit_head`,
//! `ack:*` and a `q:<container>` summary per quarantine in force (DESIGN.md §3). Acks and the
//! mode go out the moment they change; the rest every interval. Only changed payloads are set again, and
//! the quarantines are read from the store only when the audit chain moved.

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

/// What the last round read, so the next one reads the store only when something changed.
#[derive(Default)]
struct Seen {
    audit_sequence: Option<u64>,
    quarantined: u64,
}

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
        let mut mode = self.enforcer.mode_changes();
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = Seen::default();
        loop {
            self.announce_acks().await;
            self.announce_status(&mut seen).await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = acks.changed() => if changed.is_err() { break },
                changed = mode.changed() => if changed.is_err() { break },
                _ = ticker.tick() => {}
            }
        }
    }

    async fn announce_acks(&self) {
        publish_acks(&self.gossip, &self.book).await;
    }

    async fn announce_status(&self, seen: &mut Seen) {
        self.publish(&GossipKey::Node, &self.node).await;
        let audit_only = self.enforcer.audit_only();
        self.publish(&GossipKey::Mode, &ModeValue { audit_only })
            .await;
        // Every quarantine transition appends to the audit chain: the quarantines are read again
        // only when its head moved.
        let store = self.store.clone();
        let last = seen.audit_sequence;
        let read = tokio::task::spawn_blocking(move || {
            let head = store.audit_head()?;
            let moved = head.as_ref().map(|head| head.sequence) != last;
            let quarantines = match moved {
                true => Some(store.quarantines()?.records),
                false => None,
            };
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
        if let Some(head) = &head {
            let value = AuditHeadValue {
                sequence: head.sequence,
                hash: head.hash.to_hex(),
            };
            self.publish(&GossipKey::AuditHead, &value).await;
        }
        seen.audit_sequence = head.map(|head| head.sequence);
        if let Some(quarantines) = quarantines {
            self.announce_quarantines(seen, quarantines).await;
        }
        let containers = self.inventory.snapshots.borrow().containers.len();
        let stats = StatsValue {
            containers: containers as u64,
            quarantined: seen.quarantined,
        };
        self.publish(&GossipKey::Stats, &stats).await;
    }

    /// One `q:<container>` summary per quarantine in force; the others' keys are deleted.
    async fn announce_quarantines(&self, seen: &mut Seen, quarantines: Vec<QuarantineRecord>) {
        let in_force: Vec<QuarantineRecord> = quarantines
            .into_iter()
            .filter(|record| !record.state.is_terminal())
            .collect();
        seen.quarantined = in_force.len() as u64;
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

/// Publishes an `ack:<kind>` for every bundle `book` holds in force (unchanged ones are not set
/// again).
pub async fn publish_acks(gossip: &Gossip, book: &BundleBook) {
    let acks = book.acks().borrow().clone();
    for (kind, stamp) in acks {
        if let Err(error) = gossip.publish(&GossipKey::Ack(kind), &stamp).await {
            warn!(%error, "ack not gossiped");
        }
    }
}
