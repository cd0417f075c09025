//! Fleet-wide reads of the agents' audit trails and of one container: `GetContainer` (resolved
//! fleet-wide, answered by its owner), `GetAudit` (every live agent's newest records, merged by
//! time) and `WatchEvents` (every live agent's stream, merged as records arrive).

use lazaret_fleet::caller::Caller;
use lazaret_proto::v1::{self, NodeAuditEvent, Unreachable};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{FleetApi, targets};

/// How many merged events wait for a slow reader before agents' streams wait too.
const WATCH_BUFFER: usize = 256;
/// Records per node when the caller names no limit.
const DEFAULT_LIMIT: u32 = 100;

/// The merged event stream of `WatchEvents`.
pub type EventStream = ReceiverStream<Result<NodeAuditEvent, Status>>;

impl FleetApi {
    /// The audit head's sequence of each live agent, from gossip (0 when it published none).
    async fn heads(&self) -> std::collections::HashMap<String, u64> {
        self.gossip
            .peers()
            .await
            .into_iter()
            .map(|view| (view.node, view.audit_head.map_or(0, |head| head.sequence)))
            .collect()
    }

    pub(super) async fn container_detail(
        &self,
        caller: &Caller,
        target: &str,
    ) -> Result<v1::FleetContainerDetail, Status> {
        let (all, unreachable) = self.containers(caller, "", false).await;
        let fleet_target = v1::FleetTarget {
            target: target.to_string(),
            ..v1::FleetTarget::default()
        };
        let picked = targets::pick(all, &fleet_target).map_err(|status| {
            match (status.code(), unreachable.is_empty()) {
                (tonic::Code::NotFound, false) => Status::not_found(format!(
                    "{}; these agents did not answer: {}",
                    status.message(),
                    unreachable
                        .iter()
                        .map(|u| u.node.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                _ => status,
            }
        })?;
        let found = picked
            .into_iter()
            .next()
            .expect("pick returns one or fails");
        let id = found
            .view
            .and_then(|view| view.container)
            .map(|container| container.id)
            .unwrap_or_default();
        let agent = self
            .agents
            .live(Some(&found.node))
            .await
            .into_iter()
            .next()
            .ok_or_else(|| Status::unavailable(format!("{} is no longer live", found.node)))?;
        let detail = self
            .agents
            .call(
                &agent,
                caller,
                v1::GetContainerRequest { target: id },
                |mut client, request| async move { client.get_container(request).await },
            )
            .await?;
        Ok(v1::FleetContainerDetail {
            node: agent.name,
            detail: Some(detail),
        })
    }

    pub(super) async fn merged_audit(
        &self,
        caller: &Caller,
        asked: v1::FleetGetAuditRequest,
    ) -> Result<v1::FleetGetAuditResponse, Status> {
        let limit = match asked.limit {
            0 => DEFAULT_LIMIT,
            limit => limit,
        };
        let agents = self
            .agents
            .live(Some(asked.node.as_str()).filter(|node| !node.is_empty()))
            .await;
        let heads = self.heads().await;
        let mut records = Vec::new();
        let mut unreachable: Vec<Unreachable> = Vec::new();
        for agent in &agents {
            let head = heads.get(&agent.name).copied().unwrap_or(0);
            let message = v1::GetAuditRequest {
                from_sequence: head.saturating_sub(u64::from(limit) - 1).max(1),
                limit,
            };
            let answer = self
                .agents
                .call(agent, caller, message, |mut client, request| async move {
                    client.get_audit(request).await
                })
                .await;
            match answer {
                Ok(response) => {
                    records.extend(response.records.into_iter().map(|event| NodeAuditEvent {
                        node: agent.name.clone(),
                        event: Some(event),
                        error: String::new(),
                    }))
                }
                Err(status) => unreachable.push(Unreachable {
                    node: agent.name.clone(),
                    error: format!("{}: {}", status.code(), status.message()),
                }),
            }
        }
        records.sort_by_key(|record| {
            let event = record.event.as_ref();
            (
                event.map_or(0, |event| event.time_unix_ms),
                record.node.clone(),
                event.map_or(0, |event| event.sequence),
            )
        });
        Ok(v1::FleetGetAuditResponse {
            records,
            unreachable,
        })
    }

    pub(super) async fn merged_events(
        &self,
        caller: &Caller,
        asked: v1::FleetWatchEventsRequest,
    ) -> Result<EventStream, Status> {
        let agents = self
            .agents
            .live(Some(asked.node.as_str()).filter(|node| !node.is_empty()))
            .await;
        let heads = self.heads().await;
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        for agent in agents {
            let from_sequence = heads.get(&agent.name).copied().unwrap_or(0) + 1;
            let sender = sender.clone();
            let opened = self
                .agents
                .open_stream(&agent, caller, v1::WatchEventsRequest { from_sequence })
                .await;
            tokio::spawn(async move {
                let ended = match opened {
                    Err(status) => format!("{}: {}", status.code(), status.message()),
                    Ok(mut stream) => loop {
                        match stream.next().await {
                            Some(Ok(event)) => {
                                let tagged = NodeAuditEvent {
                                    node: agent.name.clone(),
                                    event: Some(event),
                                    error: String::new(),
                                };
                                if sender.send(Ok(tagged)).await.is_err() {
                                    return;
                                }
                            }
                            Some(Err(status)) => {
                                break format!("{}: {}", status.code(), status.message());
                            }
                            None => break "the agent ended the stream".to_string(),
                        }
                    },
                };
                let last = NodeAuditEvent {
                    node: agent.name,
                    event: None,
                    error: ended,
                };
                let _closed = sender.send(Ok(last)).await;
            });
        }
        Ok(ReceiverStream::new(receiver))
    }
}
