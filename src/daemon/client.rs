//! A front end's end of the daemon's socket: connect and read the snapshot, then either drive
//! the connection directly (`ctiphone dial`, `status`) or [`attach`] it to a bus of the front
//! end's own, so the TUI draws from the daemon's events exactly as from a core in-process.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use crate::app::snapshot::Snapshot;
use crate::app::{Bus, Command, protocol};

/// How long the daemon may take to send its snapshot.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);
/// The longest line read from the daemon (a snapshot with many calls and CRM values).
const MAX_LINE: usize = 4 * 1024 * 1024;

/// A connection to a daemon, its snapshot read.
pub struct Connection {
    reader: Reader,
    writer: OwnedWriteHalf,
}

/// The daemon's lines.
struct Reader(BufReader<OwnedReadHalf>);

impl Reader {
    /// The next protocol object; `None` when the connection ended. A line that is not JSON
    /// is skipped.
    async fn next(&mut self) -> Option<Value> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.0.read_line(&mut line).await {
                Ok(0) | Err(_) => return None,
                Ok(_) if line.len() > MAX_LINE => return None,
                Ok(_) => {}
            }
            if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
                return Some(v);
            }
        }
    }
}

/// Why a front end could not connect.
#[derive(Debug)]
pub enum ConnectError {
    /// No daemon listens there (no socket, or a stale one).
    NotRunning,
    /// Something else: the message says what.
    Failed(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRunning => write!(f, "no ctiphone daemon is running"),
            Self::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Connects to the daemon at `socket` and reads its snapshot.
pub async fn connect(socket: &Path) -> Result<(Snapshot, Connection), ConnectError> {
    let stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ConnectError::NotRunning);
        }
        Err(e) => return Err(ConnectError::Failed(format!("{}: {e}", socket.display()))),
    };
    let (read, writer) = stream.into_split();
    let mut conn = Connection {
        reader: Reader(BufReader::new(read)),
        writer,
    };
    let first = tokio::time::timeout(SNAPSHOT_WAIT, conn.next())
        .await
        .map_err(|_| ConnectError::Failed(format!("{}: no snapshot within 5 s", socket.display())))?;
    let snapshot = first
        .and_then(|v| v.get("snapshot").cloned())
        .and_then(|s| serde_json::from_value::<Snapshot>(s).ok())
        .ok_or_else(|| {
            ConnectError::Failed(format!(
                "{}: the daemon closed the connection or sent no snapshot (another user's daemon?)",
                socket.display()
            ))
        })?;
    Ok((snapshot, conn))
}

impl Connection {
    /// Sends one command.
    pub async fn send(&mut self, cmd: &Command) -> std::io::Result<()> {
        let mut line = protocol::command_line(cmd);
        line.push('\n');
        self.writer.write_all(line.as_bytes()).await
    }

    /// The next protocol object from the daemon; `None` when the connection ended. A line
    /// that is not JSON is skipped.
    pub async fn next(&mut self) -> Option<Value> {
        self.reader.next().await
    }
}

/// Publishes the daemon's events on `bus` and sends what goes into the returned channel as
/// commands. The receiver says when the daemon has gone (it stopped, or the socket failed).
pub fn attach(conn: Connection, bus: &Bus) -> (mpsc::Sender<Command>, oneshot::Receiver<()>) {
    let Connection {
        mut reader,
        mut writer,
    } = conn;
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Command>(64);
    let (gone_tx, gone_rx) = oneshot::channel();
    let bus = bus.downgrade();
    tokio::spawn(async move {
        while let Some(v) = reader.next().await {
            let Some(ev) = protocol::from_json(&v) else {
                continue;
            };
            match bus.upgrade() {
                Some(b) => b.publish(ev),
                None => break,
            }
        }
        let _ = gone_tx.send(());
    });
    tokio::spawn(async move {
        while let Some(cmd) = cmd_rx.recv().await {
            let mut line = protocol::command_line(&cmd);
            line.push('\n');
            if writer.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    (cmd_tx, gone_rx)
}
