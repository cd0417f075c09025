//! Importing indicators from what security teams have (issue 8/11): plain lists (`TYPE VALUE
//! [SEVERITY]` per line, `#` comments) and STIX 2.1 bundles. Every entry that cannot be imported
//! is reported with its line or STIX id and why, never dropped silently. The result becomes an
//! `Indicators` document ([`to_document`]) that [`super::IndicatorSet::load`] accepts, ready to
//! sign.
//!
//! STIX patterns supported (one comparison, or several joined by `OR`, each with `=`):
//! `ipv4-addr:value`, `ipv6-addr:value` → `ip`; `file:hashes.'SHA-256'` → `exe-sha256`;
//! `file:name`, `process:name`, `process:image_ref.name` → `process-name`. Anything else (other
//! objects, `AND`, other operators, pattern languages other than `stix`) is reported.

use serde::{Deserialize, Serialize};

use super::{Indicator, check_value};
use crate::policy::{API_VERSION, IndicatorKind};
use crate::severity::Severity;

/// An entry that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `line N`, or the STIX indicator's id.
    pub at: String,
    pub why: String,
}

/// What an import found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub indicators: Vec<Indicator>,
    pub skipped: Vec<Skipped>,
}

impl Imported {
    fn push(&mut self, indicator: Indicator, at: String) {
        if let Err(why) = check_value(indicator.kind, &indicator.value) {
            self.skipped.push(Skipped { at, why });
        } else if indicator.id.trim().is_empty() {
            // `IndicatorSet::load` refuses it too (found by fuzzing).
            self.skipped.push(Skipped {
                at,
                why: "the indicator has no id".into(),
            });
        } else if let Some(until) = &indicator.valid_until
            && humantime::parse_rfc3339_weak(until).is_err()
        {
            // `IndicatorSet::load` refuses it: the document would not load (found by fuzzing).
            self.skipped.push(Skipped {
                at,
                why: format!("valid_until {until:?} is not an RFC 3339 time"),
            });
        } else if self.indicators.iter().any(|known| known.id == indicator.id) {
            self.skipped.push(Skipped {
                at,
                why: format!("{} is listed twice", indicator.id),
            });
        } else {
            self.indicators.push(indicator);
        }
    }
}

/// Imports a plain list (`TYPE VALUE [SEVERITY]` per line) from `source`.
pub fn from_list(source: &str, text: &str) -> Imported {
    let mut imported = Imported::default();
    for (index, line) in text.lines().enumerate() {
        let at = format!("line {}", index + 1);
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (kind, value, severity) = match fields.as_slice() {
            [kind, value] => (kind, value, None),
            [kind, value, severity] => (kind, value, Some(severity)),
            _ => {
                imported.skipped.push(Skipped {
                    at,
                    why: "expected TYPE VALUE [SEVERITY]".into(),
                });
                continue;
            }
        };
        let kind: IndicatorKind = match serde_json::from_value(serde_json::json!(kind)) {
            Ok(kind) => kind,
            Err(_) => {
                imported.skipped.push(Skipped {
                    at,
                    why: format!(
                        "unknown type {kind:?}: image-id, image-digest, image-ref, process-name, exe-sha256, ip"
                    ),
                });
                continue;
            }
        };
        let severity = match severity.map(|text| text.parse::<Severity>()) {
            None => Severity::High,
            Some(Ok(severity)) => severity,
            Some(Err(_)) => {
                imported.skipped.push(Skipped {
                    at,
                    why: "severity: info, low, medium, high or critical".into(),
                });
                continue;
            }
        };
        let indicator = Indicator {
            id: format!("{kind}:{value}"),
            kind,
            value: value.to_string(),
            severity,
            source: source.to_string(),
            valid_until: None,
        };
        imported.push(indicator, at);
    }
    imported
}

