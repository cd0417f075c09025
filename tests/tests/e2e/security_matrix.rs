//! The security matrix (DESIGN.md §5) against real processes: one agent and the controller, with
//! every RPC of `lazaret.v1.AgentService` and `lazaret.v1.FleetService` called as each of the six
//! roles (viewer, operator, admin, controller, node, detector), each with a harmless request: a
//! container that does not exist, a malformed bundle or policy file, the mode already in force, an
//! empty detection. `Quarantine` with `force` is a row of its own.
//!
//! [`SPEC`] is the expected outcome, written out by hand from the roles' intent (the module docs
//! of core/src/roles.rs, the comments in the protos), not computed from `roles::allows`: a role it
//! denies must get `PERMISSION_DENIED` with a message naming the role; a role it allows must get
//! anything else (OK, or the handler's own `NOT_FOUND`, `INVALID_ARGUMENT`…), which also shows the
//! handler authorized before validating. The whole matrix is printed and every mismatching cell
//! listed at once. Every method in `lazaret_proto::FILE_DESCRIPTOR_SET` must have a row, so a new
//! RPC fails here until its row is written.
//!
//! Also here: a node certificate refused admin operations by name; the forwarded-operator metadata
//! believed from a controller certificate only; clients without a fleet certificate (none, or one
//! from another CA) refused in the TLS handshake by the agent and by the controller.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use lazaret_core::roles::Role;
use lazaret_proto::v1;
use lazaret_proto::v1::agent_service_client::AgentServiceClient;
use lazaret_proto::v1::fleet_service_client::FleetServiceClient;
use lazaret_tests::fleet::{Placement, TestFleet};
use lazaret_tests::{init_tracing, wait_until};
use lazaretctl::pki;
use prost::Message as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

/// Bound on one call, and on opening one connection.
const CALL: Duration = Duration::from_secs(20);
/// Bound on the controller seeing the agent.
const READY: Duration = Duration::from_secs(90);

/// The identities, in column order: the role and the certificate that carries it.
const IDENTITIES: [(Role, &str); 6] = [
    (Role::Viewer, "viewer"),
    (Role::Operator, "operator"),
    (Role::Admin, "admin"),
    (Role::Controller, "controller"),
    (Role::Node, "node-1"),
    (Role::Detector, "detector"),
];

const A: bool = true;
const D: bool = false;

/// Allowed (`A`) or denied (`D`) per `Service/Method` and role, in [`IDENTITIES`] order.
#[rustfmt::skip]
const SPEC: &[(&str, [bool; 6])] = &[
    //                                   viewer operator admin controller node detector
    ("AgentService/ListContainers",     [A, A, A, A, D, D]),
    ("AgentService/GetContainer",       [A, A, A, A, D, D]),
    ("AgentService/Quarantine",         [D, A, A, A, D, D]),
    ("AgentService/Quarantine(force)",  [D, D, A, D, D, D]),
    ("AgentService/Release",            [D, A, A, A, D, D]),
    ("AgentService/ListQuarantines",    [A, A, A, A, D, D]),
    ("AgentService/GetAudit",           [A, A, A, A, D, D]),
    ("AgentService/VerifyAudit",        [A, A, A, A, D, D]),
    ("AgentService/TestPolicies",       [A, A, A, A, D, D]),
    ("AgentService/SetMode",            [D, D, A, D, D, D]),
    ("AgentService/WatchEvents",        [A, A, A, A, D, D]),
    ("AgentService/ReportDetection",    [D, D, A, D, D, A]),
    ("AgentService/GetBundle",          [D, D, A, A, A, D]),
    ("AgentService/ApplyBundle",        [D, D, A, A, D, D]),
    ("AgentService/BundleStatus",       [A, A, A, A, D, D]),
    ("FleetService/ListNodes",          [A, A, A, A, D, D]),
    ("FleetService/ListContainers",     [A, A, A, A, D, D]),
    ("FleetService/ListQuarantines",    [A, A, A, A, D, D]),
    ("FleetService/GetContainer",       [A, A, A, A, D, D]),
    ("FleetService/GetAudit",           [A, A, A, A, D, D]),
    ("FleetService/WatchEvents",        [A, A, A, A, D, D]),
    ("FleetService/Quarantine",         [D, A, A, A, D, D]),
    ("FleetService/Quarantine(force)",  [D, D, A, D, D, D]),
    ("FleetService/Release",            [D, A, A, A, D, D]),
    ("FleetService/ApplyBundle",        [D, D, A, A, D, D]),
    ("FleetService/ApplyPolicies",      [D, D, A, A, D, D]),
    ("FleetService/ApplyIndicators",    [D, D, A, A, D, D]),
    ("FleetService/GetBundle",          [A, A, A, A, D, D]),
    ("FleetService/SetFleetMode",       [D, D, A, D, D, D]),
];

