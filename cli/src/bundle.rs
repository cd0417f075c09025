//! `lazaretctl bundle …`: make a signing key, sign policy or indicator files into a bundle,
//! verify one, hand one to an agent, and show how far the fleet has converged (DESIGN.md §3,
//! "Bundles"). The offline half is the library's [`lazaretctl::signing`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use lazaret_core::bundle::{Bundle, BundleKind, SignedBundle};
use lazaret_proto::v1;
use lazaretctl::signing::{self, SignRequest};
use serde_json::{Value, json};

use crate::Output;
use crate::agent::{print_json, table};
use crate::client::{EXIT_REFUSED, Failure, Target, connect, request};

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Make a bundle-signing key: PATH.key (private, 0600: keep it offline) and PATH.pub (give
    /// it to every agent as bundles.trusted_keys).
    Keygen {
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Sign policy or indicator files (or directories of *.yaml) into a bundle, after checking
    /// them as one set exactly as an agent will. Nothing is signed if any file is bad.
    Sign {
        /// policies or indicators.
        #[arg(long)]
        kind: BundleKind,
        /// The private key (PATH.key from `bundle keygen`).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// Where to write the signed bundle.
        #[arg(long, value_name = "BUNDLE")]
        out: PathBuf,
        /// Must be higher than the version in force (agents refuse older ones); default: now, in
        /// Unix seconds.
        #[arg(long)]
        version: Option<u64>,
        /// How long agents consider it fresh; past it they still enforce it but raise the
        /// stale-bundle alarm.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        expires_in: Duration,
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
    },
    /// Check a signed bundle against trusted public keys, and that its content loads.
    Verify {
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
        /// A trusted public key (PATH.pub); repeat for several.
        #[arg(long, required = true, value_name = "PUB")]
        trust: Vec<PathBuf>,
    },
    /// Hand a signed bundle to the agent (admin role): it checks, applies and gossips it to
    /// every peer.
    Apply {
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
    },
    /// The agent's bundles in force and its view of every peer: live or dead, which bundle
    /// each enforces, and whether it lags.
    Status,
}

/// Runs an offline bundle command; `None` for the online ones (apply, status).
pub fn offline(command: &BundleCommand, output: Output) -> Option<ExitCode> {
    let result = match command {
        BundleCommand::Keygen { out } => signing::keygen(out).map(|key| {
            let (secret, public) = signing::key_paths(out);
            match output {
                Output::Json => print_json(&json!({
                    "key_id": key.id().to_string(),
                    "private": secret,
                    "public": public,
                })),
                Output::Table => println!(
                    "key {}: private {} (keep it offline), public {} (give to every agent as bundles.trusted_keys)",
                    key.id(),
                    secret.display(),
                    public.display()
                ),
            }
        }),
        BundleCommand::Sign {
            kind,
            key,
            out,
            version,
            expires_in,
            paths,
        } => sign(*kind, key, out, *version, *expires_in, paths, output),
        BundleCommand::Verify { bundle, trust } => signing::read_trusted(trust)
            .and_then(|trusted| signing::verify(bundle, &trusted))
            .map(|(signed, bundle)| print_bundle(output, &signed, &bundle, "verified")),
        BundleCommand::Apply { .. } | BundleCommand::Status => return None,
    };
    Some(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_REFUSED)
        }
    })
}

fn sign(
    kind: BundleKind,
    key: &std::path::Path,
    out: &std::path::Path,
    version: Option<u64>,
    expires_in: Duration,
    paths: &[PathBuf],
    output: Output,
) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let key = signing::read_signing_key(key)?;
    let signed = signing::sign(
        &SignRequest {
            kind,
            paths: paths.to_vec(),
            version: version.unwrap_or(now),
            created: now,
            expires: now + expires_in.as_secs().max(1),
        },
        &key,
    )?;
    std::fs::write(out, signed.to_file_bytes())
        .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", out.display()))?;
    print_bundle(output, &signed, signed.unverified(), "signed");
    Ok(())
}

