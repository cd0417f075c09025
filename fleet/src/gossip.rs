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
//! the agent's bundle sync fetches content over gRPC.

pub mod identity;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use chitchat::transport::{Transport, UdpTransport};
use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ListenerHandle, NodeState,
    spawn_chitchat,
};
use lazaret_core::bundle::{BundleKind, BundleStamp};
use lazaret_core::gossip::{
    self, AuditHeadValue, FleetModeValue, GossipKey, ModeValue, NodeValue, Slot, StatsValue,
    ValueTooLarge,
};
use lazaret_core::quarantine::QuarantineRecord;
use lazaret_core::roles::Role;
use serde::Serialize;
use tokio::sync::Notify;

use self::identity::{NodeSigner, PeerKey, PeerTrust, Refusal};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    state: &'static str,
}

/// Gossip's own metrics: peers by state, and values not believed.
#[derive(Clone, Default)]
pub struct GossipMetrics {
    values_refused: Family<ReasonLabels, Counter>,
    peers: Family<PeerLabels, Gauge>,
}

impl GossipMetrics {
    /// New metrics, registered in `registry` (which carries the `lazaret` prefix).
    pub fn register(registry: &mut Registry) -> GossipMetrics {
        let metrics = GossipMetrics::default();
        registry.register(
            "gossip_values_refused",
            "Peers' gossip values not believed, by reason (bad-seal, unsealed, bad-certificate, no-certificate); each value counted once",
            metrics.values_refused.clone(),
        );
        registry.register(
            "gossip_peers",
            "Peers known over gossip, by state (live, dead)",
            metrics.peers.clone(),
        );
        metrics
    }

    fn count_value_refused(&self, reason: &'static str) {
        self.values_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    fn set_peers(&self, live: usize, dead: usize) {
        for (state, count) in [("live", live), ("dead", dead)] {
            self.peers
                .get_or_create(&PeerLabels { state })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
}

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
    /// The fleet-wide switch it publishes (controllers only; others' are refused and counted).
    pub fleet_mode: Option<FleetModeValue>,
    /// Containers it has in quarantine (`q:*` keys).
    pub quarantines: usize,
    /// Those quarantines' summaries (reasons cut short), as it gossips them.
    pub quarantine_summaries: Vec<QuarantineRecord>,
}

/// A bundle a live, verified peer holds (its ack) or offers (a manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub node: String,
    pub generation: u64,
    /// Its API address.
    pub grpc: String,
    pub stamp: BundleStamp,
}

/// Who this node is in gossip: its name, generation, key and trust (see [`Gossip::start_over`]).
pub struct GossipIdentity<'a> {
    pub generation: u64,
    pub signer: NodeSigner,
    pub trust: PeerTrust,
    pub metrics: GossipMetrics,
    pub node: &'a str,
}

/// A verified (or refused) value, cached per version so each is checked once.
type Checked = Result<String, &'static str>;

/// This node's gossip. See the module docs.
pub struct Gossip {
    handle: ChitchatHandle,
    node: String,
    signer: NodeSigner,
    trust: PeerTrust,
    metrics: GossipMetrics,
    /// Payloads this node last published, by key: a seal differs every time, so an unchanged
    /// payload must not be sealed and set again (it would bump the version for nothing).
    published: tokio::sync::Mutex<HashMap<String, String>>,
    /// Peers' certificates checked, by node (id and generation) and the `cert` value's version.
    certificates: Mutex<HashMap<(ChitchatId, u64), Result<PeerKey, Refusal>>>,
    /// Peers' values checked, by (node, key) → (version, outcome).
    values: Mutex<HashMap<(ChitchatId, String), (u64, Checked)>>,
    /// The version last counted as refused, per (node, key): one entry per key, however many
    /// forged versions arrive.
    counted: Mutex<HashMap<(ChitchatId, String), u64>>,
    changed: Arc<Notify>,
    _listeners: [ListenerHandle; 2],
}

impl Gossip {
    /// Joins the cluster as `generation` of this node over UDP; publishes its certificate.
    pub async fn start(
        settings: &GossipSettings,
        generation: u64,
        signer: NodeSigner,
        trust: PeerTrust,
        metrics: GossipMetrics,
        node: &str,
    ) -> anyhow::Result<Gossip> {
        let identity = GossipIdentity {
            generation,
            signer,
            trust,
            metrics,
            node,
        };
        Gossip::start_over(settings, identity, &UdpTransport).await
    }

    /// [`Self::start`] over any chitchat transport (the fleet simulation passes an in-memory
    /// one).
    pub async fn start_over(
        settings: &GossipSettings,
        identity: GossipIdentity<'_>,
        transport: &dyn Transport,
    ) -> anyhow::Result<Gossip> {
        let GossipIdentity {
            generation,
            signer,
            trust,
            metrics,
            node,
        } = identity;
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
            // Compressed digests: V0 sends ~5x the bytes (76 vs 14 KB/s per node at 50 nodes and
            // 200 ms) for no CPU saved (benches/README.md).
            protocol_version: chitchat::ProtocolVersion::V1,
        };
        let certificate = gossip::checked_value(&GossipKey::Cert, signer.certificate_pem().into())?;
        let handle = spawn_chitchat(
            config,
            vec![(GossipKey::Cert.to_string(), certificate)],
            transport,
        )
        .await
        .with_context(|| format!("cannot start gossip on {}", settings.listen))?;
        // Only what bundle sync acts on wakes it: acks and manifests, not every status change.
        let changed = Arc::new(Notify::new());
        let listeners = {
            let chitchat = handle.chitchat();
            let chitchat = chitchat.lock().await;
            ["ack:", "manifest:"].map(|prefix| {
                let notify = changed.clone();
                chitchat.subscribe_event(prefix, move |_event| notify.notify_one())
            })
        };
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
            _listeners: listeners,
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn generation(&self) -> u64 {
        self.handle.chitchat_id().generation_id
    }

