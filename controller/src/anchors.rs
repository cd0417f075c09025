//! Audit anchoring (DESIGN.md §5): the controller remembers the highest `audit_head` each agent
//! gossiped (sequence and hash) and, when the head moves on, asks the agent for the record at the
//! anchored sequence: its hash must not have changed. A chain rewritten below its head, cut back
//! or replaced is flagged (ALERT log, `lazaret_controller_audit_rewrites_total`, `ListNodes`'s
//! `audit_problem`) and the flag is stored.

use std::sync::Arc;
use std::time::Duration;

use lazaret_core::gossip::AuditHeadValue;
use lazaret_core::roles::Role;
use lazaret_fleet::caller::Caller;
use lazaret_fleet::gossip::Gossip;
use lazaret_proto::v1::GetAuditRequest;
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::agents::{Agent, Agents};
use crate::state::{Anchor, State};

/// What a gossiped head says against the anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Nothing anchored yet: anchor this head.
    First,
    /// The head has not moved.
    Unchanged,
    /// The head moved on: the record at `sequence` must still hash to `hash`.
    Moved { sequence: u64, hash: String },
    /// The chain is not the one anchored (why).
    Rewritten(String),
}

/// Compares `head` with `anchor` (pure).
pub fn compare(anchor: Option<&Anchor>, head: &AuditHeadValue) -> Check {
    let Some(anchor) = anchor else {
        return Check::First;
    };
    if head.sequence < anchor.sequence {
        return Check::Rewritten(format!(
            "the chain went back from record {} to {}",
            anchor.sequence, head.sequence
        ));
    }
    if head.sequence == anchor.sequence {
        return match head.hash == anchor.hash {
            true => Check::Unchanged,
            false => Check::Rewritten(format!(
                "record {} changed hash from {} to {}",
                anchor.sequence, anchor.hash, head.hash
            )),
        };
    }
    Check::Moved {
        sequence: anchor.sequence,
        hash: anchor.hash.clone(),
    }
}

/// The anchoring loop.
pub struct Anchoring {
    pub gossip: Arc<Gossip>,
    pub agents: Arc<Agents>,
    pub state: State,
    /// The controller itself, as the caller of its checks.
    pub me: Caller,
    pub rewrites: Counter,
    pub interval: Duration,
}

impl Anchoring {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            self.round().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    async fn round(&self) {
        for view in self.gossip.peers().await {
            let (Some(head), Some(info)) = (&view.audit_head, &view.info) else {
                continue;
            };
            if view.role != Some(Role::Node) || view.problem.is_some() {
                continue;
            }
            let anchor = match self.state.anchor(&view.node) {
                Ok(anchor) => anchor,
                Err(error) => {
                    warn!(%error, node = view.node, "cannot read an audit anchor");
                    continue;
                }
            };
            if anchor
                .as_ref()
                .is_some_and(|anchor| anchor.problem.is_some())
            {
                continue;
            }
            let agent = Agent {
                name: view.node.clone(),
                grpc: info.grpc.clone(),
            };
            let verdict = match compare(anchor.as_ref(), head) {
                Check::Unchanged => continue,
                Check::First => None,
                Check::Rewritten(problem) => Some(problem),
                Check::Moved { sequence, hash } => match self.record_hash(&agent, sequence).await {
                    Ok(found) if found == hash => None,
                    Ok(found) => Some(format!(
                        "record {sequence} changed hash from {hash} to {found}"
                    )),
                    Err(error) => {
                        warn!(node = view.node, %error, "cannot check an audit anchor; will retry");
                        continue;
                    }
                },
            };
            let new = match verdict {
                None => {
                    debug!(node = view.node, sequence = head.sequence, "audit anchored");
                    Anchor {
                        sequence: head.sequence,
                        hash: head.hash.clone(),
                        problem: None,
                    }
                }
                Some(problem) => {
                    error!(node = view.node, %problem, "ALERT: an agent's audit chain was rewritten");
                    self.rewrites.inc();
                    Anchor {
                        problem: Some(problem),
                        ..anchor.unwrap_or(Anchor {
                            sequence: head.sequence,
                            hash: head.hash.clone(),
                            problem: None,
                        })
                    }
                }
            };
            if let Err(error) = self.state.put_anchor(&view.node, &new) {
                warn!(%error, node = view.node, "cannot store an audit anchor");
            }
        }
    }

    /// The hash of `agent`'s audit record `sequence`.
    async fn record_hash(&self, agent: &Agent, sequence: u64) -> Result<String, String> {
        let request = GetAuditRequest {
            from_sequence: sequence,
            limit: 1,
        };
        let records = self
            .agents
            .call(agent, &self.me, request, |mut client, request| async move {
                client.get_audit(request).await
            })
            .await
            .map_err(|status| status.message().to_string())?
            .records;
        match records.first() {
            Some(record) if record.sequence == sequence => Ok(record.hash.clone()),
            _ => Ok(format!("(record {sequence} is missing)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(sequence: u64, hash: &str) -> AuditHeadValue {
        AuditHeadValue {
            sequence,
            hash: hash.into(),
        }
    }

    #[test]
    fn heads_against_the_anchor() {
        let anchor = Anchor {
            sequence: 5,
            hash: "h5".into(),
            problem: None,
        };
        assert_eq!(compare(None, &head(1, "x")), Check::First);
        assert_eq!(compare(Some(&anchor), &head(5, "h5")), Check::Unchanged);
        assert_eq!(
            compare(Some(&anchor), &head(9, "h9")),
            Check::Moved {
                sequence: 5,
                hash: "h5".into()
            }
        );
        assert!(
            matches!(compare(Some(&anchor), &head(5, "other")), Check::Rewritten(why) if why.contains("record 5"))
        );
        assert!(
            matches!(compare(Some(&anchor), &head(2, "h2")), Check::Rewritten(why) if why.contains("went back"))
        );
    }
}
