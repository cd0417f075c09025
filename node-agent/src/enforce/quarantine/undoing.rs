//! Undoing a quarantine: an operator's release and a TTL's expiry. Both store the record as
//! under way ([`PendingRelease`], which says which of the two) before the first undo, so a crash
//! half-way is finished by the roll-forward as what it was, instead of being taken for
//! tampering, and a store that cannot write keeps the quarantine in force rather than releasing
//! it unrecorded. A release leaves an exemption for (container, source); an expiry does not.

use std::time::Duration;

use lazaret_core::ContainerId;
use lazaret_core::audit::AuditEntry;
use lazaret_core::quarantine::{
    self as core_quarantine, Exemption, PendingRelease, QuarantineRecord, QuarantineSource,
    UndoKind,
};

use super::{AGENT_ACTOR, QuarantineError, QuarantineManager, QuarantineResult, blocking};

impl QuarantineManager {
    /// Undoes `container`'s quarantine: restores the network, resumes it if paused, stores
    /// `released` and leaves an exemption until `exempt_for` from now for every source but an
    /// operator. If the network cannot be restored or the container resumed, the quarantine
    /// stays in force (stored as it was, the failure audited).
    pub async fn release(
        &mut self,
        container: &ContainerId,
        actor: &str,
        reason: &str,
        exempt_for: Duration,
    ) -> QuarantineResult<QuarantineRecord> {
        let record = self.active(container).await?;
        let released = self
            .undo_recorded(&record, PendingRelease::release(actor, reason, exempt_for))
            .await?;
        self.record_release(&released, actor, reason, exempt_for)
            .await?;
        Ok(released)
    }

    /// Releases every quarantine whose TTL has run out (no exemption is left). A quarantine
    /// whose actions cannot be undone, or whose end the store cannot record, stays in force and
    /// is tried again at the next sweep.
    pub async fn expire_due(&mut self) -> QuarantineResult<Vec<QuarantineRecord>> {
        let now = self.clock.now_unix_ms();
        let store = self.store.clone();
        let loaded = blocking(move || store.quarantines()).await?;
        let mut expired = Vec::new();
        for record in loaded.records {
            if core_quarantine::expire_if_due(&record, now).is_none() {
                continue;
            }
            match self.expire(&record).await {
                Ok(released) => expired.push(released),
                Err(
                    error @ (QuarantineError::Store(_) | QuarantineError::ReleaseFailed { .. }),
                ) => {
                    tracing::error!(container = %record.container, %error, "quarantine due to expire kept in force");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(expired)
    }

    /// Finishes the release or expiry that `record` was storing when the agent stopped.
    pub(super) async fn finish_undo(
        &mut self,
        record: &QuarantineRecord,
        pending: PendingRelease,
    ) -> QuarantineResult<QuarantineRecord> {
        tracing::info!(container = %record.container, actor = %pending.actor, kind = pending.kind.audit_action(), "finishing a release a restart interrupted");
        match pending.kind {
            UndoKind::Expiry => self.expire(record).await,
            UndoKind::Release => {
                let released = self.undo_recorded(record, pending.clone()).await?;
                self.record_release(
                    &released,
                    &pending.actor,
                    &pending.reason,
                    pending.exempt_for(),
                )
                .await?;
                Ok(released)
            }
        }
    }

    /// Ends `record`'s quarantine because its TTL ran out, and audits it.
    async fn expire(&mut self, record: &QuarantineRecord) -> QuarantineResult<QuarantineRecord> {
        let pending = PendingRelease::expiry(AGENT_ACTOR);
        let outcome = format!("released: {}", pending.reason);
        let released = self.undo_recorded(record, pending).await?;
        self.audit_record(
            &released,
            AGENT_ACTOR,
            UndoKind::Expiry.audit_action(),
            outcome,
        )
        .await?;
        Ok(released)
    }

    /// Stores `record` as being undone by `pending` (before anything is undone), undoes its
    /// actions and stores the quarantine's end. If an action cannot be undone, the record is
    /// stored back as it was, the failure audited, and the quarantine stays in force.
    async fn undo_recorded(
        &mut self,
        record: &QuarantineRecord,
        pending: PendingRelease,
    ) -> QuarantineResult<QuarantineRecord> {
        let kind = pending.kind;
        let event = kind.event();
        let (actor, action) = (pending.actor.clone(), kind.audit_action());
        let undoing = record.undoing(pending);
        // Refused (a TTL not yet run out, a final state) before anything is stored or undone.
        core_quarantine::apply(&undoing, event, self.clock.now_unix_ms())?;
        if let Err(error) = self.put(&undoing).await {
            self.metrics.count_release(kind, "unrecorded");
            return Err(error);
        }
        if let Err(error) = self.undo(record).await {
            self.metrics.count_release(kind, "failed");
            let kept = record.kept();
            self.put(&kept).await?;
            self.audit_record(&kept, &actor, action, format!("failed: {error}"))
                .await?;
            return Err(QuarantineError::ReleaseFailed {
                container: record.container.clone(),
                reason: error,
            });
        }
        let ended = core_quarantine::apply(&undoing, event, self.clock.now_unix_ms())?;
        self.put(&ended).await?;
        self.metrics.count_release(kind, "released");
        Ok(ended)
    }

    /// Leaves the exemption a release grants (none for an operator's own quarantine) and audits
    /// the release.
    async fn record_release(
        &mut self,
        released: &QuarantineRecord,
        actor: &str,
        reason: &str,
        exempt_for: Duration,
    ) -> QuarantineResult<()> {
        let mut outcome = "released".to_string();
        if released.source != QuarantineSource::Operator {
            let now = self.clock.now_unix_ms();
            let until =
                now.saturating_add(i64::try_from(exempt_for.as_millis()).unwrap_or(i64::MAX));
            let exemption = Exemption::after_release(released, until, actor, reason);
            outcome = format!("released; exempt from {} until {until}", exemption.policy);
            let store = self.store.clone();
            self.exemptions = None;
            blocking(move || store.put_exemption(&exemption)).await?;
        }
        self.audit(AuditEntry {
            actor: actor.to_string(),
            on_behalf_of: None,
            action: UndoKind::Release.audit_action().into(),
            target: released.container.to_string(),
            reason: reason.to_string(),
            source: released.source.to_string(),
            outcome,
        })
        .await
    }
}