/// A container no engine holds (not hex: never an id prefix either).
const NO_SUCH: &str = "security-matrix-no-such-container";
const WHY: &str = "security matrix: a harmless probe";
/// Neither a signed bundle nor loadable policies or indicators.
const MALFORMED: &str = "not: [a bundle, nor a policy";
/// The metadata a controller forwards an operator with (fleet/src/caller.rs), as on the wire.
const ON_BEHALF_OF: &str = "x-lazaret-on-behalf-of";
const ON_BEHALF_OF_ROLE: &str = "x-lazaret-on-behalf-of-role";

/// One agent (node-1), the controller seeded with it, and certificates for every role.
fn fleet_with_every_role() -> TestFleet {
    let mut fleet = TestFleet::new().unwrap();
    fleet.add_agent(Placement::loopback(), &[]).unwrap();
    for (role, name) in IDENTITIES {
        if !pki::cert_paths(&fleet.pki_dir, name).0.exists() {
            pki::issue(&fleet.pki_dir, role, name, &[]).unwrap();
        }
    }
    let seed = fleet.agents[0].gossip.clone();
    fleet.add_controller(std::slice::from_ref(&seed)).unwrap();
    wait_until("the controller sees node-1 live", READY, || {
        fleet.fleet_json(&["nodes"]).unwrap()["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|node| node["name"] == "node-1" && node["status"] == "live")
    });
    fleet
}

/// A mutual-TLS channel to `address` trusting `ca`, presenting `identity` (none: no certificate);
/// the connection error when it cannot be opened.
async fn channel(address: &str, ca: &[u8], identity: Option<Identity>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("127.0.0.1");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    let endpoint = Endpoint::from_shared(format!("https://{address}"))
        .and_then(|endpoint| endpoint.connect_timeout(CALL).tls_config(tls))
        .map_err(|error| chain(&error))?;
    match tokio::time::timeout(CALL, endpoint.connect()).await {
        Err(_) => Err(format!(
            "connecting to {address}: no answer within {CALL:?}"
        )),
        Ok(connected) => connected.map_err(|error| chain(&error)),
    }
}

fn identity(dir: &Path, name: &str) -> Identity {
    let (cert, key) = pki::cert_paths(dir, name);
    Identity::from_pem(std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
}

/// Clients of the agent and of the controller as `name`, a certificate of the fleet's.
async fn clients(
    fleet: &TestFleet,
    name: &str,
) -> (AgentServiceClient<Channel>, FleetServiceClient<Channel>) {
    let ca = std::fs::read(fleet.pki_dir.join(pki::CA_CERT)).unwrap();
    let me = || Some(identity(&fleet.pki_dir, name));
    let agent = channel(&fleet.agents[0].api, &ca, me()).await;
    let controller = channel(&fleet.controller.as_ref().unwrap().api, &ca, me()).await;
    match (agent, controller) {
        (Ok(agent), Ok(controller)) => (
            AgentServiceClient::new(agent),
            FleetServiceClient::new(controller),
        ),
        (agent, controller) => panic!("{name} cannot connect: {agent:?}, {controller:?}"),
    }
}

fn req<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(CALL);
    request
}

/// `call`'s status (an opened stream counts as OK), bounded by [`CALL`].
async fn bounded<T>(call: impl Future<Output = Result<T, Status>>) -> Result<(), Status> {
    match tokio::time::timeout(CALL, call).await {
        Ok(answer) => answer.map(drop),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer within {CALL:?} (the test's bound)"
        ))),
    }
}

