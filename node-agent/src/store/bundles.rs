//! The newest accepted bundle of each kind (tree `bundles`), the gossip generation and the last
//! fleet-wide switch followed (tree `meta`).
//!
//! A bundle is stored as its signed file bytes under its kind, with its stamp beside it under
//! `KIND:stamp`; both in one batch, so a crash never leaves a stamp without its bundle. The stamp
//! is the anti-rollback floor: the agent refuses anything at or below it, across restarts. The
//! bytes are verified again at load ([`crate::bundles`]): the store is never trusted blindly.

use lazaret_core::bundle::{BundleKind, BundleStamp};
use lazaret_core::gossip::FleetModeValue;

use super::{
    META_FLEET_MODE, META_GENERATION, Store, StoreResult, TREE_BUNDLES, TREE_META, decode, encode,
    sled_error,
};

impl Store {
    /// Stores `bundle` (signed file bytes) as the newest of `kind`, with its `stamp`.
    pub fn put_bundle(
        &self,
        kind: BundleKind,
        stamp: &BundleStamp,
        bundle: &[u8],
    ) -> StoreResult<()> {
        let stamp_key = stamp_key(kind);
        let mut batch = sled::Batch::default();
        batch.insert(kind.as_str(), bundle);
        batch.insert(stamp_key.as_str(), encode(TREE_BUNDLES, &stamp_key, stamp)?);
        self.bundles.apply_batch(batch).map_err(sled_error(
            "write",
            TREE_BUNDLES,
            Some(kind.as_str()),
        ))?;
        self.persist()
    }

    /// The newest accepted bundle of `kind` (its stamp and signed bytes), if any.
    pub fn bundle(&self, kind: BundleKind) -> StoreResult<Option<(BundleStamp, Vec<u8>)>> {
        let stamp_key = stamp_key(kind);
        let read = |key: &str| {
            self.bundles
                .get(key)
                .map_err(sled_error("read", TREE_BUNDLES, Some(key.to_string())))
        };
        let (Some(stamp), Some(bytes)) = (read(&stamp_key)?, read(kind.as_str())?) else {
            return Ok(None);
        };
        let stamp = decode(TREE_BUNDLES, stamp_key.as_bytes(), &stamp)?;
        Ok(Some((stamp, bytes.to_vec())))
    }

    /// The gossip generation for this start: one more than the last, persisted before it is
    /// used, so peers always see a restarted agent as new (FACTS.md: a restart with the same
    /// generation hides its new keys).
    pub fn next_generation(&self) -> StoreResult<u64> {
        let previous = self
            .meta
            .get(META_GENERATION)
            .map_err(sled_error("read", TREE_META, Some(META_GENERATION)))?
            .map(|bytes| decode::<u64>(TREE_META, META_GENERATION.as_bytes(), &bytes))
            .transpose()?
            .unwrap_or(0);
        let next = previous + 1;
        self.meta
            .insert(META_GENERATION, encode(TREE_META, META_GENERATION, &next)?)
            .map_err(sled_error("write", TREE_META, Some(META_GENERATION)))?;
        self.persist()?;
        Ok(next)
    }

    /// The fleet-wide switch this agent last followed, if any.
    pub fn fleet_mode(&self) -> StoreResult<Option<FleetModeValue>> {
        Ok(self
            .meta
            .get(META_FLEET_MODE)
            .map_err(sled_error("read", TREE_META, Some(META_FLEET_MODE)))?
            .map(|bytes| decode(TREE_META, META_FLEET_MODE.as_bytes(), &bytes))
            .transpose()?)
    }

    /// Records `mode` as the fleet-wide switch followed.
    pub fn put_fleet_mode(&self, mode: &FleetModeValue) -> StoreResult<()> {
        self.meta
            .insert(META_FLEET_MODE, encode(TREE_META, META_FLEET_MODE, mode)?)
            .map_err(sled_error("write", TREE_META, Some(META_FLEET_MODE)))?;
        self.persist()
    }
}

fn stamp_key(kind: BundleKind) -> String {
    format!("{kind}:stamp")
}
