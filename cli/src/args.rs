//! `lazaretctl`'s command line: every command, flag and help text (snapshot-tested in
//! `main.rs`). `main.rs` dispatches them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use lazaret_core::roles::Role;

use crate::bundle;

/// Lazaret's command-line tool for operators.
///
/// With a controller (--controller or LAZARET_CONTROLLER) the commands that can act fleet-wide
/// go through it: nodes, containers, quarantines, quarantine, release, bundle apply|status, fleet.
/// Give --agent on the command line to talk to one agent instead (e.g. while the controller is
/// down).
///
/// Exit codes: 0 done; 1 refused or failed (the message says why); 2 a malformed command line;
/// 3 the agent could not be reached, the TLS handshake failed, or the answer is not known yet
/// (an agent that started moments ago has not listed its containers): try again.
#[derive(Debug, Parser)]
#[command(name = "lazaretctl", version)]
pub(crate) struct Cli {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub(crate) output: Output,
    /// The agent to talk to, host:port (given on the command line, it wins over --controller).
    #[arg(
        long,
        env = "LAZARET_AGENT",
        hide_env_values = true,
        global = true,
        default_value = "127.0.0.1:7443"
    )]
    pub(crate) agent: String,
    /// The controller to talk to, host:port; fleet-wide commands go through it.
    #[arg(
        long,
        env = "LAZARET_CONTROLLER",
        hide_env_values = true,
        global = true
    )]
    pub(crate) controller: Option<String>,
    /// The PKI directory: ca.pem and your certificate (made by `lazaretctl pki init`; the
    /// default is the dev PKI of `lazaretctl dev up`).
    #[arg(
        long,
        env = "LAZARET_TLS_DIR",
        hide_env_values = true,
        global = true,
        default_value = ".lazaret/dev/pki"
    )]
    pub(crate) tls_dir: PathBuf,
    /// Whose certificate in --tls-dir to present (NAME.pem, NAME-key.pem); its role decides
    /// what you may do.
    #[arg(
        long = "as",
        env = "LAZARET_AS",
        hide_env_values = true,
        global = true,
        default_value = "admin"
    )]
    pub(crate) identity: String,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
        /// Only containers failing a check of at least this severity: info, low, medium,
        /// high, critical (controller).
        #[arg(long)]
        severity: Option<String>,
        /// Only this node's containers (controller).
        #[arg(long)]
        node: Option<String>,
    },
    /// Show one container (by id, unique id prefix, or name) with its quarantine and history.
    Container {
        #[arg(value_name = "ID|NAME")]
        target: String,
        /// Also show the evidence taken when it was quarantined: its processes (name, PID,
        /// executable SHA-256) and the remote addresses of its sockets at that moment.
        #[arg(long)]
        evidence: bool,
    },
    /// Quarantine a container: cut its network and pause it (by default), recorded with your
    /// name and reason. Through the controller: on whichever node owns it, or every container a
    /// --selector matches or a --policy flags.
    Quarantine {
        #[arg(value_name = "ID|NAME", required_unless_present_any = ["selector", "policy"])]
        target: Option<String>,
        /// Every container with these labels, e.g. app=web (controller).
        #[arg(long, value_name = "KEY=VALUE,…", conflicts_with_all = ["target", "policy"])]
        selector: Option<String>,
        /// Every container the fleet's policy NAME flags now, even one in audit mode
        /// (controller).
        #[arg(long, value_name = "NAME", conflicts_with = "target")]
        policy: Option<String>,
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
        /// Start at this sequence number (resume with the last one seen + 1; one agent's, so
        /// with --agent).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Only this node's (controller).
        #[arg(long)]
        node: Option<String>,
    },
    /// Print the audit trail (through the controller: every agent's newest records, merged by
    /// time), or check one agent's hash chain with --verify (with --agent).
    Audit {
        #[arg(long)]
        verify: bool,
        /// From this sequence number (one agent's, so with --agent).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// How many records (through the controller: per node, the newest).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Only this node's (controller).
        #[arg(long)]
        node: Option<String>,
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
    /// What detectors (Falco, `ReportDetection`) reported and what was done about each
    /// (docs/detections.md): every agent's through the controller, or one agent's.
    Detections {
        /// Only this node's (controller).
        #[arg(long)]
        node: Option<String>,
    },
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
pub(crate) enum PolicyCommand {
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
    /// What an audit-mode policy would have done across the fleet: every container it would
    /// have quarantined, by node, with why (from the agents' audit trails, through the
    /// controller). Switch it to enforce knowing its blast radius.
    Report {
        /// The policy's name.
        name: String,
        /// How far back to look.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
        since: Duration,
        /// The newest records read from each agent's audit trail.
        #[arg(long, default_value_t = 10_000)]
        limit: u32,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ImportFormat {
    /// `TYPE VALUE [SEVERITY]` per line, `#` comments.
    List,
    /// A STIX 2.1 bundle (indicator objects; the pattern subset in docs/detections.md).
    Stix,
}

#[derive(Debug, Subcommand)]
pub(crate) enum IndicatorsCommand {
    /// The indicators the fleet enforces (its newest indicators bundle), through the controller.
    List,
    /// How many indicators the fleet enforces, by type and severity, through the controller.
    Stats,
    /// Convert a plain list or a STIX 2.1 bundle into an indicators file (offline): every entry
    /// that cannot be imported is listed with why. Roll the file out with `indicators apply`, or
    /// sign it with `bundle sign --kind indicators`.
    Import {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = ImportFormat::List)]
        format: ImportFormat,
        /// The indicators' source (who says so), default the file's name.
        #[arg(long)]
        source: Option<String>,
        /// Where to write the indicators file (YAML).
        #[arg(long, value_name = "FILE", required_unless_present = "dry_run")]
        out: Option<PathBuf>,
        /// Only report what would be imported and what not.
        #[arg(long)]
        dry_run: bool,
    },
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
pub(crate) enum FleetCommand {
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
pub(crate) enum DevCommand {
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
pub(crate) enum PkiCommand {
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
