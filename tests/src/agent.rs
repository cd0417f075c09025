//! An agent started in process for a test, against a real engine, with helpers to wait for
//! what it should see. Stopped (shutdown token cancelled, tasks drained) by [`TestAgent::stop`]
//! or, as a last resort, on drop.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lazaret_agent::app::{self, RunningAgent};
use lazaret_agent::bundles::BundleBook;
use lazaret_agent::clock::{Clock, SystemClock};
use lazaret_agent::config::{AgentConfig, RawConfig};
use lazaret_agent::enforce::engine::{Enforced, EnforcerHandle};
use lazaret_agent::inventory::InventorySnapshot;
use lazaret_agent::runtime::ContainerRuntime;
use lazaret_agent::runtime::docker::DockerRuntime;
use lazaret_agent::watcher::{Backoff, RuntimeStatus};
use lazaret_core::policy::{PolicySet, PolicySource};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The machine's Docker socket.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// How long tests wait for the agent to see something: generous, the tests are not timings.
pub const SEE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TestAgent {
    pub agent: Option<RunningAgent>,
    shutdown: CancellationToken,
}

impl TestAgent {
    /// Starts an agent watching the Docker engine at `socket`, with fast reconnects.
    pub async fn start_docker(socket: &str) -> anyhow::Result<TestAgent> {
        Self::start_runtimes(vec![Arc::new(DockerRuntime::new(socket))]).await
    }

    /// Starts an agent watching `runtimes` (e.g. a `ContainerdRuntime`), with fast reconnects.
    pub async fn start_runtimes(
        runtimes: Vec<Arc<dyn ContainerRuntime>>,
    ) -> anyhow::Result<TestAgent> {
        let shutdown = CancellationToken::new();
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let agent = app::start_with_backoff(
            Some("127.0.0.1:0".parse()?),
            backoff,
            runtimes,
            shutdown.clone(),
        )
        .await?;
        Ok(TestAgent {
            agent: Some(agent),
            shutdown,
        })
    }

    /// Starts an agent enforcing `policies` (YAML) on the machine's Docker engine, with its
    /// state in `state_dir` and quarantines re-checked every `recheck`: the in-process harness
    /// that quarantines and releases without the API ([`Self::enforcer`]).
    pub async fn start_enforcing(
        state_dir: &Path,
        policies: &str,
        recheck: Duration,
    ) -> anyhow::Result<TestAgent> {
        TestAgent::start_enforcing_with(state_dir, policies, recheck, Arc::new(SystemClock), |_| {})
            .await
    }

    /// [`Self::start_enforcing`] with the wall clock read from `clock` (TTLs, exemptions,
    /// bundle expiry) and the configuration changed by `edit` after validation.
    pub async fn start_enforcing_with(
        state_dir: &Path,
        policies: &str,
        recheck: Duration,
        clock: Arc<dyn Clock>,
        edit: impl FnOnce(&mut AgentConfig),
    ) -> anyhow::Result<TestAgent> {
        let mut raw = RawConfig::default();
        raw.metrics.listen = String::new();
        raw.containerd.enabled = Some(false);
        raw.state.dir = state_dir.to_path_buf();
        raw.enforcement.recheck_interval = recheck;
        let mut config = raw.validate()?;
        edit(&mut config);
        let policies = PolicySet::load(&[PolicySource::new("e2e.yaml", policies)])?;
        let shutdown = CancellationToken::new();
        let runtimes: Vec<Arc<dyn ContainerRuntime>> =
            vec![Arc::new(DockerRuntime::new(DEFAULT_DOCKER_SOCKET))];
        let agent =
            app::start_with_clock(&config, runtimes, Some(policies), shutdown.clone(), clock)
                .await?;
        Ok(TestAgent {
            agent: Some(agent),
            shutdown,
        })
    }

    /// The signed bundles the agent holds (agents started with policies).
    pub fn bundles(&self) -> &Arc<BundleBook> {
        self.running()
            .bundles
            .as_ref()
            .expect("an agent started with policies")
    }

    /// The running enforcement task (agents started with policies).
    pub fn enforcer(&self) -> &EnforcerHandle {
        self.running()
            .enforcer
            .as_ref()
            .expect("an agent started with policies")
    }

    /// Every quarantine the agent carries out from now on (agents started with policies).
    pub fn subscribe_enforced(&self) -> broadcast::Receiver<Enforced> {
        self.running()
            .subscribe_enforced()
            .expect("an agent started with policies")
    }

    fn running(&self) -> &RunningAgent {
        self.agent.as_ref().expect("agent running")
    }

    pub fn snapshot(&self) -> Arc<InventorySnapshot> {
        self.running().inventory.current()
    }

    pub fn metrics_text(&self) -> String {
        self.running().metrics.encode()
    }

    /// Waits until the inventory satisfies `condition`; the error says what was awaited.
    pub async fn wait_for_inventory(
        &self,
        what: &str,
        condition: impl Fn(&InventorySnapshot) -> bool,
    ) -> anyhow::Result<Arc<InventorySnapshot>> {
        let mut snapshots = self.running().inventory.snapshots.clone();
        let seen = tokio::time::timeout(
            SEE_TIMEOUT,
            snapshots.wait_for(|snapshot| condition(snapshot)),
        )
        .await
        .with_context(|| format!("timed out after {SEE_TIMEOUT:?} waiting for {what}"))?
        .context("inventory task ended")?;
        Ok(seen.clone())
    }

    /// Waits until the (first) runtime's status satisfies `condition`.
    pub async fn wait_for_runtime(
        &self,
        what: &str,
        condition: impl Fn(&RuntimeStatus) -> bool,
    ) -> anyhow::Result<RuntimeStatus> {
        let mut status = self.running().runtime_status[0].1.clone();
        let seen = tokio::time::timeout(SEE_TIMEOUT, status.wait_for(|status| condition(status)))
            .await
            .with_context(|| format!("timed out after {SEE_TIMEOUT:?} waiting for {what}"))?
            .context("watcher ended")?;
        Ok(seen.clone())
    }

    /// After the test took the (first) runtime away: the agent notices, reports why, and stays
    /// disconnected for `for_at_least` while it retries with back-off instead of giving up.
    pub async fn expect_outage(&self, for_at_least: Duration) -> anyhow::Result<()> {
        let lost = self
            .wait_for_runtime("the lost connection", |status| !status.connected)
            .await?;
        anyhow::ensure!(
            lost.last_error.is_some(),
            "a lost connection carries its error"
        );
        tokio::time::sleep(for_at_least).await;
        let still = self.wait_for_runtime("still down", |_| true).await?;
        anyhow::ensure!(!still.connected, "reconnected to a runtime that is down");
        Ok(())
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(agent) = self.agent.take() {
            agent.drain().await;
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
