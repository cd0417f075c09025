//! Shared harness for Lazaret's end-to-end tests: real engines, real containers, real network
//! namespaces, all cleaned up on drop.
//!
//! - [`agent`]: [`agent::TestAgent`], an agent started in process against a real engine;
//! - [`agent_process`]: [`agent_process::AgentProcess`], the agent binary as a child process;
//! - [`fleet`]: [`fleet::TestFleet`], agent processes gossiping as one fleet, and its controller
//!   ([`controller_process`]);
//! - [`inside`]: acting on a container's namespace with exactly the container's privileges;
//! - [`image`]: the busybox test image, built locally (no registry is reachable);
//! - [`containers`]: [`TestContainers`], a guard owning the containers of one test;
//! - [`netns`]: [`NetNs`], a named network namespace;
//! - [`private_dockerd`]: [`PrivateDockerd`], an isolated engine for restart and crash tests;
//! - [`private_containerd`]: [`PrivateContainerd`], an isolated containerd driven with `ctr`;
//! - [`daemon`]: [`daemon::DaemonProcess`], the process, directory and log both of those own;
//! - [`docker`](mod@docker), [`command`], [`leftovers`]: the bounded CLI calls underneath.
//!
//! Everything here is synchronous (usable from `Drop`) and bounded in time. Nothing here may
//! touch a container, namespace or engine that a test did not create.

#![forbid(unsafe_code)]

pub mod agent;
pub mod agent_process;
pub mod agent_unit;
pub mod command;
pub mod containers;
pub mod controller_process;
pub mod daemon;
pub mod dev_fleet;
pub mod docker;
pub mod fleet;
pub mod image;
pub mod inside;
pub mod leftovers;
pub mod netns;
pub mod private_containerd;
pub mod private_dockerd;

pub use containers::{TEST_LABEL, TestContainers};
pub use docker::docker;
pub use image::{BUSYBOX_IMAGE, ensure_busybox_image};
pub use netns::NetNs;
pub use private_containerd::PrivateContainerd;
pub use private_dockerd::PrivateDockerd;

/// Installs a `fmt` subscriber writing through the test harness's capture, filtered by
/// `RUST_LOG` (default `info`). Safe to call from every test: only the first call installs.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let installed = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(filter)
        .try_init();
    if installed.is_err() {
        // Another test (or the binary itself) installed a subscriber first; keep that one.
    }
}

/// Polls `done` every 200 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not after {timeout:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port on loopback")
}