#[derive(Deserialize)]
struct StixBundle {
    #[serde(default)]
    objects: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct StixIndicator {
    id: String,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    pattern_type: Option<String>,
    #[serde(default)]
    valid_until: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// The indicator kind and value of one `path = 'value'` comparison.
fn comparison(text: &str) -> Result<(IndicatorKind, String), String> {
    let (path, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: only `=` comparisons are supported"))?;
    let path = path.trim();
    if path.ends_with('!') || path.ends_with('<') || path.ends_with('>') {
        return Err(format!("{text:?}: only `=` comparisons are supported"));
    }
    let value = value.trim();
    let value = value
        .strip_prefix('\'')
        .and_then(|value| value.strip_suffix('\''))
        .ok_or_else(|| format!("{text:?}: the value must be a quoted string"))?
        .replace("\\'", "'");
    let kind = match path.replace('"', "'").as_str() {
        "ipv4-addr:value" | "ipv6-addr:value" => IndicatorKind::Ip,
        "file:hashes.'SHA-256'" | "file:hashes.SHA256" | "file:hashes.'SHA256'" => {
            IndicatorKind::ExeSha256
        }
        "file:name" | "process:name" | "process:image_ref.name" => IndicatorKind::ProcessName,
        other => return Err(format!("object path {other} is not supported")),
    };
    let value = match kind {
        IndicatorKind::ExeSha256 => value.to_ascii_lowercase(),
        _ => value,
    };
    Ok((kind, value))
}

/// The comparisons of a pattern: `[a = 'x'] OR [b = 'y']`, or `[a = 'x' OR b = 'y']`.
fn comparisons(pattern: &str) -> Result<Vec<(IndicatorKind, String)>, String> {
    let mut found = Vec::new();
    let mut rest = pattern.trim();
    loop {
        let inner_end = rest
            .strip_prefix('[')
            .and_then(|inner| find_unquoted(inner, ']').map(|end| (inner, end)))
            .ok_or("expected [object:path = 'value']")?;
        let (inner, end) = inner_end;
        for part in split_unquoted(&inner[..end], " OR ") {
            if part.contains(" AND ") {
                return Err("AND is not supported".into());
            }
            found.push(comparison(part)?);
        }
        rest = inner[end + 1..].trim();
        if rest.is_empty() {
            return Ok(found);
        }
        rest = rest
            .strip_prefix("OR")
            .map(str::trim)
            .ok_or_else(|| format!("only OR joins observation expressions, found {rest:?}"))?;
    }
}

fn find_unquoted(text: &str, wanted: char) -> Option<usize> {
    let mut quoted = false;
    let mut previous = ' ';
    for (index, character) in text.char_indices() {
        if character == '\'' && previous != '\\' {
            quoted = !quoted;
        } else if character == wanted && !quoted {
            return Some(index);
        }
        previous = character;
    }
    None
}

fn split_unquoted<'a>(text: &'a str, separator: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < text.len() {
        if bytes[index] == b'\'' && (index == 0 || bytes[index - 1] != b'\\') {
            quoted = !quoted;
        } else if !quoted && bytes[index..].starts_with(separator.as_bytes()) {
            // Bytes, not `text[index..]`: `index` may be inside a multi-byte character (found
            // by fuzzing); a separator match starts and ends on character boundaries.
            parts.push(text[start..index].trim());
            index += separator.len();
            start = index;
            continue;
        }
        index += 1;
    }
    parts.push(text[start..].trim());
    parts
}

/// Imports a STIX 2.1 bundle's indicator objects, with `source` as their source; an error only
/// when the text is not a STIX bundle at all.
pub fn from_stix(source: &str, text: &str) -> Result<Imported, String> {
    let bundle: StixBundle =
        serde_json::from_str(text).map_err(|error| format!("not a STIX 2.1 bundle: {error}"))?;
    let mut imported = Imported::default();
    for object in bundle.objects {
        if object.get("type").and_then(|kind| kind.as_str()) != Some("indicator") {
            continue;
        }
        let stix: StixIndicator = match serde_json::from_value(object) {
            Ok(stix) => stix,
            Err(error) => {
                imported.skipped.push(Skipped {
                    at: "an indicator".into(),
                    why: format!("malformed: {error}"),
                });
                continue;
            }
        };
        let skip = |why: String| Skipped {
            at: stix.id.clone(),
            why,
        };
        if stix
            .pattern_type
            .as_deref()
            .is_some_and(|kind| kind != "stix")
        {
            imported.skipped.push(skip(format!(
                "pattern_type {:?} is not supported (stix only)",
                stix.pattern_type.unwrap_or_default()
            )));
            continue;
        }
        let Some(pattern) = stix.pattern.as_deref() else {
            imported.skipped.push(skip("no pattern".into()));
            continue;
        };
        let found = match comparisons(pattern) {
            Ok(found) => found,
            Err(why) => {
                imported
                    .skipped
                    .push(skip(format!("pattern {pattern:?}: {why}")));
                continue;
            }
        };
        let several = found.len() > 1;
        for (index, (kind, value)) in found.into_iter().enumerate() {
            let id = match several {
                true => format!("{}#{}", stix.id, index + 1),
                false => stix.id.clone(),
            };
            let indicator = Indicator {
                id,
                kind,
                value,
                severity: Severity::High,
                source: stix.name.clone().unwrap_or_else(|| source.to_string()),
                valid_until: stix.valid_until.clone(),
            };
            imported.push(indicator, stix.id.clone());
        }
    }
    Ok(imported)
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    source: &'a str,
    indicators: Vec<Entry<'a>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: IndicatorKind,
    value: &'a str,
    severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_until: Option<&'a str>,
}

/// `indicators` as an `Indicators` document (YAML) with `source` as the default source.
pub fn to_document(source: &str, indicators: &[Indicator]) -> String {
    let document = Document {
        api_version: API_VERSION,
        kind: "Indicators",
        source,
        indicators: indicators
            .iter()
            .map(|indicator| Entry {
                id: &indicator.id,
                kind: indicator.kind,
                value: &indicator.value,
                severity: indicator.severity,
                source: (indicator.source != source).then_some(indicator.source.as_str()),
                valid_until: indicator.valid_until.as_deref(),
            })
            .collect(),
    };
    serde_yaml_ng::to_string(&document).expect("an indicators document serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicator::IndicatorSet;

    #[test]
    fn a_list_imports_what_it_can_and_names_the_rest() {
        let text = "# team intel\nip 203.0.113.0/24 critical\nprocess-name xmrig\n\n\
            domain evil.example\nip 999.1.1.1\nprocess-name xmrig\nexe-sha256 abc high extra\n";
        let imported = from_list("team", text);
        assert_eq!(imported.indicators.len(), 2);
        assert_eq!(imported.indicators[0].severity, Severity::Critical);
        let skipped: Vec<&str> = imported.skipped.iter().map(|s| s.at.as_str()).collect();
        assert_eq!(skipped, ["line 5", "line 6", "line 7", "line 8"]);
        let document = to_document("team", &imported.indicators);
        let set = IndicatorSet::load([("imported.yaml", document.as_str())]).unwrap();
        assert_eq!(set.indicators, imported.indicators);
    }

    #[test]
    fn a_stix_bundle_imports_the_supported_patterns_and_reports_the_others() {
        let hash = "AB".repeat(32);
        let bundle = serde_json::json!({
            "type": "bundle",
            "id": "bundle--1",
            "objects": [
                {"type": "indicator", "id": "indicator--ip", "pattern_type": "stix",
                 "pattern": "[ipv4-addr:value = '198.51.100.7']", "valid_until": "2030-01-01T00:00:00Z"},
                {"type": "indicator", "id": "indicator--hash", "pattern_type": "stix",
                 "pattern": format!("[file:hashes.'SHA-256' = '{hash}']")},
                {"type": "indicator", "id": "indicator--names", "pattern_type": "stix",
                 "pattern": "[process:image_ref.name = 'xmrig'] OR [file:name = 'minerd']"},
                {"type": "indicator", "id": "indicator--domain", "pattern_type": "stix",
                 "pattern": "[domain-name:value = 'evil.example']"},
                {"type": "indicator", "id": "indicator--and", "pattern_type": "stix",
                 "pattern": "[ipv4-addr:value = '10.0.0.1' AND file:name = 'x']"},
                {"type": "indicator", "id": "indicator--sigma", "pattern_type": "sigma",
                 "pattern": "title: x"},
                {"type": "malware", "id": "malware--1", "name": "ignored"}
            ]
        });
        let imported = from_stix("feed", &bundle.to_string()).unwrap();
        let ids: Vec<&str> = imported.indicators.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "indicator--ip",
                "indicator--hash",
                "indicator--names#1",
                "indicator--names#2"
            ]
        );
        assert_eq!(
            imported.indicators[0].valid_until.as_deref(),
            Some("2030-01-01T00:00:00Z")
        );
        assert_eq!(imported.indicators[1].value, "ab".repeat(32));
        let skipped: Vec<&str> = imported.skipped.iter().map(|s| s.at.as_str()).collect();
        assert_eq!(
            skipped,
            ["indicator--domain", "indicator--and", "indicator--sigma"]
        );
        assert!(
            imported.skipped[0].why.contains("domain-name:value"),
            "{:?}",
            imported.skipped
        );
        assert!(from_stix("feed", "not json").unwrap_err().contains("STIX"));
        let document = to_document("feed", &imported.indicators);
        assert_eq!(
            IndicatorSet::load([("stix.yaml", document.as_str())])
                .unwrap()
                .indicators
                .len(),
            4
        );
    }

    /// Fuzzing (`fuzz/fuzz_targets/stix_import.rs`) found a STIX `valid_until` that was imported
    /// as is, giving a document that `IndicatorSet::load` refuses.
    #[test]
    fn a_stix_indicator_with_a_bad_valid_until_is_skipped_not_imported() {
        let bundle = r#"{"type": "bundle", "objects": [
            {"type": "indicator", "id": "indicator--ip", "pattern_type": "stix",
             "pattern": "[ipv4-addr:value = '198.51.100.7']", "valid_until": "20z30-01-01T00:00:00Z"},
            {"type": "indicator", "id": "indicator--ok", "pattern": "[file:name = 'xmrig']",
             "valid_until": "2030-01-01T00:00:00Z"}]}"#;
        let imported = from_stix("feed", bundle).unwrap();
        assert_eq!(imported.indicators.len(), 1);
        assert_eq!(imported.indicators[0].id, "indicator--ok");
        assert_eq!(imported.skipped.len(), 1);
        assert_eq!(imported.skipped[0].at, "indicator--ip");
        assert!(
            imported.skipped[0].why.contains("RFC 3339"),
            "{:?}",
            imported.skipped
        );
        let document = to_document("feed", &imported.indicators);
        assert_eq!(
            IndicatorSet::load([("stix.yaml", document.as_str())]).unwrap(),
            IndicatorSet {
                indicators: imported.indicators
            }
        );
    }

    /// Fuzzing (`fuzz/fuzz_targets/stix_import.rs`) found a pattern with a multi-byte character
    /// outside quotes that panicked while splitting at ` OR ` (a byte index inside `Ɠ`).
    #[test]
    fn a_pattern_with_multi_byte_characters_is_reported_not_a_panic() {
        let bundle = r#"{"objects": [{"type": "indicator", "id": "s", "pattern": "[pƓip]"}]}"#;
        let imported = from_stix("feed", bundle).unwrap();
        assert!(imported.indicators.is_empty());
        assert_eq!(imported.skipped.len(), 1, "{:?}", imported.skipped);
        assert_eq!(imported.skipped[0].at, "s");
        let names = r#"{"objects": [{"type": "indicator", "id": "n",
            "pattern": "[process:name = 'zé' OR file:name = 'ß'] OR [process:name = 'ñ']"}]}"#;
        let values: Vec<String> = from_stix("feed", names)
            .unwrap()
            .indicators
            .into_iter()
            .map(|indicator| indicator.value)
            .collect();
        assert_eq!(values, ["zé", "ß", "ñ"]);
    }

    /// Fuzzing (`fuzz/fuzz_targets/stix_import.rs`) showed a STIX indicator with an empty id
    /// imported, giving a document that `IndicatorSet::load` refuses.
    #[test]
    fn a_stix_indicator_without_an_id_is_skipped_not_imported() {
        let bundle = r#"{"objects": [{"type": "indicator", "id": "", "pattern": "[file:name = 'x']"},
            {"type": "indicator", "id": " ", "pattern": "[file:name = 'y']"}]}"#;
        let imported = from_stix("feed", bundle).unwrap();
        assert!(imported.indicators.is_empty(), "{:?}", imported.indicators);
        assert_eq!(imported.skipped.len(), 2);
        assert!(
            imported.skipped[0].why.contains("no id"),
            "{:?}",
            imported.skipped
        );
    }
}
