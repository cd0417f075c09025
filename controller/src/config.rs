//! The controller's configuration file (TOML; `deploy/config/controller.toml` is the annotated
//! example). Validated whole at start; each error names its field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use lazaret_core::bundle::BundleSigningKey;
use lazaret_core::quarantine::budget::FleetBudget;
use lazaret_fleet::gossip::GossipSettings;
use lazaret_fleet::settings::{RawGossip, SettingError};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Its name: the certificate `NAME.pem` / `NAME-key.pem` in `api.tls_dir` (role
    /// `controller`), and its name in gossip.
    #[serde(default = "default_name")]
    pub name: String,
    pub api: RawApi,
    pub gossip: RawGossip,
    pub state: RawState,
    #[serde(default)]
    pub bundles: RawBundles,
    #[serde(default)]
    pub safety: RawSafety,
    #[serde(default)]
    pub metrics: RawMetrics,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// `host:port` of `GET /metrics` (Prometheus); empty: not served.
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSafety {
    /// The fleet's blast-radius budget: more automated quarantines (policies, indicators,
    /// detections; never operators') than this within `blast_window`, counted across every
    /// agent, flips the whole fleet to audit-only until an operator sets it back. 0: off.
    pub blast_radius: usize,
    #[serde(with = "humantime_serde")]
    pub blast_window: Duration,
}

impl Default for RawSafety {
    fn default() -> Self {
        RawSafety {
            blast_radius: 50,
            blast_window: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBundles {
    /// The ed25519 key (`lazaretctl bundle keygen`) the controller signs `policy apply` and
    /// `indicators apply` with; the agents must trust its public half. Unset: the controller
    /// relays bundles signed offline only.
    pub signing_key: Option<PathBuf>,
    /// How long a bundle the controller signs stays fresh (agents alarm past it).
    #[serde(with = "humantime_serde")]
    pub validity: Duration,
}

impl Default for RawBundles {
    fn default() -> Self {
        RawBundles {
            signing_key: None,
            validity: Duration::from_secs(30 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// `host:port` of `FleetService`.
    pub listen: String,
    /// The fleet PKI directory (`lazaretctl pki init`): `ca.pem`, `NAME.pem`, `NAME-key.pem`.
    pub tls_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// Where the controller keeps its sled store (audit anchors, the fleet-wide switch).
    pub dir: PathBuf,
}

fn default_name() -> String {
    "controller".into()
}

/// A validated configuration.
#[derive(Debug)]
pub struct ControllerConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub tls_dir: PathBuf,
    pub gossip: GossipSettings,
    pub state_dir: PathBuf,
    /// The key it signs with, when it signs.
    pub signing_key: Option<BundleSigningKey>,
    pub validity: Duration,
    pub budget: FleetBudget,
    /// Where `/metrics` is served, when it is.
    pub metrics: Option<SocketAddr>,
}

impl RawConfig {
    pub fn from_file(path: &Path) -> anyhow::Result<RawConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
    }

    pub fn validate(self) -> Result<ControllerConfig, SettingError> {
        if self.name.trim().is_empty() {
            return Err(SettingError::new("name", "must not be empty"));
        }
        let listen = self.api.listen.parse().map_err(|error| {
            SettingError::new(
                "api.listen",
                format!("{:?} is not host:port ({error})", self.api.listen),
            )
        })?;
        let gossip = self.gossip.validate()?.ok_or_else(|| {
            SettingError::new(
                "gossip.listen",
                "the controller's fleet view comes from gossip: set gossip.listen and gossip.seeds",
            )
        })?;
        let signing_key = match &self.bundles.signing_key {
            None => None,
            Some(path) => {
                let field = || format!("bundles.signing_key: {}", path.display());
                let text = std::fs::read_to_string(path)
                    .map_err(|error| SettingError::new(field(), format!("cannot read: {error}")))?;
                Some(
                    BundleSigningKey::from_pem(&text)
                        .map_err(|error| SettingError::new(field(), error.to_string()))?,
                )
            }
        };
        if self.bundles.validity < Duration::from_secs(60) {
            return Err(SettingError::new(
                "bundles.validity",
                "must be at least a minute (30d is the default)",
            ));
        }
        let metrics = match self.metrics.listen.trim() {
            "" => None,
            text => Some(text.parse().map_err(|error| {
                SettingError::new(
                    "metrics.listen",
                    format!("{text:?} is not host:port ({error})"),
                )
            })?),
        };
        Ok(ControllerConfig {
            metrics,
            name: self.name,
            listen,
            tls_dir: self.api.tls_dir,
            gossip,
            state_dir: self.state.dir,
            signing_key,
            validity: self.bundles.validity,
            budget: FleetBudget {
                max: self.safety.blast_radius,
                window: self.safety.blast_window,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_controller_needs_gossip_and_an_api_address() {
        let text = |listen: &str, gossip: &str| {
            format!(
                "[api]\nlisten = \"{listen}\"\ntls_dir = \"/pki\"\n[gossip]\nlisten = \"{gossip}\"\n[state]\ndir = \"/s\"\n"
            )
        };
        let parse = |text: String| toml::from_str::<RawConfig>(&text).unwrap().validate();
        let config = parse(text("127.0.0.1:7400", "127.0.0.1:7946")).unwrap();
        assert_eq!(config.name, "controller");
        assert_eq!(
            parse(text("nowhere", "127.0.0.1:7946")).unwrap_err().field,
            "api.listen"
        );
        assert_eq!(
            parse(text("127.0.0.1:7400", "")).unwrap_err().field,
            "gossip.listen"
        );
        assert!(toml::from_str::<RawConfig>("[api]\nlisten=\"\"\ntls_dir=\"/\"\nfoo=1").is_err());
    }
}
