//! Enforcement: what the quarantine manager does to a container once a verdict or an operator
//! says so.
//!
//! - [`netns`]: the network cut, an nftables table inside the container's own network namespace
//!   (never the host's), added, removed and checked for tampering.
//!
//! - [`quarantine`]: the quarantine manager, stored before acting, rolled forward after a crash.
//! - [`engine`]: the enforcement task, following the inventory and judging; the fast path acts
//!   at a `start` event on a verdict reached at `create`.
//! - [`policy_files`]: the policy directories, re-read on change.
//! - [`runtimes`]: which runtime an action on a container goes to.
//!
//! Nothing in this module decides *whether* to act: the judge and the quarantine state machine do.
//! Every function here acts on exactly the target it is handed, and refuses targets that would
//! hit the host itself.

pub mod engine;
pub mod evidence;
pub mod netns;
pub mod policy_files;
pub mod quarantine;
pub mod runtimes;
