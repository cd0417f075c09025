//! `lazaret.v1.AgentService` on one agent: every call authenticates the caller from its
//! certificate ([`Caller`]), checks the one roles table (`lazaret_core::roles`), then reads the
//! inventory and the store, or asks the enforcement task ([`EnforcerHandle`]) to act. Status codes
//! and messages as `proto/lazaret/v1/agent.proto` documents them.

use std::collections::HashMap;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::Stream;
use lazaret_core::ContainerId;
use lazaret_core::detection::{ContainerDetection, falco_severity};
use lazaret_core::policy::{self, Detection, JudgeInput, PolicySet, PolicySource};
use lazaret_core::posture::CheckResult;
use lazaret_core::quarantine::{
    Action, DEFAULT_QUARANTINE_ACTIONS, QuarantineRecord, QuarantineRequest, QuarantineSource,
};
use lazaret_core::roles::Operation;
use lazaret_core::severity::Severity;
use lazaret_proto::convert::container_to_wire;
use lazaret_proto::v1;
use lazaret_proto::v1::agent_service_server::AgentService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::identity::Caller;
use crate::bundles::BundleBook;
use crate::enforce::engine::EnforcerHandle;
use crate::enforce::quarantine::{QuarantineError, mode_name};
use crate::gossip::Gossip;
use crate::inventory::{InventoryEntry, InventoryHandle, InventorySnapshot};
use crate::runtime::RuntimeError;
use crate::store::{Store, StoreError};

/// `GetAudit`'s page when the request names none.
const DEFAULT_AUDIT_PAGE: u32 = 1000;
/// How long a release keeps the policy off the container when the request names no time.
const DEFAULT_EXEMPTION: Duration = Duration::from_secs(3600);
/// Records buffered for one `WatchEvents` stream; a slow reader only slows its own stream (the
/// rest is read from the store when it catches up: nothing is dropped, nothing else waits).
const WATCH_BUFFER: usize = 64;
/// Records read from the store at a time by a `WatchEvents` stream.
const WATCH_BATCH: usize = 256;

/// The service; cheap to clone.
#[derive(Clone)]
pub struct AgentApi {
    node: String,
    inventory: InventoryHandle,
    store: Store,
    enforcer: EnforcerHandle,
    bundles: Option<Arc<BundleBook>>,
    /// Set once gossip runs (it starts after the API, which must be bound first).
    gossip: Arc<OnceLock<Arc<Gossip>>>,
}

impl AgentApi {
    pub fn new(
        node: String,
        inventory: InventoryHandle,
        store: Store,
        enforcer: EnforcerHandle,
    ) -> Self {
        AgentApi {
            node,
            inventory,
            store,
            enforcer,
            bundles: None,
            gossip: Arc::default(),
        }
    }

    /// Serves and takes the bundles of `book`.
    pub fn with_bundles(mut self, book: Arc<BundleBook>) -> Self {
        self.bundles = Some(book);
        self
    }

    /// Where gossip is handed to the running API once it has started.
    pub fn gossip_slot(&self) -> Arc<OnceLock<Arc<Gossip>>> {
        self.gossip.clone()
    }

    pub(super) fn node(&self) -> &str {
        &self.node
    }

    pub(super) fn book(&self) -> Result<&Arc<BundleBook>, Status> {
        self.bundles.as_ref().ok_or_else(|| {
            Status::unavailable("this agent does not hold bundles (enforcement is not running)")
        })
    }

    pub(super) fn gossip(&self) -> Option<&Arc<Gossip>> {
        self.gossip.get()
    }