fn print_bundle(output: Output, signed: &SignedBundle, bundle: &Bundle, what: &str) {
    match output {
        Output::Json => print_json(&json!({
            "kind": bundle.kind.to_string(),
            "version": bundle.version,
            "digest": signed.digest().to_hex(),
            "created_unix": bundle.created,
            "expires_unix": bundle.expires,
            "signer": bundle.signer.to_string(),
            "items": bundle.items.iter().map(|item| item.name.clone()).collect::<Vec<_>>(),
        })),
        Output::Table => println!(
            "{what}: {} bundle v{} ({}), {} item(s), signer {}, expires {}",
            bundle.kind,
            bundle.version,
            signed.digest().short(),
            bundle.items.len(),
            bundle.signer,
            unix_time(bundle.expires as i64)
        ),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn unix_time(seconds: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

pub async fn apply(target: &Target, output: Output, path: PathBuf) -> Result<(), Failure> {
    let bytes = std::fs::read(&path).map_err(|error| Failure {
        message: format!("cannot read {}: {error}", path.display()),
        code: EXIT_REFUSED,
    })?;
    let mut client = connect(target).await?;
    let response = client
        .apply_bundle(request(v1::ApplyBundleRequest { bundle: bytes }))
        .await?
        .into_inner();
    match output {
        Output::Json => print_json(&json!({
            "kind": response.kind,
            "version": response.version,
            "digest": response.digest,
            "outcome": response.outcome,
            "previous": (response.previous_version != 0).then(|| json!({
                "version": response.previous_version,
                "digest": response.previous_digest,
            })),
            "conflict": response.conflict,
        })),
        Output::Table => {
            println!(
                "{} {} bundle v{} ({}) on {}; gossip takes it to every peer (`lazaretctl bundle status`)",
                response.outcome,
                response.kind,
                response.version,
                &response.digest[..response.digest.len().min(12)],
                target.agent
            );
            if response.conflict {
                println!("warning: a different bundle had the same version: two signers disagree");
            }
        }
    }
    Ok(())
}

pub async fn status(target: &Target, output: Output) -> Result<(), Failure> {
    let mut client = connect(target).await?;
    let response = client
        .bundle_status(request(v1::BundleStatusRequest {}))
        .await?
        .into_inner();
    print!("{}", render_status(output, &response));
    Ok(())
}

/// How a peer's bundle of one kind compares with this node's.
fn lag(ours: Option<&v1::BundleInForce>, theirs: Option<&v1::PeerBundle>) -> &'static str {
    match (ours, theirs) {
        (_, None) => "none",
        (None, Some(_)) => "ahead",
        (Some(ours), Some(theirs)) if ours.digest == theirs.digest => "same",
        (Some(ours), Some(theirs)) if theirs.version > ours.version => "ahead",
        (Some(ours), Some(theirs)) if theirs.version < ours.version => "behind",
        // Same version, another digest: the higher digest wins everywhere.
        (Some(ours), Some(theirs)) if theirs.digest > ours.digest => "ahead",
        _ => "behind",
    }
}

/// The `bundle status` output.
pub fn render_status(output: Output, status: &v1::BundleStatusResponse) -> String {
    let ours = |kind: BundleKind| {
        status
            .bundles
            .iter()
            .find(|bundle| bundle.kind == kind.as_str())
    };
    fn theirs(peer: &v1::PeerStatus, kind: BundleKind) -> Option<&v1::PeerBundle> {
        peer.acks.iter().find(|ack| ack.kind == kind.as_str())
    }
    match output {
        Output::Json => {
            let bundles: Vec<Value> = status
                .bundles
                .iter()
                .map(|bundle| {
                    json!({
                        "kind": bundle.kind, "version": bundle.version, "digest": bundle.digest,
                        "created_unix": bundle.created_unix, "expires_unix": bundle.expires_unix,
                        "stale": bundle.stale, "signer": bundle.signer, "from": bundle.from,
                        "items": bundle.items,
                    })
                })
                .collect();
            let peers: Vec<Value> = status
                .peers
                .iter()
                .map(|peer| {
                    let mut acks = serde_json::Map::new();
                    let mut lags = serde_json::Map::new();
                    for kind in BundleKind::ALL {
                        let ack = theirs(peer, kind);
                        if let Some(ack) = ack {
                            acks.insert(
                                kind.to_string(),
                                json!({"version": ack.version, "digest": ack.digest}),
                            );
                        }
                        lags.insert(kind.to_string(), lag(ours(kind), ack).into());
                    }
                    json!({
                        "node": peer.node, "generation": peer.generation, "live": peer.live,
                        "role": peer.role, "problem": (!peer.problem.is_empty()).then_some(&peer.problem),
                        "grpc": peer.grpc, "gossip": peer.gossip, "acks": acks, "lag": lags,
                        "audit_only": peer.audit_only, "containers": peer.containers,
                        "quarantined": peer.quarantined, "audit_sequence": peer.audit_sequence,
                    })
                })
                .collect();
            crate::agent::json_text(&json!({
                "node": status.node,
                "generation": status.generation,
                "gossip": status.gossip,
                "trusted_keys": status.trusted_keys,
                "bundles": bundles,
                "peers": peers,
            }))
        }
        Output::Table => {
            let mut text = format!(
                "node {}: gossip {}, generation {}; trusted keys: {}\n",
                status.node,
                if status.gossip { "on" } else { "off" },
                status.generation,
                if status.trusted_keys.is_empty() {
                    "none (bundles are refused)".to_string()
                } else {
                    status.trusted_keys.join(", ")
                }
            );
            let mut bundles = table(&["KIND", "VERSION", "DIGEST", "EXPIRES", "FROM"]);
            for bundle in &status.bundles {
                let expires = match bundle.stale {
                    true => format!("{} STALE", unix_time(bundle.expires_unix)),
                    false => unix_time(bundle.expires_unix),
                };
                bundles.add_row([
                    bundle.kind.clone(),
                    bundle.version.to_string(),
                    bundle.digest[..bundle.digest.len().min(12)].to_string(),
                    expires,
                    bundle.from.clone(),
                ]);
            }
            if status.bundles.is_empty() {
                text.push_str("no bundle in force\n");
            } else {
                text.push_str(&format!("{bundles}\n"));
            }
            if !status.gossip {
                return text;
            }
            let mut peers = table(&["PEER", "STATE", "GEN", "POLICIES", "INDICATORS", "QUAR."]);
            for peer in &status.peers {
                let cell = |kind: BundleKind| match theirs(peer, kind) {
                    Some(ack) => format!(
                        "v{} {} {}",
                        ack.version,
                        &ack.digest[..ack.digest.len().min(6)],
                        lag(ours(kind), Some(ack))
                    ),
                    None => "-".to_string(),
                };
                let state = match (peer.live, peer.problem.is_empty()) {
                    (_, false) => peer.problem.clone(),
                    (true, true) => "live".into(),
                    (false, true) => "dead".into(),
                };
                peers.add_row([
                    peer.node.clone(),
                    state,
                    peer.generation.to_string(),
                    cell(BundleKind::Policies),
                    cell(BundleKind::Indicators),
                    peer.quarantined.to_string(),
                ]);
            }
            match status.peers.is_empty() {
                true => text.push_str("no peer seen yet\n"),
                false => text.push_str(&format!("{peers}\n")),
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> v1::BundleStatusResponse {
        let digest = |byte: char| byte.to_string().repeat(64);
        v1::BundleStatusResponse {
            node: "node-1".into(),
            generation: 4,
            gossip: true,
            trusted_keys: vec!["0123456789abcdef".into()],
            bundles: vec![v1::BundleInForce {
                kind: "policies".into(),
                version: 12,
                digest: digest('b'),
                created_unix: 1_800_000_000,
                expires_unix: 1_802_592_000,
                stale: false,
                signer: "0123456789abcdef".into(),
                from: "admin".into(),
                items: 3,
            }],
            peers: vec![
                v1::PeerStatus {
                    node: "node-2".into(),
                    generation: 2,
                    live: true,
                    role: "node".into(),
                    grpc: "127.0.0.1:7444".into(),
                    gossip: "127.0.0.1:7947".into(),
                    acks: vec![v1::PeerBundle {
                        kind: "policies".into(),
                        version: 12,
                        digest: digest('b'),
                    }],
                    quarantined: 1,
                    ..Default::default()
                },
                v1::PeerStatus {
                    node: "node-3".into(),
                    generation: 1,
                    live: false,
                    role: "node".into(),
                    acks: vec![v1::PeerBundle {
                        kind: "policies".into(),
                        version: 11,
                        digest: digest('a'),
                    }],
                    ..Default::default()
                },
                v1::PeerStatus {
                    node: "node-9".into(),
                    generation: 1,
                    problem: "certificate refused: not signed by the fleet CA".into(),
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn status_table_fits_80_columns_and_shows_lag() {
        let text = render_status(Output::Table, &fixture());
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line}");
        }
        insta::assert_snapshot!(text);
    }

    #[test]
    fn status_json_has_the_stable_fields() {
        insta::assert_snapshot!(render_status(Output::Json, &fixture()));
    }

    #[test]
    fn lag_compares_version_then_digest() {
        let ours = v1::BundleInForce {
            version: 5,
            digest: "b".into(),
            ..Default::default()
        };
        let peer = |version, digest: &str| v1::PeerBundle {
            kind: "policies".into(),
            version,
            digest: digest.into(),
        };
        assert_eq!(lag(Some(&ours), Some(&peer(5, "b"))), "same");
        assert_eq!(lag(Some(&ours), Some(&peer(4, "z"))), "behind");
        assert_eq!(lag(Some(&ours), Some(&peer(6, "a"))), "ahead");
        assert_eq!(lag(Some(&ours), Some(&peer(5, "c"))), "ahead");
        assert_eq!(lag(Some(&ours), Some(&peer(5, "a"))), "behind");
        assert_eq!(lag(None, Some(&peer(1, "a"))), "ahead");
        assert_eq!(lag(Some(&ours), None), "none");
    }
}
