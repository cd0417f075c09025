//! The bundle RPCs of `AgentService`: `GetBundle` (peers sync from it), `ApplyBundle` (an
//! admin or the controller hands in a signed bundle) and `BundleStatus` (this node's bundles and
//! its view of every peer). The trait impl in `service.rs` delegates here.

use std::str::FromStr;

use lazaret_core::bundle::{BundleDigest, BundleKind};
use lazaret_core::roles::Operation;
use lazaret_proto::v1;
use tonic::{Request, Response, Status};

use super::identity::Caller;
use super::service::AgentApi;
use crate::bundles::{OfferError, Offered};

impl AgentApi {
    pub(super) async fn serve_get_bundle(
        &self,
        request: Request<v1::GetBundleRequest>,
    ) -> Result<Response<v1::GetBundleResponse>, Status> {
        Caller::of(&request)?.authorize(Operation::GetBundle)?;
        let asked = request.into_inner();
        let kind = BundleKind::from_str(&asked.kind).map_err(Status::invalid_argument)?;
        let digest = BundleDigest::from_str(&asked.digest).map_err(Status::invalid_argument)?;
        let book = self.book()?;
        match book.get(kind, digest) {
            Some(bytes) => Ok(Response::new(v1::GetBundleResponse {
                bundle: bytes.to_vec(),
            })),
            None => Err(Status::not_found(format!(
                "node {} does not hold {kind} bundle {}{}",
                self.node(),
                digest.short(),
                book.held(kind)
                    .map(|held| format!(" (it holds {})", held.stamp))
                    .unwrap_or_default()
            ))),
        }
    }

    pub(super) async fn serve_apply_bundle(
        &self,
        request: Request<v1::ApplyBundleRequest>,
    ) -> Result<Response<v1::ApplyBundleResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(Operation::ApplyBundle)?;
        let bytes = request.into_inner().bundle;
        let offered = self
            .book()?
            .offer(bytes, &caller.actor(), true)
            .await
            .map_err(|error| match error {
                OfferError::Older { .. } | OfferError::NotForThisNode { .. } => {
                    Status::failed_precondition(error.to_string())
                }
                OfferError::Refused(_) | OfferError::Invalid { .. } => {
                    Status::invalid_argument(error.to_string())
                }
                OfferError::Store(_) | OfferError::Internal(_) => {
                    Status::internal(error.to_string())
                }
            })?;
        let response = match offered {
            Offered::Applied {
                kind,
                stamp,
                previous,
                conflict,
            } => v1::ApplyBundleResponse {
                kind: kind.to_string(),
                version: stamp.version,
                digest: stamp.digest.to_hex(),
                outcome: "applied".into(),
                previous_version: previous.map_or(0, |stamp| stamp.version),
                previous_digest: previous.map_or(String::new(), |stamp| stamp.digest.to_hex()),
                conflict,
            },
            Offered::AlreadyHave { kind, stamp } => v1::ApplyBundleResponse {
                kind: kind.to_string(),
                version: stamp.version,
                digest: stamp.digest.to_hex(),
                outcome: "already-in-force".into(),
                previous_version: stamp.version,
                previous_digest: stamp.digest.to_hex(),
                conflict: false,
            },
        };
        Ok(Response::new(response))
    }

    pub(super) async fn serve_bundle_status(
        &self,
        request: Request<v1::BundleStatusRequest>,
    ) -> Result<Response<v1::BundleStatusResponse>, Status> {
        Caller::of(&request)?.authorize(Operation::Read)?;
        let book = self.book()?;
        let now = book.now_unix();
        let bundles = BundleKind::ALL
            .into_iter()
            .filter_map(|kind| book.held(kind))
            .map(|held| v1::BundleInForce {
                kind: held.bundle.kind.to_string(),
                version: held.stamp.version,
                digest: held.stamp.digest.to_hex(),
                created_unix: held.bundle.created as i64,
                expires_unix: held.bundle.expires as i64,
                stale: held.bundle.is_stale(now.max(0) as u64),
                signer: held.bundle.signer.to_string(),
                from: held.from.clone(),
                items: held.bundle.items.len() as u32,
            })
            .collect();
        let (generation, peers) = match self.gossip() {
            Some(gossip) => (gossip.generation(), gossip.peers().await),
            None => (0, Vec::new()),
        };
        let peers = peers
            .into_iter()
            .map(|peer| v1::PeerStatus {
                grpc: peer
                    .info
                    .as_ref()
                    .map(|info| info.grpc.clone())
                    .unwrap_or_default(),
                acks: peer.acks.iter().map(v1::PeerBundle::from).collect(),
                audit_only: peer.mode.is_some_and(|mode| mode.audit_only),
                containers: peer.stats.as_ref().map_or(0, |stats| stats.containers),
                quarantined: peer.stats.as_ref().map_or(0, |stats| stats.quarantined),
                audit_sequence: peer.audit_head.as_ref().map_or(0, |head| head.sequence),
                gossip: peer.gossip_addr.to_string(),
                role: peer.role.map(|role| role.to_string()).unwrap_or_default(),
                problem: peer.problem.unwrap_or_default(),
                live: peer.live,
                generation: peer.generation,
                node: peer.node,
            })
            .collect();
        Ok(Response::new(v1::BundleStatusResponse {
            node: self.node().to_string(),
            generation,
            gossip: self.gossip().is_some(),
            bundles,
            peers,
            trusted_keys: book.trusted_key_ids(),
        }))
    }
}
