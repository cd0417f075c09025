//! Lazaret's pure domain logic.
//!
//! Everything here is deterministic code over plain values: the container model the runtimes
//! fill in, the CIS posture checks, the runtime advisories, and (as they land) policies, the judge,
//! indicators, bundles and quarantine transitions. This crate must never do I/O, spawn threads,
//! read the clock or depend on an async runtime: the agent, the controller and the CLI all use it
//! the same way, and most of Lazaret's behaviour is tested here without a container engine.
#![forbid(unsafe_code)]

pub mod advisory;
pub mod container;
pub mod posture;
pub mod severity;

pub use container::{ContainerId, ContainerInfo, ContainerState, RuntimeKind};
pub use posture::{CheckId, CheckResult, Finding};
pub use severity::Severity;
