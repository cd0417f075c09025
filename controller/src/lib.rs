//! Lazaret's fleet controller: joins gossip without enforcing, keeps the fleet view, routes
//! operator commands and signs bundles (DESIGN.md §4). Not built yet: issue 7/11. This crate
//! exists so the workspace's dependency direction (controller → proto, core; never the agent)
//! is fixed from the start.
#![forbid(unsafe_code)]

/// The gRPC package the controller will serve (`FleetService`).
pub const PROTO_PACKAGE: &str = "lazaret.v1";
