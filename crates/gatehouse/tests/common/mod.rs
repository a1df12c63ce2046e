//! Helpers shared by the end-to-end tests of the `gatehouse` binary: running it, free ports,
//! and child processes that do not outlive a failed test.
//!
//! Each test file includes this module with `mod common;`; not every file uses every helper.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The `gatehouse` binary, with quiet logs and no API key, URL or database from the environment.
pub fn gatehouse() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command
        .env("RUST_LOG", "warn")
        .env_remove("GATEHOUSE_API_KEY")
        .env_remove("GATEHOUSE_URL")
        .env_remove("GATEHOUSE_DATABASE_URL");
    command
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn output(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn stop(mut self, signal: &str) {
        let _ = Command::new("kill").args([signal, &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// An interactive psql through the connector listening on `port`, with verbose errors (so
/// that SQLSTATEs show on stderr).
pub fn psql(port: u16) -> (Proc, ChildStdin) {
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-v", "VERBOSITY=verbose"])
        .arg(format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (Proc(child), stdin)
}

/// Sends one line to a [`psql`].
pub fn send(stdin: &mut ChildStdin, sql: &str) {
    writeln!(stdin, "{sql}").unwrap();
    stdin.flush().unwrap();
}

/// The active sessions of a ListSessionsV2 answer.
pub fn active(sessions: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    sessions.iter().filter(|s| s["sessionStatus"] == "active").collect()
}

/// A CA and a certificate it signed for `localhost` and 127.0.0.1, as PEM files.
pub fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (dir.join(format!("{name}-ca.pem")), dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}
