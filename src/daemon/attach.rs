//! Front ends joining the daemon: the TUI connects, or starts the daemon in the background
//! (its own session, so the terminal's hangup never reaches it) and connects when it
//! listens; `ctiphone headless --attach` passes the daemon's lines and its stdin's commands
//! through.

use std::io::Read;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use super::Paths;
use super::client::{ConnectError, Connection, connect};
use crate::app::protocol;
use crate::app::snapshot::Snapshot;
use crate::cli::AudioArgs;

/// How long a daemon started here may take to listen.
const START_WAIT: Duration = Duration::from_secs(15);

/// Connects to the daemon of `paths`, starting it first when none runs.
pub async fn connect_or_start(
    paths: &Paths,
    config: Option<&PathBuf>,
    audio: &AudioArgs,
) -> Result<(Snapshot, Connection), String> {
    match connect(&paths.socket).await {
        Ok(c) => return Ok(c),
        Err(ConnectError::NotRunning) => {}
        Err(e) => return Err(e.to_string()),
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own program: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    if let Some(c) = config {
        // Its full path: the daemon's name is derived from it, and says which file it runs.
        cmd.arg("--config")
            .arg(std::fs::canonicalize(c).unwrap_or_else(|_| c.clone()));
    }
    if let Some(f) = &audio.audio_in {
        cmd.arg("--audio-in").arg(f);
    }
    if let Some(f) = &audio.audio_out {
        cmd.arg("--audio-out").arg(f);
    }
    // The daemon restricts its own files; it is given the agent's umask to pass on to the
    // programs it starts (CTI commands, the browser), as if the agent had started it.
    crate::private::AgentUmask::agent_umask(&mut cmd);
    cmd.arg("daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe; it only makes the child a session leader, away
    // from this terminal's process group and its SIGHUP.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start the daemon: {e}"))?;
    // What it says before it listens (a bad configuration, a busy port) is shown here.
    let said = Arc::new(Mutex::new(String::new()));
    if let Some(mut err) = child.stderr.take() {
        let said = said.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = said.lock()
                    && s.len() < 64 * 1024
                {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    let deadline = Instant::now() + START_WAIT;
    loop {
        match connect(&paths.socket).await {
            Ok(c) => {
                // Reaped whenever it ends; it outlives us.
                std::thread::spawn(move || {
                    let _ = child.wait();
                });
                return Ok(c);
            }
            Err(ConnectError::NotRunning) => {}
            Err(e) => return Err(e.to_string()),
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Another front end may have started one at the same time: take that one.
            if let Ok(c) = connect(&paths.socket).await {
                return Ok(c);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let text = said.lock().map(|s| s.trim().to_owned()).unwrap_or_default();
            return Err(if text.is_empty() {
                format!(
                    "the daemon stopped ({status}); see the log {}",
                    crate::logging::log_path().display()
                )
            } else {
                text
            });
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the daemon did not listen on {} within {} s",
                paths.socket.display(),
                START_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `ctiphone headless --attach`: the daemon's snapshot and events on stdout, stdin's command
/// lines to the daemon, until the daemon stops (or a signal). Exit 3 when no daemon runs.
pub fn headless(paths: &Paths) -> ExitCode {
    crate::logging::init_stderr();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    ExitCode::from(rt.block_on(async {
        let (snap, mut conn) = match connect(&paths.socket).await {
            Ok(c) => c,
            Err(ConnectError::NotRunning) => {
                eprintln!(
                    "ctiphone: no daemon runs for this configuration ({})",
                    paths.socket.display()
                );
                return 3;
            }
            Err(e) => {
                eprintln!("ctiphone: {e}");
                return 2;
            }
        };
        let mut out = tokio::io::stdout();
        let first = serde_json::json!({"event": "snapshot", "snapshot": snap}).to_string() + "\n";
        if out.write_all(first.as_bytes()).await.is_err() {
            return 2;
        }
        let _ = out.flush().await;
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        // Once stdin ends, the daemon's events are still passed on until it stops.
        let mut reading = true;
        loop {
            tokio::select! {
                line = stdin.next_line(), if reading => match line {
                    Ok(Some(line)) if line.trim().is_empty() => {}
                    Ok(Some(line)) => match protocol::parse_command(line.trim()) {
                        Ok(cmd) => {
                            if conn.send(&cmd).await.is_err() {
                                return 2;
                            }
                        }
                        Err(message) => {
                            let ev = crate::app::Event::Phone(crate::app::PhoneEvent::Error { message });
                            let line = protocol::to_line(&ev).unwrap_or_default() + "\n";
                            let _ = out.write_all(line.as_bytes()).await;
                            let _ = out.flush().await;
                        }
                    },
                    _ => reading = false,
                },
                v = conn.next() => match v {
                    Some(v) => {
                        let line = v.to_string() + "\n";
                        if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
                            return 0;
                        }
                    }
                    None => return 0,
                },
            }
        }
    }))
}
