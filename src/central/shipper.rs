//! Delivers the outbox to PostgreSQL: a thread of its own (with its own small runtime and
//! its own connection to the history database), so neither a slow PostgreSQL nor a busy
//! SQLite ever touches the signalling or the media. Each round takes up to [`BATCH`] outbox
//! entries in order, sends the newest state of each call they name (its update sequence
//! with it: PostgreSQL keeps a row only from a higher sequence, so a batch delivered twice,
//! or an older state after a newer one, changes nothing) and the status changes (keyed on
//! agent + sequence), in one PostgreSQL transaction; then deletes exactly those entries.
//! A failure keeps them: the connection is dropped and tried again after 1 s, doubling to
//! 30 s, and the outbox grows meanwhile (`history sync` shows it). Its state goes on the bus
//! as a `central` event (the status bar's "central log: N waiting") and, on each change
//! between working and failing, a `warning`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use super::target::{Target, describe};
use crate::app::{Event, PhoneEvent, WeakBus};
use crate::history::now;

/// Outbox entries taken per round.
pub const BATCH: usize = 500;
/// The first pause after a failure; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long one batch may take before the connection is given up.
const DELIVER_TIMEOUT: Duration = Duration::from_secs(30);
/// With nothing to send, the outbox is looked at again this often even without a wake-up.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// The least time between two `central` events while the backlog only grows.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// What the shipper needs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub target: Target,
    /// This phone's agent id in the central log.
    pub agent: String,
    /// The history database (the outbox is in it).
    pub db: PathBuf,
}

/// The running shipper; stopping it (or dropping it) ends its thread after the round under
/// way.
#[derive(Debug)]
pub struct Shipper {
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
    done: Option<std::thread::JoinHandle<()>>,
}

impl Shipper {
    /// Starts delivering; `wake` is notified by the history after each change it queues.
    pub fn start(settings: Settings, wake: Arc<Notify>, bus: WeakBus) -> Result<Shipper, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, w2) = (stop.clone(), wake.clone());
        let done = std::thread::Builder::new()
            .name("central-log".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("central log: cannot start its runtime: {e}");
                        return;
                    }
                };
                rt.block_on(run(settings, w2, s2, bus));
            })
            .map_err(|e| format!("central log: cannot start its thread: {e}"))?;
        Ok(Shipper {
            stop,
            wake,
            done: Some(done),
        })
    }

    /// Ends the thread once the outbox is sent (or at the first failure), waiting at most
    /// `within`: what is not delivered stays in the outbox for the next start.
    pub fn stop(mut self, within: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_one();
        if let Some(h) = self.done.take() {
            let end = Instant::now() + within;
            while !h.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }
}

/// One outbox entry.
#[derive(Debug)]
struct Entry {
    id: i64,
    kind: String,
    call_id: String,
    seq: i64,
    payload: String,
}

/// A call row as sent.
#[derive(Debug)]
struct CallRow {
    call_id: String,
    seq: i64,
    direction: String,
    tel: String,
    telname: String,
    called: String,
    calledname: String,
    anonymous: bool,
    ring_at: String,
    answer_at: Option<String>,
    end_at: Option<String>,
    duration_s: Option<f64>,
    result: Option<String>,
    company: String,
    name: String,
    ext_id: String,
    vars: String,
    recording: Option<String>,
    state: String,
    wrapup: String,
    crm_error: String,
    wrapup_at: Option<String>,
}

fn open_local(path: &std::path::Path) -> Result<Connection, String> {
    let db = crate::history::open_db(path)?;
    db.busy_timeout(Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    Ok(db)
}

fn read_batch(db: &Connection) -> rusqlite::Result<Vec<Entry>> {
    let mut st =
        db.prepare_cached("SELECT id, kind, call_id, seq, payload FROM outbox ORDER BY id LIMIT ?1")?;
    let rows = st.query_map([BATCH as i64], |r| {
        Ok(Entry {
            id: r.get(0)?,
            kind: r.get(1)?,
            call_id: r.get(2)?,
            seq: r.get(3)?,
            payload: r.get(4)?,
        })
    })?;
    rows.collect()
}

fn read_call(db: &Connection, call_id: &str) -> rusqlite::Result<Option<CallRow>> {
    db.query_row(
        "SELECT call_id, seq, direction, tel, telname, called, calledname, anonymous, ring_at,
                answer_at, end_at, duration_s, result, company, name, ext_id, vars, recording,
                state, wrapup, crm_error, wrapup_at
         FROM calls WHERE call_id = ?1",
        [call_id],
        |r| {
            Ok(CallRow {
                call_id: r.get(0)?,
                seq: r.get(1)?,
                direction: r.get(2)?,
                tel: r.get(3)?,
                telname: r.get(4)?,
                called: r.get(5)?,
                calledname: r.get(6)?,
                anonymous: r.get(7)?,
                ring_at: r.get(8)?,
                answer_at: r.get(9)?,
                end_at: r.get(10)?,
                duration_s: r.get(11)?,
                result: r.get(12)?,
                company: r.get(13)?,
                name: r.get(14)?,
                ext_id: r.get(15)?,
                vars: r.get(16)?,
                recording: r.get(17)?,
                state: r.get(18)?,
                wrapup: r.get(19)?,
                crm_error: r.get(20)?,
                wrapup_at: r.get(21)?,
            })
        },
    )
    .optional()
}

/// The outbox's length.
pub fn backlog(db: &Connection) -> u64 {
    db.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))
        .map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

