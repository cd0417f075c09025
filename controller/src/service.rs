//! `lazaret.v1.FleetService` (proto/lazaret/v1/fleet.proto). Every call authenticates the caller
//! from its certificate and checks the one roles table (`lazaret_core::roles`), as the agents do;
//! what touches containers is forwarded to the owning agents with the caller's identity, and the
//! agents check it again. Fleet-wide answers list every agent that did not answer.

mod audit;
mod bundles;
pub mod targets;

use std::sync::Arc;

use lazaret_core::bundle::BundleKind;
use lazaret_core::gossip::FleetModeValue;
use lazaret_core::roles::{Operation, Role};
use lazaret_fleet::caller::Caller;
use lazaret_fleet::gossip::{Gossip, PeerView};
use lazaret_proto::v1::fleet_service_server::FleetService;
use lazaret_proto::v1::{self, NodeContainer, NodeOutcome, Unreachable};
use tonic::{Code, Request, Response, Status};

use crate::agents::{Agent, Agents};
use crate::state::State;

/// The service. See the module docs.
pub struct FleetApi {
    /// The controller's own name (the actor of the fleet-wide switch, with the operator's).
    pub name: String,
    pub gossip: Arc<Gossip>,
    pub agents: Arc<Agents>,
    pub state: State,
    /// The controller acting as itself (fetching bundles for readers).
    pub me: Caller,
    /// What it signs `ApplyPolicies` / `ApplyIndicators` with, when it does.
    pub signing_key: Option<lazaret_core::bundle::BundleSigningKey>,
    /// How long what it signs stays fresh.
    pub validity: std::time::Duration,
}

fn required(field: &str, value: &str) -> Result<String, Status> {
    match value.trim() {
        "" => Err(Status::invalid_argument(format!(
            "{field} is required: say why, it goes into the audit trail"
        ))),
        value => Ok(value.to_string()),
    }
}

fn internal(error: anyhow::Error) -> Status {
    Status::internal(format!("{error:#}"))
}

impl FleetApi {
    fn node_status(&self, view: PeerView) -> v1::NodeStatus {
        let audit_problem = self
            .state
            .anchor(&view.node)
            .ok()
            .flatten()
            .and_then(|anchor| anchor.problem)
            .unwrap_or_default();
        let info = view
            .info
            .unwrap_or_else(|| lazaret_core::gossip::NodeValue {
                version: String::new(),
                hostname: String::new(),
                runtimes: Vec::new(),
                grpc: String::new(),
                detections: None,
            });
        let stats = view.stats.unwrap_or(lazaret_core::gossip::StatsValue {
            containers: 0,
            quarantined: 0,
        });
        v1::NodeStatus {
            status: if view.live { "live" } else { "dead" }.into(),
            role: view.role.map(|role| role.to_string()).unwrap_or_default(),
            grpc: info.grpc,
            detections: info.detections.unwrap_or_default(),
            version: info.version,
            generation: view.generation,
            acks: view.acks.iter().map(v1::PeerBundle::from).collect(),
            audit_only: view.mode.is_some_and(|mode| mode.audit_only),
            containers: stats.containers,
            quarantined: stats.quarantined,
            audit_sequence: view.audit_head.map_or(0, |head| head.sequence),
            audit_problem,
            problem: view.problem.unwrap_or_default(),
            name: view.node,
        }
    }

    /// Every container of the live agents (only `node`'s when set), and who did not answer.
    async fn containers(
        &self,
        caller: &Caller,
        node: &str,
        quarantined: bool,
    ) -> (Vec<NodeContainer>, Vec<Unreachable>) {
        let agents = self
            .agents
            .live(Some(node).filter(|node| !node.is_empty()))
            .await;
        let request = v1::ListContainersRequest {
            quarantined,
            with_findings: false,
        };
        let (answered, unreachable) = self
            .agents
            .fan_out(&agents, caller, request, |mut client, request| async move {
                client.list_containers(request).await
            })
            .await;
        let (mut unreachable, mut containers) = (unreachable, Vec::new());
        for (agent, response) in answered {
            if !response.unlisted_runtimes.is_empty() {
                // It answered, but without some of its containers: said like a silent agent.
                unreachable.push(Unreachable {
                    node: agent.name.clone(),
                    error: format!(
                        "{}: answered without its {} containers, not listed yet (the agent \
                         started moments ago); try again in a few seconds",
                        Code::Unavailable,
                        response.unlisted_runtimes.join(", ")
                    ),
                });
            }
            containers.extend(response.containers.into_iter().map(|view| NodeContainer {
                node: agent.name.clone(),
                view: Some(view),
            }));
        }
        (containers, unreachable)
    }

