//! The controller's configuration file (TOML; `deploy/config/controller.toml` is the annotated
//! example). Validated whole at start; each error names its field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
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
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub tls_dir: PathBuf,
    pub gossip: GossipSettings,
    pub state_dir: PathBuf,
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
        Ok(ControllerConfig {
            name: self.name,
            listen,
            tls_dir: self.api.tls_dir,
            gossip,
            state_dir: self.state.dir,
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
