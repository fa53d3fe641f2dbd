//! The daemon in tests: where its files are under a test's HOME (the tmux harness's
//! `runtime` directory is its XDG_RUNTIME_DIR), a guard that kills every daemon of that
//! HOME when the test ends, however it ends, so none outlives its test, and the events of an
//! attached front end (`headless --attach`) read as JSON lines.
//!
//! Included with `#[path = "common/daemon.rs"] mod daemon;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Reads JSON lines from a front end's stdout on a thread.
pub fn lines(child: &mut Child) -> Receiver<Value> {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    rx
}

/// The first event `pred` accepts within `timeout`; else an error naming `what` and listing
/// the events seen meanwhile.
pub fn wait_for(
    rx: &Receiver<Value>,
    pred: impl Fn(&Value) -> bool,
    what: &str,
    timeout: Duration,
) -> Result<Value, String> {
    let end = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(v) if pred(&v) => return Ok(v),
            Ok(v) => seen.push(v),
            Err(_) => break,
        }
    }
    Err(format!("no {what} in {timeout:?}; seen: {seen:#?}"))
}

/// As [`wait_for`], failing the test when the event does not come.
pub fn expect(rx: &Receiver<Value>, pred: impl Fn(&Value) -> bool, what: &str, timeout: Duration) -> Value {
    wait_for(rx, pred, what, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// The daemons' directory under `runtime` (an XDG_RUNTIME_DIR).
pub fn dir(runtime: &Path) -> PathBuf {
    runtime.join("ctiphone")
}

/// The PIDs written in the PID files under `runtime`.
pub fn pids(runtime: &Path) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir(dir(runtime)) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| t.trim().parse().ok())
        .collect()
}

/// The socket of the daemon under `runtime` (the only one there), once it exists.
pub fn socket(runtime: &Path, timeout: Duration) -> PathBuf {
    let end = Instant::now() + timeout;
    loop {
        if let Ok(rd) = std::fs::read_dir(dir(runtime))
            && let Some(p) = rd
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "sock"))
        {
            return p;
        }
        assert!(
            Instant::now() < end,
            "no daemon socket under {} after {timeout:?}",
            runtime.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a process runs.
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Kills the daemons of a runtime directory when dropped.
pub struct Guard(pub PathBuf);

impl Drop for Guard {
    fn drop(&mut self) {
        for pid in pids(&self.0) {
            // SAFETY: a daemon this test started (its PID file is in the test's directory).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