    /// The containers `target` names, and the agents that did not answer while looking. For a
    /// quarantine, `policy` means the containers that policy flags now; for a release, the
    /// quarantines it caused.
    async fn select(
        &self,
        caller: &Caller,
        target: Option<v1::FleetTarget>,
        quarantine: bool,
    ) -> Result<(Vec<NodeContainer>, Vec<Unreachable>), Status> {
        let target = target.unwrap_or_default();
        if quarantine && !target.policy.trim().is_empty() {
            let also_set = [&target.target, &target.selector]
                .iter()
                .any(|text| !text.trim().is_empty());
            if also_set {
                return Err(Status::invalid_argument(
                    "name exactly one of: a container (id, id prefix or name), --selector, --policy",
                ));
            }
            return self
                .flagged_by(caller, target.policy.trim(), &target.node)
                .await;
        }
        let (all, unreachable) = self.containers(caller, &target.node, false).await;
        match targets::pick(all, &target) {
            Err(status) if status.code() == Code::NotFound && !unreachable.is_empty() => {
                Err(targets::not_found_yet(&status, &unreachable))
            }
            picked => Ok((picked?, unreachable)),
        }
    }

    /// Runs `act` on every selected container, each on its agent.
    async fn act<F, Fut>(
        &self,
        (picked, mut unreachable): (Vec<NodeContainer>, Vec<Unreachable>),
        act: F,
    ) -> Result<v1::FleetActionResponse, Status>
    where
        F: Fn(Agent, String) -> Fut,
        Fut: std::future::Future<Output = Result<Option<v1::QuarantineRecord>, Status>>,
    {
        let live = self.agents.live(None).await;
        let mut outcomes = Vec::new();
        for container in picked {
            let id = container
                .view
                .and_then(|view| view.container)
                .map(|inner| inner.id)
                .unwrap_or_default();
            let Some(agent) = live.iter().find(|agent| agent.name == container.node) else {
                unreachable.push(Unreachable {
                    node: container.node,
                    error: "no longer live".into(),
                });
                continue;
            };
            let agent = agent.clone();
            let outcome = act(agent, id.clone()).await;
            outcomes.push(NodeOutcome {
                node: container.node,
                container: id,
                error: outcome
                    .as_ref()
                    .err()
                    .map(|status| format!("{}: {}", status.code(), status.message()))
                    .unwrap_or_default(),
                record: outcome.ok().flatten(),
            });
        }
        Ok(v1::FleetActionResponse {
            outcomes,
            unreachable,
        })
    }
}

#[tonic::async_trait]
impl FleetService for FleetApi {
    async fn list_nodes(
        &self,
        request: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        Caller::of(&request)?.authorize(Operation::Read)?;
        let mut nodes: Vec<v1::NodeStatus> = self
            .gossip
            .peers()
            .await
            .into_iter()
            .map(|view| self.node_status(view))
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let fleet_mode = match self.state.fleet_mode().map_err(internal)? {
            Some(mode) if mode.audit_only => "audit-only",
            Some(_) => "enforce",
            None => "",
        };
        Ok(Response::new(v1::ListNodesResponse {
            nodes,
            fleet_mode: fleet_mode.into(),
        }))
    }

