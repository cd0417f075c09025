//! `lazaretctl`: the operators' CLI. Offline: the CIS check catalogue, policy validation, the
//! fleet PKI, bundle keys and signing. Through the controller (`--controller ADDR`, the default
//! once set): nodes, fleet-wide containers, quarantines and releases (by name, selector or
//! policy), bundles, the fleet-wide switch. Against one agent (`--agent ADDR`, also while the
//! controller is down): containers, quarantines, releases, the audit trail and its live stream,
//! the mode, what policies would do, and signed bundles (apply, status). Mutual TLS with a
//! certificate from `--tls-dir` throughout.
#![forbid(unsafe_code)]

mod agent;
mod args;
mod bundle;
mod client;
mod detections;
mod dev;
mod evidence;
mod fleet;
mod fleet_audit;
mod import;
mod indicators;
mod policy;
mod policy_report;
mod rollout;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use lazaret_core::bundle::BundleKind;
use lazaret_core::posture;
use lazaretctl::pki;

pub(crate) use crate::args::Output;
use crate::args::{
    Cli, Command, DevCommand, FleetCommand, IndicatorsCommand, PkiCommand, PolicyCommand,
};
use crate::client::{Failure, Target};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let output = cli.output;
    // --agent on the command line wins; otherwise a configured controller does.
    let agent_given = matches.value_source("agent") == Some(clap::parser::ValueSource::CommandLine);
    let controller = cli.controller.clone().filter(|_| !agent_given);
    let target = Target {
        agent: cli.agent.clone(),
        controller: controller.clone(),
        tls_dir: cli.tls_dir.clone(),
        identity: cli.identity.clone(),
    };
    let fleet = controller.is_some();
    let online = |work: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), Failure>>>,
    >| { client::block_on(work) };
    match cli.command {
        Command::Checks => {
            print_checks(output);
            ExitCode::SUCCESS
        }
        Command::Policy(PolicyCommand::Validate { paths }) => policy::validate(&paths, output),
        Command::Policy(PolicyCommand::Test { paths }) => match policy::files_for_test(&paths) {
            Ok(files) => online(Box::pin(async move {
                agent::test_policies(&target, output, files).await
            })),
            Err(code) => code,
        },
        Command::Indicators(IndicatorsCommand::List) if fleet => {
            online(Box::pin(
                async move { indicators::list(&target, output).await },
            ))
        }
        Command::Indicators(IndicatorsCommand::Stats) if fleet => {
            online(Box::pin(
                async move { indicators::stats(&target, output).await },
            ))
        }
        Command::Indicators(IndicatorsCommand::Import {
            file,
            format,
            source,
            out,
            dry_run,
        }) => import::run(&file, format, source, out.filter(|_| !dry_run), output),
        Command::Policy(PolicyCommand::Apply {
            paths,
            canary,
            wait,
        }) if fleet => online(Box::pin(async move {
            rollout::apply(&target, output, BundleKind::Policies, paths, canary, wait).await
        })),
        Command::Indicators(IndicatorsCommand::Apply {
            paths,
            canary,
            wait,
        }) if fleet => online(Box::pin(async move {
            rollout::apply(&target, output, BundleKind::Indicators, paths, canary, wait).await
        })),
        Command::Policy(PolicyCommand::List) if fleet => {
            online(Box::pin(
                async move { rollout::list(&target, output).await },
            ))
        }
        Command::Policy(PolicyCommand::Diff { paths }) if fleet => online(Box::pin(async move {
            rollout::show_diff(&target, output, paths).await
        })),
        Command::Policy(PolicyCommand::Report { name, since, limit }) if fleet => {
            online(Box::pin(async move {
                policy_report::report(&target, output, name, since, limit).await
            }))
        }
        Command::Policy(
            PolicyCommand::Apply { .. }
            | PolicyCommand::List
            | PolicyCommand::Diff { .. }
            | PolicyCommand::Report { .. },
        )
        | Command::Indicators(_) => needs_controller(),
        Command::Pki(command) => pki_command(command),
        Command::Bundle(bundle::BundleCommand::Apply { bundle: path }) if fleet => {
            match std::fs::read(&path) {
                Ok(bytes) => online(Box::pin(async move {
                    fleet::apply_bundle(&target, output, bytes).await
                })),
                Err(error) => Failure {
                    message: format!("cannot read {}: {error}", path.display()),
                    code: client::EXIT_REFUSED,
                }
                .exit(),
            }
        }
        Command::Bundle(bundle::BundleCommand::Apply { bundle: path }) => {
            online(Box::pin(async move {
                bundle::apply(&target, output, path).await
            }))
        }
        Command::Detections { node: Some(_) } if !fleet => needs_controller(),
        Command::Detections { node } => online(Box::pin(async move {
            detections::list(&target, output, node.unwrap_or_default()).await
        })),
        Command::Nodes if fleet => {
            online(Box::pin(async move { fleet::nodes(&target, output).await }))
        }
        Command::Bundle(bundle::BundleCommand::Status) if fleet => online(Box::pin(async move {
            fleet::bundle_status(&target, output).await
        })),
        Command::Bundle(bundle::BundleCommand::Status) => {
            online(Box::pin(
                async move { bundle::status(&target, output).await },
            ))
        }
        Command::Fleet(FleetCommand::Mode { mode, reason, wait }) if fleet => {
            online(Box::pin(async move {
                fleet::set_mode(&target, output, mode, reason, wait).await
            }))
        }
        Command::Nodes | Command::Fleet(_) => needs_controller(),
        // Apply and status are the online ones, handled above.
        Command::Bundle(command) => bundle::offline(&command, output).unwrap_or(ExitCode::FAILURE),
        Command::Dev(DevCommand::Up {
            agents,
            dir,
            policy_dir,
        }) => dev::up(&dir, agents, &policy_dir),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "lazaretctl",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Containers {
            quarantined,
            findings,
            finding,
            selector,
            severity,
            node,
        } if fleet => {
            let filter = lazaret_proto::v1::ContainerFilter {
                node: node.unwrap_or_default(),
                selector: selector.unwrap_or_default(),
                quarantined,
                finding: finding
                    .or(findings.then(|| "*".to_string()))
                    .unwrap_or_default(),
                severity: severity.unwrap_or_default(),
            };
            online(Box::pin(async move {
                fleet::containers(&target, output, filter).await
            }))
        }
        Command::Containers {
            finding: Some(_), ..
        }
        | Command::Containers {
            selector: Some(_), ..
        }
        | Command::Containers { node: Some(_), .. }
        | Command::Containers {
            severity: Some(_), ..
        } => needs_controller(),
        Command::Containers {
            quarantined,
            findings,
            ..
        } => online(Box::pin(async move {
            agent::containers(&target, output, quarantined, findings).await
        })),
        Command::Container {
            target: name,
            evidence,
        } if fleet => online(Box::pin(async move {
            fleet_audit::container(&target, output, &name, evidence).await
        })),
        Command::Container {
            target: name,
            evidence,
        } => online(Box::pin(async move {
            agent::container(&target, output, &name, evidence).await
        })),
        Command::Quarantine {
            target: name,
            selector,
            policy,
            node,
            actions,
            reason,
            ttl,
            force,
        } => {
            let args = agent::QuarantineArgs {
                name: name.clone().unwrap_or_default(),
                actions,
                reason,
                ttl,
                force,
            };
            let selection = fleet::Selection {
                target: name,
                selector,
                policy,
                node,
            };
            let fleet_only = selection.selector.is_some()
                || selection.policy.is_some()
                || selection.node.is_some();
            match (fleet, fleet_only) {
                (true, _) => online(Box::pin(async move {
                    fleet::quarantine(&target, output, selection, args).await
                })),
                (false, true) => needs_controller(),
                (false, false) => online(Box::pin(async move {
                    agent::quarantine(&target, output, args).await
                })),
            }
        }
        Command::Release {
            target: name,
            selector,
            policy,
            node,
            reason,
            exempt_for,
        } => {
            let selection = fleet::Selection {
                target: name.clone(),
                selector,
                policy,
                node,
            };
            let fleet_only = selection.selector.is_some()
                || selection.policy.is_some()
                || selection.node.is_some();
            match (fleet, fleet_only) {
                (true, _) => online(Box::pin(async move {
                    fleet::release(&target, output, selection, reason, exempt_for).await
                })),
                (false, true) => needs_controller(),
                (false, false) => online(Box::pin(async move {
                    let name = name.unwrap_or_default();
                    agent::release(&target, output, name, reason, exempt_for).await
                })),
            }
        }
        Command::Quarantines { all, node } if fleet => online(Box::pin(async move {
            fleet::quarantines(&target, output, node.unwrap_or_default(), all).await
        })),
        Command::Quarantines { node: Some(_), .. } => needs_controller(),
        Command::Quarantines { all, .. } => online(Box::pin(async move {
            agent::quarantines(&target, output, all).await
        })),
        Command::Events { from, .. } | Command::Audit { from, .. } if fleet && from != 1 => {
            needs_agent("--from counts one agent's records")
        }
        Command::Audit { verify: true, .. } if fleet => needs_agent(
            "--verify checks one agent's chain (the controller flags rewritten chains in `nodes`)",
        ),
        Command::Events { follow, node, .. } if fleet => online(Box::pin(async move {
            fleet_audit::events(&target, output, node.unwrap_or_default(), follow).await
        })),
        Command::Audit { limit, node, .. } if fleet => online(Box::pin(async move {
            fleet_audit::audit(&target, output, node.unwrap_or_default(), limit).await
        })),
        Command::Events { node: Some(_), .. } | Command::Audit { node: Some(_), .. } => {
            needs_controller()
        }
        Command::Events { follow, from, .. } => online(Box::pin(async move {
            agent::events(&target, output, follow, from).await
        })),
        Command::Audit {
            verify,
            from,
            limit,
            ..
        } => online(Box::pin(async move {
            agent::audit(&target, output, verify, from, limit).await
        })),
        Command::Mode { mode, reason } => online(Box::pin(async move {
            agent::set_mode(&target, output, &mode, reason).await
        })),
    }
}

