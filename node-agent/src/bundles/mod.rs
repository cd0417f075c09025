//! The signed bundles this node holds and enforces (DESIGN.md §3, "Bundles").
//!
//! Every bundle, whoever hands it in (an admin through `ApplyBundle`, a peer through
//! [`sync`]), passes the same gate, [`BundleBook::offer`]: parse → signature by a trusted key
//! → newer than the highest accepted (anti-rollback, persisted) → content loads whole → stored →
//! put in force (policies: the enforcement task swaps its set and re-judges every running
//! container, exemptions respected) → acked over gossip. A refusal at any step changes nothing
//! and is counted (`lazaret_bundles_refused_total{kind,reason}`). A canary bundle names the
//! nodes that may take it; the others refuse it (`not-for-this-node`) until a bundle for every
//! node (the promotion) arrives.
//!
//! **A policies bundle replaces the policy directory.** Once a signed bundle is in force, the
//! agent enforces it and stops re-reading `policies.dirs`: the fleet's bundle is the authority,
//! and a node's files cannot quietly weaken it. The directory is for a standalone agent and for
//! the time before the first bundle.
//!
//! An indicators bundle is indexed ([`IndicatorIndex`]) and handed to the enforcement task, which
//! judges every running container again: policies' `indicator` rules match image ids, digests and
//! references now; what runs inside containers (process names, executables, addresses) is
//! matched with the scan of [8/11], not built yet.

pub mod sync;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use lazaret_core::audit::AuditEntry;
use lazaret_core::bundle::{
    Admission, Bundle, BundleContent, BundleDigest, BundleError, BundleKind, BundleStamp,
    SignedBundle, TrustedKeys, admit,
};
use lazaret_core::indicator::index::IndicatorIndex;
use lazaret_core::policy::PolicySet;
use tokio::sync::{Mutex, watch};
use tracing::{error, info, warn};

use crate::clock::{Clock, SystemClock};
use crate::enforce::engine::EnforcerHandle;
use crate::metrics::FleetMetrics;
use crate::store::{Store, StoreError};

/// A bundle in force.
#[derive(Debug, Clone)]
pub struct Held {
    pub stamp: BundleStamp,
    /// The signed file, as served to peers.
    pub bytes: Arc<[u8]>,
    pub bundle: Arc<Bundle>,
    /// Who handed it in: an operator's name, `peer NAME`, or `store` (loaded at start).
    pub from: String,
}

/// What an accepted offer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    /// Now in force. `conflict`: same version as the one before, different content (two
    /// signers disagree; the higher digest wins everywhere).
    Applied {
        kind: BundleKind,
        stamp: BundleStamp,
        previous: Option<BundleStamp>,
        conflict: bool,
    },
    /// This very bundle is already in force.
    AlreadyHave {
        kind: BundleKind,
        stamp: BundleStamp,
    },
}

/// Why an offer was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error(transparent)]
    Refused(#[from] BundleError),
    #[error(
        "{kind} bundle {candidate} is older than the one accepted before, {current}: sign a newer one (a higher --version)"
    )]
    Older {
        kind: BundleKind,
        candidate: BundleStamp,
        current: BundleStamp,
    },
    #[error("{kind} bundle {stamp} is a canary for {nodes}, not for this node")]
    NotForThisNode {
        kind: BundleKind,
        stamp: BundleStamp,
        nodes: String,
    },
    #[error("{kind} bundle {stamp} does not load, nothing applied:\n{errors}")]
    Invalid {
        kind: BundleKind,
        stamp: BundleStamp,
        errors: String,
    },
    #[error("cannot store the bundle: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl OfferError {
    /// The `reason` label of `lazaret_bundles_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            OfferError::Refused(error) => error.reason(),
            OfferError::Older { .. } => "older",
            OfferError::NotForThisNode { .. } => "not-for-this-node",
            OfferError::Invalid { .. } => "invalid",
            OfferError::Store(_) | OfferError::Internal(_) => "internal",
        }
    }
}

/// The bundles of this node. See the module docs.
pub struct BundleBook {
    node: String,
    trusted: TrustedKeys,
    store: Store,
    metrics: FleetMetrics,
    held: RwLock<BTreeMap<BundleKind, Held>>,
    /// The held indicators bundle, indexed once when it was taken (empty without one).
    indicators: RwLock<Arc<IndicatorIndex>>,
    /// The highest stamp ever accepted per kind (the anti-rollback floor); ≥ what is held.
    floor: RwLock<BTreeMap<BundleKind, BundleStamp>>,
    /// Offers run one at a time.
    offers: Mutex<()>,
    acks: watch::Sender<BTreeMap<BundleKind, BundleStamp>>,
    enforcer: std::sync::Mutex<Option<EnforcerHandle>>,
    clock: Arc<dyn Clock>,
}

