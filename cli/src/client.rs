//! Connecting to an agent or the controller: mutual TLS with a certificate from the fleet PKI directory, and the
//! one place where a failed call becomes a one-line message and an exit code.
//!
//! Exit codes (documented in `lazaretctl --help`): 0 done; 1 the agent refused or failed the
//! request (the message says why and what to do); 3 the agent could not be reached or the TLS
//! handshake failed; 2 is clap's for a malformed command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use lazaret_proto::v1::agent_service_client::AgentServiceClient;
use lazaret_proto::v1::fleet_service_client::FleetServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::pki;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take (not `events --follow`).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest message sent (a signed bundle).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_UNREACHABLE: u8 = 3;

/// Where to connect and as whom.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` of the agent.
    pub agent: String,
    /// `host:port` of the controller, when fleet-wide commands go through one.
    pub controller: Option<String>,
    /// The PKI directory (`ca.pem`, `NAME.pem`, `NAME-key.pem`).
    pub tls_dir: PathBuf,
    /// Whose certificate to present.
    pub identity: String,
}

/// A failure, already worded for the operator, with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    pub fn exit(self) -> ExitCode {
        eprintln!("error: {}", self.message);
        ExitCode::from(self.code)
    }
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        let code = match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown => EXIT_UNREACHABLE,
            _ => EXIT_REFUSED,
        };
        let what = match status.code() {
            Code::PermissionDenied => "not allowed",
            Code::Unauthenticated => "not authenticated",
            Code::NotFound => "not found",
            Code::FailedPrecondition => "refused",
            Code::InvalidArgument => "invalid request",
            Code::Unavailable => "agent unavailable",
            Code::Unimplemented => "not available yet",
            _ => "failed",
        };
        Failure {
            message: format!("{what}: {}", status.message()),
            code,
        }
    }
}

fn read(path: &Path, hint: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|error| Failure {
        message: format!("cannot read {}: {error}; {hint}", path.display()),
        code: EXIT_UNREACHABLE,
    })
}

/// A client of the agent at `target`, connected (TLS handshake done).
pub async fn connect(target: &Target) -> Result<AgentServiceClient<Channel>, Failure> {
    let channel = channel(target, &target.agent, "agent", "--agent").await?;
    Ok(AgentServiceClient::new(channel).max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// A client of `target`'s controller, connected.
pub async fn connect_controller(target: &Target) -> Result<FleetServiceClient<Channel>, Failure> {
    let address = target.controller.as_deref().unwrap_or_default();
    let channel = channel(target, address, "controller", "--controller").await?;
    Ok(FleetServiceClient::new(channel).max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// A mutual-TLS channel to `what` (agent, controller) at `address`, as `target`'s identity.
async fn channel(
    target: &Target,
    address: &str,
    what: &str,
    flag: &str,
) -> Result<Channel, Failure> {
    let hint = "set --tls-dir (or LAZARET_TLS_DIR) to a PKI directory made by `lazaretctl pki \
                init`, and --as to a certificate name in it";
    let ca = read(&target.tls_dir.join(pki::CA_CERT), hint)?;
    let (cert, key) = pki::cert_paths(&target.tls_dir, &target.identity);
    let cert = read(&cert, hint)?;
    let key = read(&key, hint)?;
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key))
        .domain_name(host);
    let unreachable = |error: &dyn std::fmt::Display| Failure {
        message: format!(
            "cannot reach the {what} at {address}: {error} (is it running with --tls-dir? is {flag} right?)"
        ),
        code: EXIT_UNREACHABLE,
    };
    let endpoint = Endpoint::from_shared(format!("https://{address}"))
        .map_err(|error| unreachable(&error))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tls_config(tls)
        .map_err(|error| unreachable(&error))?;
    let channel = endpoint.connect().await.map_err(|error| {
        let mut source: Option<&dyn std::error::Error> = Some(&error);
        let mut text = String::new();
        while let Some(cause) = source {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        unreachable(&text)
    })?;
    Ok(channel)
}

/// Runs `work` on a single-threaded runtime; a failure is printed as one line and becomes its
/// exit code.
pub fn block_on(work: impl std::future::Future<Output = Result<(), Failure>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    }
}

/// A request with the call deadline set.
pub fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}
