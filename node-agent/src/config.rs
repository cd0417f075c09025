//! The agent's configuration: a raw form read from TOML (and overridden by flags) and a
//! validated form that the agent is built from. Unknown keys are errors, and every error names
//! the field and says what to fix; `main` exits 64 on them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::ApiSettings;
use crate::inventory::Ownership;
use crate::runtime::containerd;
use crate::store::Durability;
use crate::telemetry::LogFormat;
use crate::watcher::Backoff;

mod detections;
mod fleet;
mod scan;

pub use self::detections::RawDetections;
pub use self::fleet::{RawBundles, RawGossip};
pub use self::scan::RawScan;

/// A configuration error, naming the field (`metrics.listen`) or the file.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The configuration file as written (`deploy/config/agent.toml` documents every key).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// The node's name in the fleet; the host name when unset.
    pub node_name: Option<String>,
    pub log: RawLog,
    pub metrics: RawMetrics,
    pub docker: RawDocker,
    pub containerd: RawContainerd,
    pub watch: RawWatch,
    pub policies: RawPolicies,
    pub state: RawState,
    pub enforcement: RawEnforcement,
    pub api: RawApi,
    pub gossip: RawGossip,
    pub bundles: RawBundles,
    pub detections: RawDetections,
    pub scan: RawScan,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApi {
    /// `host:port` of the gRPC API (TLS, client certificates required).
    pub listen: String,
    /// The PKI directory (`lazaretctl pki init --dir`): `ca.pem` and this node's certificate.
    /// Empty: the API is off (it is never served without TLS).
    pub tls_dir: PathBuf,
    /// Whose certificate the API presents (`NAME.pem`); empty: the node name.
    pub cert: String,
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            listen: "127.0.0.1:7443".into(),
            tls_dir: PathBuf::new(),
            cert: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicies {
    /// Policy directories or files; none: nothing is enforced.
    pub dirs: Vec<PathBuf>,
    /// How often the policy files are checked for changes; `0s`: loaded once at start.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for RawPolicies {
    fn default() -> Self {
        RawPolicies {
            dirs: Vec::new(),
            reload_interval: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawState {
    /// The agent's state directory (quarantines, exemptions, audit chain).
    pub dir: PathBuf,
    /// `process` (survives the agent's crash) or `disk` (also power loss).
    pub durability: Durability,
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            dir: PathBuf::from(DEFAULT_STATE_DIR),
            durability: Durability::Process,
        }
    }
}

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/lazaret";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEnforcement {
    /// Record what would have been done, do nothing.
    pub audit_only: bool,
    /// Automated quarantines allowed per minute; past it, an alert instead.
    pub blast_radius_per_minute: usize,
    /// The grace the `stop` action gives before SIGKILL.
    #[serde(with = "humantime_serde")]
    pub stop_grace: Duration,
    /// How often every quarantine is re-checked (tampering) and TTLs expired.
    #[serde(with = "humantime_serde")]
    pub recheck_interval: Duration,
    /// Containers never quarantined unless forced: names, or id prefixes of 12 or more.
    pub protected: Vec<String>,
}

impl Default for RawEnforcement {
    fn default() -> Self {
        RawEnforcement {
            audit_only: false,
            blast_radius_per_minute: 10,
            stop_grace: Duration::from_secs(10),
            recheck_interval: Duration::from_secs(5),
            protected: Vec::new(),
        }
    }
}

/// Validated enforcement settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnforcementConfig {
    pub audit_only: bool,
    pub blast_radius_per_minute: usize,
    pub stop_grace: Duration,
    pub recheck_interval: Duration,
    pub protected: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `text` or `json`.
    pub format: String,
    /// A `tracing` filter such as `info` or `lazaret_agent=debug`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// `host:port` for `/metrics`; empty disables the endpoint.
    pub listen: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDocker {
    pub enabled: bool,
    /// The Docker Engine API socket.
    pub socket: String,
}

impl Default for RawDocker {
    fn default() -> Self {
        RawDocker {
            enabled: true,
            socket: "/var/run/docker.sock".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawContainerd {
    /// `true`, `false`, or unset: watch containerd when its socket exists.
    pub enabled: Option<bool>,
    /// The containerd API socket; empty: the first of `/run/containerd/containerd.sock` and
    /// Docker's own `/var/run/docker/containerd/containerd.sock` that exists.
    pub socket: String,
    /// containerd namespaces to watch (`moby` is Docker's, `k8s.io` Kubernetes').
    pub namespaces: Vec<String>,
}

impl Default for RawContainerd {
    fn default() -> Self {
        RawContainerd {
            enabled: None,
            socket: String::new(),
            namespaces: containerd::DEFAULT_NAMESPACES
                .iter()
                .map(|namespace| namespace.to_string())
                .collect(),
        }
    }
}

/// The containerd runtime to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdConfig {
    pub socket: String,
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWatch {
    /// First reconnect delay after a runtime connection is lost, e.g. `200ms`.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// The longest reconnect delay, e.g. `5s`.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Whether this agent owns containers without a `lazaret.io/node` label (agents sharing an
    /// engine: the first one does, the others do not).
    pub claim_unlabelled: bool,
}

impl Default for RawWatch {
    fn default() -> Self {
        RawWatch {
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            claim_unlabelled: true,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub log_format: LogFormat,
    pub log_level: String,
    pub metrics_listen: Option<SocketAddr>,
    /// The Docker socket, when Docker is watched.
    pub docker_socket: Option<String>,
    /// containerd, when watched.
    pub containerd: Option<ContainerdConfig>,
    pub backoff: Backoff,
    /// Policy directories or files to enforce; empty: no enforcement task.
    pub policy_dirs: Vec<PathBuf>,
    /// How often policy files are checked for changes; `None`: never.
    pub policy_reload: Option<Duration>,
    /// The gRPC API, when a TLS directory is configured.
    pub api: Option<ApiSettings>,
    /// Which containers this agent owns (`lazaret.io/node`, `watch.claim_unlabelled`).
    pub ownership: Ownership,
    pub state_dir: PathBuf,
    pub durability: Durability,
    pub enforcement: EnforcementConfig,
    /// Gossip with peers, when configured.
    pub gossip: Option<crate::gossip::GossipSettings>,
    /// Whose signed bundles are accepted.
    pub trusted_keys: lazaret_core::bundle::TrustedKeys,
    /// The detections intake, when configured.
    pub detections: Option<crate::detections::IntakeSettings>,
    /// How long the same detection (container, rule) acts only once.
    pub dedup_window: Duration,
    /// The look inside running containers.
    pub scan: crate::scan::ScanSettings,
}

impl RawConfig {
    /// Reads a TOML file; a syntax error or unknown key names the file, line and key.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(path.display().to_string(), format!("cannot read: {error}"))
        })?;
        toml::from_str(&text)
            .map_err(|error| ConfigError::new(path.display().to_string(), error.to_string()))
    }

    pub fn validate(self) -> Result<AgentConfig, ConfigError> {
        let node_name = match self.node_name {
            Some(name) if name.trim().is_empty() => {
                return Err(ConfigError::new(
                    "node_name",
                    "must not be empty (or leave it unset)",
                ));
            }
            Some(name) => name,
            None => host_name(),
        };
        let log_format = match self.log.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::new(
                    "log.format",
                    format!("{other:?} is not a log format: use \"text\" or \"json\""),
                ));
            }
        };
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|error| {
            ConfigError::new(
                "log.level",
                format!("{:?} is not a log filter: {error}", self.log.level),
            )
        })?;
        let metrics_listen = if self.metrics.listen.is_empty() {
            None
        } else {
            Some(self.metrics.listen.parse::<SocketAddr>().map_err(|error| {
                ConfigError::new(
                    "metrics.listen",
                    format!("{:?} is not host:port ({error}); use e.g. 127.0.0.1:9464, or \"\" to disable", self.metrics.listen),
                )
            })?)
        };
        let docker_socket = if self.docker.enabled {
            if self.docker.socket.trim().is_empty() {
                return Err(ConfigError::new(
                    "docker.socket",
                    "must name the Docker API socket",
                ));
            }
            Some(self.docker.socket)
        } else {
            None
        };
        let containerd = validate_containerd(self.containerd)?;
        if docker_socket.is_none() && containerd.is_none() {
            return Err(ConfigError::new(
                "docker.enabled",
                "no runtime to watch: enable docker or containerd",
            ));
        }
        if self.watch.backoff_initial.is_zero()
            || self.watch.backoff_initial > self.watch.backoff_max
        {
            return Err(ConfigError::new(
                "watch.backoff_initial",
                "must be above zero and at most watch.backoff_max",
            ));
        }
        if self.state.dir.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "state.dir",
                "must name a directory, e.g. /var/lib/lazaret",
            ));
        }
        if self.enforcement.recheck_interval.is_zero() {
            return Err(ConfigError::new(
                "enforcement.recheck_interval",
                "must be above zero, e.g. \"5s\"",
            ));
        }
        if let Some(entry) = self
            .enforcement
            .protected
            .iter()
            .find(|entry| entry.trim().is_empty())
        {
            return Err(ConfigError::new(
                "enforcement.protected",
                format!("{entry:?}: each entry must be a container name or an id prefix"),
            ));
        }
        let api = if self.api.tls_dir.as_os_str().is_empty() {
            None
        } else {
            let listen = self.api.listen.parse::<SocketAddr>().map_err(|error| {
                ConfigError::new(
                    "api.listen",
                    format!(
                        "{:?} is not host:port ({error}); use e.g. 127.0.0.1:7443",
                        self.api.listen
                    ),
                )
            })?;
            let cert_name = match self.api.cert.trim() {
                "" => node_name.clone(),
                name => name.to_string(),
            };
            Some(ApiSettings {
                listen,
                tls_dir: self.api.tls_dir,
                cert_name,
            })
        };
        let gossip = fleet::gossip(self.gossip, api.is_some())?;
        let trusted_keys = self.bundles.validate()?;
        let dedup_window = self.detections.dedup_window;
        let detections = self.detections.validate()?;
        let scan = self.scan.validate()?;
        let ownership = Ownership {
            node: node_name.clone(),
            claim_unlabelled: self.watch.claim_unlabelled,
        };
        Ok(AgentConfig {
            gossip,
            trusted_keys,
            detections,
            dedup_window,
            scan,
            api,
            ownership,
            policy_dirs: self.policies.dirs,
            policy_reload: Some(self.policies.reload_interval).filter(|every| !every.is_zero()),
            state_dir: self.state.dir,
            durability: self.state.durability,
            enforcement: EnforcementConfig {
                audit_only: self.enforcement.audit_only,
                blast_radius_per_minute: self.enforcement.blast_radius_per_minute,
                stop_grace: self.enforcement.stop_grace,
                recheck_interval: self.enforcement.recheck_interval,
                protected: self.enforcement.protected,
            },
            node_name,
            log_format,
            log_level: self.log.level,
            metrics_listen,
            docker_socket,
            containerd,
            backoff: Backoff {
                initial: self.watch.backoff_initial,
                max: self.watch.backoff_max,
            },
        })
    }
}

