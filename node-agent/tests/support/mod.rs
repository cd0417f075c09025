//! Helpers shared by the agent's process-level tests: the busybox test image and labelled
//! containers that are removed on drop.

use std::process::Command;

/// A minimal busybox image (sh and sleep) for the agent's process tests, built when missing.
pub fn ensure_test_image() -> &'static str {
    // Not the e2e suites' `lazaret-test/busybox`: that one has every applet, and must not be
    // shadowed by this smaller image under the same name.
    let image = "lazaret-test/agent-busybox:latest";
    let exists = Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "set -e; d=$(mktemp -d); mkdir -p $d/bin; cp /bin/busybox $d/bin/; ln -s busybox $d/bin/sh; ln -s busybox $d/bin/sleep; tar -C $d -c . | docker import - {image} >/dev/null; rm -rf $d"
            ))
            .status()
            .unwrap();
        assert!(status.success(), "could not build {image}");
    }
    image
}

/// `docker <verb> --name NAME --label lazaret.test=LABEL <options> IMAGE sleep 300`, removed on
/// drop.
pub fn labelled_container(verb: &[&str], name: &str, label: &str, options: &[&str]) -> Created {
    let image = ensure_test_image();
    let label = format!("lazaret.test={label}");
    let mut args: Vec<&str> = verb.to_vec();
    args.extend(["--name", name, "--label", &label]);
    args.extend(options);
    args.extend([image, "sleep", "300"]);
    let output = Command::new("docker").args(&args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Created(String::from_utf8(output.stdout).unwrap().trim().to_string())
}

/// A container id; the container is removed on drop, whatever the test did.
pub struct Created(pub String);

impl Drop for Created {
    fn drop(&mut self) {
        let _removed = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}
