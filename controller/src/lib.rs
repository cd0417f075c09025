//! Lazaret's fleet controller (DESIGN.md §4): joins gossip without enforcing and keeps the fleet
//! view from it ([`state`] persists what must survive a restart), serves `FleetService` over
//! mutual TLS with the agents' roles ([`service`]), forwards what operators do on containers to
//! the agents that own them with the operator's identity ([`agents`]), publishes the fleet-wide
//! switch and keeps the fleet's blast-radius budget ([`switch`]), and anchors every agent's audit chain ([`anchors`]). It links `lazaret-fleet`, never
//! the agent.
#![forbid(unsafe_code)]

pub mod agents;
pub mod anchors;
pub mod app;
pub mod config;
pub mod lag;
pub mod service;
pub mod state;
pub mod switch;
