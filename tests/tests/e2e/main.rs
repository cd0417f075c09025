//! End-to-end suites against real engines; shared helpers live in the `lazaret-tests` library.

mod agent_crash;
mod cli;
mod clock;
mod conformance;
mod containerd;
mod containerd_zoo;
mod controller;
mod detections;
mod fleet;
mod hardening;
mod harness;
mod indicators;
mod inventory;
mod join_by_hand;
mod kill_points;
mod network_cut;
mod policies;
mod quarantine;
mod quarantine_containerd;
mod quarantine_docker;
mod reconnect;
mod runtime_twins;
mod security_matrix;
mod store_faults;
mod upgrade;
