//! Threat indicator documents (DESIGN.md §3, "Indicators"): what an `indicators` bundle carries.
//!
//! ```yaml
//! apiVersion: lazaret.dev/v1
//! kind: Indicators
//! source: team-intel            # the default source of the entries below
//! indicators:
//!   - id: miner-image
//!     type: image-digest        # image-id | image-digest | image-ref | process-name | exe-sha256 | ip
//!     value: sha256:0123…
//!     severity: critical        # default high
//!     valid_until: 2027-01-01T00:00:00Z   # optional
//! ```
//!
//! This module parses and validates such documents whole (a bad entry rejects the document, with
//! the file and the entry named), so a bundle is refused before signing and again at every agent
//! rather than half applied. [`index::IndicatorIndex`] looks them up fast; [`observed`] holds what
//! the agent saw inside running containers, matched against the same index.

pub mod import;
pub mod index;
pub mod observed;

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Deserialize;

use crate::policy::{API_VERSION, IndicatorKind};
use crate::severity::Severity;

/// One indicator of compromise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicator {
    pub id: String,
    pub kind: IndicatorKind,
    pub value: String,
    pub severity: Severity,
    pub source: String,
    /// RFC 3339, as written; `None`: no end.
    pub valid_until: Option<String>,
}

/// Every indicator of a set of documents, ids unique across them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndicatorSet {
    pub indicators: Vec<Indicator>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDocument {
    api_version: String,
    kind: String,
    #[serde(default)]
    source: Option<String>,
    indicators: Vec<RawIndicator>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIndicator {
    id: String,
    #[serde(rename = "type")]
    kind: IndicatorKind,
    value: String,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    valid_until: Option<String>,
}

impl IndicatorSet {
    /// Parses `(file name, text)` documents; every problem, each naming its file and entry.
    pub fn load<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<IndicatorSet, Vec<String>> {
        let mut set = IndicatorSet::default();
        let mut errors = Vec::new();
        let mut ids = BTreeSet::new();
        for (file, text) in files {
            let document: RawDocument = match serde_yaml_ng::from_str(text) {
                Ok(document) => document,
                Err(error) => {
                    errors.push(format!("{file}: {error}"));
                    continue;
                }
            };
            if document.api_version != API_VERSION || document.kind != "Indicators" {
                errors.push(format!(
                    "{file}: expected apiVersion {API_VERSION} and kind Indicators, found {} {}",
                    document.api_version, document.kind
                ));
                continue;
            }
            for (index, raw) in document.indicators.into_iter().enumerate() {
                let at = format!("{file}: indicators[{index}] ({:?})", raw.id);
                if raw.id.trim().is_empty() {
                    errors.push(format!("{at}: id is empty"));
                    continue;
                }
                if !ids.insert(raw.id.clone()) {
                    errors.push(format!("{at}: id appears twice"));
                    continue;
                }
                if let Err(why) = check_value(raw.kind, &raw.value) {
                    errors.push(format!("{at}: {}: {why}", raw.kind));
                    continue;
                }
                if let Some(until) = &raw.valid_until
                    && humantime::parse_rfc3339_weak(until).is_err()
                {
                    errors.push(format!(
                        "{at}: valid_until {until:?} is not an RFC 3339 time"
                    ));
                    continue;
                }
                set.indicators.push(Indicator {
                    id: raw.id,
                    kind: raw.kind,
                    value: raw.value,
                    severity: raw.severity.unwrap_or(Severity::High),
                    source: raw
                        .source
                        .or_else(|| document.source.clone())
                        .unwrap_or_default(),
                    valid_until: raw.valid_until,
                });
            }
        }
        match errors.is_empty() {
            true => Ok(set),
            false => Err(errors),
        }
    }
}

/// Whether `value` is well formed for `kind`.
fn check_value(kind: IndicatorKind, value: &str) -> Result<(), String> {
    let sha256 = |hex: &str| hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit());
    match kind {
        IndicatorKind::ImageId | IndicatorKind::ImageDigest => {
            let hex = value.strip_prefix("sha256:").unwrap_or(value);
            sha256(hex)
                .then_some(())
                .ok_or("expected sha256:<64 hex digits>".into())
        }
        IndicatorKind::ExeSha256 => sha256(value)
            .then_some(())
            .ok_or("expected 64 hex digits".into()),
        IndicatorKind::Ip => {
            let (address, prefix) = match value.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (value, None),
            };
            let address: IpAddr = address
                .parse()
                .map_err(|_| format!("{value:?} is not an address or CIDR"))?;
            let limit = if address.is_ipv4() { 32 } else { 128 };
            match prefix.map(str::parse::<u8>) {
                None => Ok(()),
                Some(Ok(bits)) if bits <= limit => Ok(()),
                Some(_) => Err(format!("{value:?}: the prefix must be 0..={limit}")),
            }
        }
        IndicatorKind::ImageRef | IndicatorKind::ProcessName => {
            match value.trim().is_empty() || value.contains(char::is_control) {
                true => Err("empty or not printable".into()),
                false => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: lazaret.dev/v1\nkind: Indicators\nsource: intel\nindicators:\n\
        - {id: miner, type: process-name, value: xmrig, severity: critical}\n\
        - {id: c2, type: ip, value: 203.0.113.0/24}\n\
        - {id: bad-image, type: image-digest, value: 'sha256:0000000000000000000000000000000000000000000000000000000000000000', source: vendor, valid_until: '2027-01-01T00:00:00Z'}\n";

    #[test]
    fn a_good_document_loads_with_defaults_filled_in() {
        let set = IndicatorSet::load([("intel.yaml", GOOD)]).unwrap();
        assert_eq!(set.indicators.len(), 3);
        assert_eq!(set.indicators[0].severity, Severity::Critical);
        assert_eq!(set.indicators[1].severity, Severity::High);
        assert_eq!(set.indicators[1].source, "intel");
        assert_eq!(set.indicators[2].source, "vendor");
    }

    #[test]
    fn every_bad_entry_is_named_and_the_whole_set_is_refused() {
        let bad = "apiVersion: lazaret.dev/v1\nkind: Indicators\nindicators:\n\
            - {id: a, type: ip, value: 10.0.0.0/33}\n\
            - {id: b, type: image-digest, value: latest}\n\
            - {id: c, type: exe-sha256, value: abc}\n\
            - {id: d, type: process-name, value: x, valid_until: tomorrow}\n";
        let errors = IndicatorSet::load([("good.yaml", GOOD), ("bad.yaml", bad)]).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(
            errors[0].contains("bad.yaml: indicators[0] (\"a\")"),
            "{errors:#?}"
        );
        assert!(errors[0].contains("prefix"), "{errors:#?}");
        assert!(errors[3].contains("RFC 3339"), "{errors:#?}");
    }

    #[test]
    fn duplicate_ids_unknown_fields_and_wrong_kinds_are_refused() {
        let errors = IndicatorSet::load([("a.yaml", GOOD), ("b.yaml", GOOD)]).unwrap_err();
        assert!(errors.iter().all(|error| error.contains("appears twice")));
        let unknown = "apiVersion: lazaret.dev/v1\nkind: Indicators\nindicators:\n\
            - {id: a, type: ip, value: 10.0.0.1, colour: red}\n";
        assert!(IndicatorSet::load([("u.yaml", unknown)]).unwrap_err()[0].contains("colour"));
        let policy = "apiVersion: lazaret.dev/v1\nkind: Policy\nindicators: []\n";
        assert!(
            IndicatorSet::load([("p.yaml", policy)]).unwrap_err()[0].contains("kind Indicators")
        );
    }
}
