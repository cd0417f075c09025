//! YAML text → policy documents, with every error located (file, line, column).
//!
//! A file may hold several documents separated by `---` lines. Each document's `apiVersion`
//! and `kind` are read first, leniently, so that the strict parse that follows (unknown fields
//! are errors) uses the right shape and reports positions in the whole file.

use serde::Deserialize;

use super::response::ResponseRule;
use super::set::Policy;
use super::{API_VERSION, PolicyError};

/// One parsed document.
#[derive(Debug, Clone)]
pub enum Document {
    Policy(Box<Policy>),
    Response(Box<ResponseRule>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Header {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    name: Option<String>,
}

/// A document's text and the file line it starts on (1-based).
struct Chunk {
    text: String,
    first_line: usize,
}

/// Splits at lines that are exactly `---` (optionally followed by a comment or spaces).
fn split_documents(text: &str) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        let is_separator = trimmed == "---" || trimmed.starts_with("--- #");
        if is_separator {
            chunks.push(Chunk {
                text: std::mem::take(&mut current),
                first_line,
            });
            first_line = index + 2;
            // Keep line numbers aligned: the separator line becomes an empty line.
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    chunks.push(Chunk {
        text: current,
        first_line,
    });
    chunks
        .into_iter()
        .filter(|chunk| {
            chunk
                .text
                .lines()
                .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        })
        .collect()
}

fn located(
    file: &str,
    chunk: &Chunk,
    policy: Option<&str>,
    error: &serde_yaml_ng::Error,
) -> PolicyError {
    let location = error.location();
    let mut message = error.to_string();
    // serde_yaml appends " at line L column C" relative to the chunk; we report file positions.
    if let Some(position) = message.find(" at line ") {
        message.truncate(position);
    }
    PolicyError {
        file: file.to_string(),
        line: location
            .as_ref()
            .map(|location| location.line() + chunk.first_line - 1)
            .or(Some(chunk.first_line)),
        column: location.map(|location| location.column()),
        policy: policy.map(str::to_string),
        message,
    }
}

/// Parses every document of one file; all problems are returned, not just the first.
pub fn parse_file(file: &str, text: &str) -> (Vec<Document>, Vec<PolicyError>) {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for chunk in split_documents(text) {
        let header: Header = match serde_yaml_ng::from_str(&chunk.text) {
            Ok(header) => header,
            Err(error) => {
                errors.push(located(file, &chunk, None, &error));
                continue;
            }
        };
        let at_start = |message: String| PolicyError {
            file: file.to_string(),
            line: Some(chunk.first_line),
            column: None,
            policy: header.name.clone(),
            message,
        };
        match header.api_version.as_deref() {
            Some(API_VERSION) => {}
            Some(other) => {
                errors.push(at_start(format!(
                    "apiVersion {other:?} is not supported: use {API_VERSION:?}"
                )));
                continue;
            }
            None => {
                errors.push(at_start(format!(
                    "missing apiVersion: add `apiVersion: {API_VERSION}`"
                )));
                continue;
            }
        }
        let parsed = match header.kind.as_deref() {
            Some("Policy") => serde_yaml_ng::from_str::<Policy>(&chunk.text)
                .map(|policy| Document::Policy(Box::new(policy))),
            Some("Response") => serde_yaml_ng::from_str::<ResponseRule>(&chunk.text)
                .map(|response| Document::Response(Box::new(response))),
            Some(other) => {
                errors.push(at_start(format!(
                    "kind {other:?} is not known: use Policy or Response"
                )));
                continue;
            }
            None => {
                errors.push(at_start(
                    "missing kind: add `kind: Policy` or `kind: Response`".into(),
                ));
                continue;
            }
        };
        match parsed {
            Ok(document) => documents.push(document),
            Err(error) => errors.push(located(file, &chunk, header.name.as_deref(), &error)),
        }
    }
    (documents, errors)
}

/// Parses durations written like `30m`, `24h`, `7d` inside the YAML deserializer, so that a
/// bad value is reported at its own line and column.
struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = std::time::Duration;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a duration such as 30m, 24h or 7d")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let duration = humantime::parse_duration(text).map_err(|error| {
            E::custom(format!(
                "{text:?} is not a duration ({error}): write e.g. 30m, 24h or 7d"
            ))
        })?;
        if duration.is_zero() {
            return Err(E::custom("a duration of zero: leave it out for no limit"));
        }
        Ok(duration)
    }
}

struct OptionalDurationVisitor;

impl<'de> serde::de::Visitor<'de> for OptionalDurationVisitor {
    type Value = Option<std::time::Duration>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a duration such as 30m, 24h or 7d")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(DurationVisitor).map(Some)
    }
}

/// Deserializes an optional duration written like `30m`, `24h`, `7d`.
pub fn optional_duration<'de, D>(deserializer: D) -> Result<Option<std::time::Duration>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    deserializer.deserialize_option(OptionalDurationVisitor)
}
