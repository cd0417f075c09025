//! What changes between two sets of policy files (`lazaretctl policy diff`): documents are
//! matched by kind and name and compared as YAML values, so formatting, comments, key order and
//! the file a document sits in do not count as changes.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::PolicySource;

/// How one document changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// One document that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentChange {
    /// `Policy` or `Response`.
    pub kind: String,
    pub name: String,
    pub change: Change,
}

type Documents = BTreeMap<(String, String), serde_yaml_ng::Value>;

fn documents(sources: &[PolicySource]) -> Result<Documents, String> {
    let mut documents = Documents::new();
    for source in sources {
        for document in serde_yaml_ng::Deserializer::from_str(&source.text) {
            let value = serde_yaml_ng::Value::deserialize(document)
                .map_err(|error| format!("{}: {error}", source.name))?;
            if value.is_null() {
                continue;
            }
            let text = |key: &str| {
                value
                    .get(key)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            documents.insert((text("kind"), text("name")), value);
        }
    }
    Ok(documents)
}

/// The documents `after` adds, removes or changes against `before`, by kind then name.
pub fn diff(
    before: &[PolicySource],
    after: &[PolicySource],
) -> Result<Vec<DocumentChange>, String> {
    let (before, after) = (documents(before)?, documents(after)?);
    let mut changes = Vec::new();
    for ((kind, name), value) in &after {
        let change = match before.get(&(kind.clone(), name.clone())) {
            None => Change::Added,
            Some(old) if old != value => Change::Changed,
            Some(_) => continue,
        };
        changes.push(DocumentChange {
            kind: kind.clone(),
            name: name.clone(),
            change,
        });
    }
    for (kind, name) in before.keys() {
        if !after.contains_key(&(kind.clone(), name.clone())) {
            changes.push(DocumentChange {
                kind: kind.clone(),
                name: name.clone(),
                change: Change::Removed,
            });
        }
    }
    changes.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, text: &str) -> PolicySource {
        PolicySource::new(name, text)
    }

    #[test]
    fn documents_are_compared_by_value_not_by_text_or_file() {
        let before = [source(
            "a.yaml",
            "kind: Policy\nname: keep\nmode: audit\n---\nkind: Policy\nname: edit\nmode: audit\n---\nkind: Policy\nname: gone\n",
        )];
        let after = [
            source(
                "b.yaml",
                "# moved and reformatted\nname: keep\nkind: Policy\nmode:   audit\n",
            ),
            source(
                "c.yaml",
                "kind: Policy\nname: edit\nmode: enforce\n---\nkind: Policy\nname: new\n",
            ),
        ];
        let changes = diff(&before, &after).unwrap();
        let summary: Vec<(&str, Change)> = changes
            .iter()
            .map(|change| (change.name.as_str(), change.change))
            .collect();
        assert_eq!(
            summary,
            [
                ("edit", Change::Changed),
                ("gone", Change::Removed),
                ("new", Change::Added)
            ]
        );
        assert!(
            diff(&before, &[source("bad.yaml", "kind: [")])
                .unwrap_err()
                .contains("bad.yaml")
        );
    }
}
