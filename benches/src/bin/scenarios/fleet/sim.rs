//! Scenario (6), simulated: fleet convergence at sizes that one 2-core machine cannot run on the
//! real clock (chitchat's work grows with the square of the fleet: every message carries a digest
//! of every node). Each node runs the agent's own gossip ([`Gossip`]: sealed values, certificate
//! and seal checks), bundle book and bundle sync; what is simulated is the clock and the wires:
//!
//! - all nodes share one current-thread runtime whose clock is paused: it jumps to the next timer
//!   only when every node is waiting, so no node is slowed by its neighbours' CPU (Serf's
//!   convergence model, which the goals quote, makes the same assumption);
//! - nodes start spread over one gossip interval (their rounds are not in lockstep);
//! - gossip rides chitchat's in-memory transport (messages are still serialized and compressed,
//!   and refused above a UDP datagram's payload);
//! - a bundle fetch reads the holder's book directly after [`FETCH_LATENCY`] (a `GetBundle` with a
//!   fresh mTLS connection on a LAN).
//!
//! Nodes do not enforce (no runtime, no engine): an ack means verified, stored and held. The real
//! clock's rows (processes, in-process agents) measure the rest.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use chitchat::transport::ChannelTransport;
use lazaret_agent::bundles::BundleBook;
use lazaret_agent::bundles::sync::{BundleSync, FetchBundle};
use lazaret_agent::gossip::announce::publish_acks;
use lazaret_agent::gossip::identity::{NodeSigner, PeerTrust};
use lazaret_agent::gossip::{Gossip, GossipIdentity, GossipSettings};
use lazaret_agent::metrics::Metrics;
use lazaret_agent::store::{Durability, Store};
use lazaret_benches::Measurement;
use lazaret_core::bundle::{BundleKind, BundleStamp};
use lazaret_core::gossip::{GossipKey, NodeValue};
use lazaretctl::{pki, signing};
use tokio_util::sync::CancellationToken;

use super::{Args, Fleet, INTERVAL_MS, Observer, goal, measurement, policies_dir};

/// What one bundle fetch costs in simulated time.
const FETCH_LATENCY: Duration = Duration::from_millis(10);
const CLUSTER: &str = "lazaret";

/// Convergence of `count` simulated nodes (see the module docs). Runs on its own thread: the
/// simulated clock needs a runtime of its own.
pub fn simulated(args: &Args, count: usize) -> anyhow::Result<Measurement> {
    let rounds = args.fleet_rounds;
    let started = std::time::Instant::now();
    let (samples, cpu) = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()?;
        let cpu_before = super::cpu_seconds(std::process::id());
        let samples = runtime.block_on(converge(count, rounds))?;
        Ok::<_, anyhow::Error>((samples, super::cpu_seconds(std::process::id()) - cpu_before))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the simulation panicked"))??;
    measurement(
        format!(
            "bundle applied -> acked by all {count} simulated nodes (200 ms gossip, simulated clock)"
        ),
        goal(count),
        &samples,
        format!(
            "{cpu:.0} CPU seconds for {:.0} s of wall time (formation and {rounds} rounds)",
            started.elapsed().as_secs_f64()
        ),
    )
}

/// Bundle holders by API address: the simulated `GetBundle`.
#[derive(Clone, Default)]
struct Books(Arc<RwLock<HashMap<String, Arc<BundleBook>>>>);

impl FetchBundle for Books {
    async fn fetch(
        &self,
        peer: &str,
        address: &str,
        kind: BundleKind,
        stamp: BundleStamp,
    ) -> Result<Vec<u8>, String> {
        tokio::time::sleep(FETCH_LATENCY).await;
        let book = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(address)
            .cloned();
        book.and_then(|book| book.get(kind, stamp.digest))
            .map(|bytes| bytes.to_vec())
            .ok_or_else(|| format!("{peer} does not hold {kind} {stamp}"))
    }
}

