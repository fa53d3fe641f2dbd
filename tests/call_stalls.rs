//! Nothing blocks signalling: while something the phone waits for hangs, another call still
//! gets its 180 Ringing within 300 ms of its INVITE (SIPp's own timestamps):
//!
//! - (a) a registrar over TCP whose connect never completes: a loopback listener with a full
//!   backlog (listen(0) and one connection nobody accepts: the kernel drops further SYNs);
//! - (b) a microphone that takes 2 s to open: `--audio-in` names a FIFO, whose open for reading
//!   blocks until the test opens the writing end, 2 s after the first call is answered;
//! - (c) the history database held locked (`BEGIN EXCLUSIVE` by another process) for 5 s:
//!   calls ring on time, and afterwards every call has its row.

mod common;

use std::ffi::CString;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use common::calls::{
    self, config_call_waiting, config_with, history_all, history_db, invite_to_response, reply_times,
};
use common::peers::{Phone, account_toml, ms, secs};

/// The most a call may wait for its 180 while the phone waits on something else.
/// 300 ms: the stalls this catches are seconds long (1.4 to 4.6 s measured before the call
/// layer ran them beside its loop); a debug build on a loaded 2-core CI machine needs headroom.
const LIMIT: f64 = 0.300;

/// What [`timings`] reads of one call: (method, reply ms) per request, INVITE -> 180 in
/// seconds, the Call-ID.
type Timings = (Vec<(String, f64)>, f64, String);

/// The phone's reply times (ms) to the requests of a SIPp run that rang and was cancelled
/// (`uac_cancel.xml`: the INVITE's first response, the CANCEL's), the INVITE -> 180 time and
/// the Call-ID. Fails unless the scenario succeeded.
#[track_caller]
fn timings(r: &common::peers::SippResult) -> Timings {
    r.assert_ok();
    let ring = invite_to_response(r, 180);
    assert_eq!(ring.len(), 1, "{}", r.report());
    let replies: Vec<(String, f64)> = reply_times(r)
        .into_iter()
        .map(|(m, t)| (m, (t * 1000.0).round()))
        .collect();
    (replies, ring[0].1, ring[0].0.clone())
}

/// Asserts every reply and 180 came within [`LIMIT`].
#[track_caller]
fn assert_timely(what: &str, calls: &[Timings]) {
    let late = calls
        .iter()
        .any(|(replies, ring, _)| *ring > LIMIT || replies.iter().any(|(_, t)| *t > LIMIT * 1000.0));
    assert!(
        !late,
        "{what}: INVITE -> 180 (ms) and the phone's first reply to each request (ms), per \
         call: {:?} (at most {} ms each)",
        calls
            .iter()
            .map(|(r, ring, _)| ((ring * 1000.0).round(), r.clone()))
            .collect::<Vec<_>>(),
        LIMIT * 1000.0
    );
}

/// A TCP listener on 127.0.0.1 whose connects never complete: backlog 0 and one connection
/// queued that nobody accepts, so the kernel drops every further SYN. Keep all three alive.
fn black_hole() -> (TcpListener, TcpStream, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen(2) on our own listening socket, changing its backlog.
    let rc = unsafe { libc::listen(l.as_raw_fd(), 0) };
    assert_eq!(rc, 0, "listen(0)");
    let addr = l.local_addr().unwrap();
    let queued = TcpStream::connect(addr).expect("the one queued connection");
    let probe = TcpStream::connect_timeout(&addr, ms(300));
    assert!(
        probe.is_err(),
        "the full-backlog listener {addr} still completes connects: this test needs SYNs dropped"
    );
    (l, queued, addr)
}

#[test]
fn a_tcp_registrar_that_never_connects_does_not_delay_another_calls_180() {
    let (_l, _queued, registrar) = black_hole();
    let cfg = config_with(
        &account_toml("1001", "pw1001", &registrar.to_string(), "tcp", 60),
        "",
    );
    let p = Phone::start(&cfg, &[]);
    let start = Instant::now();
    // The phone keeps trying to register (and to connect) meanwhile: calls over 8 s.
    let mut got = Vec::new();
    for at in [0.3, 2.3, 4.3, 6.3, 8.3] {
        let due = start + Duration::from_secs_f64(at);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let r = calls::call(&p, "uac_cancel.xml", &["-t", "t1"]).wait(secs(25));
        got.push(timings(&r));
    }
    assert_timely("while the registrar's TCP connect hangs", &got);
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a valid C string.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

/// At `at`, opens the FIFO's writing end (once a reader waits, for up to 5 s more) and writes
/// `bytes` into it.
fn feed_fifo_at(path: &Path, at: Instant, bytes: Vec<u8>) -> std::thread::JoinHandle<bool> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        if let Some(w) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        let end = Instant::now() + secs(5);
        loop {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
            {
                Ok(mut f) => {
                    // SAFETY: fcntl(2) on our own open file: back to blocking writes.
                    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, 0) };
                    return f.write_all(&bytes).is_ok();
                }
                // ENXIO: no reader yet.
                Err(_) if Instant::now() < end => std::thread::sleep(ms(20)),
                Err(_) => return false,
            }
        }
    })
}