    /// The container `target` names: a full id, a unique id prefix, or a name; containers that
    /// left the inventory are found by their stored quarantine (to release them).
    async fn resolve(&self, target: &str) -> Result<ContainerId, Status> {
        let target = target.trim();
        if target.is_empty() {
            return Err(Status::invalid_argument(
                "target is empty: give a container id, a unique id prefix, or a name",
            ));
        }
        let snapshot = self.inventory.current();
        let mut candidates: Vec<ContainerId> = snapshot
            .containers
            .values()
            .map(|entry| &entry.info)
            .filter(|info| info.id.as_str() == target || info.name == target)
            .map(|info| info.id.clone())
            .collect();
        if candidates.is_empty() {
            candidates = snapshot
                .containers
                .keys()
                .filter(|id| id.as_str().starts_with(target))
                .cloned()
                .collect();
        }
        if candidates.is_empty() {
            candidates = self
                .quarantines()
                .await?
                .into_iter()
                .map(|record| record.container)
                .filter(|id| id.as_str().starts_with(target))
                .collect();
        }
        match candidates.len() {
            1 => Ok(candidates.remove(0)),
            0 => Err(no_match(&self.node, target, &snapshot)),
            _ => Err(Status::invalid_argument(format!(
                "{target:?} matches {} containers ({}): give more of the id",
                candidates.len(),
                candidates
                    .iter()
                    .map(ContainerId::short)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    async fn quarantines(&self) -> Result<Vec<QuarantineRecord>, Status> {
        let loaded = self.blocking(|store| store.quarantines()).await?;
        Ok(loaded.records)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || call(&store))
            .await
            .map_err(|error| Status::internal(format!("store task failed: {error}")))?
            .map_err(|error| Status::internal(format!("store: {error}")))
    }

    fn view(&self, entry: &InventoryEntry, record: Option<&QuarantineRecord>) -> v1::ContainerView {
        v1::ContainerView {
            container: Some(container_to_wire(&self.node, &entry.info, &entry.findings)),
            quarantine: record.map(v1::QuarantineRecord::from),
        }
    }
}

/// A required free-text field ("why"), trimmed; `INVALID_ARGUMENT` naming it when empty.
fn required(field: &str, value: &str) -> Result<String, Status> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} is required: say why, it goes into the audit trail"
        )));
    }
    Ok(value.to_string())
}