fn validate_containerd(raw: RawContainerd) -> Result<Option<ContainerdConfig>, ConfigError> {
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    if raw.namespaces.is_empty()
        || raw
            .namespaces
            .iter()
            .any(|namespace| namespace.trim().is_empty())
    {
        return Err(ConfigError::new(
            "containerd.namespaces",
            "list at least one non-empty namespace, e.g. [\"moby\", \"k8s.io\", \"default\"]",
        ));
    }
    let socket = if raw.socket.trim().is_empty() {
        containerd::default_socket()
    } else {
        Some(raw.socket)
    };
    match (socket, raw.enabled) {
        (Some(socket), _) => Ok(Some(ContainerdConfig {
            socket,
            namespaces: raw.namespaces,
        })),
        // Auto-detection found nothing: containerd simply is not on this host.
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ConfigError::new(
            "containerd.socket",
            "containerd is enabled but no socket was given and none of the usual ones \
             (/run/containerd/containerd.sock, Docker's /var/run/docker/containerd/containerd.sock) exists",
        )),
    }
}

/// The kernel's host name (Linux), or `localhost` if it cannot be read.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        toml::from_str::<RawConfig>(text)
            .map_err(|error| ConfigError::new("config", error.to_string()))?
            .validate()
    }

    #[test]
    fn defaults_are_valid() {
        let config = parse("").unwrap();
        assert_eq!(
            config.docker_socket.as_deref(),
            Some("/var/run/docker.sock")
        );
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert!(!config.node_name.is_empty());
    }

    #[test]
    fn full_file_parses() {
        let config = parse(
            r#"
            node_name = "edge-1"
            [log]
            format = "json"
            level = "debug"
            [metrics]
            listen = ""
            [docker]
            socket = "/run/docker.sock"
            [watch]
            backoff_initial = "100ms"
            backoff_max = "2s"
            "#,
        )
        .unwrap();
        assert_eq!(config.node_name, "edge-1");
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.metrics_listen, None);
        assert_eq!(config.backoff.initial, Duration::from_millis(100));
    }

    #[test]
    fn the_shipped_example_file_parses() {
        let text = include_str!("../../deploy/config/agent.toml");
        let config = toml::from_str::<RawConfig>(text).unwrap();
        assert_eq!(config.state.dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(config.enforcement.recheck_interval, Duration::from_secs(5));
    }

    #[test]
    fn enforcement_keys_parse_and_default() {
        let defaults = parse("").unwrap();
        assert!(defaults.policy_dirs.is_empty());
        assert_eq!(defaults.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(defaults.durability, Durability::Process);
        assert_eq!(defaults.enforcement.blast_radius_per_minute, 10);
        assert_eq!(
            defaults.enforcement.recheck_interval,
            Duration::from_secs(5)
        );
        let config = parse(
            r#"
            [policies]
            dirs = ["/etc/lazaret/policies"]
            [state]
            dir = "/tmp/state"
            durability = "disk"
            [enforcement]
            audit_only = true
            blast_radius_per_minute = 3
            stop_grace = "2s"
            recheck_interval = "1s"
            protected = ["ingress", "0123456789ab"]
            "#,
        )
        .unwrap();
        assert_eq!(
            config.policy_dirs,
            vec![PathBuf::from("/etc/lazaret/policies")]
        );
        assert_eq!(config.durability, Durability::Disk);
        assert!(config.enforcement.audit_only);
        assert_eq!(config.enforcement.stop_grace, Duration::from_secs(2));
        assert_eq!(config.enforcement.protected, ["ingress", "0123456789ab"]);
        assert_eq!(defaults.policy_reload, Some(Duration::from_secs(2)));
        let once = parse("[policies]\nreload_interval = \"0s\"").unwrap();
        assert_eq!(once.policy_reload, None);
        let blank = parse("[enforcement]\nprotected = [\" \"]").unwrap_err();
        assert_eq!(blank.field, "enforcement.protected");
        let zero = parse("[enforcement]\nrecheck_interval = \"0s\"").unwrap_err();
        assert_eq!(zero.field, "enforcement.recheck_interval");
        let durability = parse("[state]\ndurability = \"tape\"").unwrap_err();
        assert!(durability.message.contains("tape"), "{durability}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_field() {
        let unknown = parse("[docker]\nsokcet = \"/x\"").unwrap_err();
        assert!(unknown.message.contains("sokcet"), "{unknown}");
        let listen = parse("[metrics]\nlisten = \"localhost\"").unwrap_err();
        assert_eq!(listen.field, "metrics.listen");
        let format = parse("[log]\nformat = \"xml\"").unwrap_err();
        assert_eq!(format.field, "log.format");
        let backoff =
            parse("[watch]\nbackoff_initial = \"10s\"\nbackoff_max = \"1s\"").unwrap_err();
        assert_eq!(backoff.field, "watch.backoff_initial");
        let nothing =
            parse("[docker]\nenabled = false\n[containerd]\nenabled = false").unwrap_err();
        assert_eq!(nothing.field, "docker.enabled");
        let namespaces = parse("[containerd]\nnamespaces = []").unwrap_err();
        assert_eq!(namespaces.field, "containerd.namespaces");
    }

    #[test]
    fn containerd_is_configured_explicitly_or_found() {
        let explicit =
            parse("[containerd]\nsocket = \"/tmp/c.sock\"\nnamespaces = [\"k8s.io\"]").unwrap();
        assert_eq!(
            explicit.containerd,
            Some(ContainerdConfig {
                socket: "/tmp/c.sock".into(),
                namespaces: vec!["k8s.io".into()]
            })
        );
        let disabled = parse("[containerd]\nenabled = false").unwrap();
        assert_eq!(disabled.containerd, None);
        let found = parse("").unwrap();
        assert_eq!(
            found.containerd.map(|containerd| containerd.socket),
            containerd::default_socket()
        );
    }
}
