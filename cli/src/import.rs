//! `lazaretctl indicators import`: a plain list or a STIX 2.1 bundle → an indicators file, offline
//! (`lazaret_core::indicator::import`); what could not be imported is listed, never dropped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use lazaret_core::indicator::import::{Imported, from_list, from_stix, to_document};
use serde_json::json;

use crate::Output;
use crate::agent::{json_text, table};
use crate::args::ImportFormat;

/// The report: what was imported, and each entry skipped with why.
pub fn render(output: Output, imported: &Imported, out: Option<&Path>) -> String {
    match output {
        Output::Json => json_text(&json!({
            "imported": imported.indicators.len(),
            "out": out.map(|path| path.display().to_string()),
            "skipped": imported.skipped.iter().map(|skipped| json!({"at": skipped.at, "why": skipped.why})).collect::<Vec<_>>(),
        })),
        Output::Table => {
            let mut text = format!(
                "imported {} indicators{}; skipped {}\n",
                imported.indicators.len(),
                out.map_or(String::new(), |path| format!(" into {}", path.display())),
                imported.skipped.len()
            );
            if !imported.skipped.is_empty() {
                let mut rows = table(&["SKIPPED", "WHY"]);
                for skipped in &imported.skipped {
                    rows.add_row([skipped.at.clone(), skipped.why.clone()]);
                }
                text.push_str(&format!("{rows}\n"));
            }
            text
        }
    }
}

pub fn run(
    file: &Path,
    format: ImportFormat,
    source: Option<String>,
    out: Option<PathBuf>,
    output: Output,
) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: cannot read {}: {error}", file.display());
            return ExitCode::from(crate::client::EXIT_REFUSED);
        }
    };
    let source = source.unwrap_or_else(|| {
        file.file_stem()
            .map_or("import".into(), |stem| stem.to_string_lossy().into_owned())
    });
    let imported = match format {
        ImportFormat::List => from_list(&source, &text),
        ImportFormat::Stix => match from_stix(&source, &text) {
            Ok(imported) => imported,
            Err(error) => {
                eprintln!("error: {}: {error}", file.display());
                return ExitCode::from(crate::client::EXIT_REFUSED);
            }
        },
    };
    if let Some(path) = &out
        && let Err(error) = std::fs::write(path, to_document(&source, &imported.indicators))
    {
        eprintln!("error: cannot write {}: {error}", path.display());
        return ExitCode::from(crate::client::EXIT_REFUSED);
    }
    print!("{}", render(output, &imported, out.as_deref()));
    ExitCode::SUCCESS
}
