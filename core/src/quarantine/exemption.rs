//! Exemptions: what a release leaves behind so that the next sweep does not quarantine again
//! what an operator just released.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::QuarantineRecord;
use crate::container::ContainerId;

/// "Do not act on `policy`'s verdict for `container` until `until_unix_ms`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exemption {
    pub container: ContainerId,
    /// A policy name, or for quarantines not raised by a policy the source's `kind:value` form
    /// (`indicator:ioc-42`); see [`super::QuarantineSource::exemption_key`].
    pub policy: String,
    /// The first instant the exemption no longer holds.
    pub until_unix_ms: i64,
    pub actor: String,
    pub reason: String,
}

impl Exemption {
    /// The exemption a release of `record` leaves, filed under the record's container and
    /// source.
    pub fn after_release(
        record: &QuarantineRecord,
        until_unix_ms: i64,
        actor: impl Into<String>,
        reason: impl Into<String>,
    ) -> Exemption {
        Exemption {
            container: record.container.clone(),
            policy: record.source.exemption_key(),
            until_unix_ms,
            actor: actor.into(),
            reason: reason.into(),
        }
    }

    /// Holds strictly before `until_unix_ms`: at exactly `until` it has expired, the same rule as
    /// a quarantine's TTL.
    pub fn is_active(&self, now_unix_ms: i64) -> bool {
        now_unix_ms < self.until_unix_ms
    }
}

/// The exemptions in force on one node, by container and policy. At most one per pair: a newer
/// exemption replaces the older one, even when it ends sooner, because the latest operator
/// decision wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExemptionSet {
    by_container: BTreeMap<ContainerId, BTreeMap<String, Exemption>>,
}

impl ExemptionSet {
    pub fn new() -> Self {
        ExemptionSet::default()
    }

    /// Files `exemption`, returning the one it replaced.
    pub fn insert(&mut self, exemption: Exemption) -> Option<Exemption> {
        self.by_container
            .entry(exemption.container.clone())
            .or_default()
            .insert(exemption.policy.clone(), exemption)
    }

    pub fn get(&self, container: &ContainerId, policy: &str) -> Option<&Exemption> {
        self.by_container.get(container)?.get(policy)
    }

    /// Whether `policy`'s verdict on `container` must be ignored at `now_unix_ms`.
    pub fn is_exempt(&self, container: &ContainerId, policy: &str, now_unix_ms: i64) -> bool {
        self.get(container, policy)
            .is_some_and(|exemption| exemption.is_active(now_unix_ms))
    }

    /// Withdraws an exemption early (an operator changed their mind).
    pub fn remove(&mut self, container: &ContainerId, policy: &str) -> Option<Exemption> {
        let policies = self.by_container.get_mut(container)?;
        let removed = policies.remove(policy);
        if policies.is_empty() {
            self.by_container.remove(container);
        }
        removed
    }

    /// Drops every exemption that has expired at `now_unix_ms` and returns them, so the caller
    /// can delete them from the store and audit their end.
    pub fn prune(&mut self, now_unix_ms: i64) -> Vec<Exemption> {
        let mut expired = Vec::new();
        self.by_container.retain(|_, policies| {
            policies.retain(|_, exemption| {
                if exemption.is_active(now_unix_ms) {
                    return true;
                }
                expired.push(exemption.clone());
                false
            });
            !policies.is_empty()
        });
        expired
    }

    pub fn len(&self) -> usize {
        self.by_container.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_container.is_empty()
    }

    /// Every exemption, by container then policy.
    pub fn iter(&self) -> impl Iterator<Item = &Exemption> {
        self.by_container.values().flat_map(BTreeMap::values)
    }
}

impl FromIterator<Exemption> for ExemptionSet {
    fn from_iter<I: IntoIterator<Item = Exemption>>(exemptions: I) -> Self {
        let mut set = ExemptionSet::new();
        for exemption in exemptions {
            set.insert(exemption);
        }
        set
    }
}
