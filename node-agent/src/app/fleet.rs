//! Joining the fleet: gossip as this node (its API certificate seals its values), the
//! announcer of its status, and peer-to-peer bundle sync.

use std::sync::Arc;

use anyhow::Context;
use lazaret_core::gossip::NodeValue;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::TlsFiles;
use crate::bundles::BundleBook;
use crate::bundles::sync::{BundleSync, PeerFetcher};
use crate::config::AgentConfig;
use crate::enforce::engine::EnforcerHandle;
use crate::gossip::announce::Announcer;
use crate::gossip::identity::{NodeSigner, PeerTrust};
use crate::gossip::{Gossip, GossipSettings};
use crate::inventory::InventoryHandle;
use crate::metrics::FleetMetrics;
use crate::store::Store;

/// What gossip reads and acts on.
pub(super) struct Parts {
    pub store: Store,
    pub book: Arc<BundleBook>,
    pub enforcer: EnforcerHandle,
    pub inventory: InventoryHandle,
    pub metrics: FleetMetrics,
    /// Where the API is bound.
    pub api_addr: std::net::SocketAddr,
    /// Where the detections intake is bound, when it runs.
    pub detections_addr: Option<std::net::SocketAddr>,
}

/// Starts gossip, the announcer and bundle sync; they stop with `shutdown`.
pub(super) async fn start_gossip(
    config: &AgentConfig,
    tls: &TlsFiles,
    settings: &GossipSettings,
    parts: Parts,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<Gossip>> {
    let signer = NodeSigner::new(
        &settings.cluster,
        &config.node_name,
        String::from_utf8_lossy(&tls.cert).into_owned(),
        &tls.key,
    )?;
    let trust = PeerTrust::new(&settings.cluster, &tls.ca)?;
    let store = parts.store.clone();
    let generation = tokio::task::spawn_blocking(move || store.next_generation())
        .await
        .context("store task failed")?
        .context("cannot bump the gossip generation")?;
    let gossip = Arc::new(
        Gossip::start(
            settings,
            generation,
            signer,
            trust,
            parts.metrics.gossip,
            &config.node_name,
        )
        .await?,
    );
    info!(listen = %settings.listen, advertise = %settings.advertise, generation, seeds = ?settings.seeds, "gossip running");
    let mut runtimes = Vec::new();
    if config.docker_socket.is_some() {
        runtimes.push("docker".to_string());
    }
    if config.containerd.is_some() {
        runtimes.push("containerd".to_string());
    }
    tasks.spawn(crate::gossip::fleet_mode::follow(
        gossip.clone(),
        parts.enforcer.clone(),
        parts.store.clone(),
        settings.interval,
        shutdown.clone(),
    ));
    let announcer = Announcer {
        gossip: gossip.clone(),
        node: NodeValue {
            version: env!("CARGO_PKG_VERSION").into(),
            hostname: crate::config::host_name(),
            runtimes,
            grpc: advertised_api(parts.api_addr, settings),
            detections: parts.detections_addr.map(|address| address.to_string()),
        },
        book: parts.book.clone(),
        enforcer: parts.enforcer,
        inventory: parts.inventory,
        store: parts.store,
        interval: settings.interval.max(std::time::Duration::from_secs(1)),
    };
    tasks.spawn(announcer.run(shutdown.clone()));
    let sync = BundleSync {
        book: parts.book,
        gossip: gossip.clone(),
        fetcher: PeerFetcher::new(&tls.ca, &tls.cert, &tls.key),
        interval: settings.interval,
    };
    tasks.spawn(sync.run(shutdown.clone()));
    let leaving = gossip.clone();
    tasks.spawn(async move {
        shutdown.cancelled().await;
        leaving.shutdown();
    });
    Ok(gossip)
}

/// Where peers reach the API: its listen address, with the gossip-advertised host when the API
/// listens on every address.
fn advertised_api(bound: std::net::SocketAddr, settings: &GossipSettings) -> String {
    match bound.ip().is_unspecified() {
        true => std::net::SocketAddr::new(settings.advertise.ip(), bound.port()).to_string(),
        false => bound.to_string(),
    }
}