/// The status for a refusal or failure of the enforcement task.
fn status_of(error: QuarantineError) -> Status {
    let message = error.to_string();
    match error {
        QuarantineError::Protected { .. } => {
            Status::failed_precondition(format!("{message} (an admin may pass --force)"))
        }
        QuarantineError::AuditOnly { .. }
        | QuarantineError::BlastRadius { .. }
        | QuarantineError::Exempt { .. }
        | QuarantineError::AlreadyQuarantined { .. }
        | QuarantineError::NotQuarantined { .. }
        | QuarantineError::ReleaseFailed { .. }
        | QuarantineError::Transition(_) => Status::failed_precondition(message),
        QuarantineError::Runtime(RuntimeError::NotFound { .. }) => Status::not_found(message),
        QuarantineError::Runtime(RuntimeError::Unavailable { .. })
        | QuarantineError::Blocking(_) => Status::unavailable(message),
        QuarantineError::ContainerMismatch { .. }
        | QuarantineError::Store(_)
        | QuarantineError::Runtime(_) => Status::internal(message),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::AuditEvent, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn list_containers(
        &self,
        request: Request<v1::ListContainersRequest>,
    ) -> Result<Response<v1::ListContainersResponse>, Status> {
        Caller::of(&request)?.authorize(Operation::Read)?;
        let filter = request.into_inner();
        let quarantines: HashMap<ContainerId, QuarantineRecord> = self
            .quarantines()
            .await?
            .into_iter()
            .map(|record| (record.container.clone(), record))
            .collect();
        let snapshot = self.inventory.current();
        let containers = snapshot
            .containers
            .values()
            .filter_map(|entry| {
                let record = quarantines.get(&entry.info.id);
                let in_force = record.is_some_and(|record| !record.state.is_terminal());
                let failing = entry
                    .findings
                    .iter()
                    .any(|finding| finding.result == CheckResult::Fail);
                let wanted =
                    (!filter.quarantined || in_force) && (!filter.with_findings || failing);
                wanted.then(|| self.view(entry, record))
            })
            .collect();
        Ok(Response::new(v1::ListContainersResponse {
            containers,
            unlisted_runtimes: snapshot
                .unlisted
                .iter()
                .map(|runtime| runtime.as_str().to_string())
                .collect(),
        }))
    }

    async fn get_container(
        &self,
        request: Request<v1::GetContainerRequest>,
    ) -> Result<Response<v1::ContainerDetail>, Status> {
        Caller::of(&request)?.authorize(Operation::Read)?;
        let id = self.resolve(&request.get_ref().target).await?;
        let record = self
            .quarantines()
            .await?
            .into_iter()
            .find(|record| record.container == id);
        let target = id.to_string();
        let history = self
            .blocking(move |store| store.audit_records(1, usize::MAX))
            .await?
            .iter()
            .filter(|record| record.target == target)
            .map(v1::AuditEvent::from)
            .collect();
        let evidence_of = id.clone();
        let evidence = self
            .blocking(move |store| store.evidence(&evidence_of))
            .await?
            .unwrap_or_default();
        let snapshot = self.inventory.current();
        let view = match snapshot.get(&id) {
            Some(entry) => self.view(entry, record.as_ref()),
            None => v1::ContainerView {
                container: None,
                quarantine: record.as_ref().map(v1::QuarantineRecord::from),
            },
        };
        Ok(Response::new(v1::ContainerDetail {
            view: Some(view),
            history,
            evidence,
        }))
    }

    async fn quarantine(
        &self,
        request: Request<v1::QuarantineRequest>,
    ) -> Result<Response<v1::QuarantineResponse>, Status> {
        let caller = Caller::of(&request)?;
        let asked = request.into_inner();
        caller.authorize(Operation::Quarantine { force: asked.force })?;
        let reason = required("reason", &asked.reason)?;
        let actions = if asked.actions.is_empty() {
            DEFAULT_QUARANTINE_ACTIONS.to_vec()
        } else {
            asked
                .actions
                .iter()
                .map(|action| Action::from_str(action))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|unknown| Status::invalid_argument(format!("actions: {unknown}")))?
        };
        let container = self.resolve(&asked.target).await?;
        let request = QuarantineRequest {
            container,
            node: self.node.clone(),
            actions,
            ttl: (asked.ttl_seconds > 0).then(|| Duration::from_secs(asked.ttl_seconds)),
            reason,
            actor: caller.actor(),
            source: QuarantineSource::Operator,
            scope: Default::default(),
        };
        let record = self
            .enforcer
            .quarantine(request, asked.force)
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::QuarantineResponse {
            record: Some(v1::QuarantineRecord::from(&record)),
        }))
    }

    async fn release(
        &self,
        request: Request<v1::ReleaseRequest>,
    ) -> Result<Response<v1::ReleaseResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(Operation::Release)?;
        let asked = request.into_inner();
        let reason = required("reason", &asked.reason)?;
        let container = self.resolve(&asked.target).await?;
        let exempt_for = match asked.exempt_for_seconds {
            0 => DEFAULT_EXEMPTION,
            seconds => Duration::from_secs(seconds),
        };
        let record = self
            .enforcer
            .release(container, &caller.actor(), &reason, exempt_for)
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::ReleaseResponse {
            record: Some(v1::QuarantineRecord::from(&record)),
        }))
    }

    async fn list_quarantines(
        &self,
        request: Request<v1::ListQuarantinesRequest>,
    ) -> Result<Response<v1::ListQuarantinesResponse>, Status> {
        Caller::of(&request)?.authorize(Operation::Read)?;
        let all = request.get_ref().all;
        let records = self
            .quarantines()
            .await?
            .iter()
            .filter(|record| all || !record.state.is_terminal())
            .map(v1::QuarantineRecord::from)
            .collect();
        Ok(Response::new(v1::ListQuarantinesResponse { records }))
    }

    async fn get_audit(
        &self,
        request: Request<v1::GetAuditRequest>,
    ) -> Result<Response<v1::GetAuditResponse>, Status> {
        Caller::of(&request)?.authorize(Operation::Read)?;
        let asked = request.into_inner();
        let from = asked.from_sequence.max(1);
        let limit = match asked.limit {
            0 => DEFAULT_AUDIT_PAGE,
            limit => limit,
        } as usize;
        let records = self
            .blocking(move |store| store.audit_records(from, limit))
            .await?
            .iter()
            .map(v1::AuditEvent::from)
            .collect();
        Ok(Response::new(v1::GetAuditResponse { records }))
    }

    async fn verify_audit(
        &self,
        request: Request<v1::VerifyAuditRequest>,
    ) -> Result<Response<v1::VerifyAuditResponse>, Status> {
        Caller::of(&request)?.authorize(Operation::Read)?;
        let verified = self.blocking(|store| store.verify_audit(None)).await?;
        let response = match verified {
            Ok(head) => v1::VerifyAuditResponse {
                intact: true,
                records: head.sequence,
                head_sequence: head.sequence,
                head_hash: head.hash.to_hex(),
                problem: String::new(),
            },
            Err(broken) => v1::VerifyAuditResponse {
                intact: false,
                records: broken.sequence.saturating_sub(1),
                head_sequence: 0,
                head_hash: String::new(),
                problem: broken.to_string(),
            },
        };
        Ok(Response::new(response))
    }

    async fn test_policies(
        &self,
        request: Request<v1::TestPoliciesRequest>,
    ) -> Result<Response<v1::TestPoliciesResponse>, Status> {
        Caller::of(&request)?.authorize(Operation::Read)?;
        let sources: Vec<PolicySource> = request
            .into_inner()
            .files
            .into_iter()
            .map(|file| PolicySource::new(file.name, file.text))
            .collect();
        if sources.is_empty() {
            return Err(Status::invalid_argument(
                "files is empty: send the policy files to test",
            ));
        }
        let set = PolicySet::load(&sources).map_err(|errors| {
            Status::invalid_argument(format!("the policies do not load: {errors}"))
        })?;
        let indicators = self
            .bundles
            .as_ref()
            .map(|book| book.indicators())
            .unwrap_or_default();
        let snapshot = self.inventory.current();
        let outcomes = snapshot
            .containers
            .values()
            .map(|entry| {
                let verdict = policy::judge(
                    &set,
                    &JudgeInput {
                        container: &entry.info,
                        posture: &entry.findings,
                        indicators: indicators.as_ref(),
                        is_exempt: &|_| false,
                    },
                );
                v1::PolicyOutcome {
                    container: entry.info.id.to_string(),
                    name: entry.info.name.clone(),
                    enforcing_policy: verdict
                        .enforcing_policy
                        .as_deref()
                        .unwrap_or_default()
                        .to_string(),
                    actions: verdict.actions.iter().map(ToString::to_string).collect(),
                    violations: verdict
                        .findings
                        .iter()
                        .map(|finding| format!("{}: {}", finding.policy, finding.why))
                        .collect(),
                }
            })
            .collect();
        Ok(Response::new(v1::TestPoliciesResponse { outcomes }))
    }

    async fn set_mode(
        &self,
        request: Request<v1::SetModeRequest>,
    ) -> Result<Response<v1::SetModeResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(Operation::SetMode)?;
        let asked = request.into_inner();
        let audit_only = match asked.mode.trim() {
            "enforce" => false,
            "audit-only" => true,
            other => {
                return Err(Status::invalid_argument(format!(
                    "mode {other:?}: expected enforce or audit-only"
                )));
            }
        };
        let reason = required("reason", &asked.reason)?;
        self.enforcer
            .set_mode(audit_only, &caller.actor(), &reason)
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::SetModeResponse {
            mode: mode_name(audit_only).to_string(),
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<v1::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        Caller::of(&request)?.authorize(Operation::Read)?;
        let mut next = request.get_ref().from_sequence.max(1);
        let store = self.store.clone();
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(async move {
            // Subscribed before the first read, so no append falls between read and wait.
            let mut appended = store.watch_audit();
            loop {
                let reader = store.clone();
                let read =
                    tokio::task::spawn_blocking(move || reader.audit_records(next, WATCH_BATCH))
                        .await;
                let records = match read {
                    Ok(Ok(records)) => records,
                    Ok(Err(error)) => {
                        let _gone = sender
                            .send(Err(Status::internal(format!("store: {error}"))))
                            .await;
                        return;
                    }
                    Err(_) => return,
                };
                if records.is_empty() {
                    tokio::select! {
                        _ = sender.closed() => return,
                        _ = &mut appended => {}
                    }
                    continue;
                }
                for record in &records {
                    if sender.send(Ok(v1::AuditEvent::from(record))).await.is_err() {
                        return;
                    }
                    next = record.sequence + 1;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn report_detection(
        &self,
        request: Request<v1::ReportDetectionRequest>,
    ) -> Result<Response<v1::ReportDetectionResponse>, Status> {
        Caller::of(&request)?.authorize(Operation::ReportDetection)?;
        let asked = request.into_inner();
        let rule = required("rule", &asked.rule)?;
        let severity = falco_severity(&asked.priority)
            .or_else(|falco| asked.priority.trim().parse::<Severity>().map_err(|_| falco))
            .map_err(|why| Status::invalid_argument(format!("priority: {why}")))?;
        let container = asked.container.trim().to_ascii_lowercase();
        if container.is_empty() || !container.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(Status::invalid_argument(
                "container: a full container id or a unique prefix (hex)",
            ));
        }
        let found = ContainerDetection {
            detection: Detection {
                rule,
                tags: asked.tags,
                severity,
                source: match asked.source.trim() {
                    "" => "grpc".to_string(),
                    source => source.to_string(),
                },
            },
            container,
            output: asked.output,
        };
        let outcome = self.enforcer.detect(found).await.map_err(status_of)?;
        let answer = crate::detections::answer(&outcome);
        let text = |key: &str| answer[key].as_str().unwrap_or_default().to_string();
        Ok(Response::new(v1::ReportDetectionResponse {
            outcome: text("outcome"),
            container: text("container"),
            response: text("response"),
            reason: text("reason"),
        }))
    }

    async fn get_bundle(
        &self,
        request: Request<v1::GetBundleRequest>,
    ) -> Result<Response<v1::GetBundleResponse>, Status> {
        self.serve_get_bundle(request).await
    }

    async fn apply_bundle(
        &self,
        request: Request<v1::ApplyBundleRequest>,
    ) -> Result<Response<v1::ApplyBundleResponse>, Status> {
        self.serve_apply_bundle(request).await
    }

    async fn bundle_status(
        &self,
        request: Request<v1::BundleStatusRequest>,
    ) -> Result<Response<v1::BundleStatusResponse>, Status> {
        self.serve_bundle_status(request).await
    }
}

/// The answer when no container matches `target`: `NOT_FOUND`, or `UNAVAILABLE` while the
/// inventory still lacks a runtime's containers (the agent started moments ago, or lost the
/// runtime): asked again in a few seconds, it may well be found.
fn no_match(node: &str, target: &str, snapshot: &InventorySnapshot) -> Status {
    match snapshot.incomplete() {
        Some(unlisted) => Status::unavailable(format!(
            "no container on node {node} matches {target:?} yet: its {unlisted} containers are \
             not listed yet (the agent started moments ago); try again in a few seconds"
        )),
        None => Status::not_found(format!(
            "no container on node {node} matches {target:?}: `lazaretctl containers` lists them"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_not_found_before_every_runtime_was_listed_is_unavailable() {
        let mut snapshot = InventorySnapshot::default();
        let status = no_match("node-1", "web", &snapshot);
        assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
        snapshot.unlisted.insert(lazaret_core::RuntimeKind::Docker);
        let status = no_match("node-1", "web", &snapshot);
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            status
                .message()
                .contains("docker containers are not listed yet"),
            "{status:?}"
        );
    }
}