    async fn list_containers(
        &self,
        request: Request<v1::FleetListContainersRequest>,
    ) -> Result<Response<v1::FleetListContainersResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(Operation::Read)?;
        let asked = request.into_inner().filter.unwrap_or_default();
        let filter = targets::Filter::parse(&asked)?;
        let (all, unreachable) = self
            .containers(&caller, &asked.node, asked.quarantined)
            .await;
        let containers = all
            .into_iter()
            .filter(|container| filter.passes(container))
            .collect();
        Ok(Response::new(v1::FleetListContainersResponse {
            containers,
            unreachable,
        }))
    }

    async fn get_container(
        &self,
        request: Request<v1::FleetGetContainerRequest>,
    ) -> Result<Response<v1::FleetContainerDetail>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(Operation::Read)?;
        let target = request.into_inner().target;
        Ok(Response::new(
            self.container_detail(&caller, &target).await?,
        ))
    }

    async fn get_audit(
        &self,
        request: Request<v1::FleetGetAuditRequest>,
    ) -> Result<Response<v1::FleetGetAuditResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(Operation::Read)?;
        let asked = request.into_inner();
        Ok(Response::new(self.merged_audit(&caller, asked).await?))
    }

    type WatchEventsStream = audit::EventStream;

    async fn watch_events(
        &self,
        request: Request<v1::FleetWatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(Operation::Read)?;
        let asked = request.into_inner();
        Ok(Response::new(self.merged_events(&caller, asked).await?))
    }

    async fn list_quarantines(
        &self,
        request: Request<v1::FleetListQuarantinesRequest>,
    ) -> Result<Response<v1::FleetListQuarantinesResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(Operation::Read)?;
        let asked = request.into_inner();
        let agents = self
            .agents
            .live(Some(asked.node.as_str()).filter(|node| !node.is_empty()))
            .await;
        let message = v1::ListQuarantinesRequest { all: asked.all };
        let (answered, unreachable) = self
            .agents
            .fan_out(
                &agents,
                &caller,
                message,
                |mut client, request| async move { client.list_quarantines(request).await },
            )
            .await;
        let records = answered
            .into_iter()
            .flat_map(|(_, response)| response.records)
            .collect();
        Ok(Response::new(v1::FleetListQuarantinesResponse {
            records,
            unreachable,
        }))
    }

    async fn quarantine(
        &self,
        request: Request<v1::FleetQuarantineRequest>,
    ) -> Result<Response<v1::FleetActionResponse>, Status> {
        let caller = Caller::of(&request)?;
        let asked = request.into_inner();
        caller.authorize(Operation::Quarantine { force: asked.force })?;
        let reason = required("reason", &asked.reason)?;
        let selected = self.select(&caller, asked.target, true).await?;
        let response = self
            .act(selected, |agent, id| {
                let message = v1::QuarantineRequest {
                    target: id,
                    actions: asked.actions.clone(),
                    reason: reason.clone(),
                    ttl_seconds: asked.ttl_seconds,
                    force: asked.force,
                };
                let caller = &caller;
                async move {
                    self.agents
                        .call(&agent, caller, message, |mut client, request| async move {
                            client.quarantine(request).await
                        })
                        .await
                        .map(|response| response.record)
                }
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn release(
        &self,
        request: Request<v1::FleetReleaseRequest>,
    ) -> Result<Response<v1::FleetActionResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(Operation::Release)?;
        let asked = request.into_inner();
        let reason = required("reason", &asked.reason)?;
        let selected = self.select(&caller, asked.target, false).await?;
        let response = self
            .act(selected, |agent, id| {
                let message = v1::ReleaseRequest {
                    target: id,
                    reason: reason.clone(),
                    exempt_for_seconds: asked.exempt_for_seconds,
                };
                let caller = &caller;
                async move {
                    self.agents
                        .call(&agent, caller, message, |mut client, request| async move {
                            client.release(request).await
                        })
                        .await
                        .map(|response| response.record)
                }
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn apply_bundle(
        &self,
        request: Request<v1::ApplyBundleRequest>,
    ) -> Result<Response<v1::FleetApplyBundleResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(Operation::ApplyBundle)?;
        let live = self.agents.live(None).await;
        let (agent, applied) = self
            .hand_over(&caller, &live, request.into_inner().bundle)
            .await?;
        Ok(Response::new(v1::FleetApplyBundleResponse {
            node: agent.name,
            applied: Some(applied),
        }))
    }

    async fn apply_policies(
        &self,
        request: Request<v1::ApplyContentRequest>,
    ) -> Result<Response<v1::ApplyContentResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(Operation::ApplyBundle)?;
        let asked = request.into_inner();
        Ok(Response::new(
            self.apply_content(&caller, BundleKind::Policies, asked)
                .await?,
        ))
    }

    async fn apply_indicators(
        &self,
        request: Request<v1::ApplyContentRequest>,
    ) -> Result<Response<v1::ApplyContentResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(Operation::ApplyBundle)?;
        let asked = request.into_inner();
        Ok(Response::new(
            self.apply_content(&caller, BundleKind::Indicators, asked)
                .await?,
        ))
    }

    async fn get_bundle(
        &self,
        request: Request<v1::FleetGetBundleRequest>,
    ) -> Result<Response<v1::FleetGetBundleResponse>, Status> {
        Caller::of(&request)?.authorize(Operation::Read)?;
        let kind = request
            .into_inner()
            .kind
            .parse::<BundleKind>()
            .map_err(Status::invalid_argument)?;
        Ok(Response::new(self.fetch_newest(kind).await?))
    }

    async fn set_fleet_mode(
        &self,
        request: Request<v1::SetFleetModeRequest>,
    ) -> Result<Response<v1::SetFleetModeResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(Operation::SetMode)?;
        let asked = request.into_inner();
        let audit_only = match asked.mode.as_str() {
            "audit-only" => true,
            "enforce" => false,
            other => {
                return Err(Status::invalid_argument(format!(
                    "mode {other:?}: expected enforce or audit-only"
                )));
            }
        };
        let reason = required("reason", &asked.reason)?;
        let via = Caller {
            via: Some(self.name.clone()),
            ..caller
        };
        let mode = FleetModeValue {
            audit_only,
            since_unix_ms: chrono::Utc::now().timestamp_millis(),
            actor: match via.role {
                Role::Controller => self.name.clone(),
                _ => via.actor(),
            },
            reason,
        };
        crate::switch::publish(&self.state, &self.gossip, &mode)
            .await
            .map_err(internal)?;
        Ok(Response::new(v1::SetFleetModeResponse {
            mode: asked.mode,
            since_unix_ms: mode.since_unix_ms,
        }))
    }
}
