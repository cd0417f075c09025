//! Gossip (DESIGN.md §3): membership, sealed values and peers' views come from
//! [`lazaret_fleet::gossip`] (the controller joins the same way); what this node says about
//! itself is [`announce`]; the controller's fleet-wide switch is followed by [`fleet_mode`].

pub mod announce;
pub mod fleet_mode;

pub use lazaret_fleet::gossip::*;
