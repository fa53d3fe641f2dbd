//! The history's bus subscriber: an OS thread that receives every event in order (blocking)
//! and writes it. A write the database refuses as busy or locked (another process in a
//! transaction) is retried with backoff until it is taken, the later events waiting their
//! turn on the bus's queue (whose depth the bus reports); any other failure is logged with
//! the event's Call-ID.

use std::time::{Duration, Instant};

use rusqlite::ErrorCode;

use super::{History, call_id};
use crate::app::{Bus, Closer, Event, Logged, Subscription};

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
    /// until the bus closes or [`Writer::finish`].
    pub fn subscribe(self, bus: &Bus) -> Result<Writer, String> {
        self.db
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| format!("history: {e}"))?;
        let rx = bus.subscribe_as("history");
        let closer = rx.closer();
        let (tx, done) = tokio::sync::oneshot::channel();
        let worker = Worker { history: self, rx };
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
}

impl Worker {
    fn run(mut self) {
        while let Some(ev) = self.rx.recv_blocking() {
            self.handle(&ev);
        }
    }

    /// Writes one event, retrying while the database is busy.
    fn handle(&mut self, ev: &Event) {
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
}

fn event_name(ev: &Event) -> &'static str {
    match ev {
        Event::Call(c) => c.kind.name(),
        Event::Cti(_) => "CTI",
        Event::Phone(_) => "phone",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{CallEvent, CallParams, CallResult, CtiEvent};

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
