//! The `[gossip]` and `[bundles]` configuration sections the agent and the controller share: how
//! a member joins the fleet, and whose signed bundles it accepts. Each error names its field.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use lazaret_core::bundle::{BundlePublicKey, TrustedKeys};
use serde::Deserialize;

use crate::gossip::GossipSettings;

/// A setting that does not validate: its field (`gossip.listen`) and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingError {
    pub field: String,
    pub message: String,
}

impl SettingError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> SettingError {
        SettingError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGossip {
    /// UDP `host:port` to gossip on; empty: no gossip (a standalone agent). Needs the API: values
    /// are sealed with the node's certificate, and peers fetch bundles from the API.
    pub listen: String,
    /// The `host:port` peers reach this node at; empty: `listen` (which must then be a specific
    /// address, not 0.0.0.0).
    pub advertise: String,
    /// `host:port` of nodes to join through (any few; the first node needs none).
    pub seeds: Vec<String>,
    /// Nodes gossip only within their cluster.
    pub cluster: String,
    /// How often the node gossips with a peer, e.g. `1s` (tests use `200ms`).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for RawGossip {
    fn default() -> Self {
        RawGossip {
            listen: String::new(),
            advertise: String::new(),
            seeds: Vec::new(),
            cluster: "lazaret".into(),
            interval: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBundles {
    /// Public keys (PEM files from `lazaretctl bundle keygen`) whose signed bundles this agent
    /// accepts. Several: a new key is trusted before the old one is retired.
    pub trusted_keys: Vec<PathBuf>,
}

impl RawGossip {
    /// The settings; `None` when `listen` is empty (no gossip).
    pub fn validate(self) -> Result<Option<GossipSettings>, SettingError> {
        if self.listen.trim().is_empty() {
            return Ok(None);
        }
        let address = |field: &str, text: &str| {
            text.parse::<SocketAddr>().map_err(|error| {
                SettingError::new(
                    field,
                    format!("{text:?} is not host:port ({error}); use e.g. 10.0.0.5:7946"),
                )
            })
        };
        let listen = address("gossip.listen", &self.listen)?;
        let advertise = match self.advertise.trim() {
            "" if listen.ip().is_unspecified() => {
                return Err(SettingError::new(
                    "gossip.advertise",
                    "gossip.listen binds every address: set the address peers reach this node at",
                ));
            }
            "" => listen,
            text => address("gossip.advertise", text)?,
        };
        if self.cluster.trim().is_empty() {
            return Err(SettingError::new("gossip.cluster", "must not be empty"));
        }
        if self.interval < Duration::from_millis(10) {
            return Err(SettingError::new(
                "gossip.interval",
                "must be at least 10ms (1s is the default)",
            ));
        }
        Ok(Some(GossipSettings {
            cluster: self.cluster,
            listen,
            advertise,
            seeds: self.seeds,
            interval: self.interval,
        }))
    }
}

impl RawBundles {
    /// Reads every trusted key; a missing or malformed file names itself.
    pub fn validate(self) -> Result<TrustedKeys, SettingError> {
        let mut keys = Vec::new();
        for path in &self.trusted_keys {
            let field = || format!("bundles.trusted_keys: {}", path.display());
            let text = std::fs::read_to_string(path)
                .map_err(|error| SettingError::new(field(), format!("cannot read: {error}")))?;
            let key = BundlePublicKey::from_pem(&text)
                .map_err(|error| SettingError::new(field(), error.to_string()))?;
            keys.push(key);
        }
        Ok(TrustedKeys::new(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_is_off_by_default() {
        assert_eq!(RawGossip::default().validate().unwrap(), None);
        let settings = RawGossip {
            listen: "127.0.0.1:7946".into(),
            ..RawGossip::default()
        }
        .validate()
        .unwrap()
        .unwrap();
        assert_eq!(settings.advertise, settings.listen);
    }

    #[test]
    fn a_wildcard_listen_address_needs_an_advertised_one() {
        let raw = RawGossip {
            listen: "0.0.0.0:7946".into(),
            ..RawGossip::default()
        };
        assert_eq!(
            raw.clone().validate().unwrap_err().field,
            "gossip.advertise"
        );
        let settings = RawGossip {
            advertise: "10.0.0.5:7946".into(),
            ..raw
        }
        .validate()
        .unwrap()
        .unwrap();
        assert_eq!(settings.advertise.to_string(), "10.0.0.5:7946");
    }

    #[test]
    fn trusted_keys_must_exist_and_be_ed25519_public_keys() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.pub");
        let key = lazaret_core::bundle::BundleSigningKey::from_seed([3; 32]);
        std::fs::write(&good, key.public().to_pem()).unwrap();
        let bad = dir.path().join("bad.pub");
        std::fs::write(&bad, key.to_pem()).unwrap();
        let trusted = RawBundles {
            trusted_keys: vec![good.clone()],
        }
        .validate()
        .unwrap();
        assert_eq!(trusted.ids().collect::<Vec<_>>(), vec![&key.id()]);
        let error = RawBundles {
            trusted_keys: vec![good, bad.clone()],
        }
        .validate()
        .unwrap_err();
        assert!(error.field.contains("bad.pub"), "{error}");
        let missing = RawBundles {
            trusted_keys: vec![dir.path().join("none.pub")],
        }
        .validate()
        .unwrap_err();
        assert!(missing.message.contains("cannot read"), "{missing}");
    }
}
