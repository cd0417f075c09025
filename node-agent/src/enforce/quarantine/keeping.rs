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
    /// audited as `tamper`. `Ok(None)` when there is nothing to re-check or nothing was wrong.
    pub async fn recheck(
        &mut self,
        info: &ContainerInfo,
    ) -> QuarantineResult<Option<QuarantineRecord>> {
        let Some(record) = self.stored(&info.id).await? else {
            return Ok(None);
        };
        if record.releasing.is_some() {
            // Half undone on purpose: the roll-forward finishes the release.
            return Ok(None);
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
    /// finished (`requested`, `tampered`, a release under way), re-checked (`applied`) or marked
    /// `gone`. `failed` ones are left for an operator (or the fail-closed retry). Returns the
    /// records that changed.
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
            let releasing = record.releasing.clone();
            if record.state == QuarantineState::Failed && releasing.is_none() {
                continue;
            }
            let Some(info) = self.runtimes.inspect(&record.container).await? else {
                changed.push(self.mark_gone(record).await?);
                continue;
            };
            if let Some(pending) = releasing {
                changed.push(self.finish_undo(&record, *pending).await?);
                continue;
            }
            if let Some(updated) = self.recheck(&info).await? {
                changed.push(updated);
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
