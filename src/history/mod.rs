//! The call history (HIS-1): every call in SQLite (WAL, migrations from the first version),
//! written when it rings or is dialled and updated on answer, CRM result, end and recording.
//! A call still open when the phone starts again (a crash, `kill -9`, a power cut) is marked
//! `interrupted`: its row is never lost. The history is one more subscriber of the bus, on
//! a thread of its own (a locked or slow database never stalls the async runtime) that retries
//! a write the database refuses as busy until it is taken: no event is ever dropped.
//! Refused calls (busy) are kept too, at most [`REFUSED_MAX`] per [`REFUSED_WINDOW`] so that a
//! flood cannot fill the database; the excess is counted and reported.

mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Local;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::app::{CallEvent, CallEventKind, CallResult, CtiEvent, Direction, Event, Logged};

pub use writer::{REFUSED_MAX, REFUSED_WINDOW, Writer};

/// Schema migrations, in order; `schema_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE calls (
        id INTEGER PRIMARY KEY,
        call_id TEXT NOT NULL UNIQUE,
        direction TEXT NOT NULL,
        tel TEXT NOT NULL,
        telname TEXT NOT NULL,
        called TEXT NOT NULL,
        calledname TEXT NOT NULL,
        anonymous INTEGER NOT NULL,
        ring_at TEXT NOT NULL,
        answer_at TEXT,
        end_at TEXT,
        duration_s REAL,
        result TEXT,
        end_reason TEXT,
        company TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL DEFAULT '',
        ext_id TEXT NOT NULL DEFAULT '',
        vars TEXT NOT NULL DEFAULT '{}',
        recording TEXT,
        state TEXT NOT NULL DEFAULT 'open'
    );
    CREATE INDEX calls_ring_at ON calls(ring_at);",
    // 2: the local phonebook (PAR-2, PAR-4); `norm` is the number as matched.
    "CREATE TABLE contacts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        number TEXT NOT NULL,
        norm TEXT NOT NULL,
        company TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX contacts_norm ON contacts(norm);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 3: the wrap-up code of the after-call work (AGT-3).
    "ALTER TABLE calls ADD COLUMN wrapup TEXT NOT NULL DEFAULT '';",
    // 4: the central log (issue 18): each row's update sequence, the CRM search's failure,
    // the end of the wrap-up, and the outbox of what PostgreSQL has not taken yet.
    "ALTER TABLE calls ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE calls ADD COLUMN crm_error TEXT NOT NULL DEFAULT '';
    ALTER TABLE calls ADD COLUMN wrapup_at TEXT;
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        call_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        payload TEXT NOT NULL,
        queued_at TEXT NOT NULL
    );",
];

/// One call as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub call_id: String,
    pub direction: String,
    pub tel: String,
    pub telname: String,
    pub called: String,
    pub calledname: String,
    pub anonymous: bool,
    pub ring_at: String,
    pub answer_at: Option<String>,
    pub end_at: Option<String>,
    pub duration_s: Option<f64>,
    /// `None` while the call is in progress.
    pub result: Option<CallResult>,
    pub company: String,
    pub name: String,
    pub ext_id: String,
    pub vars: BTreeMap<String, String>,
    pub recording: Option<String>,
    /// `open` (in progress), `closed`, or `interrupted` (the phone stopped during the call).
    pub state: String,
    /// The wrap-up code of the after-call work (AGT-3), "" when none.
    pub wrapup: String,
}

/// What to list: calls that rang since a time, up to a date, with a result, with text in
/// their numbers, names, company or CRM id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// A date or time prefix as stored (`2026-11-25`, `2026-11-25T10:00`).
    pub since: Option<String>,
    /// A date (`YYYY-MM-DD`): calls of that day and before.
    pub until: Option<String>,
    pub result: Option<CallResult>,
    /// Case-insensitive (ASCII) text anywhere in the numbers, names, company or CRM id.
    pub text: String,
    pub limit: usize,
}

