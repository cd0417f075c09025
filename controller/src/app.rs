//! Starting the controller: its store, gossip as `controller` (its certificate seals its values),
//! the fleet-wide switch it last set published again, audit anchoring, the blast-radius budget,
//! `/metrics` when configured, and `FleetService` over mutual TLS (with `grpc.health.v1`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lazaret_core::gossip::{GossipKey, NodeValue};
use lazaret_core::roles::Role;
use lazaret_fleet::caller::Caller;
use lazaret_fleet::channels::Channels;
use lazaret_fleet::gossip::identity::{NodeSigner, PeerTrust};
use lazaret_fleet::gossip::{Gossip, GossipMetrics};
use lazaret_proto::v1::fleet_service_server::FleetServiceServer;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tracing::info;

use crate::agents::{Agents, CALL_TIMEOUT};
use crate::anchors::Anchoring;
use crate::config::ControllerConfig;
use crate::service::FleetApi;
use crate::state::State;
use crate::switch::BudgetWatch;

/// A running controller.
pub struct RunningController {
    /// Where `FleetService` is bound.
    pub api: SocketAddr,
    tasks: JoinSet<()>,
    gossip: Arc<Gossip>,
}

impl RunningController {
    /// Waits for every task after `shutdown` was cancelled.
    pub async fn drain(mut self) {
        self.gossip.shutdown();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts the controller; it stops with `shutdown`.
pub async fn start(
    mut config: ControllerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningController> {
    let signing_key = config.signing_key.take();
    let read = |file: String| {
        let path = config.tls_dir.join(&file);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let ca = read("ca.pem".into())?;
    let cert = read(format!("{}.pem", config.name))?;
    let key = read(format!("{}-key.pem", config.name))?;
    let state = State::open(&config.state_dir)?;
    let generation = state.next_generation()?;
    let mut registry = Registry::with_prefix("lazaret_controller");
    let gossip_metrics = GossipMetrics::register(&mut registry);
    let rewrites = Counter::default();
    registry.register(
        "audit_rewrites",
        "Agents whose audit chain the controller saw rewritten",
        rewrites.clone(),
    );
    let tripped = Counter::default();
    registry.register(
        "blast_radius_tripped",
        "Times the fleet's blast-radius budget flipped the fleet to audit-only",
        tripped.clone(),
    );
    let settings = &config.gossip;
    let signer = NodeSigner::new(
        &settings.cluster,
        &config.name,
        String::from_utf8_lossy(&cert).into_owned(),
        &key,
    )?;
    let trust = PeerTrust::new(&settings.cluster, &ca)?;
    let gossip = Arc::new(
        Gossip::start(
            settings,
            generation,
            signer,
            trust,
            gossip_metrics,
            &config.name,
        )
        .await?,
    );
    let lag = crate::lag::LagWatch::register(
        &mut registry,
        gossip.clone(),
        settings.interval.max(Duration::from_secs(1)),
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot bind the API on {}", config.listen))?;
    let bound = listener
        .local_addr()
        .context("cannot read the API address")?;
    let node = NodeValue {
        version: env!("CARGO_PKG_VERSION").into(),
        hostname: config.name.clone(),
        runtimes: Vec::new(),
        grpc: bound.to_string(),
        detections: None,
    };
    gossip.publish(&GossipKey::Node, &node).await?;
    if let Some(mode) = state.fleet_mode()? {
        gossip.publish(&GossipKey::FleetMode, &mode).await?;
    }
    info!(api = %bound, gossip = %settings.listen, generation, "controller running");

    let agents = Arc::new(Agents::new(
        gossip.clone(),
        Channels::new(&ca, &cert, &key, CALL_TIMEOUT),
    ));
    let mut tasks = JoinSet::new();
    let anchoring = Anchoring {
        gossip: gossip.clone(),
        agents: agents.clone(),
        state: state.clone(),
        me: Caller {
            name: config.name.clone(),
            role: Role::Controller,
            via: None,
        },
        rewrites,
        interval: settings.interval.max(Duration::from_secs(1)),
    };
    tasks.spawn(anchoring.run(shutdown.clone()));
    let budget = BudgetWatch {
        gossip: gossip.clone(),
        state: state.clone(),
        budget: config.budget,
        name: config.name.clone(),
        tripped,
        interval: settings.interval.max(Duration::from_millis(500)),
    };
    tasks.spawn(budget.run(shutdown.clone()));
    tasks.spawn(lag.run(shutdown.clone()));
    if let Some(listen) = config.metrics {
        let registry = Arc::new(registry);
        let encode = move || {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry)
                .expect("encoding metrics into a string");
            text
        };
        let (bound, task) =
            lazaret_fleet::metrics_endpoint::serve(encode, listen, shutdown.clone()).await?;
        info!(address = %bound, "metrics endpoint listening");
        tasks.spawn(async move {
            let _served = task.await;
        });
    }
    let me = Caller {
        name: config.name.clone(),
        role: Role::Controller,
        via: None,
    };
    let api = FleetApi {
        name: config.name.clone(),
        gossip: gossip.clone(),
        agents,
        state,
        me,
        signing_key,
        validity: config.validity,
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<FleetServiceServer<FleetApi>>().await;
    let router = Server::builder()
        .tls_config(
            ServerTlsConfig::new()
                .identity(Identity::from_pem(&cert, &key))
                .client_ca_root(Certificate::from_pem(&ca)),
        )
        .context("the API's TLS configuration was refused")?
        .add_service(health_service)
        .add_service(FleetServiceServer::new(api));
    tasks.spawn(async move {
        let incoming = TcpListenerStream::new(listener).map(|accepted| {
            if let Ok(stream) = &accepted {
                let _nodelay = stream.set_nodelay(true);
            }
            accepted
        });
        if let Err(error) = router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
        {
            tracing::error!(%error, "the API server stopped");
        }
    });
    Ok(RunningController {
        api: bound,
        tasks,
        gossip,
    })
}
