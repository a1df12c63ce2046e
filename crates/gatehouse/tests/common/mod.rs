//! Helpers shared by the end-to-end tests of the `gatehouse` binary: running it, free ports,
//! and child processes that do not outlive a failed test.
//!
//! Each test file includes this module with `mod common;`; not every file uses every helper.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The `gatehouse` binary, with quiet logs and no API key or URL from the environment.
pub fn gatehouse() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command.env("RUST_LOG", "warn").env_remove("GATEHOUSE_API_KEY").env_remove("GATEHOUSE_URL");
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
