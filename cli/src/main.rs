//! `lazaretctl`: the operators' CLI. Today it answers offline questions (the CIS check
//! catalogue); the commands that talk to agents and the controller arrive with the gRPC API
//! (issue 5/11).
#![forbid(unsafe_code)]

mod policy;

use std::path::PathBuf;
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
pub(crate) enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the CIS Docker Benchmark checks Lazaret runs on every container (id, severity,
    /// title). Explained in docs/posture.md.
    Checks,
    /// Work with policy files offline (see docs/policies.md).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check policy files and directories as one set, exactly as an agent would load them.
    /// Exit 0 and list the policies, or exit 1 and print every problem as FILE:LINE:COLUMN.
    Validate {
        /// Policy files (.yaml/.yml) or directories holding them.
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Checks => {
            print_checks(cli.output);
            ExitCode::SUCCESS
        }
        Command::Policy(PolicyCommand::Validate { paths }) => policy::validate(&paths, cli.output),
    }
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
