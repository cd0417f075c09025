//! Lazaret's node agent: one per host. It watches the container runtimes, keeps a live
//! inventory of every container with its CIS posture, judges containers against policies and
//! quarantines offenders, serves the gRPC API, and syncs signed bundles with its peers over
//! gossip. See `DESIGN.md` §2 for the data flow.
//!
//! `main.rs` only parses flags and configuration and calls [`app`]; everything else is in this
//! library so that tests and benches run the same code in process.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod bundles;
pub mod clock;
pub mod config;
pub mod detections;
pub mod enforce;
pub mod gossip;
pub mod inventory;
pub mod metrics;
pub mod report;
pub mod runtime;
pub mod scan;
pub mod store;
pub mod telemetry;
pub mod watcher;
