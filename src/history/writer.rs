//! The history's bus subscriber: an OS thread that receives every event in order (blocking)
//! and writes it. A write the database refuses as busy or locked (another process in a
//! transaction) is retried with backoff until it is taken, the later events waiting their
//! turn on the bus's queue (whose depth the bus reports); any other failure is logged with
//! the event's Call-ID. Refused calls are stored at most [`REFUSED_MAX`] per
//! [`REFUSED_WINDOW`]; the excess is counted and reported in the log and as a `warning` on the
//! bus, at most once per window.

use std::collections::VecDeque;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use rusqlite::ErrorCode;

use super::{History, call_id};
use crate::app::{Bus, CallEvent, CallEventKind, Closer, Event, Logged, PhoneEvent, Subscription, WeakBus};

/// The most refused calls stored per [`REFUSED_WINDOW`].
pub const REFUSED_MAX: usize = 30;
/// The window of [`REFUSED_MAX`], and the least time between two reports of the excess.
pub const REFUSED_WINDOW: Duration = Duration::from_secs(10);

/// How long one write waits in SQLite for a lock before the writer's own backoff takes over.
const BUSY_TIMEOUT: Duration = Duration::from_millis(200);
/// The first pause after a busy write; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often a database still locked is reported again.
const LOCKED_REPORT: Duration = Duration::from_secs(10);

/// The history's writer thread, from [`History::subscribe`].
#[derive(Debug)]
pub struct Writer {
    closer: Closer,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl History {
    /// Subscribes to the bus (as `history`) and writes every event on a thread of its own
    /// until the bus closes or [`Writer::finish`]. The bus is kept only weakly, for the
    /// warnings this writer publishes.
    pub fn subscribe(self, bus: &Bus) -> Result<Writer, String> {
        self.db
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| format!("history: {e}"))?;
        let rx = bus.subscribe_as("history");
        let closer = rx.closer();
        let (tx, done) = tokio::sync::oneshot::channel();
        let worker = Worker {
            history: self,
            rx,
            bus: bus.downgrade(),
            refused: RefusedLimit::new(REFUSED_MAX, REFUSED_WINDOW),
        };
        std::thread::Builder::new()
            .name("history".into())
            .spawn(move || {
                worker.run();
                // The receiver may be gone (nobody waits for the end): nothing to tell then.
                let _ = tx.send(());
            })
            .map_err(|e| format!("history: cannot start its thread: {e}"))?;
        Ok(Writer { closer, done })
    }
}

impl Writer {
    /// Stops the writer once it has written every event published before this call, waiting
    /// at most `within` (a database locked that long keeps the rest: those calls' rows stay
    /// open and read `interrupted` at the next start, which the log says).
    pub async fn finish(self, within: Duration) {
        self.closer.close();
        if tokio::time::timeout(within, self.done).await.is_err() {
            tracing::error!(
                "history: {} events were still waiting for the database after {:.1} s; \
                 the calls left open will read `interrupted` at the next start",
                self.closer.backlog() + 1,
                within.as_secs_f64()
            );
        }
    }
}

/// Is this SQLite's "try again later" (another connection holds the lock)?
fn busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

struct Worker {
    history: History,
    rx: Subscription,
    bus: WeakBus,
    refused: RefusedLimit,
}

