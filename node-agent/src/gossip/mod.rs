//! Gossip membership and status (DESIGN.md §3, "Gossip keys"; chitchat 0.13).
//!
//! [`Gossip`] runs this node's chitchat instance: it publishes the node's sealed values
//! ([`Gossip::publish`], each through the one size gate [`gossip::checked_value`]) and turns
//! what peers publish into [`PeerView`]s, believing a value only when its node's certificate
//! chains to the fleet CA and the value's seal verifies ([`identity`]). Refused values are
//! counted once each (`lazaret_gossip_values_refused_total{reason}`) and otherwise ignored.
//!
//! The generation id is the store's, bumped and persisted at every start, so peers see a
//! restarted node's keys again (FACTS.md). Bundle content never rides gossip: only stamps do, and
//! [`crate::bundles::sync`] fetches content over gRPC.

pub mod announce;
pub mod identity;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use chitchat::transport::UdpTransport;
use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ListenerHandle, NodeState,
    spawn_chitchat,
};
use lazaret_core::bundle::{BundleKind, BundleStamp};
use lazaret_core::gossip::{
    self, AuditHeadValue, GossipKey, ModeValue, NodeValue, StatsValue, ValueTooLarge,
};
use lazaret_core::roles::Role;
use serde::Serialize;
use tokio::sync::Notify;

use self::identity::{NodeSigner, PeerKey, PeerTrust, Refusal};
use crate::metrics::FleetMetrics;

/// How the node gossips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipSettings {
    /// Only nodes of the same cluster talk to each other.
    pub cluster: String,
    /// UDP address to bind.
    pub listen: SocketAddr,
    /// The address peers reach this node at (the listen address unless it is unspecified).
    pub advertise: SocketAddr,
    /// `host:port` of nodes to join through.
    pub seeds: Vec<String>,
    /// How often this node gossips with a peer.
    pub interval: Duration,
}

/// What this node believes about one peer (its newest generation).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    pub node: String,
    pub generation: u64,
    pub gossip_addr: SocketAddr,
    pub live: bool,
    /// From its verified certificate; `None` when the certificate was refused.
    pub role: Option<Role>,
    /// Why nothing it says is believed, when that is so.
    pub problem: Option<String>,
    pub info: Option<NodeValue>,
    pub acks: BTreeMap<BundleKind, BundleStamp>,
    pub manifests: BTreeMap<BundleKind, BundleStamp>,
    pub mode: Option<ModeValue>,
    pub stats: Option<StatsValue>,
    pub audit_head: Option<AuditHeadValue>,
    /// Containers it has in quarantine (`q:*` keys).
    pub quarantines: usize,
}

/// A verified (or refused) value, cached per version so each is checked once.
type Checked = Result<String, &'static str>;

/// This node's gossip. See the module docs.
pub struct Gossip {
    handle: ChitchatHandle,
    node: String,
    signer: NodeSigner,
    trust: PeerTrust,
    metrics: FleetMetrics,
    /// Payloads this node last published, by key: a seal differs every time, so an unchanged
    /// payload must not be sealed and set again (it would bump the version for nothing).
    published: tokio::sync::Mutex<HashMap<String, String>>,
    /// Peers' certificates checked, by (node, generation, certificate text).
    certificates: Mutex<HashMap<(ChitchatId, String), Result<PeerKey, Refusal>>>,
    /// Peers' values checked, by (node, key) → (version, outcome).
    values: Mutex<HashMap<(ChitchatId, String), (u64, Checked)>>,
    /// Refusals already counted: (node, key, version).
    counted: Mutex<HashSet<(ChitchatId, String, u64)>>,
    changed: Arc<Notify>,
    _listener: ListenerHandle,
}

