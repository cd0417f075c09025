//! Bundles through the controller: handing a signed bundle to the fleet (relayed as is, or
//! signed here from files an operator applies, optionally as a canary for chosen nodes), and
//! fetching the fleet's newest bundle of a kind.

use lazaret_core::bundle::{
    Bundle, BundleContent, BundleItem, BundleKind, BundleSigningKey, BundleStamp, SignedBundle,
};
use lazaret_fleet::caller::Caller;
use lazaret_proto::v1::{self, CanaryVerdict};
use tonic::{Code, Status};
use tracing::info;

use super::FleetApi;
use crate::agents::Agent;

impl FleetApi {
    /// Hands `bundle` to the first of `agents` that takes it. A refusal of the bundle itself
    /// ends the search (every agent would refuse it alike); an agent that cannot be reached is
    /// passed over.
    pub(super) async fn hand_over(
        &self,
        caller: &Caller,
        agents: &[Agent],
        bundle: Vec<u8>,
    ) -> Result<(Agent, v1::ApplyBundleResponse), Status> {
        let message = v1::ApplyBundleRequest { bundle };
        let mut failures = Vec::new();
        for agent in agents {
            let answer = self
                .agents
                .call(
                    agent,
                    caller,
                    message.clone(),
                    |mut client, request| async move { client.apply_bundle(request).await },
                )
                .await;
            match answer {
                Ok(applied) => {
                    info!(
                        node = agent.name,
                        actor = caller.actor(),
                        "bundle handed to an agent; gossip carries it on"
                    );
                    return Ok((agent.clone(), applied));
                }
                Err(status)
                    if matches!(
                        status.code(),
                        Code::InvalidArgument | Code::FailedPrecondition | Code::PermissionDenied
                    ) =>
                {
                    return Err(status);
                }
                Err(status) => failures.push(format!("{}: {}", agent.name, status.message())),
            }
        }
        Err(Status::unavailable(match agents.is_empty() {
            true => "no live agent to hand the bundle to".to_string(),
            false => format!("no agent took the bundle: {}", failures.join("; ")),
        }))
    }

    /// The highest stamp of `kind` the live agents ack, with the agents that ack it.
    async fn newest(&self, kind: BundleKind) -> Option<(BundleStamp, Vec<Agent>)> {
        let live = self.agents.live(None).await;
        let views = self.gossip.peers().await;
        let acked = |agent: &Agent| {
            views
                .iter()
                .find(|view| view.node == agent.name)
                .and_then(|view| view.acks.get(&kind).copied())
        };
        let best = live.iter().filter_map(acked).max()?;
        let holders = live
            .iter()
            .filter(|agent| acked(agent) == Some(best))
            .cloned()
            .collect();
        Some((best, holders))
    }

    /// `GetBundle`: the newest bundle of `kind`, fetched from an agent that holds it.
    pub(super) async fn fetch_newest(
        &self,
        kind: BundleKind,
    ) -> Result<v1::FleetGetBundleResponse, Status> {
        let Some((stamp, holders)) = self.newest(kind).await else {
            return Err(Status::not_found(format!(
                "no live agent holds a {kind} bundle"
            )));
        };
        let mut failures = Vec::new();
        for agent in holders {
            let message = v1::GetBundleRequest {
                kind: kind.to_string(),
                digest: stamp.digest.to_hex(),
            };
            let answer = self
                .agents
                .call(
                    &agent,
                    &self.me,
                    message,
                    |mut client, request| async move { client.get_bundle(request).await },
                )
                .await;
            match answer {
                Ok(response) => {
                    return Ok(v1::FleetGetBundleResponse {
                        node: agent.name,
                        bundle: response.bundle,
                    });
                }
                Err(status) => failures.push(format!("{}: {}", agent.name, status.message())),
            }
        }
        Err(Status::unavailable(format!(
            "no agent served {kind} {stamp}: {}",
            failures.join("; ")
        )))
    }

    /// The containers the fleet's policy `name` flags now, on every live agent (only `node`'s
    /// when set): each agent tests the fleet's policies bundle against its containers.
    pub(super) async fn flagged_by(
        &self,
        caller: &Caller,
        name: &str,
        node: &str,
    ) -> Result<(Vec<v1::NodeContainer>, Vec<v1::Unreachable>), Status> {
        let fetched = self.fetch_newest(BundleKind::Policies).await?;
        let signed = SignedBundle::parse(&fetched.bundle)
            .map_err(|error| Status::internal(format!("{}: {error}", fetched.node)))?;
        let bundle = signed.unverified();
        let known = match bundle.content() {
            Ok(BundleContent::Policies(set)) => {
                set.policies.iter().any(|policy| policy.name == name)
            }
            _ => false,
        };
        if !known {
            return Err(Status::not_found(format!(
                "no policy {name:?} in the fleet's policies v{} (`lazaretctl policy list`)",
                bundle.version
            )));
        }
        let files: Vec<v1::PolicyFile> = bundle
            .items
            .iter()
            .map(|item| v1::PolicyFile {
                name: item.name.clone(),
                text: item.content.clone(),
            })
            .collect();
        let agents = self
            .agents
            .live(Some(node).filter(|node| !node.is_empty()))
            .await;
        let (answered, unreachable) = self
            .agents
            .fan_out(
                &agents,
                caller,
                v1::TestPoliciesRequest { files },
                |mut client, request| async move { client.test_policies(request).await },
            )
            .await;
        let prefix = format!("{name}: ");
        let flagged = answered
            .into_iter()
            .flat_map(|(agent, response)| {
                let prefix = prefix.clone();
                response
                    .outcomes
                    .into_iter()
                    .filter(move |outcome| {
                        outcome
                            .violations
                            .iter()
                            .any(|why| why.starts_with(&prefix))
                    })
                    .map(move |outcome| v1::NodeContainer {
                        node: agent.name.clone(),
                        view: Some(v1::ContainerView {
                            container: Some(v1::Container {
                                id: outcome.container,
                                name: outcome.name,
                                ..v1::Container::default()
                            }),
                            quarantine: None,
                        }),
                    })
            })
            .collect();
        Ok((flagged, unreachable))
    }

