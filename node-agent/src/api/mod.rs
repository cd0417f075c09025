//! The agent's gRPC API (DESIGN.md §3): `lazaret.v1.AgentService`, `grpc.health.v1` and server
//! reflection, over TLS with client certificates required (rustls through tonic).
//!
//! - [`identity`]: who is calling, from the verified client certificate (name and role);
//! - [`service`]: the RPCs, each authorized against `lazaret_core::roles` before it does anything.
//!
//! Nothing is served without TLS: with no TLS directory configured the API is off. The server's
//! certificate and the CA come from the directory `lazaretctl pki init` made (`ca.pem`,
//! `NAME.pem`, `NAME-key.pem`); a client without a certificate from that CA is refused in the
//! handshake, before any handler runs.

mod bundles;
pub mod readiness;
pub use lazaret_fleet::caller as identity;
pub mod service;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use lazaret_proto::v1::agent_service_server::AgentServiceServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tracing::{debug, error, info};

pub use self::service::AgentApi;
use crate::metrics::Metrics;

/// Where and as whom the API is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    pub listen: SocketAddr,
    /// Holds `ca.pem` and the server's `NAME.pem` / `NAME-key.pem`.
    pub tls_dir: PathBuf,
    /// Whose certificate the server presents (the node's name).
    pub cert_name: String,
}

/// When the PEM certificate `pem` stops being valid, Unix seconds.
fn not_after(pem: &[u8]) -> anyhow::Result<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).context("not a PEM certificate")?;
    let certificate = pem.parse_x509().context("the certificate does not parse")?;
    Ok(certificate.validity().not_after.timestamp())
}

/// The node's TLS material from the PKI directory (PEM): read once at start, for the API server,
/// and for gossip (which seals with the same key and fetches bundles with the same certificate).
#[derive(Clone)]
pub struct TlsFiles {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl ApiSettings {
    /// Reads `ca.pem`, `NAME.pem` and `NAME-key.pem`; the error names the file and how to make it.
    pub fn read_tls(&self) -> anyhow::Result<TlsFiles> {
        let read = |path: PathBuf| {
            std::fs::read(&path).with_context(|| {
                format!(
                    "cannot read {}: make the PKI with `lazaretctl pki init --dir {}` (or `pki issue \
                     --role node --name {}`)",
                    path.display(),
                    self.tls_dir.display(),
                    self.cert_name
                )
            })
        };
        let dir: &Path = &self.tls_dir;
        Ok(TlsFiles {
            ca: read(dir.join("ca.pem"))?,
            cert: read(dir.join(format!("{}.pem", self.cert_name)))?,
            key: read(dir.join(format!("{}-key.pem", self.cert_name)))?,
        })
    }
}

/// The server's TLS configuration (and when its certificates expire, as metrics).
fn tls_config(
    settings: &ApiSettings,
    files: &TlsFiles,
    metrics: &Metrics,
) -> anyhow::Result<ServerTlsConfig> {
    metrics.set_certificate_expiry("ca", not_after(&files.ca).context("ca.pem")?);
    metrics.set_certificate_expiry(
        &settings.cert_name,
        not_after(&files.cert).with_context(|| format!("{}.pem", settings.cert_name))?,
    );
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(&files.cert, &files.key))
        .client_ca_root(Certificate::from_pem(&files.ca)))
}

/// Binds `settings.listen` and serves until `shutdown`. Returns the bound address (a `:0` port is
/// resolved) and the server task.
pub async fn serve(
    settings: &ApiSettings,
    files: &TlsFiles,
    api: AgentApi,
    metrics: &Metrics,
    runtimes: Vec<tokio::sync::watch::Receiver<crate::watcher::RuntimeStatus>>,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let tls = tls_config(settings, files, metrics)?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot bind the API on {}", settings.listen))?;
    let bound = listener
        .local_addr()
        .context("cannot read the API address")?;
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(readiness::follow(health, runtimes, shutdown.clone()));
    // Both reflection versions: grpcurl asks v1, grpcio's client library v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(lazaret_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .context("cannot build the reflection service")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("cannot build the reflection service")?;
    let router = Server::builder()
        .tls_config(tls)
        .context("the API's TLS configuration was refused")?
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AgentServiceServer::new(api));
    info!(address = %bound, cert = %settings.cert_name, "API listening (TLS, client certificates required)");
    let task = tokio::spawn(async move {
        // Small gRPC frames must not wait for delayed ACKs (measured: +40 ms per call).
        let incoming = TcpListenerStream::new(listener).map(|accepted| {
            if let Ok(stream) = &accepted
                && let Err(error) = stream.set_nodelay(true)
            {
                debug!(%error, "cannot set TCP_NODELAY on an API connection");
            }
            accepted
        });
        let served = router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await;
        if let Err(served) = served {
            error!(error = %served, "the API server stopped");
        }
    });
    Ok((bound, task))
}