/// `request` with the forwarded-operator metadata set (`name`, `role`; either may be absent).
fn forwarded<T>(message: T, name: Option<&str>, role: Option<&str>) -> Request<T> {
    let mut request = req(message);
    for (key, value) in [(ON_BEHALF_OF, name), (ON_BEHALF_OF_ROLE, role)] {
        if let Some(value) = value {
            request.metadata_mut().insert(key, value.parse().unwrap());
        }
    }
    request
}

/// `client.method(message)` with the call deadline: its status, bounded (see [`bounded`]).
macro_rules! call {
    ($client:ident.$method:ident($message:expr)) => {
        bounded($client.$method(req($message))).await
    };
}

/// Calls `rpc` (a row of [`SPEC`] without its service) on the agent, harmlessly; `mode` is the
/// agent's mode in force.
async fn call_agent(
    client: &AgentServiceClient<Channel>,
    rpc: &str,
    mode: &str,
) -> Result<(), Status> {
    let mut c = client.clone();
    let target = NO_SUCH.to_string();
    let reason = WHY.to_string();
    let force = rpc == "Quarantine(force)";
    match rpc {
        "ListContainers" => call!(c.list_containers(v1::ListContainersRequest::default())),
        "GetContainer" => call!(c.get_container(v1::GetContainerRequest { target })),
        "Quarantine" | "Quarantine(force)" => call!(c.quarantine(v1::QuarantineRequest {
            target,
            reason,
            force,
            ..Default::default()
        })),
        "Release" => call!(c.release(v1::ReleaseRequest {
            target,
            reason,
            ..Default::default()
        })),
        "ListQuarantines" => call!(c.list_quarantines(v1::ListQuarantinesRequest::default())),
        "GetAudit" => call!(c.get_audit(v1::GetAuditRequest {
            from_sequence: 1,
            limit: 1
        })),
        "VerifyAudit" => call!(c.verify_audit(v1::VerifyAuditRequest {})),
        // No files, no rule: INVALID_ARGUMENT once allowed.
        "TestPolicies" => call!(c.test_policies(v1::TestPoliciesRequest::default())),
        "ReportDetection" => call!(c.report_detection(v1::ReportDetectionRequest::default())),
        "SetMode" => call!(c.set_mode(v1::SetModeRequest {
            mode: mode.into(),
            reason
        })),
        "WatchEvents" => call!(c.watch_events(v1::WatchEventsRequest { from_sequence: 1 })),
        "GetBundle" => call!(c.get_bundle(v1::GetBundleRequest {
            kind: "policies".into(),
            digest: "0".repeat(64)
        })),
        "ApplyBundle" => call!(c.apply_bundle(v1::ApplyBundleRequest {
            bundle: MALFORMED.into()
        })),
        "BundleStatus" => call!(c.bundle_status(v1::BundleStatusRequest {})),
        other => panic!("SPEC has AgentService/{other} but the test has no call for it"),
    }
}

/// [`call_agent`] for the controller; `mode` is the fleet's mode in force.
async fn call_fleet(
    client: &FleetServiceClient<Channel>,
    rpc: &str,
    mode: &str,
) -> Result<(), Status> {
    let mut c = client.clone();
    let target = Some(v1::FleetTarget {
        target: NO_SUCH.into(),
        ..Default::default()
    });
    let reason = WHY.to_string();
    let force = rpc == "Quarantine(force)";
    let content = v1::ApplyContentRequest {
        files: vec![v1::PolicyFile {
            name: "matrix.yaml".into(),
            text: MALFORMED.into(),
        }],
        canary: Vec::new(),
    };
    match rpc {
        "ListNodes" => call!(c.list_nodes(v1::ListNodesRequest {})),
        "ListContainers" => call!(c.list_containers(v1::FleetListContainersRequest::default())),
        "ListQuarantines" => call!(c.list_quarantines(v1::FleetListQuarantinesRequest::default())),
        "GetContainer" => call!(c.get_container(v1::FleetGetContainerRequest {
            target: NO_SUCH.into()
        })),
        "GetAudit" => call!(c.get_audit(v1::FleetGetAuditRequest {
            node: String::new(),
            limit: 1
        })),
        "WatchEvents" => call!(c.watch_events(v1::FleetWatchEventsRequest::default())),
        "Quarantine" | "Quarantine(force)" => call!(c.quarantine(v1::FleetQuarantineRequest {
            target,
            reason,
            force,
            ..Default::default()
        })),
        "Release" => call!(c.release(v1::FleetReleaseRequest {
            target,
            reason,
            ..Default::default()
        })),
        "ApplyBundle" => call!(c.apply_bundle(v1::ApplyBundleRequest {
            bundle: MALFORMED.into()
        })),
        "ApplyPolicies" => call!(c.apply_policies(content)),
        "ApplyIndicators" => call!(c.apply_indicators(content)),
        "GetBundle" => call!(c.get_bundle(v1::FleetGetBundleRequest {
            kind: "policies".into()
        })),
        "SetFleetMode" => call!(c.set_fleet_mode(v1::SetFleetModeRequest {
            mode: mode.into(),
            reason
        })),
        other => panic!("SPEC has FleetService/{other} but the test has no call for it"),
    }
}