fn set_meta(db: &Connection, key: &str, value: &str) {
    let r = db.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    );
    if let Err(e) = r {
        tracing::debug!("central log: meta {key}: {e}");
    }
}

const UPSERT_CALL: &str = "INSERT INTO ctiphone.calls (agent, call_id, seq, direction, tel, telname, called,
        calledname, anonymous, ring_at, answer_at, end_at, duration_s, result, company, name, ext_id,
        vars, recording, state, wrapup, crm_error, wrapup_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::timestamptz, $11::text::timestamptz,
        $12::text::timestamptz, $13, $14, $15, $16, $17, $18::text::jsonb, $19, $20, $21, $22,
        $23::text::timestamptz)
    ON CONFLICT (agent, call_id) DO UPDATE SET seq = EXCLUDED.seq, direction = EXCLUDED.direction,
        tel = EXCLUDED.tel, telname = EXCLUDED.telname, called = EXCLUDED.called,
        calledname = EXCLUDED.calledname, anonymous = EXCLUDED.anonymous, ring_at = EXCLUDED.ring_at,
        answer_at = EXCLUDED.answer_at, end_at = EXCLUDED.end_at, duration_s = EXCLUDED.duration_s,
        result = EXCLUDED.result, company = EXCLUDED.company, name = EXCLUDED.name,
        ext_id = EXCLUDED.ext_id, vars = EXCLUDED.vars, recording = EXCLUDED.recording,
        state = EXCLUDED.state, wrapup = EXCLUDED.wrapup, crm_error = EXCLUDED.crm_error,
        wrapup_at = EXCLUDED.wrapup_at, received_at = now()
    WHERE ctiphone.calls.seq < EXCLUDED.seq";

const INSERT_STATUS: &str = "INSERT INTO ctiphone.status_changes (agent, seq, at, status, reason)
    VALUES ($1, $2, $3::text::timestamptz, $4, $5) ON CONFLICT (agent, seq) DO NOTHING";

/// Sends one batch in one transaction.
async fn deliver(
    client: &mut tokio_postgres::Client,
    agent: &str,
    calls: &[CallRow],
    statuses: &[(i64, serde_json::Value)],
) -> Result<(), String> {
    let tx = client.transaction().await.map_err(|e| describe(&e))?;
    if !calls.is_empty() {
        let st = tx.prepare(UPSERT_CALL).await.map_err(|e| describe(&e))?;
        for c in calls {
            tx.execute(
                &st,
                &[
                    &agent,
                    &c.call_id,
                    &c.seq,
                    &c.direction,
                    &c.tel,
                    &c.telname,
                    &c.called,
                    &c.calledname,
                    &c.anonymous,
                    &c.ring_at,
                    &c.answer_at,
                    &c.end_at,
                    &c.duration_s,
                    &c.result,
                    &c.company,
                    &c.name,
                    &c.ext_id,
                    &c.vars,
                    &c.recording,
                    &c.state,
                    &c.wrapup,
                    &c.crm_error,
                    &c.wrapup_at,
                ],
            )
            .await
            .map_err(|e| format!("call {}: {}", crate::app::Logged(&c.call_id), describe(&e)))?;
        }
    }
    if !statuses.is_empty() {
        let st = tx.prepare(INSERT_STATUS).await.map_err(|e| describe(&e))?;
        for (seq, p) in statuses {
            let s = |k: &str| p[k].as_str().unwrap_or("").to_owned();
            tx.execute(&st, &[&agent, seq, &s("at"), &s("status"), &s("reason")])
                .await
                .map_err(|e| describe(&e))?;
        }
    }
    tx.commit().await.map_err(|e| describe(&e))
}

/// Where the shipper stands, for the bus.
struct Reporter {
    bus: WeakBus,
    error: String,
    backlog: u64,
    said: Option<Instant>,
}

impl Reporter {
    fn report(&mut self, backlog: u64, error: &str) {
        let changed_state = error.is_empty() != self.error.is_empty();
        let due = self.said.is_none_or(|t| t.elapsed() >= REPORT_EVERY);
        let worth =
            changed_state || (error != self.error) || (backlog != self.backlog && (due || backlog == 0));
        if !worth {
            return;
        }
        let Some(bus) = self.bus.upgrade() else { return };
        if changed_state {
            let message = if error.is_empty() {
                format!("central log: PostgreSQL takes the calls again; {backlog} changes left to send")
            } else {
                format!(
                    "central log: PostgreSQL is not taking the calls ({error}); the calls go on and \
                     {backlog} changes wait in the outbox"
                )
            };
            if error.is_empty() {
                tracing::info!("{message}");
            } else {
                tracing::warn!("{message}");
            }
            bus.publish(Event::Phone(PhoneEvent::Warning { message }));
        }
        bus.publish(Event::Phone(PhoneEvent::Central {
            backlog,
            error: error.to_owned(),
        }));
        self.error = error.to_owned();
        self.backlog = backlog;
        self.said = Some(Instant::now());
    }
}

