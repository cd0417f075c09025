//! Expectations both backends' conversion tests share: the same risky configuration
//! (`-v /etc:/host-etc`, a read-only Docker socket, an `rshared` bind on `/shared`) recorded
//! through Docker and through containerd must map to the same mounts.

use lazaret_core::ContainerInfo;

/// The mounts of the recorded "hardened and risky" container, whichever runtime reported them.
pub(crate) fn assert_risky_mounts(info: &ContainerInfo) {
    let mounts = info.mounts.as_ref().expect("mounts are reported");
    let etc = mounts.iter().find(|mount| mount.source == "/etc").unwrap();
    assert!(etc.read_write);
    assert_eq!(etc.kind, "bind");
    let socket = mounts
        .iter()
        .find(|mount| mount.source == "/var/run/docker.sock")
        .unwrap();
    assert!(!socket.read_write);
    let shared = mounts
        .iter()
        .find(|mount| mount.destination == "/shared")
        .unwrap();
    assert_eq!(shared.propagation, "rshared");
}
