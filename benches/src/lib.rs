//! Shared pieces of Lazaret's benchmark harness: latency statistics and the report format.
//! Scenarios live in `src/bin/scenarios/`; criterion micro-benches in `benches/`.
#![forbid(unsafe_code)]

pub mod goal;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Summary of a latency sample, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencySummary {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Nearest-rank percentiles; `None` for an empty sample.
pub fn summarize(samples: &[Duration]) -> Option<LatencySummary> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    sorted.sort_by(f64::total_cmp);
    let rank = |quantile: f64| {
        let index = ((quantile * sorted.len() as f64).ceil() as usize).saturating_sub(1);
        sorted[index.min(sorted.len() - 1)]
    };
    Some(LatencySummary {
        samples: sorted.len(),
        p50_ms: rank(0.50),
        p99_ms: rank(0.99),
        max_ms: sorted[sorted.len() - 1],
    })
}

/// One line of the report: a measured metric, its goal, and its floor when it has one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub metric: String,
    pub goal: String,
    pub value: serde_json::Value,
    /// The raw runtime call the metric wraps, measured in the same run.
    pub floor: Option<LatencySummary>,
    /// p50 of the metric divided by p50 of its floor.
    pub ratio_p50: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let summary = summarize(&samples).unwrap();
        assert_eq!(summary.p50_ms, 50.0);
        assert_eq!(summary.p99_ms, 99.0);
        assert_eq!(summary.max_ms, 100.0);
        assert!(summarize(&[]).is_none());
    }
}
