//! `lazaretctl`'s library half: what the CLI and the end-to-end tests share.
//!
//! - [`pki`]: the fleet's CA and certificates (`lazaretctl pki init|issue`).
//! - [`signing`]: bundle keys and signed bundles (`lazaretctl bundle keygen|sign|verify`).
#![forbid(unsafe_code)]

pub mod pki;
pub mod signing;