/// Forms the fleet, then applies `rounds` bundles to node 1; the simulated time each took to be
/// acked by all.
async fn converge(count: usize, rounds: usize) -> anyhow::Result<Vec<Duration>> {
    let fleet = Fleet::new_simulated(count)?;
    // Messages are refused above a UDP datagram's payload, as on the real wire.
    let transport = ChannelTransport::with_mtu(65_507);
    let books = Books::default();
    let shutdown = CancellationToken::new();
    let trusted = signing::read_trusted(std::slice::from_ref(&fleet.trusted_key))?;
    let mut first = None;
    for index in 0..count {
        // Nodes start spread over one interval, so their gossip rounds are not in lockstep.
        tokio::time::sleep(Duration::from_millis(INTERVAL_MS) / count as u32).await;
        let book = start_node(&fleet, index, &transport, &books, &trusted, &shutdown)
            .await
            .with_context(|| format!("simulated node {}", index + 1))?;
        first.get_or_insert(book);
    }
    let first = first.context("an empty fleet")?;
    let observer_address: SocketAddr = ([10, 255, 255, 254], 7946).into();
    let observer = Observer::join_over(fleet.seeds(), observer_address, &transport).await?;
    observer.wait_formed(count).await?;
    let nodes = fleet.node_names();
    let mut samples = Vec::new();
    for round in 1..=rounds as u64 {
        let (bytes, stamp) =
            fleet.sign(BundleKind::Policies, &policies_dir(&fleet, round)?, round)?;
        let started = tokio::time::Instant::now();
        first
            .offer(bytes, "admin", true)
            .await
            .context("node 1 refused the bundle")?;
        observer
            .wait_all(&nodes, BundleKind::Policies, stamp)
            .await?;
        samples.push(started.elapsed());
    }
    shutdown.cancel();
    Ok(samples)
}

/// Node `index`: its store, bundle book, gossip, ack publisher and bundle sync.
async fn start_node(
    fleet: &Fleet,
    index: usize,
    transport: &ChannelTransport,
    books: &Books,
    trusted: &lazaret_core::bundle::TrustedKeys,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<BundleBook>> {
    let (node, api, gossip_address) = &fleet.nodes[index];
    let (cert, key) = pki::cert_paths(&fleet.pki_dir, node);
    let ca = std::fs::read(fleet.pki_dir.join("ca.pem"))?;
    let cert = std::fs::read_to_string(cert)?;
    let signer = NodeSigner::new(CLUSTER, node, cert, &std::fs::read(key)?)?;
    let metrics = Metrics::new().fleet;
    let store = Store::open(&fleet.dir.path().join(node), Durability::Process)?;
    let book = Arc::new(BundleBook::open(
        node,
        trusted.clone(),
        store,
        metrics.clone(),
    )?);
    books
        .0
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(api.clone(), book.clone());
    let listen: SocketAddr = gossip_address.parse()?;
    let settings = GossipSettings {
        cluster: CLUSTER.into(),
        listen,
        advertise: listen,
        seeds: fleet
            .seeds()
            .into_iter()
            .filter(|seed| seed != gossip_address)
            .collect(),
        interval: Duration::from_millis(INTERVAL_MS),
    };
    let identity = GossipIdentity {
        generation: 1,
        signer,
        trust: PeerTrust::new(CLUSTER, &ca)?,
        metrics: metrics.gossip.clone(),
        node,
    };
    let gossip = Arc::new(Gossip::start_over(&settings, identity, transport).await?);
    let value = NodeValue {
        version: env!("CARGO_PKG_VERSION").into(),
        hostname: node.clone(),
        runtimes: Vec::new(),
        grpc: api.clone(),
        detections: None,
    };
    gossip.publish(&GossipKey::Node, &value).await?;
    tokio::spawn(acks(gossip.clone(), book.clone(), shutdown.clone()));
    let sync = BundleSync {
        book: book.clone(),
        gossip: gossip.clone(),
        fetcher: books.clone(),
        interval: settings.interval,
    };
    tokio::spawn(sync.run(shutdown.clone()));
    Ok(book)
}

/// Publishes the node's acks whenever its book changes (the agent's announcer does this too).
async fn acks(gossip: Arc<Gossip>, book: Arc<BundleBook>, shutdown: CancellationToken) {
    let mut changes = book.acks();
    loop {
        publish_acks(&gossip, &book).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = changes.changed() => if changed.is_err() { break },
        }
    }
    gossip.shutdown();
}
