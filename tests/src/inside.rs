//! Acting on a container's namespaces as a process inside it would: with exactly the
//! container's effective capabilities, without needing the tool in the image (the test image is
//! busybox). Used to tamper with a quarantine the way a workload could.

use std::process::Command;
use std::time::Duration;

use lazaret_agent::enforce::netns::{self, CutStatus, NetnsHandle};

use crate::TestContainers;
use crate::command::{CommandOutput, run_checked, run_with_timeout};

/// Bound on each tool run here.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `nft <args>` in `container`'s network namespace with exactly the container's effective
/// capabilities (as its own processes have them): what a process inside could do to the cut,
/// without needing an nft binary in the image.
pub fn nft_as_container(
    containers: &TestContainers,
    container: &str,
    args: &[&str],
) -> CommandOutput {
    let pid = containers
        .docker(&["inspect", "--format", "{{.State.Pid}}", container])
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_owned();
    let decoded = run_checked(
        Command::new("capsh").arg(format!("--decode={effective}")),
        TOOL_TIMEOUT,
    )
    .unwrap();
    // `0x…=cap_chown,cap_net_raw,…` → `-all,+chown,+net_raw,…`
    let names = decoded.trim().split_once('=').map(|(_, names)| names);
    let mut bounding = "-all".to_owned();
    for name in names
        .unwrap_or_default()
        .split(',')
        .filter(|name| !name.is_empty())
    {
        bounding.push_str(",+");
        bounding.push_str(name.trim_start_matches("cap_"));
    }
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["--", "setpriv", "--bounding-set", &bounding, "--", "nft"])
        .args(args)
        .env("LC_ALL", "C");
    run_with_timeout(&mut command, TOOL_TIMEOUT).unwrap()
}

/// Whether the network cut is in `container`'s namespace (Docker's sandbox key), as the agent
/// checks it.
pub async fn cut_status(containers: &TestContainers, container: &str) -> anyhow::Result<CutStatus> {
    let sandbox = containers.field(container, "{{.NetworkSettings.SandboxKey}}")?;
    Ok(netns::cut_status(&NetnsHandle::open(&sandbox)?).await?)
}
