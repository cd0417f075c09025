//! `GET /metrics` (OpenMetrics text) for the agent and the controller alike: each passes how to
//! encode its registry at scrape time.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Binds `listen` and serves `encode()` at `GET /metrics` until `shutdown`. Returns the bound
/// address (a `:0` port resolved) and the server task.
pub async fn serve<F>(
    encode: F,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)>
where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to bind the metrics endpoint on {listen}"))?;
    let bound = listener
        .local_addr()
        .context("failed to read the metrics address")?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let encode = encode.clone();
            async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    encode(),
                )
            }
        }),
    );
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "metrics endpoint failed");
        }
    });
    Ok((bound, task))
}