impl Row {
    /// The click access of this past call again (HIS-2): the call's parameters and the CRM
    /// values stored for it.
    pub fn reclick(&self) -> CallEvent {
        let mut p = if self.direction == "in" {
            crate::app::CallParams::incoming(&self.call_id, &self.tel, &self.called)
        } else {
            let mut p = crate::app::CallParams::outgoing(&self.call_id, &self.tel);
            p.called = self.called.clone();
            p
        };
        p.telname = self.telname.clone();
        p.calledname = self.calledname.clone();
        p.anonymous = self.anonymous;
        if let Some(d) = self.duration_s {
            p.extra.insert("DURATION".into(), format!("{}", d.round() as i64));
        }
        if let Some(r) = self.result {
            p.set_result(r);
        }
        if let Some(rec) = &self.recording {
            p.extra.insert("REC_PATH".into(), rec.clone());
        }
        p.extra.insert("WRAPUP".into(), self.wrapup.clone());
        let mut stored = self.vars.clone();
        for (k, v) in [
            ("COMPANY", &self.company),
            ("NAME", &self.name),
            ("EXT_ID", &self.ext_id),
        ] {
            stored.entry(k.to_owned()).or_insert_with(|| v.clone());
        }
        CallEvent::reclick(p, stored)
    }
}

const COLUMNS: &str = "call_id, direction, tel, telname, called, calledname, anonymous, ring_at, answer_at,
    end_at, duration_s, result, company, name, ext_id, vars, recording, state, wrapup";

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let vars: String = r.get(15)?;
    let result: Option<String> = r.get(11)?;
    let result = result.and_then(|name| {
        let known = CallResult::from_name(&name);
        if known.is_none() {
            tracing::warn!("history: the stored result `{}` names no result", Logged(&name));
        }
        known
    });
    Ok(Row {
        call_id: r.get(0)?,
        direction: r.get(1)?,
        tel: r.get(2)?,
        telname: r.get(3)?,
        called: r.get(4)?,
        calledname: r.get(5)?,
        anonymous: r.get(6)?,
        ring_at: r.get(7)?,
        answer_at: r.get(8)?,
        end_at: r.get(9)?,
        duration_s: r.get(10)?,
        result,
        company: r.get(12)?,
        name: r.get(13)?,
        ext_id: r.get(14)?,
        vars: serde_json::from_str(&vars).unwrap_or_default(),
        recording: r.get(16)?,
        state: r.get(17)?,
        wrapup: r.get(18)?,
    })
}

/// The history database.
#[derive(Debug)]
pub struct History {
    db: Connection,
    /// Changes are queued for the central log (`[history] central`), and whom to wake.
    outbox: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// The last status change's sequence (microseconds since the epoch, strictly rising).
    status_seq: std::cell::Cell<i64>,
}

/// The pid file of the phone that writes the history in this data directory.
pub fn lock_path() -> PathBuf {
    crate::config::data_dir().join("phone.pid")
}

/// Is the process named in the pid file alive?
fn phone_running(lock: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(lock) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && pid != std::process::id() as i32 && unsafe { libc::kill(pid, 0) } == 0
}

/// Claims the data directory for this phone: calls left open by a previous run are marked
/// interrupted, then our pid is written.
pub fn claim(history: &History, lock: &Path) -> Result<(), String> {
    history.recover(lock)?;
    crate::private::write(lock, std::process::id().to_string().as_bytes())
        .map_err(|e| format!("{}: {e}", lock.display()))
}

/// The default location: `$XDG_DATA_HOME/ctiphone/history.sqlite3`.
pub fn default_path() -> PathBuf {
    crate::config::data_dir().join("history.sqlite3")
}

/// A CSV cell a spreadsheet will not run as a formula: one that starts with `=`, `+`, `-`,
/// `@`, tab or CR gets a leading `'`.
pub fn defuse(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// Now, local time with milliseconds and offset, as the history stores times.
pub(crate) fn now() -> String {
    Local::now().format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
}

/// The direction as stored.
fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Incoming => "in",
        Direction::Outgoing => "out",
    }
}

/// The Call-ID an event is about, for the log.
fn call_id(ev: &Event) -> &str {
    match ev {
        Event::Call(c) => &c.params.id,
        Event::Cti(
            CtiEvent::Skipped { call_id, .. }
            | CtiEvent::Searching { call_id }
            | CtiEvent::SearchResult { call_id, .. }
            | CtiEvent::SearchFailed { call_id, .. }
            | CtiEvent::Action { call_id, .. },
        ) => call_id,
        Event::Phone(_) => "",
    }
}

