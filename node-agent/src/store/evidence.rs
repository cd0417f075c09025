//! Evidence taken when a container was quarantined (tree `evidence`): one JSON document per
//! container, the newest kept ([`crate::enforce::evidence`] makes it and bounds its size).

use lazaret_core::ContainerId;

use super::{Store, StoreResult, TREE_EVIDENCE, sled_error};

impl Store {
    /// Keeps `evidence` (JSON text) as `container`'s, replacing any earlier.
    pub fn put_evidence(&self, container: &ContainerId, evidence: &str) -> StoreResult<()> {
        self.evidence
            .insert(container.as_str(), evidence.as_bytes())
            .map_err(sled_error(
                "write",
                TREE_EVIDENCE,
                Some(container.to_string()),
            ))?;
        self.persist()
    }

    /// `container`'s evidence, if any was taken.
    pub fn evidence(&self, container: &ContainerId) -> StoreResult<Option<String>> {
        Ok(self
            .evidence
            .get(container.as_str())
            .map_err(sled_error(
                "read",
                TREE_EVIDENCE,
                Some(container.to_string()),
            ))?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }
}
