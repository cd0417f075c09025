//! What the controller keeps across restarts, in sled: its gossip generation (bumped at every
//! start, as agents do), the fleet-wide switch it last set, the last version it signed of each
//! bundle kind, and each agent's audit anchor.
//! Everything else it knows comes back from gossip within seconds.

use std::path::Path;

use anyhow::Context;
use lazaret_core::bundle::BundleKind;
use lazaret_core::gossip::FleetModeValue;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const GENERATION: &str = "generation";
const FLEET_MODE: &str = "fleet_mode";

/// The highest audit head seen for one agent, and what went wrong with its chain, if anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub sequence: u64,
    pub hash: String,
    /// Set once the chain was seen rewritten; kept (an ALERT is not forgotten by a restart).
    pub problem: Option<String>,
}

/// The controller's store. Clones share it.
#[derive(Clone)]
pub struct State {
    db: sled::Db,
    meta: sled::Tree,
    anchors: sled::Tree,
}

impl State {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<State> {
        let db = lazaret_fleet::state_dir::open_sled(dir)
            .with_context(|| format!("cannot open the controller's store in {}", dir.display()))?;
        Ok(State {
            meta: db.open_tree("meta")?,
            anchors: db.open_tree("anchors")?,
            db,
        })
    }

    /// The gossip generation for this start (one more than the last, stored first).
    pub fn next_generation(&self) -> anyhow::Result<u64> {
        let next = read::<u64>(&self.meta, GENERATION)?.unwrap_or(0) + 1;
        self.write(&self.meta, GENERATION, &next)?;
        Ok(next)
    }

    pub fn fleet_mode(&self) -> anyhow::Result<Option<FleetModeValue>> {
        read(&self.meta, FLEET_MODE)
    }

    pub fn put_fleet_mode(&self, mode: &FleetModeValue) -> anyhow::Result<()> {
        self.write(&self.meta, FLEET_MODE, mode)
    }

    /// The last version the controller signed of `kind` (0: none).
    pub fn last_signed(&self, kind: BundleKind) -> anyhow::Result<u64> {
        Ok(read(&self.meta, &signed_key(kind))?.unwrap_or(0))
    }

    pub fn put_last_signed(&self, kind: BundleKind, version: u64) -> anyhow::Result<()> {
        self.write(&self.meta, &signed_key(kind), &version)
    }

    pub fn anchor(&self, node: &str) -> anyhow::Result<Option<Anchor>> {
        read(&self.anchors, node)
    }

    pub fn put_anchor(&self, node: &str, anchor: &Anchor) -> anyhow::Result<()> {
        self.write(&self.anchors, node, anchor)
    }

    fn write<T: Serialize>(&self, tree: &sled::Tree, key: &str, value: &T) -> anyhow::Result<()> {
        tree.insert(key, serde_json::to_vec(value)?)
            .with_context(|| format!("cannot write {key}"))?;
        self.db
            .flush()
            .context("cannot flush the controller's store")?;
        Ok(())
    }
}

fn signed_key(kind: BundleKind) -> String {
    format!("signed:{kind}")
}

fn read<T: DeserializeOwned>(tree: &sled::Tree, key: &str) -> anyhow::Result<Option<T>> {
    tree.get(key)
        .with_context(|| format!("cannot read {key}"))?
        .map(|bytes| serde_json::from_slice(&bytes).with_context(|| format!("{key} is corrupt")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_mode_and_anchors_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = State::open(dir.path()).unwrap();
            assert_eq!(state.next_generation().unwrap(), 1);
            state
                .put_fleet_mode(&FleetModeValue {
                    audit_only: true,
                    since_unix_ms: 5,
                    actor: "alice".into(),
                    reason: "bad rollout".into(),
                })
                .unwrap();
            let anchor = Anchor {
                sequence: 3,
                hash: "ab".into(),
                problem: None,
            };
            state.put_anchor("node-1", &anchor).unwrap();
        }
        let state = State::open(dir.path()).unwrap();
        assert_eq!(state.next_generation().unwrap(), 2);
        assert!(state.fleet_mode().unwrap().unwrap().audit_only);
        assert_eq!(state.anchor("node-1").unwrap().unwrap().sequence, 3);
        assert_eq!(state.anchor("node-2").unwrap(), None);
        assert_eq!(state.last_signed(BundleKind::Policies).unwrap(), 0);
        state.put_last_signed(BundleKind::Policies, 7).unwrap();
        assert_eq!(state.last_signed(BundleKind::Policies).unwrap(), 7);
    }
}
