//! The one image end-to-end tests run: busybox from the machine's `busybox-static`, imported.
//!
//! No registry is reachable here, so the image is built from `/bin/busybox`: a rootfs with one
//! symlink per applet, a minimal `/etc/passwd` and `/etc/group`, tarred and `docker import`ed.
//! This module must never pull, and never replace an image that already exists under the name.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::command::run_checked;
use crate::docker::{docker, docker_output, host_url, is_not_found};

/// Name of the image [`ensure_busybox_image`] provides; its default command is `/bin/sh`.
pub const BUSYBOX_IMAGE: &str = "lazaret-test/busybox:latest";

/// Where the statically linked busybox comes from (Debian's `busybox-static`).
const HOST_BUSYBOX: &str = "/bin/busybox";

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// Makes sure [`BUSYBOX_IMAGE`] exists on the engine at `docker_host` (`None`: the machine's).
///
/// Concurrent callers in one process are serialised per engine, so the image is imported once;
/// across processes an existing image is kept, so repeated runs are cheap.
pub fn ensure_busybox_image(docker_host: Option<&str>) -> anyhow::Result<()> {
    let engine_lock = lock_for_engine(docker_host);
    let _serialised = engine_lock.lock().unwrap_or_else(PoisonError::into_inner);
    if image_exists(docker_host, BUSYBOX_IMAGE)? {
        return Ok(());
    }
    import_busybox_image(docker_host).with_context(|| {
        format!(
            "failed to import {BUSYBOX_IMAGE} on {}",
            engine_name(docker_host)
        )
    })
}

/// Whether `image` is known to the engine at `docker_host`.
pub fn image_exists(docker_host: Option<&str>, image: &str) -> anyhow::Result<bool> {
    let output = docker_output(
        docker_host,
        &["image", "inspect", "--format", "{{.Id}}", image],
    )?;
    if output.success() {
        return Ok(true);
    }
    if is_not_found(&output.stderr) {
        return Ok(false);
    }
    bail!(
        "failed to inspect image {image} on {}: {}",
        engine_name(docker_host),
        output.stderr.trim()
    )
}

fn import_busybox_image(docker_host: Option<&str>) -> anyhow::Result<()> {
    let workdir = tempfile::Builder::new()
        .prefix("lzt-image-")
        .tempdir()
        .context("failed to create a directory for the busybox rootfs")?;
    let rootfs = workdir.path().join("rootfs");
    build_busybox_rootfs(&rootfs)?;
    let tarball = workdir.path().join("rootfs.tar");
    run_checked(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
        TOOL_TIMEOUT,
    )
    .context("failed to tar the busybox rootfs")?;
    let tarball_path = tarball
        .to_str()
        .context("temporary directory path is not utf-8")?;
    let image_id = docker(
        docker_host,
        &[
            "import",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            tarball_path,
            BUSYBOX_IMAGE,
        ],
    )?;
    tracing::info!(engine = %engine_name(docker_host), %image_id, "imported busybox test image");
    Ok(())
}

/// Lays out a busybox rootfs under `rootfs` (which must not exist yet).
fn build_busybox_rootfs(rootfs: &Path) -> anyhow::Result<()> {
    for directory in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        fs::create_dir_all(rootfs.join(directory))
            .with_context(|| format!("failed to create {directory} in the rootfs"))?;
    }
    let bin = rootfs.join("bin");
    fs::copy(HOST_BUSYBOX, bin.join("busybox"))
        .with_context(|| format!("failed to copy {HOST_BUSYBOX} (is busybox-static installed?)"))?;
    for applet in busybox_applets()? {
        symlink("busybox", bin.join(&applet))
            .with_context(|| format!("failed to link applet {applet}"))?;
    }
    fs::write(rootfs.join("etc/passwd"), PASSWD).context("failed to write etc/passwd")?;
    fs::write(rootfs.join("etc/group"), GROUP).context("failed to write etc/group")?;
    Ok(())
}

fn busybox_applets() -> anyhow::Result<Vec<String>> {
    let listing = run_checked(Command::new(HOST_BUSYBOX).arg("--list"), TOOL_TIMEOUT)
        .context("failed to list busybox applets")?;
    let applets: Vec<String> = listing
        .lines()
        .map(str::trim)
        .filter(|applet| is_plain_applet_name(applet))
        .map(str::to_owned)
        .collect();
    if applets.is_empty() {
        bail!("`{HOST_BUSYBOX} --list` printed no applets");
    }
    Ok(applets)
}

/// Applet names become file names in `bin/`: refuse anything that is not a plain name, and
/// `busybox` itself (the real binary sits there).
fn is_plain_applet_name(applet: &str) -> bool {
    !applet.is_empty()
        && applet != "busybox"
        && !applet.contains('/')
        && applet != "."
        && applet != ".."
}

/// One lock per engine, so concurrent tests in this process import the image only once.
fn lock_for_engine(docker_host: Option<&str>) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let locks = LOCKS.get_or_init(Default::default);
    let mut locks = locks.lock().unwrap_or_else(PoisonError::into_inner);
    locks.entry(engine_name(docker_host)).or_default().clone()
}

fn engine_name(docker_host: Option<&str>) -> String {
    host_url(docker_host).unwrap_or_else(|| "the default engine".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_has_shell_users_and_empty_mount_points() {
        let workdir = tempfile::tempdir().unwrap();
        let rootfs = workdir.path().join("rootfs");
        build_busybox_rootfs(&rootfs).unwrap();
        assert!(rootfs.join("bin/busybox").is_file());
        assert_eq!(
            fs::read_link(rootfs.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
        assert!(passwd.contains("nobody:x:65534:65534"));
        for directory in ["tmp", "proc", "sys", "dev"] {
            assert_eq!(fs::read_dir(rootfs.join(directory)).unwrap().count(), 0);
        }
    }

    #[test]
    fn odd_applet_names_are_refused() {
        assert!(is_plain_applet_name("sh"));
        assert!(!is_plain_applet_name("busybox"));
        assert!(!is_plain_applet_name("../evil"));
        assert!(!is_plain_applet_name(""));
    }
}
