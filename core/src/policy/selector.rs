//! Which containers a policy applies to (`match` / `exclude`), and which detections a response
//! applies to.
//!
//! Semantics, for people writing policies: every criterion that is given must hold (AND);
//! within a list, any entry may match (OR); an empty `match` selects every container. Image and
//! name patterns are globs where `*` also crosses `/` (`registry.example.com/*` matches
//! `registry.example.com/team/app:1.2`). A label value `"*"` means "the label is present".

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::container::{ContainerInfo, RuntimeKind};
use crate::severity::Severity;

/// A compiled set of glob patterns (empty: matches nothing, and the criterion is unused).
#[derive(Debug, Clone, Default)]
struct Patterns {
    sources: Vec<String>,
    set: GlobSet,
}

impl Patterns {
    fn compile(field: &str, patterns: Vec<String>) -> Result<Patterns, String> {
        let mut builder = GlobSetBuilder::new();
        for pattern in &patterns {
            let glob = Glob::new(pattern)
                .map_err(|error| format!("{field}: {pattern:?} is not a valid glob: {error}"))?;
            builder.add(glob);
        }
        let set = builder
            .build()
            .map_err(|error| format!("{field}: cannot compile the patterns: {error}"))?;
        Ok(Patterns {
            sources: patterns,
            set,
        })
    }

    fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    fn matches(&self, text: &str) -> bool {
        self.set.is_match(text)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSelector {
    runtimes: Vec<RuntimeKind>,
    namespaces: Vec<String>,
    images: Vec<String>,
    labels: BTreeMap<String, String>,
    names: Vec<String>,
}

/// A container selector (`match:` or `exclude:` of a policy).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "RawSelector")]
pub struct Selector {
    runtimes: Vec<RuntimeKind>,
    namespaces: Vec<String>,
    images: Patterns,
    labels: BTreeMap<String, String>,
    names: Patterns,
}

impl TryFrom<RawSelector> for Selector {
    type Error = String;

    fn try_from(raw: RawSelector) -> Result<Self, Self::Error> {
        Ok(Selector {
            runtimes: raw.runtimes,
            namespaces: raw.namespaces,
            images: Patterns::compile("images", raw.images)?,
            labels: raw.labels,
            names: Patterns::compile("names", raw.names)?,
        })
    }
}

impl Selector {
    /// True when no criterion is given (selects everything as `match`, nothing as `exclude`).
    pub fn is_empty(&self) -> bool {
        self.runtimes.is_empty()
            && self.namespaces.is_empty()
            && self.images.is_empty()
            && self.labels.is_empty()
            && self.names.is_empty()
    }

    pub fn matches(&self, container: &ContainerInfo) -> bool {
        (self.runtimes.is_empty() || self.runtimes.contains(&container.runtime))
            && (self.namespaces.is_empty() || self.namespaces.contains(&container.namespace))
            && (self.images.is_empty() || self.images.matches(&container.image))
            && (self.names.is_empty() || self.names.matches(&container.name))
            && self.labels.iter().all(|(key, wanted)| {
                container
                    .labels
                    .get(key)
                    .is_some_and(|value| wanted == "*" || value == wanted)
            })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDetectionMatch {
    rules: Vec<String>,
    tags: Vec<String>,
    min_severity: Option<Severity>,
    sources: Vec<String>,
}

/// Which detections a `kind: Response` applies to: rule names (globs), tags (any), a minimum
/// severity, and the detector (`falco`, `grpc`…). Same AND/OR semantics as [`Selector`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "RawDetectionMatch")]
pub struct DetectionMatch {
    rules: Patterns,
    tags: Vec<String>,
    min_severity: Option<Severity>,
    sources: Vec<String>,
}

impl TryFrom<RawDetectionMatch> for DetectionMatch {
    type Error = String;

    fn try_from(raw: RawDetectionMatch) -> Result<Self, Self::Error> {
        Ok(DetectionMatch {
            rules: Patterns::compile("rules", raw.rules)?,
            tags: raw.tags,
            min_severity: raw.min_severity,
            sources: raw.sources,
        })
    }
}

impl DetectionMatch {
    pub fn matches(&self, rule: &str, tags: &[String], severity: Severity, source: &str) -> bool {
        (self.rules.is_empty() || self.rules.matches(rule))
            && (self.tags.is_empty() || self.tags.iter().any(|tag| tags.contains(tag)))
            && self.min_severity.is_none_or(|minimum| severity >= minimum)
            && (self.sources.is_empty() || self.sources.iter().any(|wanted| wanted == source))
    }
}
