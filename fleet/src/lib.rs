//! What Lazaret's agent and controller share to be members of one fleet (DESIGN.md §1, §3, §5):
//! gossip membership with values sealed by each member's certificate ([`gossip`]), who a gRPC
//! caller is from the certificate its TLS handshake verified ([`caller`]), mutual-TLS channels to
//! members ([`channels`]), the shared configuration sections ([`settings`]), `/metrics`
//! ([`metrics_endpoint`]) and opening the sled state directory ([`state_dir`]). The controller
//! links this crate, never the agent.
#![forbid(unsafe_code)]

pub mod caller;
pub mod channels;
pub mod gossip;
pub mod metrics_endpoint;
pub mod settings;
pub mod state_dir;
