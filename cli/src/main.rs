//! `lazaretctl`: the operators' CLI. Offline: the CIS check catalogue, policy validation, the
//! fleet PKI, bundle keys and signing. Through the controller (`--controller ADDR`, the default
//! once set): nodes, fleet-wide containers, quarantines and releases (by name, selector or
//! policy), bundles, the fleet-wide switch. Against one agent (`--agent ADDR`, also while the
//! controller is down): containers, quarantines, releases, the audit trail and its live stream,
//! the mode, what policies would do, and signed bundles (apply, status). Mutual TLS with a
//! certificate from `--tls-dir` throughout.
#![forbid(unsafe_code)]

mod agent;
mod bundle;
mod client;
mod dev;
mod fleet;
mod policy;
mod rollout;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use lazaret_core::bundle::BundleKind;
use lazaret_core::posture;
use lazaret_core::roles::Role;
use lazaretctl::pki;

use crate::client::{Failure, Target};

/// Lazaret's command-line tool for operators.
///
/// With a controller (--controller or LAZARET_CONTROLLER) the commands that can act fleet-wide
/// go through it: nodes, containers, quarantines, quarantine, release, bundle apply|status, fleet.
/// Give --agent on the command line to talk to one agent instead (e.g. while the controller is
/// down).
///
/// Exit codes: 0 done; 1 refused or failed (the message says why); 2 a malformed command line;
/// 3 the agent could not be reached, or the TLS handshake failed.
#[derive(Debug, Parser)]
#[command(name = "lazaretctl", version)]
struct Cli {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    /// The agent to talk to, host:port (given on the command line, it wins over --controller).
    #[arg(
        long,
        env = "LAZARET_AGENT",
        hide_env_values = true,
        global = true,
        default_value = "127.0.0.1:7443"
    )]
    agent: String,
    /// The controller to talk to, host:port; fleet-wide commands go through it.
    #[arg(
        long,
        env = "LAZARET_CONTROLLER",
        hide_env_values = true,
        global = true
    )]
    controller: Option<String>,
    /// The PKI directory: ca.pem and your certificate (made by `lazaretctl pki init`; the
    /// default is the dev PKI of `lazaretctl dev up`).
    #[arg(
        long,
        env = "LAZARET_TLS_DIR",
        hide_env_values = true,
        global = true,
        default_value = ".lazaret/dev/pki"
    )]
    tls_dir: PathBuf,
    /// Whose certificate in --tls-dir to present (NAME.pem, NAME-key.pem); its role decides
    /// what you may do.
    #[arg(
        long = "as",
        env = "LAZARET_AS",
        hide_env_values = true,
        global = true,
        default_value = "admin"
    )]
    identity: String,
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
    /// Every node the controller knows: live or dead, bundle versions, mode, containers,
    /// quarantines, audit chain (controller only).
    Nodes,
    /// List containers with their state, failed checks and quarantine (fleet-wide through the
    /// controller, with the filters below; or one agent's).
    Containers {
        /// Only containers with a quarantine in force.
        #[arg(long)]
        quarantined: bool,
        /// Only containers that fail at least one check.
        #[arg(long)]
        findings: bool,
        /// Only containers failing this CIS check id, e.g. 5.4 (controller).
        #[arg(long, value_name = "CHECK")]
        finding: Option<String>,
        /// Only containers with these labels, e.g. app=web,tier=front (controller).
        #[arg(long, value_name = "KEY=VALUE,…")]
        selector: Option<String>,
        /// Only this node's containers (controller).
        #[arg(long)]
        node: Option<String>,
    },
    /// Show one container (by id, unique id prefix, or name) with its quarantine and history.
    Container {
        #[arg(value_name = "ID|NAME")]
        target: String,
    },
    /// Quarantine a container: cut its network and pause it (by default), recorded with your
    /// name and reason. Through the controller: on whichever node owns it, or every container a
    /// --selector matches.
    Quarantine {
        #[arg(value_name = "ID|NAME", required_unless_present = "selector")]
        target: Option<String>,
        /// Every container with these labels, e.g. app=web (controller).
        #[arg(long, value_name = "KEY=VALUE,…", conflicts_with = "target")]
        selector: Option<String>,
        /// Only on this node (controller).
        #[arg(long)]
        node: Option<String>,
        /// What to do, in order: network-cut, pause, stop, kill, alert (comma-separated).
        #[arg(
            long = "action",
            value_delimiter = ',',
            default_value = "network-cut,pause"
        )]
        actions: Vec<String>,
        /// Why (required; goes into the audit trail).
        #[arg(long)]
        reason: String,
        /// Release automatically after this long, e.g. 30m, 1h.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// Quarantine a protected container too (admin role only).
        #[arg(long)]
        force: bool,
    },
    /// Release a quarantine: restore the network, resume; the policy that caused it leaves the
    /// container alone for --exempt-for. Through the controller: also every quarantine a
    /// --selector matches, or that --policy NAME caused (undoing a bad rollout in one command).
    Release {
        #[arg(value_name = "ID|NAME", required_unless_present_any = ["selector", "policy"])]
        target: Option<String>,
        /// Every quarantined container with these labels (controller).
        #[arg(long, value_name = "KEY=VALUE,…", conflicts_with_all = ["target", "policy"])]
        selector: Option<String>,
        /// Every quarantine in force that this policy caused (controller).
        #[arg(long, value_name = "NAME", conflicts_with = "target")]
        policy: Option<String>,
        /// Only on this node (controller).
        #[arg(long)]
        node: Option<String>,
        /// Why (required; goes into the audit trail).
        #[arg(long)]
        reason: String,
        /// How long the container is exempt from the policy that quarantined it (default 1h).
        #[arg(long, value_parser = humantime::parse_duration)]
        exempt_for: Option<Duration>,
    },
    /// List the quarantines in force (fleet-wide through the controller).
    Quarantines {
        /// Also released and gone ones.
        #[arg(long)]
        all: bool,
        /// Only this node's (controller).
        #[arg(long)]
        node: Option<String>,
    },
    /// Print the agent's security events (its audit trail); --follow keeps printing new ones.
    Events {
        #[arg(long, short = 'f')]
        follow: bool,
        /// Start at this sequence number (resume with the last one seen + 1).
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
    /// Print the audit trail, or check its hash chain with --verify.
    Audit {
        #[arg(long)]
        verify: bool,
        #[arg(long, default_value_t = 1)]
        from: u64,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Switch the agent between enforcing and audit-only (admin role).
    Mode {
        #[arg(value_parser = ["enforce", "audit-only"])]
        mode: String,
        /// Why (required; goes into the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// List the CIS Docker Benchmark checks Lazaret runs on every container (id, severity,
    /// title). Explained in docs/posture.md.
    Checks,
    /// Work with policy files (see docs/policies.md).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Make and extend the fleet's PKI (CA and certificates with roles).
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Signed policy and indicator bundles: make a key, sign, verify, apply to an agent, and
    /// see the fleet converge (docs/bundles.md).
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Threat indicators (docs/bundles.md), through the controller.
    #[command(subcommand)]
    Indicators(IndicatorsCommand),
    /// Fleet-wide switches, through the controller.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// A local fleet for trying Lazaret: agents against this machine's engine, with a dev PKI.
    #[command(subcommand)]
    Dev(DevCommand),
    /// Print a shell completion script, e.g. `lazaretctl completions bash > /etc/bash_completion.d/lazaretctl`.
    Completions { shell: clap_complete::Shell },
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
    /// Ask the agent what these policies would do to its containers, without acting.
    Test {
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
    },
    /// Roll policy files out through the controller: validated whole, signed by the controller
    /// as the next version, enforced by every agent (progress until all ack). With --canary, only
    /// those nodes take it and you see what it does there; promote by running the same command
    /// without --canary (admin role).
    Apply {
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
        /// Nodes that take it first (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "NODE,…")]
        canary: Vec<String>,
        /// How long to wait for every target agent to ack.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
        wait: Duration,
    },
    /// The policies the fleet enforces (its newest policies bundle), through the controller.
    List,
    /// What applying these files would change against the fleet's policies: each policy added
    /// (+), removed (-) or changed (~), compared by value (formatting does not count).
    Diff {
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum IndicatorsCommand {
    /// Roll indicator files out through the controller, like `policy apply` (admin role).
    Apply {
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
        /// Nodes that take it first (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "NODE,…")]
        canary: Vec<String>,
        /// How long to wait for every target agent to ack.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
        wait: Duration,
    },
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// Switch every agent between enforcing and audit-only (admin role). The switch travels by
    /// gossip, reaches every agent within seconds, and stays in force on the agents when the
    /// controller is gone; this waits (up to --wait) until every live agent reports it.
    Mode {
        #[arg(value_parser = ["enforce", "audit-only"])]
        mode: String,
        /// Why (required; goes into every agent's audit trail).
        #[arg(long)]
        reason: String,
        /// How long to wait for every live agent to report the mode.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
        wait: Duration,
    },
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Start N agents (node-1…) with a dev PKI in DIR, write DIR/env, and stop them on Ctrl-C.
    Up {
        #[arg(long, default_value_t = 1)]
        agents: usize,
        #[arg(long, default_value = ".lazaret/dev")]
        dir: PathBuf,
        /// Policies every agent enforces (repeatable); none: operators quarantine by hand.
        #[arg(long, value_name = "DIR|FILE")]
        policy_dir: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Make a CA and certificates for a controller, N nodes (node-1…) and an admin in DIR.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        nodes: usize,
    },
    /// Issue one more certificate, signed by the CA in DIR.
    Issue {
        #[arg(
            long,
            value_name = "DIR",
            env = "LAZARET_TLS_DIR",
            hide_env_values = true
        )]
        dir: PathBuf,
        /// viewer, operator, admin, controller, node or detector.
        #[arg(long)]
        role: Role,
        /// The certificate's name (file name and CN; the actor recorded for what it does).
        #[arg(long)]
        name: String,
        /// More names or addresses a node or controller serves on (repeatable).
        #[arg(long)]
        san: Vec<String>,
    },
}

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
        Command::Policy(
            PolicyCommand::Apply { .. } | PolicyCommand::List | PolicyCommand::Diff { .. },
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
        Command::Bundle(bundle::BundleCommand::Status) | Command::Nodes if fleet => {
            online(Box::pin(async move { fleet::nodes(&target, output).await }))
        }
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
            node,
        } if fleet => {
            let filter = lazaret_proto::v1::ContainerFilter {
                node: node.unwrap_or_default(),
                selector: selector.unwrap_or_default(),
                quarantined,
                finding: finding
                    .or(findings.then(|| "*".to_string()))
                    .unwrap_or_default(),
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
        | Command::Containers { node: Some(_), .. } => needs_controller(),
        Command::Containers {
            quarantined,
            findings,
            ..
        } => online(Box::pin(async move {
            agent::containers(&target, output, quarantined, findings).await
        })),
        Command::Container { target: name } => online(Box::pin(async move {
            agent::container(&target, output, &name).await
        })),
        Command::Quarantine {
            target: name,
            selector,
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
                policy: None,
                node,
            };
            match (
                fleet,
                selection.selector.is_some() || selection.node.is_some(),
            ) {
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
        Command::Events { follow, from } => online(Box::pin(async move {
            agent::events(&target, output, follow, from).await
        })),
        Command::Audit {
            verify,
            from,
            limit,
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

    use super::Cli;

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