impl BundleBook {
    /// Loads what the store holds. A stored bundle that no longer verifies (its key is no longer
    /// trusted, or the bytes changed) is not enforced, but its stamp stays the floor. Blocking.
    pub fn open(
        node: &str,
        trusted: TrustedKeys,
        store: Store,
        metrics: FleetMetrics,
    ) -> Result<BundleBook, StoreError> {
        BundleBook::open_with_clock(node, trusted, store, metrics, Arc::new(SystemClock))
    }

    /// [`Self::open`], reading the time (expiry of bundles and indicators) from `clock`.
    pub fn open_with_clock(
        node: &str,
        trusted: TrustedKeys,
        store: Store,
        metrics: FleetMetrics,
        clock: Arc<dyn Clock>,
    ) -> Result<BundleBook, StoreError> {
        let mut held = BTreeMap::new();
        let mut floor = BTreeMap::new();
        for kind in BundleKind::ALL {
            let Some((stamp, bytes)) = store.bundle(kind)? else {
                continue;
            };
            floor.insert(kind, stamp);
            match verified(&trusted, kind, &bytes) {
                Ok((signed, bundle)) if signed.stamp() == stamp => {
                    metrics.set_bundle_in_force(kind, stamp.version, bundle.expires);
                    held.insert(
                        kind,
                        Held {
                            stamp,
                            bytes: bytes.into(),
                            bundle: Arc::new(bundle),
                            from: "store".into(),
                        },
                    );
                }
                Ok(_) => error!(%kind, "stored bundle does not match its stamp; not enforced"),
                Err(error) => {
                    error!(%kind, %error, "stored bundle no longer verifies; not enforced")
                }
            }
        }
        let stamps = held
            .iter()
            .map(|(kind, held)| (*kind, held.stamp))
            .collect();
        Ok(BundleBook {
            node: node.to_string(),
            trusted,
            store,
            metrics,
            indicators: RwLock::new(Arc::new(index_of(
                held.get(&BundleKind::Indicators),
                clock.now_unix(),
            ))),
            clock,
            held: RwLock::new(held),
            floor: RwLock::new(floor),
            offers: Mutex::new(()),
            acks: watch::channel(stamps).0,
            enforcer: std::sync::Mutex::new(None),
        })
    }

    /// The time as this book sees it (Unix seconds), for expiry checks elsewhere.
    pub fn now_unix(&self) -> i64 {
        self.clock.now_unix()
    }

    /// Where policies bundles are put in force from now on.
    pub fn enforce_with(&self, enforcer: EnforcerHandle) {
        *self.enforcer.lock().unwrap_or_else(PoisonError::into_inner) = Some(enforcer);
    }

    /// The indicators of the held indicators bundle, indexed now, for the enforcement task's
    /// start (an empty index without one).
    pub fn indicators(&self) -> Arc<IndicatorIndex> {
        self.indicators
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Builds the indicators index again once one of its entries has expired, and hands the new
    /// one to the enforcement task (which judges every container again). `true` when it did.
    pub async fn reindex_expired(&self) -> bool {
        self.reindex_expired_at(self.clock.now_unix()).await
    }

    /// [`Self::reindex_expired`] as of `now` (Unix seconds).
    pub async fn reindex_expired_at(&self, now: i64) -> bool {
        if !self.indicators().has_expired_entries(now) {
            return false;
        }
        let index = {
            let held = self.held.read().unwrap_or_else(PoisonError::into_inner);
            Arc::new(index_of(held.get(&BundleKind::Indicators), now))
        };
        info!(
            indicators = index.len(),
            expired = index.expired,
            "indicators expired: index rebuilt"
        );
        let enforcer = self
            .enforcer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(enforcer) = enforcer
            && let Err(error) = enforcer
                .use_indicators(index.clone(), "expiry".into())
                .await
        {
            warn!(%error, "the enforcement task did not take the rebuilt indicators");
        }
        *self
            .indicators
            .write()
            .unwrap_or_else(PoisonError::into_inner) = index;
        true
    }

    /// The policies of the held policies bundle, for the enforcement task's start.
    pub fn policies(&self) -> Option<PolicySet> {
        let held = self.held(BundleKind::Policies)?;
        match held.bundle.content() {
            Ok(BundleContent::Policies(set)) => Some(set),
            _ => None,
        }
    }

    pub fn held(&self, kind: BundleKind) -> Option<Held> {
        self.held
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&kind)
            .cloned()
    }

