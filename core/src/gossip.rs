//! What agents say about themselves over gossip (DESIGN.md §3, "Gossip keys"): the keys, their
//! typed values, the size limit, and the envelope that binds each value to its node's key.
//!
//! Gossip is a rumour channel, never an authority. Every value but `cert` travels sealed:
//! `<signature hex>.<payload>`, where the signature (ECDSA P-256 by the node's TLS key, made and
//! checked by the agent) covers [`signing_message`]: a context tag, the cluster id, the node
//! name, the node's generation and the value's version ([`Slot`]), the key and the payload. So a
//! value cannot be moved to another key, node or cluster, nor replayed later under a newer
//! version or generation. `cert` carries the node's certificate (PEM), which peers verify against the
//! fleet CA (common name = node name, role `node`) before trusting anything else from that node.
//!
//! Values are JSON, at most [`MAX_VALUE_BYTES`] each, checked in one place
//! ([`checked_value`]): chitchat silently stops gossiping a node's later keys after one value
//! over ~65 KB (FACTS.md), so nothing near that may ever be set.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bundle::{BundleKind, BundleStamp};

mod seal;

pub use self::seal::{SealError, Slot, open, seal, signing_message, verify_seal};

/// The context tag that opens every signed message.
pub const SIGNING_CONTEXT: &str = "lazaret-gossip-v1";

/// The largest value (bytes, envelope included) ever set.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;

/// Prefix of the per-container quarantine summaries.
const QUARANTINE_PREFIX: &str = "q:";

/// A gossip key, typed. [`GossipKey::to_string`] gives the wire name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GossipKey {
    /// The node's certificate (PEM): not sealed, verified against the CA.
    Cert,
    /// [`NodeValue`].
    Node,
    /// [`StatsValue`].
    Stats,
    /// [`ModeValue`].
    Mode,
    /// [`BundleStamp`] of the bundle of this kind in force on the node.
    Ack(BundleKind),
    /// A quarantine summary for one container (`q:<container id>`).
    Quarantine(String),
    /// [`AuditHeadValue`].
    AuditHead,
    /// A bundle manifest offered by the controller ([7/11]).
    Manifest(BundleKind),
    /// [`FleetModeValue`]: the fleet-wide switch, believed from a controller only.
    FleetMode,
}

impl GossipKey {
    /// Parses a wire name; `None` for keys Lazaret does not use (ignored, never an error:
    /// a newer agent may gossip keys an older one does not know).
    pub fn parse(key: &str) -> Option<GossipKey> {
        let kind = |rest: &str| rest.parse::<BundleKind>().ok();
        Some(match key {
            "cert" => GossipKey::Cert,
            "node" => GossipKey::Node,
            "stats" => GossipKey::Stats,
            "mode" => GossipKey::Mode,
            "audit_head" => GossipKey::AuditHead,
            "fleet_mode" => GossipKey::FleetMode,
            _ => {
                if let Some(rest) = key.strip_prefix("ack:") {
                    GossipKey::Ack(kind(rest)?)
                } else if let Some(rest) = key.strip_prefix("manifest:") {
                    GossipKey::Manifest(kind(rest)?)
                } else if let Some(rest) = key.strip_prefix(QUARANTINE_PREFIX) {
                    GossipKey::Quarantine(rest.to_string())
                } else {
                    return None;
                }
            }
        })
    }

    /// Whether the value travels sealed (every key but `cert`).
    pub fn is_sealed(&self) -> bool {
        !matches!(self, GossipKey::Cert)
    }
}

impl fmt::Display for GossipKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GossipKey::Cert => formatter.write_str("cert"),
            GossipKey::Node => formatter.write_str("node"),
            GossipKey::Stats => formatter.write_str("stats"),
            GossipKey::Mode => formatter.write_str("mode"),
            GossipKey::Ack(kind) => write!(formatter, "ack:{kind}"),
            GossipKey::Quarantine(container) => write!(formatter, "{QUARANTINE_PREFIX}{container}"),
            GossipKey::AuditHead => formatter.write_str("audit_head"),
            GossipKey::Manifest(kind) => write!(formatter, "manifest:{kind}"),
            GossipKey::FleetMode => formatter.write_str("fleet_mode"),
        }
    }
}

/// `fleet_mode`: the controller's fleet-wide switch. Agents follow the newest they see (by
/// `since_unix_ms`) and keep it when the controller is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetModeValue {
    pub audit_only: bool,
    pub since_unix_ms: i64,
    /// Who switched it (`alice via controller-1`).
    pub actor: String,
    pub reason: String,
}

/// `node`: who the node is and where to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeValue {
    /// The agent's version.
    pub version: String,
    pub hostname: String,
    /// The runtimes it watches (`docker`, `containerd`).
    pub runtimes: Vec<String>,
    /// `host:port` of its gRPC API, where peers fetch bundles.
    pub grpc: String,
    /// Where it takes detections, when it does ([8/11]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detections: Option<String>,
}

/// `stats`: counts for the fleet view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsValue {
    pub containers: u64,
    pub quarantined: u64,
}

/// `mode`: whether the node enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeValue {
    pub audit_only: bool,
}

/// `audit_head`: the last record of the node's audit chain, so a rewritten chain is visible
/// off the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHeadValue {
    pub sequence: u64,
    /// 64 hex digits.
    pub hash: String,
}

/// `ack:<kind>`: the bundle in force.
pub type AckValue = BundleStamp;

/// A value too large to gossip.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gossip value for {key} is {size} bytes, over the {MAX_VALUE_BYTES}-byte limit")]
pub struct ValueTooLarge {
    pub key: String,
    pub size: usize,
}

/// The one gate every value passes before it is set.
pub fn checked_value(key: &GossipKey, value: String) -> Result<String, ValueTooLarge> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(ValueTooLarge {
            key: key.to_string(),
            size: value.len(),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_unknown_ones_are_ignored() {
        let keys = [
            GossipKey::Cert,
            GossipKey::Node,
            GossipKey::Stats,
            GossipKey::Mode,
            GossipKey::Ack(BundleKind::Policies),
            GossipKey::Ack(BundleKind::Indicators),
            GossipKey::Quarantine("abc123".into()),
            GossipKey::AuditHead,
            GossipKey::Manifest(BundleKind::Indicators),
            GossipKey::FleetMode,
        ];
        for key in keys {
            assert_eq!(
                GossipKey::parse(&key.to_string()),
                Some(key.clone()),
                "{key}"
            );
        }
        assert_eq!(
            GossipKey::Ack(BundleKind::Policies).to_string(),
            "ack:policies"
        );
        assert_eq!(GossipKey::parse("ack:other"), None);
        assert_eq!(GossipKey::parse("something-newer"), None);
        assert!(!GossipKey::Cert.is_sealed());
        assert!(GossipKey::Node.is_sealed());
    }

    #[test]
    fn values_over_the_limit_are_refused_by_the_one_gate() {
        let key = GossipKey::Stats;
        assert!(checked_value(&key, "x".repeat(MAX_VALUE_BYTES)).is_ok());
        let error = checked_value(&key, "x".repeat(MAX_VALUE_BYTES + 1)).unwrap_err();
        assert_eq!(error.size, MAX_VALUE_BYTES + 1);
        assert!(error.to_string().contains("stats"), "{error}");
    }
}