/// Every `Service/Method` of package `lazaret.v1`, from the descriptors the servers reflect.
fn methods_in_the_protos() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(lazaret_proto::FILE_DESCRIPTOR_SET)
        .expect("lazaret_proto::FILE_DESCRIPTOR_SET decodes");
    set.file
        .iter()
        .filter(|file| file.package() == "lazaret.v1")
        .flat_map(|file| &file.service)
        .flat_map(|service| {
            (service.method.iter()).map(|method| format!("{}/{}", service.name(), method.name()))
        })
        .collect()
}

/// How a cell reads in the printed matrix.
fn cell(outcome: &Result<(), Status>) -> String {
    match outcome {
        Ok(()) => "allowed (OK)".into(),
        Err(status) if status.code() == Code::PermissionDenied => "denied".into(),
        Err(status) => format!("allowed ({:?})", status.code()),
    }
}

/// Why `outcome` breaks the spec for `role`, if it does.
fn mismatch(role: Role, allowed: bool, outcome: &Result<(), Status>) -> Option<String> {
    let Err(status) = outcome else {
        return (!allowed).then(|| "expected denied, got OK".into());
    };
    let (code, message) = (status.code(), status.message());
    match (allowed, code) {
        (false, Code::PermissionDenied) => (!message.contains(&format!("role {role} may not")))
            .then(|| format!("denied, but the message does not name role {role}: {message}")),
        (false, _) => Some(format!("expected denied, got {code:?}: {message}")),
        (true, Code::PermissionDenied) => Some(format!("expected allowed, got denied: {message}")),
        // Not a handler's answer: the call never showed what the handler decides.
        (true, Code::Unauthenticated | Code::Unavailable | Code::Unknown)
        | (true, Code::DeadlineExceeded | Code::Cancelled) => Some(format!(
            "allowed, but {code:?} is no handler's answer: {message}"
        )),
        (true, _) => None,
    }
}