/// Opens (creating and migrating) the database of the history and the local phonebook.
pub fn open_db(path: &Path) -> Result<Connection, String> {
    if let Some(dir) = path.parent() {
        crate::private::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // SQLite would create the file with the umask's mode; created here it is 0600, and SQLite
    // gives its -wal and -shm files the database's mode. Only a new file is opened here: closing
    // any descriptor of a database this process has open drops all of the process's POSIX
    // locks on it (SQLite's locks among them), and writes would be lost.
    crate::private::create_new_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let db = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    db.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| e.to_string())?;
    db.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| e.to_string())?;
    // A phone writes a few rows a minute: a small page cache and no memory map keep it small.
    db.pragma_update(None, "cache_size", -64)
        .map_err(|e| e.to_string())?;
    db.pragma_update(None, "mmap_size", 0)
        .map_err(|e| e.to_string())?;
    // Two processes may open it at once (the phone and `ctiphone phonebook …`): wait for
    // each other, and migrate inside one write transaction that reads the version first.
    db.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let tx = rusqlite::Transaction::new_unchecked(&db, rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(|e| e.to_string())?;
    let version: i64 = tx
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()
        .map_err(|e| e.to_string())?
        .unwrap_or(0);
    let applied = usize::try_from(version).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(format!(
            "{}: written by a newer ctiphone (schema {version}, this one knows {})",
            path.display(),
            MIGRATIONS.len()
        ));
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(m)
            .map_err(|e| format!("migration {}: {e}", i + 1))?;
    }
    if applied < MIGRATIONS.len() {
        tx.execute("DELETE FROM schema_version", [])
            .map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [MIGRATIONS.len() as i64],
        )
        .map_err(|e| e.to_string())?;
    }
    tx.commit().map_err(|e| e.to_string())?;
    Ok(db)
}

impl History {
    /// Opens (creating and migrating) the database.
    pub fn open(path: &Path) -> Result<History, String> {
        Ok(History {
            db: open_db(path)?,
            outbox: None,
            status_seq: std::cell::Cell::new(0),
        })
    }

    /// Queues every change for the central log from now on (in the transaction of the local
    /// write), and wakes `wake` after each.
    pub fn with_outbox(mut self, wake: std::sync::Arc<tokio::sync::Notify>) -> History {
        self.outbox = Some(wake);
        self
    }

    /// Marks calls left open by a phone that is gone (a crash, `kill -9`, a power cut) as
    /// interrupted. Only when no phone runs on this data directory: `lock` is the phone's pid
    /// file (see [`claim`]).
    pub fn recover(&self, lock: &Path) -> Result<usize, String> {
        if phone_running(lock) {
            return Ok(0);
        }
        self.db
            .execute(
                "UPDATE calls SET state = 'interrupted', result = COALESCE(result, ?1) WHERE state = 'open'",
                [CallResult::Interrupted.name()],
            )
            .map_err(|e| e.to_string())
    }

    /// Records one bus event.
    pub fn record(&self, ev: &Event) -> Result<(), String> {
        self.write(ev).map_err(|e| e.to_string())
    }

