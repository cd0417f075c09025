//! `lazaretctl`: the operators' CLI. Today it answers offline questions (the CIS check
//! catalogue); the commands that talk to agents and the controller arrive with the gRPC API
//! (issue 5/11).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use lazaret_core::posture;

/// Lazaret's command-line tool for operators.
#[derive(Debug, Parser)]
#[command(name = "lazaretctl", version)]
struct Cli {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the CIS Docker Benchmark checks Lazaret runs on every container (id, severity,
    /// title). Explained in docs/posture.md.
    Checks,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Checks => print_checks(cli.output),
    }
    ExitCode::SUCCESS
}

fn print_checks(output: Output) {
    let catalogue = posture::catalogue();
    match output {
        Output::Json => {
            let checks: Vec<serde_json::Value> = catalogue
                .iter()
                .map(|check| {
                    serde_json::json!({
                        "check": check.id,
                        "title": check.title,
                        "severity": check.severity,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&checks).expect("checks serialise")
            );
        }
        Output::Table => {
            let mut table = Table::new();
            table
                .load_preset(UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_header(["CHECK", "SEVERITY", "TITLE"]);
            for check in catalogue {
                table.add_row([check.id, check.severity.as_str(), check.title]);
            }
            println!("{table}");
        }
    }
}
