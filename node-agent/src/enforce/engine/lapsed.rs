//! Exemptions that run out: a container released from a policy's verdict is exempt from that
//! policy until a deadline (DESIGN.md §2, release). Nothing about the container changes when the
//! deadline passes, so no inventory event would bring it back before the judge; every sweep
//! looks for exemptions that lapsed since the previous one and judges their containers again.

use lazaret_core::ContainerId;
use tracing::info;

use super::Enforcer;

impl Enforcer {
    /// Judges again the containers whose exemption lapsed since the last call.
    pub(super) async fn rejudge_lapsed_exemptions(&mut self) {
        let (exemptions, now) = self.exemptions().await;
        let since = self.exemptions_checked_at;
        let lapsed: Vec<ContainerId> = exemptions
            .iter()
            .filter(|exemption| (since..=now).contains(&exemption.until_unix_ms))
            .map(|exemption| exemption.container.clone())
            .collect();
        self.exemptions_checked_at = now;
        if lapsed.is_empty() {
            return;
        }
        for container in &lapsed {
            info!(%container, "exemption lapsed: judged again");
            self.seen.remove(container);
        }
        if let Some(inventory) = &self.inventory {
            let snapshot = inventory.borrow().clone();
            self.observe(&snapshot).await;
        }
    }
}