    /// Records one bus event, with SQLite's error (busy or not): the row's change, its
    /// update sequence and (with the central log on) its outbox entry in one transaction.
    fn write(&self, ev: &Event) -> rusqlite::Result<()> {
        let relevant = matches!(
            ev,
            Event::Call(_)
                | Event::Cti(CtiEvent::SearchResult { .. } | CtiEvent::SearchFailed { .. })
                | Event::Phone(crate::app::PhoneEvent::Status { .. })
        );
        if !relevant {
            return Ok(());
        }
        let tx = rusqlite::Transaction::new_unchecked(&self.db, rusqlite::TransactionBehavior::Immediate)?;
        let changed = match ev {
            Event::Call(c) => self.call_event(c)?,
            Event::Cti(CtiEvent::SearchResult { call_id, vars }) => {
                let get = |k: &str| vars.get(k).cloned().unwrap_or_default();
                let json = serde_json::to_string(vars).unwrap_or_else(|_| "{}".into());
                self.db.execute(
                    "UPDATE calls SET company = ?2, name = ?3, ext_id = ?4, vars = ?5, crm_error = '' WHERE call_id = ?1",
                    params![call_id, get("COMPANY"), get("NAME"), get("EXT_ID"), json],
                )?
            }
            Event::Cti(CtiEvent::SearchFailed { call_id, error }) => self.db.execute(
                "UPDATE calls SET crm_error = ?2 WHERE call_id = ?1",
                params![
                    call_id,
                    if error.is_empty() {
                        "failed"
                    } else {
                        error.as_str()
                    }
                ],
            )?,
            Event::Phone(crate::app::PhoneEvent::Status {
                state,
                reason,
                wrapup,
                since,
            }) => {
                if self.outbox.is_some() {
                    let micros = chrono::Utc::now().timestamp_micros();
                    let seq = micros.max(self.status_seq.get() + 1);
                    self.status_seq.set(seq);
                    let at = if since.is_empty() { now() } else { since.clone() };
                    let payload = serde_json::json!({
                        "status": state.name(),
                        "reason": if reason.is_empty() { wrapup } else { reason },
                        "at": at,
                    });
                    self.db.execute(
                        "INSERT INTO outbox (kind, call_id, seq, payload, queued_at) VALUES ('status', '', ?1, ?2, ?3)",
                        params![seq, payload.to_string(), now()],
                    )?;
                }
                0
            }
            _ => 0,
        };
        let id = call_id(ev);
        if changed > 0 && !id.is_empty() {
            self.db
                .execute("UPDATE calls SET seq = seq + 1 WHERE call_id = ?1", [id])?;
            if self.outbox.is_some() {
                self.db.execute(
                    "INSERT INTO outbox (kind, call_id, seq, payload, queued_at)
                     SELECT 'call', call_id, seq, '', ?2 FROM calls WHERE call_id = ?1",
                    params![id, now()],
                )?;
            }
        }
        tx.commit()?;
        if let Some(wake) = &self.outbox {
            wake.notify_one();
        }
        Ok(())
    }

