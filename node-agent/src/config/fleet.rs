//! The `[gossip]` and `[bundles]` sections (shared with the controller:
//! [`lazaret_fleet::settings`]), and what the agent adds: gossip needs its API.

pub use lazaret_fleet::settings::{RawBundles, RawGossip, SettingError};

use super::ConfigError;
use crate::gossip::GossipSettings;

impl From<SettingError> for ConfigError {
    fn from(error: SettingError) -> ConfigError {
        ConfigError::new(error.field, error.message)
    }
}

/// The gossip settings; gossip needs the API (`api`: whether it is configured).
pub(super) fn gossip(raw: RawGossip, api: bool) -> Result<Option<GossipSettings>, ConfigError> {
    if !raw.listen.trim().is_empty() && !api {
        return Err(ConfigError::new(
            "gossip.listen",
            "gossip needs the API (set api.tls_dir): values are sealed with the node's certificate and peers fetch bundles from the API",
        ));
    }
    Ok(raw.validate()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_needs_the_api() {
        let raw = RawGossip {
            listen: "127.0.0.1:7946".into(),
            ..RawGossip::default()
        };
        let error = gossip(raw.clone(), false).unwrap_err();
        assert!(error.message.contains("api.tls_dir"), "{error}");
        assert!(gossip(raw, true).unwrap().is_some());
        assert_eq!(gossip(RawGossip::default(), false).unwrap(), None);
    }
}
