//! Reading policy files from disk: the one place in `lazaret-core` that touches the file
//! system, behind the `fs` feature, so that the agent and the CLI read a policy directory the
//! same way. The judge and everything else in this crate stay free of I/O.

use std::path::{Path, PathBuf};

use super::{PolicyError, PolicyErrors, PolicySource};

fn is_policy_file(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| matches!(extension, "yaml" | "yml"))
}

fn unreadable(path: &Path, error: &std::io::Error) -> PolicyError {
    PolicyError {
        file: path.display().to_string(),
        line: None,
        column: None,
        policy: None,
        message: format!("cannot read: {error}"),
    }
}

/// Reads every given file, and every `*.yaml` / `*.yml` file directly inside every given
/// directory (sorted by name, so a set loads the same way everywhere). Every unreadable path
/// is reported; nothing is skipped silently.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<PolicySource>, PolicyErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|candidate| candidate.is_file() && is_policy_file(candidate))
                    .collect();
                found.sort();
                if found.is_empty() {
                    errors.push(PolicyError {
                        file: path.display().to_string(),
                        line: None,
                        column: None,
                        policy: None,
                        message: "no *.yaml or *.yml files in this directory".into(),
                    });
                }
                files.extend(found);
            }
            Err(error) => errors.push(unreadable(path, &error)),
        }
    }
    let mut sources = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => sources.push(PolicySource::new(file.display().to_string(), text)),
            Err(error) => errors.push(unreadable(&file, &error)),
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(PolicyErrors { errors })
    }
}