/// A command or flag only the controller serves, without one configured.
fn needs_controller() -> ExitCode {
    Failure {
        message: "this needs the controller: set --controller ADDR (or LAZARET_CONTROLLER), \
                  and do not pass --agent"
            .into(),
        code: 2,
    }
    .exit()
}

/// A flag that needs one agent, given while commands go through the controller.
fn needs_agent(why: &str) -> ExitCode {
    Failure {
        message: format!("{why}: pass --agent ADDR"),
        code: 2,
    }
    .exit()
}

fn pki_command(command: PkiCommand) -> ExitCode {
    let result = match command {
        PkiCommand::Init { dir, nodes } => pki::init(&dir, nodes).map(|made| {
            println!("made a CA in {}", dir.display());
            for party in made {
                println!("  {:<12} role {}", party.name, party.role);
            }
            println!(
                "start an agent with `lazaret-agent run --tls-dir {0} --node-name node-1`, then                  `lazaretctl --tls-dir {0} containers`",
                dir.display()
            );
        }),
        PkiCommand::Issue { dir, role, name, san } => pki::issue(&dir, role, &name, &san)
            .map(|path| println!("issued {} (role {role})", path.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(client::EXIT_REFUSED)
        }
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use crate::args::Cli;

    /// Every command's `--help`, as a new operator reads it; a change shows in review.
    #[test]
    fn help_texts() {
        let mut root = Cli::command();
        root.build();
        let mut pages = vec![(
            "lazaretctl".to_string(),
            root.render_long_help().to_string(),
        )];
        let mut stack: Vec<(String, clap::Command)> = root
            .get_subcommands()
            .map(|sub| (format!("lazaretctl {}", sub.get_name()), sub.clone()))
            .collect();
        while let Some((path, mut command)) = stack.pop() {
            for sub in command.get_subcommands() {
                stack.push((format!("{path} {}", sub.get_name()), sub.clone()));
            }
            pages.push((path, command.render_long_help().to_string()));
        }
        pages.sort();
        let text: String = pages
            .iter()
            .map(|(path, help)| format!("==== {path} --help\n{help}\n"))
            .collect();
        insta::assert_snapshot!(text);
    }
}