#[test]
fn every_rpc_answers_every_role_as_the_security_matrix_says() {
    init_tracing();
    // Completeness first (no processes needed): a row for every method, no row for none.
    let methods = methods_in_the_protos();
    let services = ["AgentService/", "FleetService/"];
    let found = services.map(|service| methods.iter().any(|m| m.starts_with(service)));
    assert_eq!(found, [true, true], "both services in {methods:?}");
    let rows: BTreeSet<String> = SPEC
        .iter()
        .map(|(row, _)| row.trim_end_matches("(force)").to_string())
        .collect();
    let missing: Vec<&String> = methods.difference(&rows).collect();
    let stale: Vec<&String> = rows.difference(&methods).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "SPEC must have a row for every RPC of lazaret.v1: no row for {missing:?}; rows for no \
         RPC: {stale:?}"
    );

    let fleet = fleet_with_every_role();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (matrix, mismatches) = runtime.block_on(async {
        let mut connected = Vec::new();
        for (_, identity) in IDENTITIES {
            connected.push(clients(&fleet, identity).await);
        }
        // The modes in force, so SetMode / SetFleetMode change nothing.
        let mut admin = connected[2].1.clone(); // IDENTITIES[2]
        let nodes = admin.list_nodes(v1::ListNodesRequest {}).await.unwrap();
        let nodes = nodes.into_inner();
        let node_1 = nodes.nodes.iter().find(|node| node.name == "node-1");
        let agent_mode = match node_1.expect("node-1 listed").audit_only {
            true => "audit-only",
            false => "enforce",
        };
        println!(
            "in force: node-1 {agent_mode}, fleet {:?}",
            nodes.fleet_mode
        );
        let fleet_mode = match nodes.fleet_mode.as_str() {
            "" => agent_mode.to_string(),
            mode => mode.to_string(),
        };

        let columns = IDENTITIES.map(|(role, _)| format!("{:<27}", role.as_str()));
        let mut matrix = format!("{:<34}{}\n", "RPC", columns.concat().trim_end());
        let mut mismatches = Vec::new();
        for (row, expected) in SPEC {
            let (service, rpc) = row.split_once('/').unwrap();
            let mut line = format!("{row:<34}");
            for (column, (role, identity)) in IDENTITIES.iter().enumerate() {
                let (agent, controller) = &connected[column];
                let outcome = match service {
                    "AgentService" => call_agent(agent, rpc, agent_mode).await,
                    _ => call_fleet(controller, rpc, &fleet_mode).await,
                };
                let wrong = mismatch(*role, expected[column], &outcome);
                let mark = if wrong.is_some() { "!!" } else { "" };
                line.push_str(&format!("{:<27}", format!("{}{mark}", cell(&outcome))));
                if let Some(why) = wrong {
                    mismatches.push(format!("{row} as {role} ({identity}): {why}"));
                }
            }
            matrix.push_str(line.trim_end());
            matrix.push('\n');
        }
        (matrix, mismatches)
    });
    println!(
        "security matrix ({} RPCs, {} rows x {} roles, !! = against the spec):\n{matrix}",
        methods.len(),
        SPEC.len(),
        IDENTITIES.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} cells break the spec:\n{}\n\n{matrix}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Asserts `outcome` is `PERMISSION_DENIED` with a message starting with `starts`.
fn assert_refused(outcome: Result<(), Status>, starts: &str, what: &str) {
    let refused = outcome.expect_err(what);
    assert_eq!(
        refused.code(),
        Code::PermissionDenied,
        "{what}: {refused:?}"
    );
    assert!(refused.message().starts_with(starts), "{what}: {refused:?}");
}

#[test]
fn a_node_certificate_is_refused_admin_operations_and_only_a_controller_forwards_an_identity() {
    init_tracing();
    let fleet = fleet_with_every_role();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // node-1, the agent's own certificate, may fetch bundles from peers and nothing else.
        let (agent, controller) = clients(&fleet, "node-1").await;
        let node_may_not = "node-1 (node): role node may not";
        for rpc in [
            "SetMode",
            "ApplyBundle",
            "Quarantine(force)",
            "ReportDetection",
        ] {
            let outcome = call_agent(&agent, rpc, "enforce").await;
            assert_refused(
                outcome,
                node_may_not,
                &format!("node-1 on the agent: {rpc}"),
            );
        }
        for rpc in [
            "SetFleetMode",
            "ApplyPolicies",
            "ApplyBundle",
            "Quarantine(force)",
        ] {
            let outcome = call_fleet(&controller, rpc, "enforce").await;
            assert_refused(
                outcome,
                node_may_not,
                &format!("node-1 on the controller: {rpc}"),
            );
        }

        // Anyone but a controller claiming to call for an admin: refused, however the claim
        // reads (both entries, one only, an unknown role), by the agent and the controller.
        let claims = [
            (Some("admin"), Some("admin")),
            (Some("admin"), None),
            (None, Some("admin")),
            (Some("admin"), Some("root")),
        ];
        let others = IDENTITIES
            .iter()
            .filter(|(role, _)| *role != Role::Controller);
        for (role, identity) in others {
            let (mut agent, mut controller) = clients(&fleet, identity).await;
            let expected = format!(
                "{identity} ({role}): only a controller may call on behalf of someone else"
            );
            for (name, claimed) in claims {
                let what = format!("{identity} claiming {name:?}/{claimed:?}");
                let asked = forwarded(v1::ListContainersRequest::default(), name, claimed);
                let outcome = bounded(agent.list_containers(asked)).await;
                assert_refused(outcome, &expected, &format!("{what} on the agent"));
                let asked = forwarded(v1::ListNodesRequest {}, name, claimed);
                let outcome = bounded(controller.list_nodes(asked)).await;
                assert_refused(outcome, &expected, &format!("{what} on the controller"));
            }
        }

        // A controller is believed, and the operator it forwards is the one checked.
        let (mut agent, _) = clients(&fleet, "controller").await;
        let quarantine = || v1::QuarantineRequest {
            target: NO_SUCH.into(),
            reason: WHY.into(),
            ..Default::default()
        };
        let as_viewer = forwarded(quarantine(), Some("alice"), Some("viewer"));
        let outcome = bounded(agent.quarantine(as_viewer)).await;
        assert_refused(
            outcome,
            "alice (viewer): role viewer may not",
            "viewer via controller",
        );
        let as_operator = forwarded(quarantine(), Some("bob"), Some("operator"));
        let answered = bounded(agent.quarantine(as_operator)).await.unwrap_err();
        assert_eq!(answered.code(), Code::NotFound, "{answered:?}");
        let as_node = forwarded(
            v1::ListContainersRequest::default(),
            Some("x"),
            Some("node"),
        );
        let outcome = bounded(agent.list_containers(as_node)).await;
        assert_refused(
            outcome,
            "controller: a controller forwards operators, not role node",
            "node via controller",
        );
    });
}