async fn run(settings: Settings, wake: Arc<Notify>, stop: Arc<AtomicBool>, bus: WeakBus) {
    let db = match open_local(&settings.db) {
        Ok(db) => db,
        Err(e) => {
            tracing::error!("central log: the history database: {e}; nothing is sent");
            return;
        }
    };
    let mut client: Option<tokio_postgres::Client> = None;
    let mut pause = RETRY_FIRST;
    let mut reporter = Reporter {
        bus,
        error: String::new(),
        backlog: 0,
        said: None,
    };
    reporter.report(backlog(&db), "");
    loop {
        let batch = match read_batch(&db) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("central log: reading the outbox: {e}");
                tokio::time::sleep(RETRY_FIRST).await;
                continue;
            }
        };
        if batch.is_empty() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            reporter.report(0, "");
            let _ = tokio::time::timeout(IDLE_CHECK, wake.notified()).await;
            continue;
        }
        match round(&settings, &db, &mut client, &batch).await {
            Ok(()) => {
                pause = RETRY_FIRST;
                set_meta(&db, "central.last_delivery", &now());
                set_meta(&db, "central.last_error", "");
                reporter.report(backlog(&db), "");
            }
            Err(e) => {
                client = None;
                set_meta(&db, "central.last_error", &format!("{} {e}", now()));
                reporter.report(backlog(&db), &e);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // Woken early only to stop: new calls are no reason to hammer a server away.
                let end = Instant::now() + pause;
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let _ = tokio::time::timeout(end - Instant::now(), wake.notified()).await;
                }
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Connects when needed, sends one batch and deletes it from the outbox.
async fn round(
    settings: &Settings,
    db: &Connection,
    client: &mut Option<tokio_postgres::Client>,
    batch: &[Entry],
) -> Result<(), String> {
    if client.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
        let mut c = settings.target.connect().await?;
        super::schema::migrate(&mut c).await?;
        *client = Some(c);
    }
    let Some(c) = client.as_mut() else {
        return Err("not connected".into());
    };
    // The newest state of each call named, once; status changes in order.
    let mut seen = std::collections::BTreeSet::new();
    let mut calls = Vec::new();
    let mut statuses = Vec::new();
    for e in batch {
        match e.kind.as_str() {
            "call" => {
                if seen.insert(e.call_id.clone())
                    && let Some(row) = read_call(db, &e.call_id).map_err(|e| format!("history: {e}"))?
                {
                    calls.push(row);
                }
            }
            "status" => match serde_json::from_str(&e.payload) {
                Ok(v) => statuses.push((e.seq, v)),
                Err(err) => tracing::warn!("central log: outbox entry {} unreadable ({err}); skipped", e.id),
            },
            other => tracing::warn!(
                "central log: outbox entry {} of unknown kind {other:?}; skipped",
                e.id
            ),
        }
    }
    // A server that stopped answering (a black-holed link, a stuck lock) is given up on, and
    // the batch sent again on a new connection: the upsert makes that harmless.
    tokio::time::timeout(DELIVER_TIMEOUT, deliver(c, &settings.agent, &calls, &statuses))
        .await
        .map_err(|_| {
            format!(
                "PostgreSQL did not commit a batch in {} s",
                DELIVER_TIMEOUT.as_secs()
            )
        })??;
    let last = batch.last().map_or(0, |e| e.id);
    db.execute("DELETE FROM outbox WHERE id <= ?1", [last])
        .map_err(|e| format!("history: {e}"))?;
    Ok(())
}

/// `ctiphone history sync`: the outbox and the last delivery, as the database says.
#[derive(Debug, serde::Serialize)]
pub struct SyncState {
    pub outbox: u64,
    pub oldest_queued: Option<String>,
    pub last_delivery: Option<String>,
    pub last_error: Option<String>,
}

/// Reads the sync state of the history database at `path`.
pub fn sync_state(path: &std::path::Path) -> Result<SyncState, String> {
    let db = crate::history::open_db(path)?;
    let meta = |k: &str| -> Option<String> {
        db.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| {
            r.get::<_, String>(0)
        })
        .optional()
        .ok()
        .flatten()
        .filter(|v| !v.is_empty())
    };
    let oldest = db
        .query_row("SELECT MIN(queued_at) FROM outbox", [], |r| {
            r.get::<_, Option<String>>(0)
        })
        .map_err(|e| e.to_string())?;
    Ok(SyncState {
        outbox: backlog(&db),
        oldest_queued: oldest,
        last_delivery: meta("central.last_delivery"),
        last_error: meta("central.last_error"),
    })
}
