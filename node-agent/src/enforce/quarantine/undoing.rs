//! Undoing a quarantine: an operator's release and a TTL's expiry. Both store the record as
//! under way ([`PendingRelease`], which says which of the two) before the first undo, so a crash
//! half-way is finished as what it was (by the roll-forward, or by the next re-check) instead of
//! being taken for tampering, and a store that cannot write keeps the quarantine in force rather
//! than releasing it unrecorded. The end is stored together with its audit record in one write;
//! a release writes the exemption it leaves for (container, source) just before (writing it
//! twice is harmless), an expiry leaves none.

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
        exempt_for: std::time::Duration,
    ) -> QuarantineResult<QuarantineRecord> {
        let record = self.active(container).await?;
        self.undo_recorded(&record, PendingRelease::release(actor, reason, exempt_for))
            .await
    }

    /// Releases every quarantine whose TTL has run out (no exemption is left). A quarantine
    /// whose actions cannot be undone, or whose end the store cannot record, stays in force and
    /// is tried again at the next sweep; one record's failure does not stop the others.
    pub async fn expire_due(&mut self) -> QuarantineResult<Vec<QuarantineRecord>> {
        let now = self.clock.now_unix_ms();
        let store = self.store.clone();
        let loaded = blocking(move || store.quarantines()).await?;
        let mut expired = Vec::new();
        for record in loaded.records {
            if record.releasing.is_some() || core_quarantine::expire_if_due(&record, now).is_none()
            {
                // Not due, or an undo under way (the re-check finishes it as what it was).
                continue;
            }
            match self
                .undo_recorded(&record, PendingRelease::expiry(AGENT_ACTOR))
                .await
            {
                Ok(released) => expired.push(released),
                Err(error) => {
                    tracing::error!(container = %record.container, %error, "quarantine due to expire not ended: tried again at the next sweep");
                }
            }
        }
        Ok(expired)
    }

    /// Stores `record` as being undone by `pending` (before anything is undone), undoes its
    /// actions, and stores the end with its audit record (a release writes its exemption
    /// first). If an action cannot be undone, the record is stored back as it was, the failure
    /// audited, and the quarantine stays in force. Also finishes an undo a crash or a store
    /// failure interrupted: `record` may already carry `pending`.
    pub(super) async fn undo_recorded(
        &mut self,
        record: &QuarantineRecord,
        pending: PendingRelease,
    ) -> QuarantineResult<QuarantineRecord> {
        let kind = pending.kind;
        let now = self.clock.now_unix_ms();
        let undoing = record.undoing(pending.clone());
        // Refused (a final state) before anything is stored or undone. The TTL is the caller's
        // check: once stored as under way, an expiry is finished whatever the clock says.
        let ended = core_quarantine::apply(&undoing, kind.event(), now)?;
        if let Err(error) = self.put(&undoing).await {
            self.metrics.count_release(kind, "unrecorded");
            return Err(error);
        }
        if let Err(error) = self.undo(record).await {
            self.metrics.count_release(kind, "failed");
            let kept = record.kept();
            self.put(&kept).await?;
            self.audit_record(
                &kept,
                &pending.actor,
                kind.audit_action(),
                format!("failed: {error}"),
            )
            .await?;
            return Err(QuarantineError::ReleaseFailed {
                container: record.container.clone(),
                reason: error,
            });
        }
        let entry = match kind {
            UndoKind::Expiry => self.entry(
                &ended,
                &pending.actor,
                kind.audit_action(),
                format!("released: {}", pending.reason),
            ),
            UndoKind::Release => self.leave_exemption(&ended, &pending, now).await?,
        };
        if let Err(error) = self.store_with_audit(vec![entry], &ended).await {
            // Undone but not recorded: the record still says under way, and the next re-check
            // (or the roll-forward at a restart) finishes it.
            self.metrics.count_release(kind, "unrecorded");
            return Err(error);
        }
        self.metrics.count_release(kind, "released");
        Ok(ended)
    }

    /// Writes the exemption a release leaves (none for an operator's own quarantine); the audit
    /// entry of the release.
    async fn leave_exemption(
        &mut self,
        released: &QuarantineRecord,
        pending: &PendingRelease,
        now: i64,
    ) -> QuarantineResult<AuditEntry> {
        let mut outcome = "released".to_string();
        if released.source != QuarantineSource::Operator {
            let exempt_ms = i64::try_from(pending.exempt_for().as_millis()).unwrap_or(i64::MAX);
            let until = now.saturating_add(exempt_ms);
            let exemption =
                Exemption::after_release(released, until, &pending.actor, &pending.reason);
            outcome = format!("released; exempt from {} until {until}", exemption.policy);
            let store = self.store.clone();
            self.exemptions = None;
            blocking(move || store.put_exemption(&exemption)).await?;
        }
        Ok(AuditEntry {
            actor: pending.actor.clone(),
            on_behalf_of: None,
            action: UndoKind::Release.audit_action().into(),
            target: released.container.to_string(),
            reason: pending.reason.clone(),
            source: released.source.to_string(),
            outcome,
        })
    }
}