/// What a client presenting `identity` (none: no certificate) and trusting `ca` gets from the
/// agent (`controller` false) or the controller: `Ok(code)` when a handler answered,
/// `Err(why)` when the connection was refused before any handler ran.
async fn reach(
    address: &str,
    controller: bool,
    ca: &[u8],
    identity: Option<Identity>,
) -> Result<Code, String> {
    let channel = match channel(address, ca, identity).await {
        Err(why) => return Err(format!("connect: {why}")),
        Ok(channel) => channel,
    };
    // TLS 1.3: the server checks the client's certificate after the client's side of the
    // handshake is done, so the refusal may only show on the first call.
    let answer = if controller {
        bounded(FleetServiceClient::new(channel).list_nodes(v1::ListNodesRequest {})).await
    } else {
        let mut agent = AgentServiceClient::new(channel);
        bounded(agent.list_containers(v1::ListContainersRequest::default())).await
    };
    match answer {
        Ok(()) => Ok(Code::Ok),
        // A status tonic made from a broken connection (it carries the error), no server's.
        Err(status) if std::error::Error::source(&status).is_some() => {
            Err(format!("first call: {}", chain(&status)))
        }
        Err(status) => Ok(status.code()),
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let causes = std::iter::successors(Some(error), |error| error.source());
    causes
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

#[test]
fn clients_without_a_fleet_certificate_are_refused_in_the_tls_handshake() {
    init_tracing();
    let fleet = fleet_with_every_role();
    let other = tempfile::tempdir().unwrap();
    let other_pki = other.path().join("pki");
    pki::init(&other_pki, 0).unwrap();
    let ca = std::fs::read(fleet.pki_dir.join(pki::CA_CERT)).unwrap();
    let agent_api = fleet.agents[0].api.clone();
    let controller_api = fleet.controller.as_ref().unwrap().api.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for (what, address, controller) in [
            ("agent", &agent_api, false),
            ("controller", &controller_api, true),
        ] {
            // The same client with the fleet's admin certificate is answered: the refusals
            // below are the certificate's doing, not the client's.
            let admin = Some(identity(&fleet.pki_dir, "admin"));
            let answered = reach(address, controller, &ca, admin).await;
            assert_eq!(
                answered,
                Ok(Code::Ok),
                "the {what} answers the fleet's admin"
            );
            for (who, presented) in [
                ("no certificate", None),
                ("another CA's admin", Some(identity(&other_pki, "admin"))),
            ] {
                match reach(address, controller, &ca, presented).await {
                    Ok(code) => panic!("the {what} let {who} through the handshake ({code:?})"),
                    Err(why) => println!("the {what} refused {who}: {why}"),
                }
            }
        }
    });
}