    /// Woken whenever a peer's ack or manifest changes.
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
        let generation = self.generation();
        let chitchat = self.handle.chitchat();
        let mut chitchat = chitchat.lock().await;
        let state = chitchat.self_node_state();
        // chitchat gives this write the node's next version: seal for exactly that slot.
        let slot = Slot {
            generation,
            version: state.max_version() + 1,
        };
        let sealed = gossip::checked_value(key, self.signer.seal(key, slot, &payload))?;
        state.set(name.clone(), sealed);
        debug_assert_eq!(
            state.get_versioned(&name).map(|value| value.version),
            Some(slot.version)
        );
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

    /// Every peer's newest generation, with what it says that verified. Built under the
    /// chitchat lock without copying node states (each value's seal is checked once per version
    /// and cached, so this is cheap after the first look).
    pub async fn peers(&self) -> Vec<PeerView> {
        // Per node, its newest generation that proves itself (a verified `node` value): a
        // stranger announcing a higher generation under a real node's name cannot shadow it.
        let mut by_node: BTreeMap<Arc<str>, Vec<PeerView>> = BTreeMap::new();
        {
            let chitchat = self.handle.chitchat();
            let chitchat = chitchat.lock().await;
            let own = chitchat.self_chitchat_id().clone();
            let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
            for (id, state) in chitchat.node_states() {
                if id.node_id == own.node_id {
                    continue;
                }
                by_node
                    .entry(id.node_id.clone())
                    .or_default()
                    .push(self.view(id, state, live.contains(id)));
            }
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

    /// What live, verified peers offer of `kind` (their `ack:KIND` and `manifest:KIND`), with
    /// their API address: what bundle sync needs, without building whole [`PeerView`]s (it runs
    /// at every ack anywhere in the fleet).
    /// Only stamps `wanted` accepts are verified: in a converged fleet nearly every ack equals
    /// this node's own, and skipping those costs no signature check.
    pub async fn offers(
        &self,
        kind: BundleKind,
        wanted: impl Fn(BundleStamp) -> bool,
    ) -> Vec<Offer> {
        let keys = [GossipKey::Ack(kind), GossipKey::Manifest(kind)];
        let names = keys.each_ref().map(ToString::to_string);
        let chitchat = self.handle.chitchat();
        let chitchat = chitchat.lock().await;
        let own = chitchat.self_chitchat_id().node_id.clone();
        let mut offers = Vec::new();
        for id in chitchat.live_nodes() {
            if id.node_id == own {
                continue;
            }
            let Some(state) = chitchat.node_state(id) else {
                continue;
            };
            let offered: Vec<(&GossipKey, &str)> = keys
                .iter()
                .zip(&names)
                .filter_map(|(key, name)| Some((key, state.get(name)?)))
                .filter(|(_, value)| {
                    gossip::open(value)
                        .and_then(|(_, payload)| parse::<BundleStamp>(payload))
                        .is_some_and(&wanted)
                })
                .collect();
            if offered.is_empty() {
                continue;
            }
            let Ok(peer) = self.certificate(id, state) else {
                continue;
            };
            let node_name = GossipKey::Node.to_string();
            let grpc = state
                .get(&node_name)
                .and_then(|value| {
                    let version = state.get_versioned(&node_name)?.version;
                    self.checked(id, &peer, &GossipKey::Node, &node_name, value, version)
                })
                .and_then(|payload| parse::<NodeValue>(&payload))
                .map(|node| node.grpc);
            let Some(grpc) = grpc else {
                continue;
            };
            for (key, value) in offered {
                let name = key.to_string();
                let version = state.get_versioned(&name).map_or(0, |value| value.version);
                if let Some(stamp) = self
                    .checked(id, &peer, key, &name, value, version)
                    .and_then(|payload| parse::<BundleStamp>(&payload))
                {
                    offers.push(Offer {
                        node: id.node_id.to_string(),
                        generation: id.generation_id,
                        grpc: grpc.clone(),
                        stamp,
                    });
                }
            }
        }
        offers
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
            fleet_mode: None,
            quarantines: 0,
            quarantine_summaries: Vec::new(),
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
                GossipKey::Quarantine(_) => parse(&payload).map(|record| {
                    view.quarantines += 1;
                    view.quarantine_summaries.push(record);
                }),
                GossipKey::FleetMode if peer.role != Role::Controller => {
                    self.count_once(id, name, version, "not-controller");
                    continue;
                }
                GossipKey::FleetMode => parse(&payload).map(|value| view.fleet_mode = Some(value)),
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
        let version = state
            .get_versioned(&GossipKey::Cert.to_string())
            .map_or(0, |value| value.version);
        let mut certificates = self
            .certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let checked = certificates
            .entry((id.clone(), version))
            .or_insert_with(|| self.trust.certificate(&id.node_id, pem))
            .clone();
        drop(certificates);
        if let Err(refusal) = &checked {
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
            let slot = Slot {
                generation: id.generation_id,
                version,
            };
            let checked = self
                .trust
                .open(peer, &id.node_id, slot, key, value)
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
            .insert((id.clone(), key.to_string()), version)
            != Some(version);
        if first {
            tracing::warn!(peer = ?id, key, reason, "gossip value not believed");
            self.metrics.count_value_refused(reason);
        }
    }

    /// The newest fleet-wide switch any controller publishes (live or not: a switch outlives the
    /// controller that made it).
    pub async fn fleet_mode(&self) -> Option<FleetModeValue> {
        self.peers()
            .await
            .into_iter()
            .filter_map(|view| view.fleet_mode)
            .max_by_key(|mode| mode.since_unix_ms)
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