    /// The signed bytes of `kind`'s bundle with `digest`, when it is the one held.
    pub fn get(&self, kind: BundleKind, digest: BundleDigest) -> Option<Arc<[u8]>> {
        self.held(kind)
            .filter(|held| held.stamp.digest == digest)
            .map(|held| held.bytes)
    }

    /// The ids of the trusted keys.
    pub fn trusted_key_ids(&self) -> Vec<String> {
        self.trusted.ids().map(ToString::to_string).collect()
    }

    /// The stamps in force, updated at every change (what gossip acks).
    pub fn acks(&self) -> watch::Receiver<BTreeMap<BundleKind, BundleStamp>> {
        self.acks.subscribe()
    }

    /// Whether `stamp` of `kind` would be newer than anything accepted.
    pub fn wants(&self, kind: BundleKind, stamp: BundleStamp) -> bool {
        matches!(admit(self.floor(kind), stamp), Admission::Accept { .. })
    }

    /// The highest stamp of `kind` ever accepted.
    fn floor(&self, kind: BundleKind) -> Option<BundleStamp> {
        self.floor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&kind)
            .copied()
    }

    /// Offers a signed bundle from `from` (see the module docs). Refusals are counted and, for
    /// an operator's offer (`audit_refusal`), audited; an application always is.
    pub async fn offer(
        &self,
        bytes: Vec<u8>,
        from: &str,
        audit_refusal: bool,
    ) -> Result<Offered, OfferError> {
        let signed = SignedBundle::parse(&bytes);
        self.offer_parsed(signed, bytes, from, audit_refusal).await
    }

    /// [`Self::offer`] of bytes the caller has parsed already (bundle sync checks the stamp
    /// first): a big bundle is not parsed twice.
    pub async fn offer_parsed(
        &self,
        signed: Result<SignedBundle, BundleError>,
        bytes: Vec<u8>,
        from: &str,
        audit_refusal: bool,
    ) -> Result<Offered, OfferError> {
        let _one_at_a_time = self.offers.lock().await;
        let kind = signed.as_ref().map(|signed| signed.unverified().kind).ok();
        let outcome = self.admit_and_apply(signed, bytes, from).await;
        match &outcome {
            Ok(Offered::Applied {
                kind,
                stamp,
                previous,
                conflict,
            }) => {
                self.metrics.count_bundle_applied(*kind);
                if *conflict {
                    warn!(%kind, %stamp, "two bundles share a version: signers disagree; the higher digest wins everywhere");
                }
                let previous = previous.map_or("none".to_string(), |stamp| stamp.to_string());
                info!(%kind, %stamp, %previous, %from, "bundle applied");
                self.audit(
                    from,
                    kind.as_str(),
                    format!("applied {stamp}; previous {previous}"),
                )
                .await;
            }
            Ok(Offered::AlreadyHave { .. }) => {}
            Err(error) => {
                let kind_text = kind.map_or("unknown", BundleKind::as_str);
                if let Some(kind) = kind {
                    self.metrics.count_bundle_refused(kind, error.reason());
                }
                // Peers' canaries for other nodes arrive by design: not a warning.
                match error {
                    OfferError::NotForThisNode { .. } => {
                        tracing::debug!(kind = kind_text, %from, %error, "bundle not taken")
                    }
                    _ => warn!(kind = kind_text, %from, %error, "bundle refused; nothing applied"),
                }
                if audit_refusal {
                    self.audit(from, kind_text, format!("refused: {error}"))
                        .await;
                }
            }
        }
        outcome
    }

    async fn admit_and_apply(
        &self,
        signed: Result<SignedBundle, BundleError>,
        bytes: Vec<u8>,
        from: &str,
    ) -> Result<Offered, OfferError> {
        let signed = signed?;
        let bundle = self.trusted.verify(&signed)?.clone();
        let (kind, stamp) = (bundle.kind, signed.stamp());
        if !bundle.is_for(&self.node) {
            return Err(OfferError::NotForThisNode {
                kind,
                stamp,
                nodes: bundle.nodes.join(", "),
            });
        }
        let conflict = match admit(self.floor(kind), stamp) {
            Admission::AlreadyHave => return Ok(Offered::AlreadyHave { kind, stamp }),
            Admission::Older { current } => {
                return Err(OfferError::Older {
                    kind,
                    candidate: stamp,
                    current,
                });
            }
            Admission::Accept { conflict } => conflict,
        };
        let content = bundle.content().map_err(|errors| OfferError::Invalid {
            kind,
            stamp,
            errors,
        })?;
        let store = self.store.clone();
        let stored_bytes = bytes.clone();
        tokio::task::spawn_blocking(move || store.put_bundle(kind, &stamp, &stored_bytes))
            .await
            .map_err(|error| OfferError::Internal(format!("store task failed: {error}")))??;
        self.floor
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(kind, stamp);
        // Indicators are indexed once, here: the enforcement task and readers share the index.
        let indicators = match &content {
            BundleContent::Indicators(set) => Some(Arc::new(indexed(
                set,
                stamp,
                bundle.expires,
                self.clock.now_unix(),
            ))),
            BundleContent::Policies(_) => None,
        };
        let enforcer = self
            .enforcer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(enforcer) = enforcer {
            let origin = format!("bundle {stamp}");
            let taken = match (content, &indicators) {
                (BundleContent::Policies(set), _) => enforcer.use_policies(set, origin).await,
                (BundleContent::Indicators(_), Some(index)) => {
                    enforcer.use_indicators(index.clone(), origin).await
                }
                (BundleContent::Indicators(_), None) => Ok(()),
            };
            taken.map_err(|error| {
                OfferError::Internal(format!(
                    "stored, but the enforcement task did not take it: {error}"
                ))
            })?;
        }
        if let Some(index) = indicators {
            *self
                .indicators
                .write()
                .unwrap_or_else(PoisonError::into_inner) = index;
        }
        self.metrics
            .set_bundle_in_force(kind, stamp.version, bundle.expires);
        let previous = self
            .held
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                kind,
                Held {
                    stamp,
                    bytes: bytes.into(),
                    bundle: Arc::new(bundle),
                    from: from.to_string(),
                },
            )
            .map(|held| held.stamp);
        self.acks.send_modify(|acks| {
            acks.insert(kind, stamp);
        });
        Ok(Offered::Applied {
            kind,
            stamp,
            previous,
            conflict,
        })
    }

    async fn audit(&self, actor: &str, kind: &str, outcome: String) {
        let store = self.store.clone();
        let entry = AuditEntry {
            actor: actor.to_string(),
            on_behalf_of: None,
            action: "bundle".into(),
            target: format!("{kind}@{}", self.node),
            reason: "signed bundle".into(),
            source: "bundle".into(),
            outcome,
        };
        let now = self.clock.now_unix_ms();
        let appended =
            tokio::task::spawn_blocking(move || store.append_audit(entry, now).map(drop)).await;
        if !matches!(appended, Ok(Ok(()))) {
            error!("cannot audit a bundle change");
        }
    }
}

