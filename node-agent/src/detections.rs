//! The detections intake (DESIGN.md §3, §5): an HTTP endpoint on loopback and/or a unix socket
//! (mode 0600, so only root reaches it) that takes Falco's `http_output` JSON unchanged (`POST
//! /falco`; `/` too), with a bearer token on both, so that a forged alert cannot quarantine
//! anything. Each alert is parsed whole (`lazaret_core::detection`) and
//! handed to the enforcement task, which answers it with the policies' `kind: Response` rules
//! ([`crate::enforce::engine::detect`]).
//!
//! Answers: 200 with `{outcome, container, response, reason}` (outcome `quarantined`, `refused`,
//! `repeated`, `no-response`, `unmatched`); 401 without the right token; 400 for a body that is
//! not a Falco alert about a container (the reason says why); 503 when enforcement is down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use lazaret_core::detection::{ContainerDetection, FalcoAlert};
use serde_json::json;
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::enforce::engine::EnforcerHandle;
use crate::enforce::engine::detect::DetectOutcome;

/// The largest alert taken (Falco's are a few KiB).
const MAX_BODY: usize = 64 * 1024;

/// Where the intake listens and the token it wants.
#[derive(Clone, PartialEq, Eq)]
pub struct IntakeSettings {
    /// A loopback address.
    pub listen: Option<SocketAddr>,
    /// A unix socket's path.
    pub socket: Option<PathBuf>,
    pub token: String,
}

impl std::fmt::Debug for IntakeSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("IntakeSettings")
            .field("listen", &self.listen)
            .field("socket", &self.socket)
            .field("token", &"<redacted>")
            .finish()
    }
}

struct Intake {
    token: String,
    enforcer: EnforcerHandle,
}

/// The JSON answer for `outcome`.
pub fn answer(outcome: &DetectOutcome) -> serde_json::Value {
    match outcome {
        DetectOutcome::Quarantined { response, record } => json!({
            "outcome": outcome.as_str(), "container": record.container.as_str(),
            "response": response, "reason": record.reason,
        }),
        DetectOutcome::Refused { response, reason } => json!({
            "outcome": outcome.as_str(), "response": response, "reason": reason,
        }),
        DetectOutcome::Repeated { container } => json!({
            "outcome": outcome.as_str(), "container": container.as_str(),
        }),
        DetectOutcome::NoResponse {
            container,
            would_have,
        } => json!({
            "outcome": outcome.as_str(), "container": container.as_str(), "would_have": would_have,
        }),
        DetectOutcome::Unmatched { why } => json!({"outcome": outcome.as_str(), "reason": why}),
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> axum::response::Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Compared as digests: the time taken says nothing about how much of the token was right.
    let digest = |text: &str| ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest(given.trim()).as_ref() == digest(token).as_ref()
}

async fn falco(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if !authorized(&headers, &intake.token) {
        warn!("a detection without the right bearer token was refused");
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or wrong bearer token (Authorization: Bearer <detections token>)"}),
        );
    }
    let found: ContainerDetection =
        match FalcoAlert::parse(&body).and_then(FalcoAlert::into_detection) {
            Ok(found) => found,
            Err(why) => return reply(StatusCode::BAD_REQUEST, json!({"error": why})),
        };
    match intake.enforcer.detect(found).await {
        Ok(outcome) => reply(StatusCode::OK, answer(&outcome)),
        Err(error) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": format!("enforcement is not running: {error}")}),
        ),
    }
}

/// Binds `settings.listen` and `settings.socket` and serves on both until `shutdown` (the socket
/// file is removed then). Returns the bound TCP address, if any.
pub async fn serve(
    settings: &IntakeSettings,
    enforcer: EnforcerHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<(Option<SocketAddr>, Vec<JoinHandle<()>>)> {
    let intake = Arc::new(Intake {
        token: settings.token.clone(),
        enforcer,
    });
    let app = Router::new()
        .route("/falco", post(falco))
        .route("/", post(falco))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(intake);
    let mut tasks = Vec::new();
    let mut bound = None;
    if let Some(listen) = settings.listen {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot bind the detections intake on {listen}"))?;
        let address = listener
            .local_addr()
            .context("cannot read the intake address")?;
        info!(%address, "detections intake listening (Falco http_output, bearer token)");
        bound = Some(address);
        tasks.push(tokio::spawn(served(
            listener,
            app.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(path) = &settings.socket {
        let listener = bind_socket(path)?;
        info!(socket = %path.display(), "detections intake listening on a unix socket (bearer token)");
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            served(listener, app, shutdown).await;
            drop(std::fs::remove_file(&path));
        }));
    }
    Ok((bound, tasks))
}

/// Serves `app` on `listener` until `shutdown`.
async fn served<L>(listener: L, app: Router, shutdown: CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(served) = served {
        error!(error = %served, "the detections intake stopped");
    }
}

/// Binds a unix socket at `path`, readable and writable by the agent's user only. A socket left
/// by an earlier run is replaced; any other file there is an error (never deleted).
fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("cannot replace the old socket {}", path.display()))?,
        Ok(_) => anyhow::bail!(
            "{} exists and is not a socket: not replacing it",
            path.display()
        ),
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot bind the detections intake on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    Ok(listener)
}
