//! Undoing a quarantine: an operator's release and a TTL's expiry. Both store the record as
//! under way ([`PendingRelease`]) before the first undo, so a crash half-way is finished by the
//! roll-forward instead of being taken for tampering, and a store that cannot write keeps the
//! quarantine in force rather than releasing it unrecorded. A release leaves an exemption for
//! (container, source); an expiry does not.

use std::time::Duration;

use lazaret_core::ContainerId;
use lazaret_core::audit::AuditEntry;
use lazaret_core::quarantine::{
    self as core_quarantine, Exemption, PendingRelease, QuarantineEvent, QuarantineRecord,
    QuarantineSource,
};

use super::{AGENT_ACTOR, QuarantineError, QuarantineManager, QuarantineResult, blocking};

impl QuarantineManager {
    /// Undoes `container`'s quarantine: restores the network, resumes it if paused, stores
    /// `released` and leaves an exemption until `exempt_for` from now for every source but an
    /// operator. If the network cannot be restored or the container resumed, nothing is stored
    /// and the quarantine stays in force.
    pub async fn release(
        &mut self,
        container: &ContainerId,
        actor: &str,
        reason: &str,
        exempt_for: Duration,
    ) -> QuarantineResult<QuarantineRecord> {
        let record = self.active(container).await?;
        // Stored before the first undo: a crash half-way is finished at the restart, not taken
        // for tampering.
        let releasing = QuarantineRecord {
            releasing: Some(Box::new(PendingRelease {
                actor: actor.to_string(),
                reason: reason.to_string(),
                exempt_for_ms: u64::try_from(exempt_for.as_millis()).unwrap_or(u64::MAX),
            })),
            ..record.clone()
        };
        self.put(&releasing).await?;
        if let Err(error) = self.undo(&record).await {
            let kept = QuarantineRecord {
                releasing: None,
                ..record.clone()
            };
            self.put(&kept).await?;
            self.audit_record(&record, actor, "release", format!("failed: {error}"))
                .await?;
            return Err(QuarantineError::ReleaseFailed {
                container: container.clone(),
                reason: error,
            });
        }
        let now = self.clock.now_unix_ms();
        let released = core_quarantine::apply(&releasing, QuarantineEvent::Released, now)?;
        self.put(&released).await?;
        let mut outcome = "released".to_string();
        if released.source != QuarantineSource::Operator {
            let until =
                now.saturating_add(i64::try_from(exempt_for.as_millis()).unwrap_or(i64::MAX));
            let exemption = Exemption::after_release(&released, until, actor, reason);
            outcome = format!("released; exempt from {} until {until}", exemption.policy);
            let store = self.store.clone();
            self.exemptions = None;
            blocking(move || store.put_exemption(&exemption)).await?;
        }
        self.audit(AuditEntry {
            actor: actor.to_string(),
            on_behalf_of: None,
            action: "release".into(),
            target: container.to_string(),
            reason: reason.to_string(),
            source: released.source.to_string(),
            outcome,
        })
        .await?;
        Ok(released)
    }

    /// Releases every quarantine whose TTL has run out (no exemption is left). A quarantine
    /// whose actions cannot be undone stays and is retried at the next sweep.
    pub async fn expire_due(&mut self) -> QuarantineResult<Vec<QuarantineRecord>> {
        let now = self.clock.now_unix_ms();
        let store = self.store.clone();
        let loaded = blocking(move || store.quarantines()).await?;
        let mut expired = Vec::new();
        for record in loaded.records {
            if core_quarantine::expire_if_due(&record, now).is_none() {
                continue;
            }
            // Stored before the first undo, as a release is: a store that cannot write keeps the
            // quarantine in force (never released unrecorded), a crash half-way is finished.
            let releasing = QuarantineRecord {
                releasing: Some(Box::new(PendingRelease {
                    actor: AGENT_ACTOR.to_string(),
                    reason: "ttl ran out".to_string(),
                    exempt_for_ms: 0,
                })),
                ..record.clone()
            };
            if let Err(error) = self.put(&releasing).await {
                tracing::error!(container = %record.container, %error, "quarantine due to expire kept in force: the store cannot record its end");
                continue;
            }
            let Some(released) = core_quarantine::expire_if_due(&releasing, now) else {
                continue;
            };
            if let Err(error) = self.undo(&record).await {
                self.put(&record).await?;
                self.audit_record(&record, AGENT_ACTOR, "expire", format!("failed: {error}"))
                    .await?;
                continue;
            }
            self.put(&released).await?;
            self.audit_record(
                &released,
                AGENT_ACTOR,
                "expire",
                "released: ttl ran out".into(),
            )
            .await?;
            expired.push(released);
        }
        Ok(expired)
    }
}