impl Gossip {
    /// Joins the cluster as `generation` of this node; publishes its certificate.
    pub async fn start(
        settings: &GossipSettings,
        generation: u64,
        signer: NodeSigner,
        trust: PeerTrust,
        metrics: FleetMetrics,
        node: &str,
    ) -> anyhow::Result<Gossip> {
        let interval = settings.interval;
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(node, generation, settings.advertise),
            cluster_id: settings.cluster.clone(),
            gossip_interval: interval,
            listen_addr: settings.listen,
            seed_nodes: settings.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                initial_interval: interval,
                max_interval: interval * 10,
                dead_node_grace_period: Duration::from_secs(3600),
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            // Every Lazaret agent speaks V1 (compressed digests) from its first release.
            protocol_version: chitchat::ProtocolVersion::V1,
        };
        let certificate = gossip::checked_value(&GossipKey::Cert, signer.certificate_pem().into())?;
        let handle = spawn_chitchat(
            config,
            vec![(GossipKey::Cert.to_string(), certificate)],
            &UdpTransport,
        )
        .await
        .with_context(|| format!("cannot start gossip on {}", settings.listen))?;
        let changed = Arc::new(Notify::new());
        let notify = changed.clone();
        let listener = handle
            .chitchat()
            .lock()
            .await
            .subscribe_event("", move |_event| {
                notify.notify_one();
            });
        Ok(Gossip {
            handle,
            node: node.to_string(),
            signer,
            trust,
            metrics,
            published: Default::default(),
            certificates: Default::default(),
            values: Default::default(),
            counted: Default::default(),
            changed,
            _listener: listener,
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn generation(&self) -> u64 {
        self.handle.chitchat_id().generation_id
    }

    /// Woken whenever a value changes anywhere in the cluster.
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// Seals and sets `value` under `key`, unless it is what was published last.
    pub async fn publish<T: Serialize>(
        &self,
        key: &GossipKey,
        value: &T,
    ) -> Result<(), ValueTooLarge> {
        let payload = serde_json::to_string(value).expect("gossip values serialise");
        let name = key.to_string();
        let mut published = self.published.lock().await;
        if published.get(&name) == Some(&payload) {
            return Ok(());
        }
        let sealed = gossip::checked_value(key, self.signer.seal(key, &payload))?;
        self.handle
            .chitchat()
            .lock()
            .await
            .self_node_state()
            .set(name.clone(), sealed);
        published.insert(name, payload);
        Ok(())
    }

    /// Deletes `key` (a released quarantine's summary).
    pub async fn remove(&self, key: &GossipKey) {
        let name = key.to_string();
        let mut published = self.published.lock().await;
        if published.remove(&name).is_some() {
            self.handle
                .chitchat()
                .lock()
                .await
                .self_node_state()
                .delete(&name);
        }
    }

    /// The keys this node has published with a prefix (e.g. its `q:` summaries).
    pub async fn published_keys(&self, prefix: &str) -> Vec<String> {
        let published = self.published.lock().await;
        published
            .keys()
            .filter(|key| key.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Every peer's newest generation, with what it says that verified.
    pub async fn peers(&self) -> Vec<PeerView> {
        let (states, live): (Vec<(ChitchatId, NodeState)>, HashSet<ChitchatId>) = {
            let chitchat = self.handle.chitchat();
            let chitchat = chitchat.lock().await;
            let own = chitchat.self_chitchat_id().clone();
            let states = chitchat
                .node_states()
                .iter()
                .filter(|(id, _)| **id != own && *id.node_id != *own.node_id)
                .map(|(id, state)| (id.clone(), state.clone()))
                .collect();
            (states, chitchat.live_nodes().cloned().collect())
        };
        // Per node, its newest generation that proves itself (a verified `node` value): a
        // stranger announcing a higher generation under a real node's name cannot shadow it.
        let mut by_node: BTreeMap<Arc<str>, Vec<PeerView>> = BTreeMap::new();
        for (id, state) in &states {
            by_node
                .entry(id.node_id.clone())
                .or_default()
                .push(self.view(id, state, live.contains(id)));
        }
        let views: Vec<PeerView> = by_node
            .into_values()
            .map(|mut generations| {
                generations.sort_by_key(|view| std::cmp::Reverse(view.generation));
                let proven = generations
                    .iter()
                    .position(|view| view.problem.is_none() && view.info.is_some());
                generations.swap_remove(proven.unwrap_or(0))
            })
            .collect();
        let alive = views.iter().filter(|view| view.live).count();
        self.metrics.set_peers(alive, views.len() - alive);
        views
    }

    fn view(&self, id: &ChitchatId, state: &NodeState, live: bool) -> PeerView {
        let mut view = PeerView {
            node: id.node_id.to_string(),
            generation: id.generation_id,
            gossip_addr: id.gossip_advertise_addr,
            live,
            role: None,
            problem: None,
            info: None,
            acks: BTreeMap::new(),
            manifests: BTreeMap::new(),
            mode: None,
            stats: None,
            audit_head: None,
            quarantines: 0,
        };
        let peer = match self.certificate(id, state) {
            Ok(peer) => peer,
            Err(refusal) => {
                view.problem = Some(refusal.to_string());
                return view;
            }
        };
        view.role = Some(peer.role);
        for (name, value) in state.key_values() {
            let Some(key) = GossipKey::parse(name) else {
                continue;
            };
            if !key.is_sealed() {
                continue;
            }
            let version = state.get_versioned(name).map_or(0, |value| value.version);
            let Some(payload) = self.checked(id, &peer, &key, name, value, version) else {
                continue;
            };
            let parsed = match &key {
                GossipKey::Node => parse(&payload).map(|value| view.info = Some(value)),
                GossipKey::Stats => parse(&payload).map(|value| view.stats = Some(value)),
                GossipKey::Mode => parse(&payload).map(|value| view.mode = Some(value)),
                GossipKey::AuditHead => parse(&payload).map(|value| view.audit_head = Some(value)),
                GossipKey::Ack(kind) => parse(&payload).map(|stamp| {
                    view.acks.insert(*kind, stamp);
                }),
                GossipKey::Manifest(kind) => parse(&payload).map(|stamp| {
                    view.manifests.insert(*kind, stamp);
                }),
                GossipKey::Quarantine(_) => {
                    view.quarantines += 1;
                    Some(())
                }
                GossipKey::Cert => Some(()),
            };
            if parsed.is_none() {
                self.count_once(id, name, version, "malformed");
            }
        }
        view
    }

    fn certificate(&self, id: &ChitchatId, state: &NodeState) -> Result<PeerKey, Refusal> {
        let Some(pem) = state.get(&GossipKey::Cert.to_string()) else {
            return Err(Refusal::NoCertificate);
        };
        let mut certificates = self
            .certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let checked = certificates
            .entry((id.clone(), pem.to_string()))
            .or_insert_with(|| self.trust.certificate(&id.node_id, pem))
            .clone();
        drop(certificates);
        if let Err(refusal) = &checked {
            let version = state
                .get_versioned(&GossipKey::Cert.to_string())
                .map_or(0, |value| value.version);
            self.count_once(id, "cert", version, refusal.reason());
        }
        checked
    }

    /// The payload of a sealed value, verified once per version.
    fn checked(
        &self,
        id: &ChitchatId,
        peer: &PeerKey,
        key: &GossipKey,
        name: &str,
        value: &str,
        version: u64,
    ) -> Option<String> {
        let cache_key = (id.clone(), name.to_string());
        let cached = self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&cache_key)
            .filter(|(cached_version, _)| *cached_version == version)
            .map(|(_, checked)| checked.clone());
        let checked = cached.unwrap_or_else(|| {
            let checked = self
                .trust
                .open(peer, &id.node_id, key, value)
                .map(str::to_string)
                .map_err(|refusal| refusal.reason());
            self.values
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(cache_key, (version, checked.clone()));
            checked
        });
        match checked {
            Ok(payload) => Some(payload),
            Err(reason) => {
                self.count_once(id, name, version, reason);
                None
            }
        }
    }

    fn count_once(&self, id: &ChitchatId, key: &str, version: u64, reason: &'static str) {
        let first = self
            .counted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((id.clone(), key.to_string(), version));
        if first {
            tracing::warn!(peer = ?id, key, reason, "gossip value not believed");
            self.metrics.count_value_refused(reason);
        }
    }

    /// Leaves the cluster (the gossip task stops).
    pub fn shutdown(&self) {
        if let Err(error) = self.handle.initiate_shutdown() {
            tracing::warn!(%error, "gossip did not shut down cleanly");
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(payload: &str) -> Option<T> {
    serde_json::from_str(payload).ok()
}
