//! The network cut as the quarantine manager sees it: cut, restore and check a namespace by the
//! path the runtime reports, behind [`NetworkCutter`] so the manager's logic is tested without
//! nftables. [`NetnsCutter`] is the real one over [`crate::enforce::netns`]; [`FakeCutter`] keeps
//! the tables in memory.
//!
//! Nothing here decides whether to cut: the manager does. The real cutter never touches the
//! host's namespace ([`NetnsHandle::open`] refuses it).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::super::netns::{self, CutStatus, NetnsHandle, NetnsResult};

/// Cut, restore and check the network of the namespace at a path.
#[async_trait]
pub trait NetworkCutter: Send + Sync + 'static {
    /// Cuts everything but loopback. Idempotent; repairs a tampered cut. Refuses host networking
    /// with [`netns::NetnsError::HostNetwork`].
    async fn cut(&self, netns_path: &str) -> NetnsResult<()>;

    /// Removes the cut; a namespace without it is fine.
    async fn restore(&self, netns_path: &str) -> NetnsResult<()>;

    /// Whether the cut is there and intact.
    async fn status(&self, netns_path: &str) -> NetnsResult<CutStatus>;
}

/// The real cutter: opens each namespace once and holds the handle until the cut is restored,
/// so a re-check or a release reaches the namespace that was cut even if the path is re-pointed.
#[derive(Debug, Default)]
pub struct NetnsCutter {
    handles: Mutex<BTreeMap<String, NetnsHandle>>,
}

impl NetnsCutter {
    pub fn new() -> Self {
        NetnsCutter::default()
    }

    fn handle(&self, netns_path: &str) -> NetnsResult<NetnsHandle> {
        let mut handles = self
            .handles
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(handle) = handles.get(netns_path) {
            return Ok(handle.clone());
        }
        let handle = NetnsHandle::open(netns_path)?;
        handles.insert(netns_path.to_string(), handle.clone());
        Ok(handle)
    }

    fn forget(&self, netns_path: &str) {
        self.handles
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(netns_path);
    }
}

#[async_trait]
impl NetworkCutter for NetnsCutter {
    async fn cut(&self, netns_path: &str) -> NetnsResult<()> {
        let handle = self.handle(netns_path)?;
        netns::cut(&handle).await
    }

    async fn restore(&self, netns_path: &str) -> NetnsResult<()> {
        let handle = self.handle(netns_path)?;
        netns::restore(&handle).await?;
        self.forget(netns_path);
        Ok(())
    }

    async fn status(&self, netns_path: &str) -> NetnsResult<CutStatus> {
        let handle = self.handle(netns_path)?;
        netns::cut_status(&handle).await
    }
}

/// An in-memory cutter for unit tests: namespaces are paths, a cut is an entry, and the test can
/// delete one (tampering), mark a path as host networking, or make every call fail.
#[cfg(any(test, feature = "testsuite"))]
#[derive(Debug, Default)]
pub struct FakeCutter {
    state: Mutex<FakeCutterState>,
}

#[cfg(any(test, feature = "testsuite"))]
#[derive(Debug, Default)]
struct FakeCutterState {
    cut: BTreeMap<String, CutStatus>,
    host_paths: Vec<String>,
    failing: bool,
    calls: Vec<String>,
}

#[cfg(any(test, feature = "testsuite"))]
impl FakeCutter {
    pub fn new() -> Self {
        FakeCutter::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeCutterState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// `netns_path` is the host's namespace from now on: cutting it is refused.
    pub fn mark_host(&self, netns_path: &str) {
        self.lock().host_paths.push(netns_path.to_string());
    }

    /// Every call fails with an nft error from now on (or no longer).
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// Someone with NET_ADMIN deleted the table.
    pub fn delete_table(&self, netns_path: &str) {
        self.lock().cut.remove(netns_path);
    }

    /// What a status call would find.
    pub fn status_of(&self, netns_path: &str) -> CutStatus {
        self.lock()
            .cut
            .get(netns_path)
            .cloned()
            .unwrap_or(CutStatus::Absent)
    }

    /// Every call so far, as `operation path`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn check(&self, operation: &'static str, netns_path: &str) -> NetnsResult<()> {
        let mut state = self.lock();
        state.calls.push(format!("{operation} {netns_path}"));
        if state.host_paths.iter().any(|path| path == netns_path) {
            return Err(netns::NetnsError::HostNetwork {
                path: netns_path.into(),
                whose: "the fake host's",
                inode: 1,
            });
        }
        if state.failing {
            return Err(netns::NetnsError::Nft {
                operation,
                path: netns_path.into(),
                status: "exit status: 1".into(),
                stderr: "made to fail by the test".into(),
            });
        }
        Ok(())
    }
}

#[cfg(any(test, feature = "testsuite"))]
#[async_trait]
impl NetworkCutter for FakeCutter {
    async fn cut(&self, netns_path: &str) -> NetnsResult<()> {
        self.check("cut", netns_path)?;
        self.lock()
            .cut
            .insert(netns_path.to_string(), CutStatus::Intact);
        Ok(())
    }

    async fn restore(&self, netns_path: &str) -> NetnsResult<()> {
        self.check("restore", netns_path)?;
        self.lock().cut.remove(netns_path);
        Ok(())
    }

    async fn status(&self, netns_path: &str) -> NetnsResult<CutStatus> {
        self.check("status", netns_path)?;
        Ok(self.status_of(netns_path))
    }
}