impl Worker {
    fn run(mut self) {
        loop {
            let next = match self.refused.due() {
                Some(at) => self.rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                None => self.rx.recv_blocking().ok_or(RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(ev) => self.handle(&ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.report_refused(false);
        }
        self.report_refused(true);
    }

    /// Writes one event, retrying while the database is busy.
    fn handle(&mut self, ev: &Event) {
        if let Event::Call(CallEvent {
            kind: CallEventKind::Refused { .. },
            ..
        }) = ev
            && !self.refused.allow(Instant::now())
        {
            return;
        }
        let mut pause = RETRY_FIRST;
        let mut locked: Option<(Instant, Instant)> = None;
        loop {
            match self.history.write(ev) {
                Ok(()) => break,
                Err(e) if busy(&e) => {
                    let now = Instant::now();
                    match locked {
                        None => {
                            tracing::warn!(
                                call = %Logged(call_id(ev)),
                                "history: the database is locked ({e}); retrying until it is free, \
                                 {} more events wait in order",
                                self.rx.backlog()
                            );
                            locked = Some((now, now));
                        }
                        Some((since, told)) if now.duration_since(told) >= LOCKED_REPORT => {
                            tracing::warn!(
                                "history: the database is still locked after {:.0} s; {} more events wait",
                                now.duration_since(since).as_secs_f64(),
                                self.rx.backlog()
                            );
                            locked = Some((since, now));
                        }
                        Some(_) => {}
                    }
                    self.report_refused(false);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(RETRY_MAX);
                }
                Err(e) => {
                    tracing::warn!(
                        call = %Logged(call_id(ev)),
                        "history: cannot write the {} event: {e}",
                        event_name(ev)
                    );
                    break;
                }
            }
        }
        if let Some((since, _)) = locked {
            tracing::warn!(
                "history: the database took writes again after {:.1} s; {} events to catch up",
                since.elapsed().as_secs_f64(),
                self.rx.backlog()
            );
        }
    }

    /// Reports the refused calls not stored, when a report is due (or all of them, `closing`).
    fn report_refused(&mut self, closing: bool) {
        let n = if closing {
            self.refused.take_all()
        } else {
            self.refused.take_report(Instant::now())
        };
        let Some(n) = n else { return };
        let message = refused_message(n);
        tracing::warn!("history: {message}");
        if let Some(bus) = self.bus.upgrade() {
            bus.publish(Event::Phone(PhoneEvent::Warning {
                message: format!("call history: {message}"),
            }));
        }
    }
}

/// What a report of `n` refused calls not stored says.
fn refused_message(n: u64) -> String {
    format!(
        "{n} refused call{} not stored (at most {REFUSED_MAX} are kept per {} s)",
        if n == 1 { " was" } else { "s were" },
        REFUSED_WINDOW.as_secs()
    )
}

fn event_name(ev: &Event) -> &'static str {
    match ev {
        Event::Call(c) => c.kind.name(),
        Event::Cti(_) => "CTI",
        Event::Phone(_) => "phone",
    }
}

/// At most `max` refused calls stored in any `window`; those over it are counted, and the
/// count is due for a report at once the first time, then at most once per `window`.
#[derive(Debug)]
struct RefusedLimit {
    max: usize,
    window: Duration,
    /// When the calls stored in the last `window` were.
    stored: VecDeque<Instant>,
    /// Not stored and not reported yet.
    unreported: u64,
    last_report: Option<Instant>,
}

impl RefusedLimit {
    fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            stored: VecDeque::with_capacity(max),
            unreported: 0,
            last_report: None,
        }
    }

