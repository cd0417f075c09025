//! `lazaret-controller`: not built yet (issue 7/11); it says so and exits 2.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// Lazaret's fleet controller (fleet view, command routing, bundle signing). Not built yet:
/// it arrives with issue 7/11; until then use `lazaret-agent scan` on each host.
#[derive(Debug, Parser)]
#[command(name = "lazaret-controller", version)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!(
        "lazaret-controller: the fleet service ({}.FleetService) is not built yet (issue 7/11)",
        lazaret_controller::PROTO_PACKAGE
    );
    ExitCode::from(2)
}
