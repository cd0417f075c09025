//! `lazaret-controller` as a process: a configuration that does not validate exits 64 naming the
//! field; a good one starts (TLS from a fleet PKI, gossip on loopback), serves `/metrics`, and
//! stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONTROLLER: &str = env!("CARGO_BIN_EXE_lazaret-controller");

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_bad_configuration_exits_64_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("controller.toml");
    std::fs::write(
        &config,
        "[api]\nlisten = \"127.0.0.1:0\"\ntls_dir = \"/nowhere\"\n[gossip]\n[state]\ndir = \"/tmp/x\"\n",
    )
    .unwrap();
    let output = Command::new(CONTROLLER)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("gossip.listen"), "{stderr}");
}

#[test]
fn it_starts_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    lazaretctl::pki::init(&pki, 1).unwrap();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\ntls_dir = {:?}\n[gossip]\nlisten = \"127.0.0.1:{}\"\n\
             [state]\ndir = {:?}\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n",
            pki.display().to_string(),
            free_port(),
            dir.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    let log = dir.path().join("log");
    let mut child = KillOnDrop(
        Command::new(CONTROLLER)
            .arg("--config")
            .arg(&config)
            .args(["--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("controller running")
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(Instant::now() < deadline, "never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Structured logs: one JSON object per line, on stderr.
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON log line ({error}): {line}"));
        assert!(parsed["level"].is_string(), "{line}");
    }
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", metrics)).unwrap();
    std::io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut scraped = String::new();
    std::io::Read::read_to_string(&mut stream, &mut scraped).unwrap();
    assert!(
        scraped.contains("lazaret_controller_audit_rewrites_total 0"),
        "{scraped}"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            panic!("did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
}

/// A child killed and reaped when the test ends, even by a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _killed = self.0.kill();
            let _reaped = self.0.wait();
        }
    }
}
