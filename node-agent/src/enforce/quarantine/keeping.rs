//! Keeping quarantines in force: the re-check that finds one undone behind the agent's back
//! (tampering: re-applied and audited), the retry of a `failed` one, the roll-forward after a
//! start that finishes what a crash interrupted, and the end of a quarantine whose container was
//! removed (`gone`).

use lazaret_core::quarantine::{
    self as core_quarantine, QuarantineEvent, QuarantineRecord, QuarantineState,
};
use lazaret_core::{ContainerId, ContainerInfo};

use super::{AGENT_ACTOR, QuarantineManager, QuarantineResult, blocking};

impl QuarantineManager {
    /// Re-checks `info`'s container against its applied quarantine: unpaused, running again
    /// after a kill or stop, or a cut table absent or altered is tampering, re-applied and
    /// audited as `tamper`. A release or an expiry left under way (a crash, a store that could
    /// not record its end) is finished as what it was. `Ok(None)` when there is nothing to
    /// re-check or nothing was wrong.
    pub async fn recheck(
        &mut self,
        info: &ContainerInfo,
    ) -> QuarantineResult<Option<QuarantineRecord>> {
        match self.stored(&info.id).await? {
            Some(record) => self.recheck_record(record, info).await,
            None => Ok(None),
        }
    }

    /// [`Self::recheck`] of `record`, as stored.
    async fn recheck_record(
        &mut self,
        record: QuarantineRecord,
        info: &ContainerInfo,
    ) -> QuarantineResult<Option<QuarantineRecord>> {
        if let Some(pending) = record.releasing.clone() {
            // Half undone on purpose, not tampering. The manager runs one command at a time,
            // so an undo under way here is one that was interrupted (a final state never
            // carries one: `apply` drops it).
            tracing::info!(container = %record.container, actor = %pending.actor, kind = pending.kind.as_str(), "finishing a release or an expiry that was interrupted");
            return self.undo_recorded(&record, *pending).await.map(Some);
        }
        match record.state {
            QuarantineState::Applied => {}
            QuarantineState::Tampered | QuarantineState::Requested => {
                return self.carry_out(record, info).await.map(Some);
            }
            _ => return Ok(None),
        }
        let Some(tampering) = self.find_tampering(&record, info).await else {
            return Ok(None);
        };
        let now = self.clock.now_unix_ms();
        let tampered = core_quarantine::apply(&record, QuarantineEvent::Tampered, now)?;
        self.metrics.count_tampering();
        if let Err(error) = self.put(&tampered).await {
            // The store cannot write (full, read-only): repair anyway. The stored record still
            // says `applied`, which is what this restores, so a crash loses nothing.
            tracing::error!(container = %info.id, %tampering, %error, "quarantine tampered with and the store cannot record it: re-applying unrecorded");
            let _unrecorded = self.perform(&tampered, info).await;
            return Err(error);
        }
        tracing::warn!(container = %info.id, %tampering, "quarantine tampered with: re-applying");
        self.audit_record(&tampered, AGENT_ACTOR, "tamper", tampering)
            .await?;
        self.carry_out(tampered, info).await.map(Some)
    }

    /// Tries a `failed` quarantine again (an operator's `retry`, or once the cause is fixed):
    /// back to `requested`, stored, then every action again. Refused for any other state.
    pub async fn retry(
        &mut self,
        info: &ContainerInfo,
        actor: &str,
    ) -> QuarantineResult<QuarantineRecord> {
        let record = self.active(&info.id).await?;
        let now = self.clock.now_unix_ms();
        let requested = core_quarantine::apply(&record, QuarantineEvent::Retry, now)?;
        self.put(&requested).await?;
        self.audit_record(&requested, actor, "retry", "requested".into())
            .await?;
        self.carry_out(requested, info).await
    }

    /// At start (and after a runtime reconnect): every stored quarantine that is not final is
    /// finished (`requested`, `tampered`, a release or an expiry under way), re-checked
    /// (`applied`) or marked `gone`. `failed` ones are left for an operator (or the fail-closed
    /// retry). Returns the records that changed. A runtime that does not answer fails the whole
    /// roll-forward (it is tried again); one record that cannot be finished is logged and left
    /// to the sweeps' re-checks, without holding up the others.
    pub async fn roll_forward(&mut self) -> QuarantineResult<Vec<QuarantineRecord>> {
        let store = self.store.clone();
        let loaded = blocking(move || store.quarantines()).await?;
        for corrupt in &loaded.corrupt {
            tracing::error!(%corrupt, "corrupt quarantine record: not rolled forward");
        }
        let mut changed = Vec::new();
        for record in loaded.records {
            if record.state.is_terminal() {
                continue;
            }
            if record.state == QuarantineState::Failed && record.releasing.is_none() {
                continue;
            }
            let container = record.container.clone();
            let finished = match self.runtimes.inspect(&container).await? {
                None => self.mark_gone(record).await.map(Some),
                Some(info) => self.recheck_record(record, &info).await,
            };
            match finished {
                Ok(updated) => changed.extend(updated),
                Err(error) => {
                    tracing::error!(%container, %error, "stored quarantine not rolled forward: the re-checks try again");
                }
            }
        }
        Ok(changed)
    }

    /// The container was removed: its quarantine, if any, becomes `gone`.
    pub async fn container_gone(
        &mut self,
        container: &ContainerId,
    ) -> QuarantineResult<Option<QuarantineRecord>> {
        match self.stored(container).await? {
            Some(record) if !record.state.is_terminal() => self.mark_gone(record).await.map(Some),
            _ => Ok(None),
        }
    }

    async fn mark_gone(&mut self, record: QuarantineRecord) -> QuarantineResult<QuarantineRecord> {
        let now = self.clock.now_unix_ms();
        let gone = core_quarantine::apply(&record, QuarantineEvent::ContainerGone, now)?;
        self.put(&gone).await?;
        self.audit_record(
            &gone,
            AGENT_ACTOR,
            "quarantine",
            "gone: container removed".into(),
        )
        .await?;
        Ok(gone)
    }
}