/// The index of a held indicators bundle (empty without one).
fn index_of(held: Option<&Held>, now: i64) -> IndicatorIndex {
    let Some(held) = held else {
        return IndicatorIndex::default();
    };
    match held.bundle.content() {
        Ok(BundleContent::Indicators(set)) => indexed(&set, held.stamp, held.bundle.expires, now),
        _ => IndicatorIndex::default(),
    }
}

/// The index of the indicators of bundle `stamp`, which expires at `expires`. Past that its
/// entries still match but are in doubt ([`IndicatorIndex::doubt`]: `on_error` decides about
/// containers they do not match); before it, the index asks to be rebuilt when it comes.
fn indexed(
    set: &lazaret_core::indicator::IndicatorSet,
    stamp: BundleStamp,
    expires: u64,
    now: i64,
) -> IndicatorIndex {
    let mut index = IndicatorIndex::build(set, now);
    let expires_at = i64::try_from(expires).unwrap_or(i64::MAX);
    if now >= expires_at {
        index.doubt = Some(format!(
            "the indicators bundle {stamp} expired at {} and no fresh one arrived",
            chrono::DateTime::from_timestamp(expires_at, 0)
                .map_or_else(|| expires.to_string(), |at| at.to_rfc3339())
        ));
    } else {
        index.rebuild_after(expires_at.saturating_sub(1));
    }
    index
}

/// Parses and verifies stored bytes of `kind`.
fn verified(
    trusted: &TrustedKeys,
    kind: BundleKind,
    bytes: &[u8],
) -> Result<(SignedBundle, Bundle), BundleError> {
    let signed = SignedBundle::parse(bytes)?;
    let bundle = trusted.verify(&signed)?.clone();
    if bundle.kind != kind {
        return Err(BundleError::Malformed(format!(
            "stored as {kind} but is {}",
            bundle.kind
        )));
    }
    Ok((signed, bundle))
}
