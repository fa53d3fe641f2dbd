//! `ctiphone` in a real terminal: a tmux server of its own (its own `-L` socket, no user
//! config), one detached session running the phone, keys sent with `send-keys`, the screen
//! read with `capture-pane -p`. HOME and the XDG directories point into a temporary directory.
//! The server is killed on drop. A missing tmux fails the test.
//!
//! Included with `#[path = "common/tmux.rs"] mod tmux;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A tmux server running one session whose pane runs a command.
pub struct Tmux {
    socket: String,
    home: PathBuf,
    bin: PathBuf,
}

fn tmux_bin() -> PathBuf {
    for d in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(d).join("tmux");
        if p.is_file() {
            return p;
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("tmux");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("tmux is not installed: the end-to-end terminal tests need it (`apt-get install -y tmux`)");
}

impl Tmux {
    /// Starts a detached `width`×`height` session running `command` (a shell command line) with
    /// HOME and XDG directories under `home`.
    pub fn start(home: &Path, width: u16, height: u16, command: &str) -> Tmux {
        static N: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "ctiphone-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        for d in ["config", "data", "state", "cache", "runtime"] {
            std::fs::create_dir_all(home.join(d)).expect("xdg dir");
        }
        let t = Tmux {
            socket,
            home: home.to_owned(),
            bin: tmux_bin(),
        };
        let out = t.run(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Keep the pane (and its screen) after the command exits.
        t.run(&["set-option", "-g", "remain-on-exit", "on"]);
        t
    }

    /// Runs `tmux -L SOCKET ARGS…` with the test environment.
    pub fn run(&self, args: &[&str]) -> Output {
        let runtime = self.home.join("runtime");
        Command::new(&self.bin)
            .args(["-u", "-f", "/dev/null", "-L", &self.socket])
            .args(args)
            .env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_DATA_HOME", self.home.join("data"))
            .env("XDG_STATE_HOME", self.home.join("state"))
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("TMUX_TMPDIR", &runtime)
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .env("TERM", "xterm-256color")
            .env_remove("NO_COLOR")
            .output()
            .unwrap_or_else(|e| panic!("running tmux: {e}"))
    }

    /// The pane's screen as text.
    pub fn capture(&self) -> String {
        let out = self.run(&["capture-pane", "-p"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends keys (tmux key names: `a`, `Escape`, `Enter`, or literal text with `-l`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "tmux send-keys {keys:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `display -p FORMAT` for the pane.
    pub fn display(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Polls the screen until `pred` holds; panics with `what`, the screen and `diag()` after
    /// `timeout`.
    #[track_caller]
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
        diag: impl Fn() -> String,
    ) -> String {
        let end = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > end {
                panic!("waited {timeout:?} for {what}; the screen:\n{screen}\n{}", diag());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The pane's command for the phone on `config`: the phone, then a marker with its exit code,
/// then a pause so the pane (and its terminal modes) can be inspected after it exited.
pub fn phone_command(config: &Path) -> String {
    format!(
        "'{}' --no-daemon --config '{}'; echo ctiphone-exited-$?; sleep 30",
        env!("CARGO_BIN_EXE_ctiphone"),
        config.display()
    )
}

/// The phone's log file under `home` (the terminal UI logs there, never on the screen).
pub fn phone_log(home: &Path) -> String {
    let log = home.join("data/ctiphone/ctiphone.log");
    format!(
        "---- {} ----\n{}",
        log.display(),
        std::fs::read_to_string(&log).unwrap_or_default()
    )
}

/// The first line of the screen that holds `needle`.
pub fn line_with<'a>(screen: &'a str, needle: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.contains(needle))
}
