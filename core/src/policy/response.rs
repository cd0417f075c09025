//! `kind: Response`: which detections (Falco alerts, `ReportDetection` calls) trigger which
//! actions on the container they concern.

use std::time::Duration;

use serde::Deserialize;

use super::document::optional_duration;
use super::selector::{DetectionMatch, Selector};
use super::set::{PolicyMode, validate_actions, validate_name};
use crate::container::ContainerInfo;
use crate::quarantine::Action;
use crate::severity::Severity;

/// A detection as the response rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The detector's rule name, e.g. Falco's `Terminal shell in container`.
    pub rule: String,
    pub tags: Vec<String>,
    pub severity: Severity,
    /// `falco`, `grpc`, …
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    mode: PolicyMode,
    #[serde(default, rename = "match")]
    detections: DetectionMatch,
    /// Which containers the response may act on.
    #[serde(default)]
    containers: Selector,
    actions: Vec<Action>,
    #[serde(default, deserialize_with = "optional_duration")]
    ttl: Option<Duration>,
}

/// A validated `kind: Response`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawResponse")]
pub struct ResponseRule {
    pub name: String,
    pub description: Option<String>,
    pub mode: PolicyMode,
    pub detections: DetectionMatch,
    pub containers: Selector,
    pub actions: Vec<Action>,
    pub ttl: Option<Duration>,
}

impl TryFrom<RawResponse> for ResponseRule {
    type Error = String;

    fn try_from(raw: RawResponse) -> Result<Self, Self::Error> {
        validate_name(&raw.name)?;
        validate_actions(&raw.actions)?;
        Ok(ResponseRule {
            name: raw.name,
            description: raw.description,
            mode: raw.mode,
            detections: raw.detections,
            containers: raw.containers,
            actions: raw.actions,
            ttl: raw.ttl,
        })
    }
}

impl ResponseRule {
    pub fn applies(&self, detection: &Detection, container: &ContainerInfo) -> bool {
        self.detections.matches(
            &detection.rule,
            &detection.tags,
            detection.severity,
            &detection.source,
        ) && self.containers.matches(container)
    }
}
