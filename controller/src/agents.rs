//! The agents as the controller reaches them: live members of role `node` in its gossip view,
//! called over mutual TLS as the controller, each call forwarding the operator it serves
//! ([`Caller::forward`]) and bounded by [`CALL_TIMEOUT`]. A fan-out returns who answered and,
//! with the error, who did not: nothing is skipped silently.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use lazaret_core::roles::Role;
use lazaret_fleet::caller::Caller;
use lazaret_fleet::channels::Channels;
use lazaret_fleet::gossip::Gossip;
use lazaret_proto::v1::agent_service_client::AgentServiceClient;
use lazaret_proto::v1::{AuditEvent, Unreachable, WatchEventsRequest};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};

/// How long one call to one agent may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// An agent to call: its name (its certificate's) and API address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub name: String,
    pub grpc: String,
}

/// See the module docs.
pub struct Agents {
    gossip: Arc<Gossip>,
    channels: Channels,
}

type Client = AgentServiceClient<Channel>;

impl Agents {
    pub fn new(gossip: Arc<Gossip>, channels: Channels) -> Agents {
        Agents { gossip, channels }
    }

    /// Live agents whose certificate and values verify, by name; `node` keeps only that one.
    pub async fn live(&self, node: Option<&str>) -> Vec<Agent> {
        let mut agents: Vec<Agent> = self
            .gossip
            .peers()
            .await
            .into_iter()
            .filter(|view| view.live && view.role == Some(Role::Node) && view.problem.is_none())
            .filter(|view| node.is_none_or(|node| view.node == node))
            .filter_map(|view| {
                Some(Agent {
                    grpc: view.info?.grpc,
                    name: view.node,
                })
            })
            .collect();
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        agents
    }

    /// Calls `agent` with `message` on behalf of `caller`.
    pub async fn call<T, R, F, Fut>(
        &self,
        agent: &Agent,
        caller: &Caller,
        message: T,
        call: F,
    ) -> Result<R, Status>
    where
        F: FnOnce(Client, Request<T>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let mut request = Request::new(message);
        caller.forward(&mut request)?;
        request.set_timeout(CALL_TIMEOUT);
        let channel = self
            .channels
            .get(&agent.name, &agent.grpc)
            .await
            .map_err(Status::unavailable)?;
        let client = Client::new(channel).max_decoding_message_size(64 * 1024 * 1024);
        let answer = match tokio::time::timeout(CALL_TIMEOUT, call(client, request)).await {
            Ok(answer) => answer,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {}s",
                CALL_TIMEOUT.as_secs()
            ))),
        };
        if let Err(status) = &answer
            && matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
        {
            self.channels.forget(&agent.name, &agent.grpc).await;
        }
        answer.map(Response::into_inner)
    }

    /// Opens `agent`'s `WatchEvents` stream on behalf of `caller` (no deadline: it lasts).
    pub async fn open_stream(
        &self,
        agent: &Agent,
        caller: &Caller,
        message: WatchEventsRequest,
    ) -> Result<Streaming<AuditEvent>, Status> {
        let mut request = Request::new(message);
        caller.forward(&mut request)?;
        let channel = self
            .channels
            .get(&agent.name, &agent.grpc)
            .await
            .map_err(Status::unavailable)?;
        Ok(Client::new(channel)
            .watch_events(request)
            .await?
            .into_inner())
    }

    /// [`Self::call`] to every agent in `agents` at once.
    pub async fn fan_out<T, R, F, Fut>(
        &self,
        agents: &[Agent],
        caller: &Caller,
        message: T,
        call: F,
    ) -> (Vec<(Agent, R)>, Vec<Unreachable>)
    where
        T: Clone,
        F: Fn(Client, Request<T>) -> Fut + Clone,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let calls = agents.iter().map(|agent| {
            let (message, call) = (message.clone(), call.clone());
            async move { (agent, self.call(agent, caller, message, call).await) }
        });
        let mut answered = Vec::new();
        let mut unreachable = Vec::new();
        for (agent, answer) in join_all(calls).await {
            match answer {
                Ok(answer) => answered.push((agent.clone(), answer)),
                Err(status) => unreachable.push(Unreachable {
                    node: agent.name.clone(),
                    error: format!("{}: {}", status.code(), status.message()),
                }),
            }
        }
        (answered, unreachable)
    }
}
