//! The `[detections]` section: where the agent takes detections (Falco's `http_output`), with
//! which bearer token, and how long the same detection acts only once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::detections::IntakeSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDetections {
    /// Loopback `host:port` of the intake (Falco's `http_output.url` points here, path `/falco`);
    /// empty: no intake.
    pub listen: String,
    /// An absolute path for a unix socket (mode 0600) taking the same requests; empty: none.
    /// `listen` and `socket` may both be set.
    pub socket: PathBuf,
    /// A file holding the bearer token callers must send (`Authorization: Bearer …`); required
    /// with `listen`.
    pub token_file: PathBuf,
    /// The same rule on the same container acts once within this window.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
}

impl Default for RawDetections {
    fn default() -> Self {
        RawDetections {
            listen: String::new(),
            socket: PathBuf::new(),
            token_file: PathBuf::new(),
            dedup_window: Duration::from_secs(60),
        }
    }
}

impl RawDetections {
    pub(super) fn validate(self) -> Result<Option<IntakeSettings>, ConfigError> {
        let text = self.listen.trim();
        let socket = Some(self.socket.clone()).filter(|path| !path.as_os_str().is_empty());
        if text.is_empty() && socket.is_none() {
            return Ok(None);
        }
        if socket.as_ref().is_some_and(|path| !path.is_absolute()) {
            return Err(ConfigError::new(
                "detections.socket",
                format!("{:?} must be an absolute path", self.socket),
            ));
        }
        let listen = match text {
            "" => None,
            text => Some(text.parse::<SocketAddr>().map_err(|error| {
                ConfigError::new(
                    "detections.listen",
                    format!("{text:?} is not host:port ({error}); use e.g. 127.0.0.1:8765"),
                )
            })?),
        };
        if listen.is_some_and(|listen| !listen.ip().is_loopback()) {
            return Err(ConfigError::new(
                "detections.listen",
                "the intake listens on loopback only (Falco runs on the same host): use 127.0.0.1",
            ));
        }
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|error| {
                ConfigError::new(
                    "detections.token_file",
                    format!("cannot read {:?}: {error}", self.token_file),
                )
            })?
            .trim()
            .to_string();
        if token.len() < 16 {
            return Err(ConfigError::new(
                "detections.token_file",
                "the token must be at least 16 characters (e.g. `openssl rand -hex 32`)",
            ));
        }
        if self.dedup_window.is_zero() {
            return Err(ConfigError::new(
                "detections.dedup_window",
                "must be more than 0s",
            ));
        }
        Ok(Some(IntakeSettings {
            listen,
            socket,
            token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intake_needs_loopback_and_a_real_token() {
        assert_eq!(RawDetections::default().validate().unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
        let raw = |listen: &str| RawDetections {
            listen: listen.into(),
            token_file: token.clone(),
            ..RawDetections::default()
        };
        let settings = raw("127.0.0.1:8765").validate().unwrap().unwrap();
        assert_eq!(settings.token, "0123456789abcdef0123");
        let error = raw("0.0.0.0:8765").validate().unwrap_err();
        assert!(error.message.contains("loopback"), "{error}");
        let on_socket = |path: &str| RawDetections {
            socket: path.into(),
            token_file: token.clone(),
            ..RawDetections::default()
        };
        let settings = on_socket("/run/lazaret/detections.sock")
            .validate()
            .unwrap()
            .unwrap();
        assert_eq!(settings.listen, None, "a socket alone is an intake");
        let error = on_socket("detections.sock").validate().unwrap_err();
        assert_eq!(error.field, "detections.socket");
        std::fs::write(&token, "short").unwrap();
        assert_eq!(
            raw("127.0.0.1:1").validate().unwrap_err().field,
            "detections.token_file"
        );
    }
}