#[test]
fn a_microphone_slow_to_open_does_not_delay_another_calls_180() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("mic.fifo");
    mkfifo(&fifo);
    let wav = dir.path().join("tone.wav");
    common::tone(&wav, 440.0, 8000, 1);
    let mic = format!("--audio-in={}", fifo.display());
    let mut p = Phone::start(&config_call_waiting(""), &[&mic]);
    let first = calls::call(&p, "uac_wait_bye.xml", &[]);
    let inc = p.expect("incoming", secs(5));
    p.send(json!({"cmd": "answer"}));
    let answered = Instant::now();
    let feeder = feed_fifo_at(&fifo, answered + secs(2), std::fs::read(&wav).unwrap());
    // While the microphone opens: a second call.
    std::thread::sleep(ms(500));
    let second = calls::call(&p, "uac_cancel.xml", &[]);
    let r = second.wait(secs(25));
    let fed = feeder.join().unwrap();
    assert_timely(
        "while the first call's microphone takes 2 s to open",
        &[timings(&r)],
    );
    assert!(fed, "the phone never opened its microphone (the FIFO)");
    p.expect_where("answered", secs(5), |v| v["call"] == inc["call"]);
    p.send(json!({"cmd": "hangup", "call": inc["call"]}));
    p.expect_where("ended", secs(5), |v| v["call"] == inc["call"]);
    first.wait(secs(10)).assert_ok();
}

/// Holds the SQLite database at `db` with `BEGIN EXCLUSIVE` for `secs` seconds (a python3
/// process); returns once the lock is held.
fn lock_db(db: &Path, secs: f64) -> std::process::Child {
    let script = "import sqlite3, sys, time\n\
                  c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)\n\
                  c.execute('BEGIN EXCLUSIVE')\n\
                  print('locked', flush=True)\n\
                  time.sleep(float(sys.argv[2]))\n\
                  c.execute('COMMIT')\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(db)
        .arg(secs.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (the test locks the history with it)");
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked", "python3 could not lock {}", db.display());
    child
}

#[test]
fn a_locked_history_does_not_delay_a_calls_180_and_every_call_gets_its_row() {
    let p = Phone::start(&config_call_waiting(""), &[]);
    let db = history_db(p.home());
    assert!(db.is_file(), "no history database at {}", db.display());
    let mut locker = lock_db(&db, 5.0);
    let locked = Instant::now();
    // Two calls while it is locked, the second 1 s after the lock, whatever became of the first.
    let first = calls::call(&p, "uac_cancel.xml", &[]);
    let due = locked + secs(1);
    if let Some(w) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(w);
    }
    let second = calls::call(&p, "uac_cancel.xml", &[]);
    let placed = locked.elapsed();
    let (r1, r2) = (first.wait(secs(25)), second.wait(secs(25)));
    let _ = locker.wait();
    assert!(
        placed < secs(4),
        "the second call was placed {placed:?} after the lock"
    );
    let got = [timings(&r1), timings(&r2)];
    assert_timely("while the history is locked", &got);
    let (id1, id2) = (got[0].2.clone(), got[1].2.clone());
    // Once the lock is gone, both calls have their rows.
    let end = Instant::now() + secs(15);
    loop {
        let rows = history_all(p.home());
        let has = |id: &str| rows.iter().filter(|r| r["call_id"] == id).count();
        if has(&id1) == 1 && has(&id2) == 1 {
            break;
        }
        assert!(
            Instant::now() < end,
            "15 s after the lock: rows for the first call {}, the second {} (expected 1 each): \
             {rows:#?}",
            has(&id1),
            has(&id2)
        );
        std::thread::sleep(ms(200));
    }
}
