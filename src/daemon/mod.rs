//! The phone as a daemon: the core (SIP, media, CTI, history) with no terminal, serving front
//! ends on a Unix socket (the TUI attaches to it, `ctiphone dial` and friends talk to it), so
//! that a dropped SSH link detaches a front end and never ends a call. One daemon per
//! configuration file, held by a locked PID file.

pub mod attach;
pub mod client;
pub mod paths;
pub mod remote;
pub mod server;
pub mod uri;

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::app::{Bus, Command, Event, PhoneEvent};
use crate::config::Config;
use crate::cti::Plan;

pub use paths::Paths;

/// The PID file, locked while the daemon runs: a second daemon for the same configuration
/// cannot take it and names the PID written in it.
pub struct PidLock {
    file: std::fs::File,
}

impl PidLock {
    /// Takes the lock and writes our PID, or says which process holds it.
    pub fn take(path: &std::path::Path) -> Result<PidLock, String> {
        let shown = path.display();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("{shown}: {e}"))?;
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let pid = text.trim();
            let pid = if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                "unknown".to_owned()
            } else {
                pid.to_owned()
            };
            return Err(format!(
                "another ctiphone daemon (PID {pid}) is already running for this configuration ({shown}); \
                 attach to it with `ctiphone`, or stop it with `kill {pid}`"
            ));
        }
        file.set_len(0).map_err(|e| format!("{shown}: {e}"))?;
        file.rewind().map_err(|e| format!("{shown}: {e}"))?;
        writeln!(file, "{}", std::process::id()).map_err(|e| format!("{shown}: {e}"))?;
        Ok(PidLock { file })
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

/// Binds the socket (0600), replacing a stale one left by a daemon that died: we hold the
/// PID lock, so no daemon answers on it.
fn bind(path: &std::path::Path) -> Result<tokio::net::UnixListener, String> {
    let shown = path.display();
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!("removed the stale socket {shown}"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{shown}: {e}")),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| format!("{shown}: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(listener)
}

/// Runs the daemon until `quit`, SIGTERM or SIGINT (SIGHUP is ignored: it has no terminal).
/// Returns the exit code.
pub async fn run(config: Config, plan: Plan, paths: Paths, lock: PidLock) -> u8 {
    let bus = Bus::new();
    let events = bus.subscribe_as("daemon");
    let core = crate::app::core::Core::start(&bus, &config, plan, None).await;
    let mut core = match core {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ctiphone daemon: {e}");
            return 2;
        }
    };
    let listener = match bind(&paths.socket) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ctiphone daemon: {e}");
            let _ = core.commands.send(Command::Quit).await;
            let _ = tokio::time::timeout(Duration::from_secs(3), &mut core.ua).await;
            core.finish().await;
            return 2;
        }
    };
    let (join_tx, join_rx) = mpsc::channel(16);
    let fan = tokio::spawn(server::fan_out(events, join_rx));
    let acceptor = tokio::spawn(server::accept(listener, join_tx, core.commands.clone()));
    // Started: what is left of stderr goes to the log (whoever started us may stop reading).
    eprintln!(
        "ctiphone daemon: PID {} on {}",
        std::process::id(),
        paths.socket.display()
    );
    crate::logging::redirect_stderr();
    tracing::info!("daemon PID {} on {}", std::process::id(), paths.socket.display());
    let sig_tx = core.commands.clone();
    let sig_bus = bus.downgrade();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    if let Some(bus) = sig_bus.upgrade() {
                        bus.publish(Event::Phone(PhoneEvent::Warning { message: "SIGHUP ignored: the daemon has no terminal".into() }));
                    }
                }
            }
        }
        let _ = sig_tx.send(Command::Quit).await;
    });
    let result = (&mut core.ua).await;
    // The front ends see the last events (the calls' ends, the unregistration).
    tokio::time::sleep(Duration::from_millis(100)).await;
    acceptor.abort();
    let _ = std::fs::remove_file(&paths.socket);
    drop(bus);
    let _ = tokio::time::timeout(Duration::from_millis(500), fan).await;
    core.finish().await;
    drop(lock);
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            tracing::error!("the user agent failed: {e}");
            2
        }
        Err(e) => {
            tracing::error!("the user agent failed: {e}");
            2
        }
    }
}
