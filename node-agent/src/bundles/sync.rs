//! Peer-to-peer bundle sync (DESIGN.md §3): when a live, verified peer acks (or the controller
//! offers) a bundle newer than the highest this node accepted, fetch it over gRPC `GetBundle`
//! from a peer that holds it, with this node's own certificate (role `node`), and offer it to the
//! [`BundleBook`] like any other. Gossip carries only stamps; a newcomer converges from peers
//! alone, with or without a controller.
//!
//! A peer whose bytes do not match the stamp it announced is skipped for the next holder; a
//! bundle the book refuses is not fetched again for [`REFUSED_BACKOFF`] (it is counted each time
//! it is refused).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lazaret_core::bundle::{BundleKind, BundleStamp, SignedBundle};
use lazaret_fleet::channels::Channels;
use lazaret_proto::v1::GetBundleRequest;
use lazaret_proto::v1::agent_service_client::AgentServiceClient;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{BundleBook, OfferError, Offered};
use crate::gossip::{Gossip, Offer};

/// How long a refused bundle is left alone.
pub const REFUSED_BACKOFF: Duration = Duration::from_secs(30);
/// The largest bundle accepted from a peer.
const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where bundle sync gets a peer's bundle bytes from.
pub trait FetchBundle: Send + Sync + 'static {
    /// The signed bytes of `peer`'s bundle `stamp` of `kind`, from its API at `address`.
    fn fetch(
        &self,
        peer: &str,
        address: &str,
        kind: BundleKind,
        stamp: BundleStamp,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, String>> + Send;
}

/// Fetches bundles from peers over mutual TLS, as this node.
pub struct PeerFetcher {
    channels: Channels,
}

impl PeerFetcher {
    /// With the fleet CA and this node's certificate and key (PEM).
    pub fn new(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> PeerFetcher {
        PeerFetcher {
            channels: Channels::new(ca_pem, cert_pem, key_pem, FETCH_TIMEOUT),
        }
    }
}

impl FetchBundle for PeerFetcher {
    /// Over gRPC `GetBundle`; the peer's certificate must name `peer`.
    async fn fetch(
        &self,
        peer: &str,
        address: &str,
        kind: BundleKind,
        stamp: BundleStamp,
    ) -> Result<Vec<u8>, String> {
        let channel = self.channels.get(peer, address).await?;
        let mut client =
            AgentServiceClient::new(channel).max_decoding_message_size(MAX_BUNDLE_BYTES);
        let mut request = tonic::Request::new(GetBundleRequest {
            kind: kind.to_string(),
            digest: stamp.digest.to_hex(),
        });
        request.set_timeout(FETCH_TIMEOUT);
        match client.get_bundle(request).await {
            Ok(response) => Ok(response.into_inner().bundle),
            Err(status) => {
                self.channels.forget(peer, address).await;
                Err(format!("{}: {}", status.code(), status.message()))
            }
        }
    }
}

/// The sync loop. See the module docs.
pub struct BundleSync<F> {
    pub book: Arc<BundleBook>,
    pub gossip: Arc<Gossip>,
    pub fetcher: F,
    /// How often peers' stamps are compared even without a gossip change.
    pub interval: Duration,
}

impl<F: FetchBundle> BundleSync<F> {
    pub async fn run(self, shutdown: CancellationToken) {
        let changed = self.gossip.changed();
        let mut refused: HashMap<BundleStamp, Instant> = HashMap::new();
        let mut round = 0usize;
        let mut alarmed = std::collections::HashSet::new();
        loop {
            refused.retain(|_, until| *until > Instant::now());
            self.stale_alarm(&mut alarmed);
            for kind in BundleKind::ALL {
                let offers = self
                    .gossip
                    .offers(kind, |stamp| {
                        !refused.contains_key(&stamp) && self.book.wants(kind, stamp)
                    })
                    .await;
                if let Some(stamp) = self.catch_up(kind, &offers, &refused, round).await {
                    refused.insert(stamp, Instant::now() + REFUSED_BACKOFF);
                }
            }
            round = round.wrapping_add(1);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = changed.notified() => {}
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// Logs an error once per bundle that is past its expiry (still enforced; the metric
    /// `lazaret_bundle_stale` stays 1 until a fresh one arrives).
    fn stale_alarm(&self, alarmed: &mut std::collections::HashSet<BundleStamp>) {
        let now = self.book.now_unix().max(0) as u64;
        for kind in BundleKind::ALL {
            let Some(held) = self.book.held(kind) else {
                continue;
            };
            if held.bundle.is_stale(now) && alarmed.insert(held.stamp) {
                tracing::error!(%kind, stamp = %held.stamp, expires = held.bundle.expires, "ALERT: the bundle in force is past its expiry; still enforced, publish a fresh one");
            }
        }
    }

    /// Fetches and offers the newest wanted bundle of `kind` that peers hold; the stamp to back
    /// off from when the book refused it.
    async fn catch_up(
        &self,
        kind: BundleKind,
        offers: &[Offer],
        refused: &HashMap<BundleStamp, Instant>,
        round: usize,
    ) -> Option<BundleStamp> {
        let best = offers
            .iter()
            .map(|offer| offer.stamp)
            .filter(|stamp| !refused.contains_key(stamp) && self.book.wants(kind, *stamp))
            .max()?;
        let holders: Vec<&Offer> = offers.iter().filter(|offer| offer.stamp == best).collect();
        // Spread fetches over the holders: start at a different one each round.
        for index in 0..holders.len() {
            let holder = holders[(index + round) % holders.len()];
            let bytes = match self
                .fetcher
                .fetch(&holder.node, &holder.grpc, kind, best)
                .await
            {
                Ok(bytes) => bytes,
                Err(error) => {
                    debug!(peer = %holder.node, %kind, stamp = %best, %error, "bundle fetch failed; trying another holder");
                    continue;
                }
            };
            let signed = SignedBundle::parse(&bytes);
            if !signed.as_ref().is_ok_and(|signed| signed.stamp() == best) {
                warn!(peer = %holder.node, %kind, stamp = %best, "a peer served bytes that do not match the bundle it acks");
                continue;
            }
            return match self
                .book
                .offer_parsed(signed, bytes, &format!("peer {}", holder.node), false)
                .await
            {
                Ok(Offered::Applied { stamp, .. }) => {
                    info!(%kind, %stamp, peer = %holder.node, "bundle synced from a peer");
                    None
                }
                Ok(Offered::AlreadyHave { .. }) | Err(OfferError::Older { .. }) => None,
                Err(_) => Some(best),
            };
        }
        None
    }
}
