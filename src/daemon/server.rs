//! The daemon's socket: who may connect (the same user, by `SO_PEERCRED`), and what each
//! front end gets — the snapshot first, then every event as a protocol line, in the bus's
//! order — and sends: command lines. One task keeps the live state and fans the events out,
//! so a snapshot and the events after it never miss or repeat one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::app::snapshot::Live;
use crate::app::{Command, Event, Logged, PhoneEvent, Subscription, protocol};

/// The longest command line read from a front end.
const MAX_LINE: u64 = 64 * 1024;
/// A front end that has not read this many lines is dropped (it reattaches and gets a
/// snapshot), so that it cannot make the daemon hold every event in memory.
const MAX_BACKLOG: usize = 100_000;
/// How many finished calls the snapshot carries.
const SNAPSHOT_HISTORY: usize = 20;

/// A front end joining: where its lines go, and how many of them wait to be written.
pub struct Join {
    lines: mpsc::UnboundedSender<Arc<str>>,
    queued: Arc<AtomicUsize>,
}

impl Join {
    fn send(&self, line: Arc<str>) -> bool {
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.lines.send(line).is_ok()
    }
}

/// The snapshot line: `{"event":"snapshot","snapshot":{…}}`.
fn snapshot_line(live: &Live, history: Option<&crate::history::History>) -> String {
    let mut snap = live.snapshot();
    if let Some(h) = history {
        match h.list(None, None, SNAPSHOT_HISTORY + live.calls()) {
            Ok(rows) => {
                snap.history = rows
                    .iter()
                    .filter(|r| r.state != "open")
                    .take(SNAPSHOT_HISTORY)
                    .filter_map(|r| serde_json::to_value(r).ok())
                    .collect()
            }
            Err(e) => tracing::warn!("snapshot: call history: {e}"),
        }
    }
    serde_json::json!({"event": "snapshot", "snapshot": snap}).to_string()
}

/// Keeps the live state from the bus and sends each front end its snapshot, then the events.
pub async fn fan_out(mut events: Subscription, mut joins: mpsc::Receiver<Join>) {
    let mut live = Live::default();
    let mut clients: Vec<Join> = Vec::new();
    let mut history: Option<crate::history::History> = None;
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                live.apply(&ev);
                let Some(line) = protocol::to_line(&ev) else { continue };
                let line: Arc<str> = line.into();
                clients.retain(|c| {
                    // A front end far behind is let go; one whose connection ended is gone.
                    let behind = c.queued.load(Ordering::Relaxed) > MAX_BACKLOG;
                    if behind {
                        tracing::warn!("daemon socket: a front end fell {MAX_BACKLOG} events behind; let go");
                    }
                    !behind && c.send(line.clone())
                });
            }
            join = joins.recv() => {
                let Some(join) = join else { break };
                if history.is_none() {
                    history = crate::history::History::open(&crate::history::default_path()).ok();
                }
                if join.send(snapshot_line(&live, history.as_ref()).into()) {
                    clients.push(join);
                }
            }
        }
    }
}

/// The uid at the other end of a connection.
fn peer_uid(stream: &UnixStream) -> Option<u32> {
    stream.peer_cred().ok().map(|c| c.uid())
}

/// Accepts front ends until the listener fails; each is served on a task of its own.
pub async fn accept(listener: UnixListener, joins: mpsc::Sender<Join>, commands: mpsc::Sender<Command>) {
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("daemon socket: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        match peer_uid(&stream) {
            Some(uid) if uid == me => {
                tokio::spawn(serve(stream, joins.clone(), commands.clone()));
            }
            other => {
                // Another user (or one we cannot tell): nothing is read or written.
                let who = other.map_or_else(|| "an unknown user".to_owned(), |u| format!("uid {u}"));
                tracing::warn!("daemon socket: refused a connection from {who}");
                drop(stream);
            }
        }
    }
}

/// One front end: its lines out, its commands in, until either side ends.
async fn serve(stream: UnixStream, joins: mpsc::Sender<Join>, commands: mpsc::Sender<Command>) {
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Arc<str>>();
    let queued = Arc::new(AtomicUsize::new(0));
    let replies = Join {
        lines: tx,
        queued: queued.clone(),
    };
    let joined = Join {
        lines: replies.lines.clone(),
        queued: queued.clone(),
    };
    if joins.send(joined).await.is_err() {
        return;
    }
    let writer = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(4096);
        while let Some(line) = rx.recv().await {
            buf.clear();
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            let mut n = 1;
            // Everything already queued goes in the same write.
            while let Ok(more) = rx.try_recv() {
                buf.extend_from_slice(more.as_bytes());
                buf.push(b'\n');
                n += 1;
            }
            if write.write_all(&buf).await.is_err() {
                break;
            }
            queued.fetch_sub(n, Ordering::Relaxed);
        }
    });
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if line.last() != Some(&b'\n') && n as u64 >= MAX_LINE {
            let _ = replies.send(error_line("bad command: longer than 64 KiB"));
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match protocol::parse_command(text) {
            Ok(cmd) => {
                tracing::info!("daemon: command {}", Logged(text));
                if commands.send(cmd).await.is_err() {
                    break;
                }
            }
            // The error goes to the front end that sent the line, not to everyone.
            Err(message) => {
                let _ = replies.send(error_line(&message));
            }
        }
    }
    // What is queued for it (an error about its last line) is written before the connection
    // closes, for at most a second; the fan-out drops its sender at the next event.
    let flushed = replies.queued.clone();
    drop(replies);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while flushed.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    writer.abort();
}

fn error_line(message: &str) -> Arc<str> {
    protocol::to_line(&Event::Phone(PhoneEvent::Error {
        message: message.to_owned(),
    }))
    .unwrap_or_default()
    .into()
}
