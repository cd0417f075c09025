//! The scan's metrics (how long a look inside every running container takes, how much it read,
//! what it found). Registered with the agent's other metrics in [`super::Metrics`].

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// See the module docs.
#[derive(Clone)]
pub struct ScanMetrics {
    seconds: Histogram,
    containers: Counter,
    processes: Counter,
    hashed: Counter,
    matched: Counter,
}

impl ScanMetrics {
    pub(super) fn register(registry: &mut Registry) -> ScanMetrics {
        let metrics = ScanMetrics {
            // 100 µs … ~3.3 s.
            seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            containers: Counter::default(),
            processes: Counter::default(),
            hashed: Counter::default(),
            matched: Counter::default(),
        };
        registry.register(
            "scan_seconds",
            "One scan of every running container (processes, executables, sockets)",
            metrics.seconds.clone(),
        );
        registry.register(
            "scan_containers",
            "Containers looked inside by the scan",
            metrics.containers.clone(),
        );
        registry.register(
            "scan_processes",
            "Processes read by the scan",
            metrics.processes.clone(),
        );
        registry.register(
            "scan_executables_hashed",
            "Executables hashed by the scan (each version of a file once)",
            metrics.hashed.clone(),
        );
        registry.register(
            "scan_matches",
            "Containers in which the scan saw something an indicator lists",
            metrics.matched.clone(),
        );
        metrics
    }

    /// One cycle: its duration, what it read, the executables it hashed, the containers with a
    /// match.
    pub fn observe_cycle(
        &self,
        took: Duration,
        containers: usize,
        processes: usize,
        hashed: u64,
        matched: usize,
    ) {
        self.seconds.observe(took.as_secs_f64());
        self.containers.inc_by(containers as u64);
        self.processes.inc_by(processes as u64);
        self.hashed.inc_by(hashed);
        self.matched.inc_by(matched as u64);
    }
}