    /// May a refused call be stored at `now`? One that may not is counted.
    fn allow(&mut self, now: Instant) -> bool {
        while self
            .stored
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            self.stored.pop_front();
        }
        if self.stored.len() < self.max {
            self.stored.push_back(now);
            true
        } else {
            self.unreported += 1;
            false
        }
    }

    /// When the calls not stored are next to be reported (none: nothing to report).
    fn due(&self) -> Option<Instant> {
        if self.unreported == 0 {
            return None;
        }
        Some(self.last_report.map_or_else(Instant::now, |t| t + self.window))
    }

    /// The count to report at `now`, if a report is due.
    fn take_report(&mut self, now: Instant) -> Option<u64> {
        let due = self.unreported > 0
            && self
                .last_report
                .is_none_or(|t| now.saturating_duration_since(t) >= self.window);
        if !due {
            return None;
        }
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }

    /// Whatever is unreported, due or not (the writer stops).
    fn take_all(&mut self) -> Option<u64> {
        (self.unreported > 0).then(|| std::mem::take(&mut self.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{CallParams, CallResult, CtiEvent};

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn the_limit_stores_30_per_window_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut l = RefusedLimit::new(30, secs(10.0));
        let stored = (0..100).filter(|_| l.allow(t0)).count();
        assert_eq!(stored, 30);
        assert!(l.due().is_some_and(|d| d <= Instant::now()), "due at once");
        assert_eq!(l.take_report(t0), Some(70), "the first excess is told at once");
        assert_eq!(l.due(), None);
        // More refused in the same window: counted, told no sooner than 10 s after.
        assert!(!l.allow(t0 + secs(5.0)));
        assert!(!l.allow(t0 + secs(9.9)));
        assert_eq!(l.due(), Some(t0 + secs(10.0)));
        assert_eq!(l.take_report(t0 + secs(9.9)), None);
        // The window slides: the 30 stored at t0 no longer count 10 s later.
        assert!(l.allow(t0 + secs(10.0)));
        assert_eq!(l.take_report(t0 + secs(10.0)), Some(2));
        assert_eq!(l.take_report(t0 + secs(25.0)), None, "nothing new: no report");
        let more = (0..40).filter(|_| l.allow(t0 + secs(15.0))).count();
        assert_eq!(more, 29, "one of the 30 is still in the window");
        assert_eq!(
            l.take_report(t0 + secs(15.0)),
            None,
            "the last report was at 10 s"
        );
        assert_eq!(l.take_report(t0 + secs(20.0)), Some(11));
        assert!(
            l.allow(t0 + secs(20.0)),
            "the one stored at 10 s has left the window"
        );
        assert!(!l.allow(t0 + secs(20.0)));
        assert_eq!(l.take_all(), Some(1), "a stopping writer tells what is left");
        assert_eq!(l.take_all(), None);
    }

    #[test]
    fn a_steady_trickle_under_the_limit_is_all_stored() {
        let t0 = Instant::now();
        let mut l = RefusedLimit::new(30, secs(10.0));
        // One every 0.4 s for ten minutes: 25 per window.
        assert!((0..1500).all(|i| l.allow(t0 + secs(0.4 * f64::from(i)))));
        assert_eq!(l.take_all(), None);
    }

    #[test]
    fn refused_message_counts() {
        assert_eq!(
            refused_message(1),
            "1 refused call was not stored (at most 30 are kept per 10 s)"
        );
        assert_eq!(
            refused_message(70),
            "70 refused calls were not stored (at most 30 are kept per 10 s)"
        );
    }

    /// Waits until `f` holds or `within` passes.
    async fn until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if f() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        f()
    }

    #[tokio::test]
    async fn a_flood_of_refused_calls_keeps_30_rows_and_says_how_many_were_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("h.db");
        let bus = Bus::new();
        let mut watch = bus.subscribe_as("test");
        let writer = History::open(&path)
            .and_then(|h| h.subscribe(&bus))
            .expect("the writer");
        for i in 0..100 {
            let p = CallParams::incoming(&format!("flood-{i}"), "0311112222", "0312345678");
            bus.call(CallEvent::refused(p, CallResult::Busy));
        }
        // A real call after the flood is stored as ever.
        let p = CallParams::incoming("real", "0322223333", "0312345678");
        bus.call(CallEvent::ring(p.clone()));
        bus.call(CallEvent::hangup(p, false));
        writer.finish(Duration::from_secs(10)).await;
        let h = History::open(&path).expect("reopen");
        let rows = h.list(None, None, 1000).expect("rows");
        assert_eq!(rows.len(), 31, "30 refused and the real call");
        let refused: Vec<_> = rows.iter().filter(|r| r.call_id.starts_with("flood-")).collect();
        assert_eq!(refused.len(), 30);
        for r in &refused {
            assert_eq!(r.result, Some(CallResult::Busy), "{r:?}");
            assert_eq!(
                (r.state.as_str(), r.direction.as_str()),
                ("closed", "in"),
                "{r:?}"
            );
            assert_eq!((r.answer_at.as_deref(), r.duration_s), (None, Some(0.0)), "{r:?}");
            assert_eq!(r.end_at.as_deref(), Some(r.ring_at.as_str()), "{r:?}");
            assert_eq!((r.tel.as_str(), r.called.as_str()), ("0311112222", "0312345678"));
        }
        assert!(
            refused.iter().all(|r| {
                let n: usize = r.call_id["flood-".len()..].parse().unwrap_or(usize::MAX);
                n < 30
            }),
            "the first 30 are the ones kept"
        );
        // Every refused call not stored is told on the bus.
        let mut told = 0;
        let mut warned = Vec::new();
        let got_all = until(Duration::from_secs(5), || {
            while let Ok(ev) = watch.try_recv() {
                if let Event::Phone(PhoneEvent::Warning { message }) = ev {
                    let n: u64 = message
                        .strip_prefix("call history: ")
                        .and_then(|m| m.split(' ').next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    told += n;
                    warned.push(message);
                }
            }
            told >= 70
        })
        .await;
        assert!(got_all, "told {told}: {warned:?}");
        assert_eq!(told, 70, "{warned:?}");
    }

    #[tokio::test]
    async fn a_database_locked_for_5_s_delays_writes_and_loses_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("h.db");
        let bus = Bus::new();
        let writer = History::open(&path)
            .and_then(|h| h.subscribe(&bus))
            .expect("the writer");
        // Another process takes the database for 5 s.
        let locker = rusqlite::Connection::open(&path).expect("locker");
        locker.execute_batch("BEGIN EXCLUSIVE").expect("exclusive");
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            locker.execute_batch("COMMIT").expect("commit");
        });
        const CALLS: usize = 20;
        let started = Instant::now();
        for i in 0..CALLS {
            let mut p = CallParams::incoming(&format!("c{i}"), &format!("03{i:08}"), "0312345678");
            p.telname = format!("Caller {i}");
            bus.call(CallEvent::ring(p.clone()));
            let answered = i % 2 == 0;
            if answered {
                bus.call(CallEvent::answer(p.clone()));
            }
            bus.publish(Event::Cti(CtiEvent::SearchResult {
                call_id: p.id.clone(),
                vars: [("COMPANY".to_owned(), format!("Company {i}"))].into(),
            }));
            let mut end = p.clone();
            end.extra.insert("DURATION".into(), i.to_string());
            end.set_result(if answered {
                CallResult::Answered
            } else {
                CallResult::Missed
            });
            bus.call(CallEvent::hangup(end, answered));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "publishing waited for the locked database"
        );
        // While locked, nothing is written (readers still read: WAL).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let reader = rusqlite::Connection::open(&path).expect("reader");
        let count = |c: &rusqlite::Connection| -> i64 {
            c.query_row("SELECT COUNT(*) FROM calls WHERE state = 'closed'", [], |r| {
                r.get(0)
            })
            .unwrap_or(-1)
        };
        assert_eq!(count(&reader), 0, "written through an exclusive lock?");
        holder.join().expect("the lock holder");
        let all = until(Duration::from_secs(10), || count(&reader) == CALLS as i64).await;
        assert!(
            all,
            "{} of {CALLS} calls closed after the release",
            count(&reader)
        );
        writer.finish(Duration::from_secs(5)).await;
        let h = History::open(&path).expect("reopen");
        for i in 0..CALLS {
            let r = h.get(&format!("c{i}")).expect("read").expect("the row");
            let answered = i % 2 == 0;
            assert_eq!(r.tel, format!("03{i:08}"));
            assert_eq!(r.telname, format!("Caller {i}"));
            assert_eq!(r.company, format!("Company {i}"));
            assert_eq!(r.answer_at.is_some(), answered, "{r:?}");
            assert_eq!(r.duration_s, Some(i as f64));
            let want = if answered {
                CallResult::Answered
            } else {
                CallResult::Missed
            };
            assert_eq!((r.result, r.state.as_str()), (Some(want), "closed"), "{r:?}");
        }
    }

    #[test]
    fn only_busy_and_locked_are_retried() {
        let busy_err =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        let locked =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_LOCKED), None);
        let full =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None);
        assert!(busy(&busy_err) && busy(&locked));
        assert!(!busy(&full) && !busy(&rusqlite::Error::QueryReturnedNoRows));
    }
}
