//! Where the phone's log lines go: stderr for the headless front end (never stdout, which
//! carries its protocol), a file for the terminal UI (which owns the terminal). Plain text, no
//! colours; `CTIPHONE_LOG` sets the level (error, warn, info, debug, trace; default warn).
//! Caller values in the lines are written with `app::Logged`.

use std::path::PathBuf;

/// The terminal UI's log file, where its stderr goes too: `$XDG_DATA_HOME/ctiphone/ctiphone.log`.
pub fn log_path() -> PathBuf {
    crate::config::data_dir().join("ctiphone.log")
}

fn level() -> tracing::Level {
    std::env::var("CTIPHONE_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::WARN)
}

/// Logs go to stderr.
pub fn init_stderr() {
    let _ = tracing::subscriber::set_global_default(subscriber(std::io::stderr, level()));
}

/// Logs go to the log file ([`log_path`], created mode 0600: it names customers).
pub fn init_file() {
    let level = level();
    let path = log_path();
    if let Some(dir) = path.parent() {
        let _ = crate::private::create_dir(dir);
    }
    if let Ok(file) = crate::private::create_file(&path, true) {
        let _ = tracing::subscriber::set_global_default(subscriber(std::sync::Mutex::new(file), level));
    }
}

/// The phone's log lines, written to `writer`: plain text, no colours.
pub fn subscriber<W>(writer: W, level: tracing::Level) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(level)
        .with_ansi(false)
        .finish()
}

/// Points stderr at the log file ([`log_path`]): what a library or the runtime writes there
/// lands in the log, never over a terminal's screen. Returns the original stderr, to restore.
pub fn redirect_stderr() -> Option<i32> {
    use std::os::fd::AsRawFd;
    let path = log_path();
    if let Some(dir) = path.parent() {
        let _ = crate::private::create_dir(dir);
    }
    let file = crate::private::create_file(&path, true).ok()?;
    // SAFETY: plain descriptor duplication; `file` stays open until dup2 has copied it.
    unsafe {
        let saved = libc::dup(2);
        if saved < 0 {
            return None;
        }
        if libc::dup2(file.as_raw_fd(), 2) < 0 {
            libc::close(saved);
            return None;
        }
        Some(saved)
    }
}