    /// `ApplyPolicies` / `ApplyIndicators`: validated whole, signed as the next version (for
    /// `canary` nodes only, when named), handed to the fleet; with verdicts from each canary node
    /// for policies.
    pub(super) async fn apply_content(
        &self,
        caller: &Caller,
        kind: BundleKind,
        request: v1::ApplyContentRequest,
    ) -> Result<v1::ApplyContentResponse, Status> {
        let key = self.signing_key.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "the controller has no signing key (bundles.signing_key): sign offline with \
                 `lazaretctl bundle sign` and use `lazaretctl bundle apply`",
            )
        })?;
        if request.files.is_empty() {
            return Err(Status::invalid_argument(
                "files is empty: send the files to apply",
            ));
        }
        let live = self.agents.live(None).await;
        let targets: Vec<Agent> = match request.canary.is_empty() {
            true => live.clone(),
            false => {
                let unknown: Vec<&String> = request
                    .canary
                    .iter()
                    .filter(|node| !live.iter().any(|agent| &agent.name == *node))
                    .collect();
                if !unknown.is_empty() {
                    return Err(Status::invalid_argument(format!(
                        "canary nodes that are not live agents: {unknown:?} (see `lazaretctl nodes`)"
                    )));
                }
                live.iter()
                    .filter(|agent| request.canary.contains(&agent.name))
                    .cloned()
                    .collect()
            }
        };
        let version = self.next_version(kind).await?;
        let bytes = self.sign(key, kind, version, &request)?;
        let (agent, applied) = self.hand_over(caller, &targets, bytes).await?;
        self.state
            .put_last_signed(kind, version)
            .map_err(|error| Status::internal(format!("{error:#}")))?;
        let verdicts = match (kind, request.canary.is_empty()) {
            (BundleKind::Policies, false) => self.verdicts(caller, &targets, &request.files).await,
            _ => Vec::new(),
        };
        info!(%kind, version, canary = ?request.canary, actor = caller.actor(), "signed and handed to the fleet");
        Ok(v1::ApplyContentResponse {
            kind: kind.to_string(),
            version,
            digest: applied.digest,
            node: agent.name,
            canary: request.canary,
            verdicts,
        })
    }

    /// One more than anything signed here or acked anywhere.
    async fn next_version(&self, kind: BundleKind) -> Result<u64, Status> {
        let signed = self
            .state
            .last_signed(kind)
            .map_err(|error| Status::internal(format!("{error:#}")))?;
        let acked = self
            .gossip
            .peers()
            .await
            .iter()
            .filter_map(|view| view.acks.get(&kind).map(|stamp| stamp.version))
            .max()
            .unwrap_or(0);
        Ok(signed.max(acked) + 1)
    }

    fn sign(
        &self,
        key: &BundleSigningKey,
        kind: BundleKind,
        version: u64,
        request: &v1::ApplyContentRequest,
    ) -> Result<Vec<u8>, Status> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let items = request
            .files
            .iter()
            .map(|file| BundleItem {
                name: file.name.clone(),
                content: file.text.clone(),
            })
            .collect();
        let invalid = |error: String| Status::invalid_argument(error);
        let bundle = Bundle::new(
            kind,
            version,
            now,
            now + self.validity.as_secs(),
            items,
            key.id(),
        )
        .map_err(|error| invalid(error.to_string()))?
        .for_nodes(request.canary.clone());
        bundle.content().map_err(|errors| {
            invalid(format!(
                "the {kind} do not load, nothing applied:\n{errors}"
            ))
        })?;
        let signed = bundle
            .sign(key)
            .map_err(|error| invalid(error.to_string()))?;
        Ok(signed.to_file_bytes())
    }

    /// What `files` do on each of `agents` (`TestPolicies`).
    async fn verdicts(
        &self,
        caller: &Caller,
        agents: &[Agent],
        files: &[v1::PolicyFile],
    ) -> Vec<CanaryVerdict> {
        let message = v1::TestPoliciesRequest {
            files: files.to_vec(),
        };
        let (answered, unreachable) = self
            .agents
            .fan_out(agents, caller, message, |mut client, request| async move {
                client.test_policies(request).await
            })
            .await;
        let mut verdicts: Vec<CanaryVerdict> = answered
            .into_iter()
            .map(|(agent, response)| CanaryVerdict {
                node: agent.name,
                outcomes: response.outcomes,
                error: String::new(),
            })
            .collect();
        verdicts.extend(unreachable.into_iter().map(|silent| CanaryVerdict {
            node: silent.node,
            outcomes: Vec::new(),
            error: silent.error,
        }));
        verdicts
    }
}
