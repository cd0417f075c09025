//! Lazaret's pure domain logic.
//!
//! Everything here is deterministic code over plain values: the container model the runtimes
//! fill in, the CIS posture checks, the runtime advisories, the policy language and the judge,
//! quarantine transitions, the audit chain, indicator documents, signed bundles and the gossip
//! vocabulary. Policy
//! files are read from disk only by `policy::files`, behind the opt-in `fs` feature. This crate must never do I/O, spawn threads,
//! read the clock or depend on an async runtime: the agent, the controller and the CLI all use it
//! the same way, and most of Lazaret's behaviour is tested here without a container engine.
#![forbid(unsafe_code)]

pub mod advisory;
pub mod audit;
pub mod bundle;
pub mod container;
pub mod detection;
pub mod gossip;
pub mod indicator;
pub mod label_selector;
pub mod policy;
pub mod posture;
pub mod quarantine;
pub mod roles;
pub mod severity;

pub use container::{ContainerId, ContainerInfo, ContainerState, RuntimeKind};
pub use policy::{PolicySet, Verdict};
pub use posture::{CheckId, CheckResult, Finding};
pub use quarantine::{Action, QuarantineRecord, QuarantineState};
pub use severity::Severity;