    fn call_event(&self, c: &CallEvent) -> rusqlite::Result<usize> {
        let p = &c.params;
        match &c.kind {
            CallEventKind::Ring | CallEventKind::Outgoing => self.db.execute(
                "INSERT OR IGNORE INTO calls (call_id, direction, tel, telname, called, calledname, anonymous, ring_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    p.id,
                    direction(p.direction),
                    p.tel,
                    p.telname,
                    p.called,
                    p.calledname,
                    p.anonymous,
                    now()
                ],
            ),
            CallEventKind::Answer => {
                self.db.execute("UPDATE calls SET answer_at = ?2 WHERE call_id = ?1 AND answer_at IS NULL", params![p.id, now()])
            }
            CallEventKind::Hangup { answered, .. } => {
                let duration: Option<f64> = p.extra.get("DURATION").and_then(|d| d.parse().ok());
                let unnamed = if *answered {
                    CallResult::Answered
                } else {
                    CallResult::Failed
                };
                let result = match p.result() {
                    Some(Ok(r)) => r,
                    Some(Err(name)) => {
                        tracing::warn!(
                            call = %Logged(&p.id),
                            "history: {{RESULT}} `{}` names no result; stored as {unnamed}",
                            Logged(name)
                        );
                        unnamed
                    }
                    None => unnamed,
                };
                self.db.execute(
                    "UPDATE calls SET end_at = ?2, duration_s = ?3, result = ?4, state = 'closed' WHERE call_id = ?1",
                    params![p.id, now(), duration, result.name()],
                )
            }
            CallEventKind::Identity => self.db.execute(
                "UPDATE calls SET tel = ?2, telname = ?3, anonymous = ?4 WHERE call_id = ?1",
                params![p.id, p.tel, p.telname, p.anonymous],
            ),
            // Rang nowhere, ended at once: a closed row with no answer.
            CallEventKind::Refused { result } => {
                let at = now();
                self.db.execute(
                    "INSERT OR IGNORE INTO calls (call_id, direction, tel, telname, called, calledname, anonymous,
                         ring_at, end_at, duration_s, result, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 0, ?9, 'closed')",
                    params![
                        p.id,
                        direction(p.direction),
                        p.tel,
                        p.telname,
                        p.called,
                        p.calledname,
                        p.anonymous,
                        at,
                        result.name()
                    ],
                )
            }
            CallEventKind::Recorded { path } => self.db.execute(
                "UPDATE calls SET recording = ?2 WHERE call_id = ?1",
                params![p.id, path.display().to_string()],
            ),
            // AGT-3: the code that ended the call's after-call work.
            CallEventKind::WrapUp { code } => self.db.execute(
                "UPDATE calls SET wrapup = ?2, wrapup_at = ?3 WHERE call_id = ?1",
                params![p.id, code, now()],
            ),
            CallEventKind::Click | CallEventKind::Reclick { .. } | CallEventKind::Status { .. } => Ok(0),
        }
    }

    /// Calls, newest first: those that rang since `since` (a date or time prefix as stored,
    /// e.g. "2026-11-25"), with `result`, at most `limit`.
    pub fn list(
        &self,
        since: Option<&str>,
        result: Option<CallResult>,
        limit: usize,
    ) -> Result<Vec<Row>, String> {
        self.query(&Query {
            since: since.map(str::to_owned),
            result,
            limit,
            ..Query::default()
        })
    }

    /// One call by its Call-ID.
    pub fn get(&self, call_id: &str) -> Result<Option<Row>, String> {
        self.db
            .query_row(
                &format!("SELECT {COLUMNS} FROM calls WHERE call_id = ?1"),
                [call_id],
                row_of,
            )
            .optional()
            .map_err(|e| e.to_string())
    }

    /// Calls matching `q`, newest first.
    pub fn query(&self, q: &Query) -> Result<Vec<Row>, String> {
        let text = q.text.trim();
        let like = format!(
            "%{}%",
            text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
        );
        // "Up to a date": everything before the next day.
        let before = match &q.until {
            Some(d) => Some(
                chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                    .map_err(|_| format!("`{d}` is not a date, expected YYYY-MM-DD"))?
                    .succ_opt()
                    .ok_or("no day after that date")?
                    .format("%Y-%m-%d")
                    .to_string(),
            ),
            None => None,
        };
        let mut st = self
            .db
            .prepare_cached(&format!(
                "SELECT {COLUMNS}
                 FROM calls WHERE (?1 IS NULL OR ring_at >= ?1) AND (?2 IS NULL OR result = ?2)
                   AND (?4 IS NULL OR ring_at < ?4)
                   AND (?5 = '' OR tel LIKE ?6 ESCAPE '\\' OR telname LIKE ?6 ESCAPE '\\'
                        OR called LIKE ?6 ESCAPE '\\' OR calledname LIKE ?6 ESCAPE '\\'
                        OR company LIKE ?6 ESCAPE '\\' OR name LIKE ?6 ESCAPE '\\'
                        OR ext_id LIKE ?6 ESCAPE '\\')
                 ORDER BY ring_at DESC, id DESC LIMIT ?3"
            ))
            .map_err(|e| e.to_string())?;
        let rows = st
            .query_map(
                params![
                    q.since,
                    q.result.map(CallResult::name),
                    i64::try_from(q.limit).unwrap_or(i64::MAX),
                    before,
                    text,
                    like
                ],
                row_of,
            )
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
    }

    /// Writes calls as CSV (newest first). Cells that a spreadsheet would run as a formula
    /// (starting with `=`, `+`, `-`, `@`, tab or CR) get a leading `'`.
    pub fn export_csv(&self, out: impl std::io::Write) -> Result<usize, String> {
        let rows = self.list(None, None, usize::MAX)?;
        let mut w = csv::Writer::from_writer(out);
        let header = [
            "ring_at",
            "direction",
            "result",
            "tel",
            "telname",
            "called",
            "calledname",
            "anonymous",
            "answer_at",
            "end_at",
            "duration_s",
            "company",
            "name",
            "ext_id",
            "recording",
            "call_id",
            "state",
            "wrapup",
        ];
        w.write_record(header).map_err(|e| e.to_string())?;
        for r in &rows {
            let cells = [
                r.ring_at.clone(),
                r.direction.clone(),
                r.result.map(CallResult::name).unwrap_or_default().to_owned(),
                r.tel.clone(),
                r.telname.clone(),
                r.called.clone(),
                r.calledname.clone(),
                r.anonymous.to_string(),
                r.answer_at.clone().unwrap_or_default(),
                r.end_at.clone().unwrap_or_default(),
                r.duration_s.map(|d| d.to_string()).unwrap_or_default(),
                r.company.clone(),
                r.name.clone(),
                r.ext_id.clone(),
                r.recording.clone().unwrap_or_default(),
                r.call_id.clone(),
                r.state.clone(),
                r.wrapup.clone(),
            ];
            w.write_record(cells.iter().map(|c| defuse(c)))
                .map_err(|e| e.to_string())?;
        }
        w.flush().map_err(|e| e.to_string())?;
        Ok(rows.len())
    }

    /// Deletes calls that rang more than `days` ago; their recording files too when
    /// `delete_recordings`. Returns how many calls were removed.
    pub fn prune(&self, days: u32, delete_recordings: bool) -> Result<usize, String> {
        let cutoff = (Local::now() - chrono::Duration::days(i64::from(days)))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        if delete_recordings {
            let mut q = self
                .db
                .prepare("SELECT recording FROM calls WHERE ring_at < ?1 AND recording IS NOT NULL")
                .map_err(|e| e.to_string())?;
            let paths: Vec<String> = q
                .query_map([&cutoff], |r| r.get(0))
                .map_err(|e| e.to_string())?
                .filter_map(Result::ok)
                .collect();
            for p in paths {
                let _ = std::fs::remove_file(p);
            }
        }
        self.db
            .execute(
                "DELETE FROM calls WHERE ring_at < ?1 AND state != 'open'",
                [&cutoff],
            )
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::CallParams;

    fn outbox(h: &History) -> Vec<(String, String, i64)> {
        let mut st =
            h.db.prepare("SELECT kind, call_id, seq FROM outbox ORDER BY id")
                .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Issue 18: each change of a row raises its update sequence; with the central log on,
    /// it is queued in the outbox with that sequence, in order; the CRM's failure and the
    /// status changes are queued too. Without it, nothing is queued.
    #[test]
    fn changes_are_queued_in_the_outbox_with_their_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let h = History::open(&dir.path().join("h.db")).unwrap().with_outbox(wake);
        let p = CallParams::incoming("c1", "0311112222", "0312345678");
        h.record(&Event::Call(CallEvent::ring(p.clone()))).unwrap();
        h.record(&Event::Cti(CtiEvent::SearchFailed {
            call_id: "c1".into(),
            error: "HTTP 500".into(),
        }))
        .unwrap();
        h.record(&Event::Call(CallEvent::answer(p.clone()))).unwrap();
        // An event about a call the history does not know changes nothing and queues nothing.
        h.record(&Event::Call(CallEvent::answer(CallParams::incoming(
            "zz", "1", "2",
        ))))
        .unwrap();
        h.record(&Event::Phone(crate::app::PhoneEvent::Status {
            state: crate::app::AgentState::NotReady,
            reason: "Break".into(),
            wrapup: String::new(),
            since: "2026-12-04T10:00:00+09:00".into(),
        }))
        .unwrap();
        let q = outbox(&h);
        assert_eq!(
            q.iter()
                .map(|(k, c, s)| (k.as_str(), c.as_str(), *s))
                .take(3)
                .collect::<Vec<_>>(),
            [("call", "c1", 1), ("call", "c1", 2), ("call", "c1", 3)]
        );
        assert_eq!(q.len(), 4, "{q:?}");
        assert_eq!(q[3].0, "status");
        let (seq, crm): (i64, String) =
            h.db.query_row("SELECT seq, crm_error FROM calls WHERE call_id = 'c1'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((seq, crm.as_str()), (3, "HTTP 500"));

        let plain = History::open(&dir.path().join("plain.db")).unwrap();
        plain.record(&Event::Call(CallEvent::ring(p.clone()))).unwrap();
        plain.record(&Event::Call(CallEvent::answer(p))).unwrap();
        assert!(outbox(&plain).is_empty());
    }

    #[test]
    fn a_call_is_written_then_updated_and_read_back_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("h.db")).unwrap();
        let mut p = CallParams::incoming("c1", "\u{1b}]52;c;x\u{7}0311112222", "0312345678");
        p.telname = "山田 太郎\n'); DROP TABLE calls;--".into();
        h.record(&Event::Call(CallEvent::ring(p.clone()))).unwrap();
        h.record(&Event::Call(CallEvent::answer(p.clone()))).unwrap();
        let vars = [
            ("COMPANY".to_owned(), "ACME".to_owned()),
            ("NAME".to_owned(), "Taro".to_owned()),
        ]
        .into();
        h.record(&Event::Cti(CtiEvent::SearchResult {
            call_id: "c1".into(),
            vars,
        }))
        .unwrap();
        let mut end = p.clone();
        end.extra.insert("DURATION".into(), "12".into());
        end.set_result(CallResult::Answered);
        h.record(&Event::Call(CallEvent::hangup(end, true))).unwrap();
        h.record(&Event::Call(CallEvent::recorded(p.clone(), "/r/x.wav".into())))
            .unwrap();
        let rows = h.list(None, None, 10).unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.tel.as_str(), r.telname.as_str()),
            (p.tel.as_str(), p.telname.as_str())
        );
        assert_eq!(
            (r.result, r.duration_s, r.state.as_str()),
            (Some(CallResult::Answered), Some(12.0), "closed")
        );
        assert_eq!((r.company.as_str(), r.name.as_str()), ("ACME", "Taro"));
        assert_eq!(r.recording.as_deref(), Some("/r/x.wav"));
        assert!(r.answer_at.is_some() && r.end_at.is_some());
        assert_eq!(h.list(None, Some(CallResult::Missed), 10).unwrap().len(), 0);
    }

    #[test]
    fn queries_by_text_result_and_date_and_a_past_click() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("h.db")).unwrap();
        for (id, tel, name) in [
            ("a", "0311112222", "Yamada"),
            ("b", "0322223333", "50%_off"),
            ("c", "1001", "Sato"),
        ] {
            let mut p = CallParams::incoming(id, tel, "0120000111");
            p.telname = name.into();
            h.record(&Event::Call(CallEvent::ring(p.clone()))).unwrap();
            let mut end = p;
            end.set_result(if id == "c" {
                CallResult::Answered
            } else {
                CallResult::Missed
            });
            h.record(&Event::Call(CallEvent::hangup(end, id == "c"))).unwrap();
        }
        let ids = |q: Query| -> Vec<String> {
            h.query(&Query { limit: 10, ..q })
                .unwrap()
                .into_iter()
                .map(|r| r.call_id)
                .collect()
        };
        assert_eq!(ids(Query::default()), ["c", "b", "a"]);
        assert_eq!(
            ids(Query {
                text: "yama".into(),
                ..Query::default()
            }),
            ["a"]
        );
        assert_eq!(
            ids(Query {
                text: "1122".into(),
                ..Query::default()
            }),
            ["a"]
        );
        assert_eq!(
            ids(Query {
                text: "%".into(),
                ..Query::default()
            }),
            ["b"],
            "LIKE wildcards are literal"
        );
        assert_eq!(
            ids(Query {
                result: Some(CallResult::Missed),
                ..Query::default()
            }),
            ["b", "a"]
        );
        let today = Local::now().format("%Y-%m-%d").to_string();
        assert_eq!(
            ids(Query {
                until: Some(today),
                ..Query::default()
            })
            .len(),
            3
        );
        assert!(
            ids(Query {
                until: Some("2000-01-01".into()),
                ..Query::default()
            })
            .is_empty()
        );
        assert!(
            h.query(&Query {
                until: Some("yesterday".into()),
                ..Query::default()
            })
            .is_err()
        );
        // A past call's click event carries its stored CRM values.
        h.record(&Event::Cti(CtiEvent::SearchResult {
            call_id: "c".into(),
            vars: [
                ("COMPANY".to_owned(), "ACME".to_owned()),
                ("CUSTNO".to_owned(), "42".to_owned()),
            ]
            .into(),
        }))
        .unwrap();
        let row = h
            .query(&Query {
                text: "sato".into(),
                limit: 1,
                ..Query::default()
            })
            .unwrap()
            .remove(0);
        let ev = row.reclick();
        assert_eq!(
            (ev.params.tel.as_str(), ev.params.telname.as_str()),
            ("1001", "Sato")
        );
        assert_eq!(ev.params.result(), Some(Ok(CallResult::Answered)));
        match ev.kind {
            CallEventKind::Reclick { stored } => {
                assert_eq!(stored.get("CUSTNO").map(String::as_str), Some("42"));
                assert_eq!(stored.get("COMPANY").map(String::as_str), Some("ACME"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_hangup_without_a_known_result_and_a_refused_call() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("h.db")).unwrap();
        let (a, b) = (
            CallParams::incoming("a", "1", "2"),
            CallParams::outgoing("b", "3"),
        );
        for p in [&a, &b] {
            h.record(&Event::Call(CallEvent::ring(p.clone()))).unwrap();
        }
        h.record(&Event::Call(CallEvent::hangup(a, true))).unwrap();
        let mut b = b;
        b.extra.insert("RESULT".into(), "gone".into());
        h.record(&Event::Call(CallEvent::hangup(b, false))).unwrap();
        let result = |id: &str| h.get(id).unwrap().and_then(|r| r.result);
        assert_eq!(result("a"), Some(CallResult::Answered), "no {{RESULT}}: answered");
        assert_eq!(
            result("b"),
            Some(CallResult::Failed),
            "an unknown {{RESULT}}: failed"
        );
        let mut p = CallParams::incoming("r", "0311112222", "0312345678");
        p.telname = "Busy Caller".into();
        h.record(&Event::Call(CallEvent::refused(p, CallResult::Busy)))
            .unwrap();
        let r = h.get("r").unwrap().expect("a row for the refused call");
        assert_eq!(
            (
                r.result,
                r.state.as_str(),
                r.direction.as_str(),
                r.telname.as_str()
            ),
            (Some(CallResult::Busy), "closed", "in", "Busy Caller")
        );
        assert_eq!(
            (r.answer_at, r.end_at.as_deref()),
            (None, Some(r.ring_at.as_str()))
        );
        assert_eq!(h.list(None, Some(CallResult::Busy), 10).unwrap().len(), 1);
        // Closed at once: never recovered as interrupted.
        assert_eq!(h.recover(&dir.path().join("no.pid")).unwrap(), 0);
    }

    #[test]
    fn csv_export_defuses_formulas() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("h.db")).unwrap();
        let mut p = CallParams::incoming("c3", "+15550100", "2");
        p.telname = "=HYPERLINK(\"http://evil.example\",\"click\")".into();
        h.record(&Event::Call(CallEvent::ring(p))).unwrap();
        let mut out = Vec::new();
        assert_eq!(h.export_csv(&mut out).unwrap(), 1);
        let text = String::from_utf8(out).unwrap();
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        let row = rd.records().next().unwrap().unwrap();
        assert_eq!(&row[3], "'+15550100");
        assert_eq!(&row[4], "'=HYPERLINK(\"http://evil.example\",\"click\")");
        assert_eq!(h.prune(0, false).unwrap(), 0, "an open call is never pruned");
    }

    #[test]
    fn calls_left_open_are_interrupted_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        {
            let h = History::open(&path).unwrap();
            h.record(&Event::Call(CallEvent::ring(CallParams::incoming(
                "c2", "1", "2",
            ))))
            .unwrap();
        }
        let h = History::open(&path).unwrap();
        // While a phone runs (our own pid stands for it here), open calls are its calls.
        let lock = dir.path().join("phone.pid");
        std::fs::write(&lock, "1").unwrap();
        assert_eq!(h.recover(&lock).unwrap(), 0, "pid 1 is alive: no recovery");
        std::fs::write(&lock, "999999999").unwrap();
        assert_eq!(h.recover(&lock).unwrap(), 1);
        let rows = h.list(None, None, 10).unwrap();
        assert_eq!(
            (rows[0].state.as_str(), rows[0].result),
            ("interrupted", Some(CallResult::Interrupted))
        );
        // Opening again migrates nothing twice.
        drop(h);
        assert!(History::open(&path).is_ok());
    }
}
