//! `grpc.health.v1` for the agent: `lazaret.v1.AgentService` (and the server as a whole, `""`)
//! answer `SERVING` only while every runtime the agent watches is connected. Bundles and policies
//! are loaded before the API starts, so a serving agent judges with what it holds; a runtime that
//! is gone makes it `NOT_SERVING` until the watcher reconnects (Kubernetes probes, load balancers
//! and `grpc_health_probe` see it).

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::watcher::RuntimeStatus;

/// The service name health checks ask about.
pub const SERVICE: &str = "lazaret.v1.AgentService";

/// Keeps `health` in line with `runtimes` until `shutdown` (or every status sender is gone).
pub async fn follow(
    health: HealthReporter,
    mut runtimes: Vec<watch::Receiver<RuntimeStatus>>,
    shutdown: CancellationToken,
) {
    loop {
        let ready = runtimes.iter().all(|status| status.borrow().connected);
        let status = match ready {
            true => ServingStatus::Serving,
            false => ServingStatus::NotServing,
        };
        health.set_service_status(SERVICE, status).await;
        health.set_service_status("", status).await;
        if runtimes.is_empty() {
            return;
        }
        let changed = futures::future::select_all(
            runtimes.iter_mut().map(|status| Box::pin(status.changed())),
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            (result, _, _) = changed => {
                if result.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus as Answer;
    use tonic_health::pb::health_server::Health;

    use super::*;

    async fn asked(health: &impl Health, service: &str) -> Answer {
        let request = tonic::Request::new(HealthCheckRequest {
            service: service.into(),
        });
        match health.check(request).await {
            Ok(answer) => Answer::try_from(answer.into_inner().status).unwrap(),
            // Not set yet.
            Err(_) => Answer::ServiceUnknown,
        }
    }

    async fn until(health: &impl Health, wanted: Answer) {
        for _ in 0..200 {
            if asked(health, SERVICE).await == wanted && asked(health, "").await == wanted {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never {wanted:?}");
    }

    #[tokio::test]
    async fn serving_only_while_every_runtime_is_connected() {
        let reporter = tonic_health::server::HealthReporter::new();
        let service = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
        let status = |connected| RuntimeStatus {
            connected,
            version: None,
            last_error: None,
            reconnects: 0,
        };
        let (docker, docker_status) = watch::channel(status(true));
        let (containerd, containerd_status) = watch::channel(status(false));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(follow(
            reporter,
            vec![docker_status, containerd_status],
            shutdown.clone(),
        ));
        until(&service, Answer::NotServing).await;
        containerd.send_replace(status(true));
        until(&service, Answer::Serving).await;
        docker.send_replace(status(false));
        until(&service, Answer::NotServing).await;
        shutdown.cancel();
        task.await.unwrap();
    }
}
