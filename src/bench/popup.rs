//! Ring → popup drawn with the CRM's data, end to end in a real terminal: `ctiphone` (the TUI)
//! runs in tmux, its CTI engine searches a CRM of the bench's own on loopback, and the bench's
//! caller rings it. Each call is timed from the INVITE leaving the caller to the CRM's values
//! in the terminal's output, as tmux passes it to a control-mode client (`tmux -C`, `%output`
//! lines, read on a thread that stamps each line as it arrives); the CRM stamps each search
//! from its request read to its reply written, so the phone's own share is the total minus the
//! CRM's time. The method's floor is measured in the same run, interleaved: a marker written to
//! `cat` in a second tmux window, timed the same way from the write to its `%output`.
//!
//! Every value the CRM returns is new for each call (a different letter repeated), so the
//! terminal has to draw all of it: ratatui writes only the cells that changed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Caller, free_udp_port, percentile, which};

/// The figures of one run, each per call, in milliseconds.
pub struct PopupFigures {
    /// INVITE sent → the CRM's values in the terminal's output.
    pub total_ms: Vec<f64>,
    /// The CRM's own time for each of those searches (request read → reply written).
    pub crm_ms: Vec<f64>,
    /// `total − crm`, call by call: the phone's share (with the method's floor in it).
    pub phone_ms: Vec<f64>,
    /// A marker written to `cat` in the same tmux server → seen in its output.
    pub floor_ms: Vec<f64>,
    /// Calls whose values never showed within 5 s.
    pub failed: usize,
    /// The last call's values were on the screen (`tmux capture-pane`), not only in the output.
    pub on_screen: bool,
}

impl PopupFigures {
    /// Median and p99 rows: (name, values).
    pub fn rows(&self) -> Vec<(&'static str, Option<f64>)> {
        vec![
            (
                "INVITE -> CRM values on screen, median",
                percentile(&self.total_ms, 50.0),
            ),
            (
                "INVITE -> CRM values on screen, p99",
                percentile(&self.total_ms, 99.0),
            ),
            (
                "  of which the CRM's own reply, median",
                percentile(&self.crm_ms, 50.0),
            ),
            (
                "  the phone's share (total - CRM), median",
                percentile(&self.phone_ms, 50.0),
            ),
            (
                "  the phone's share (total - CRM), p99",
                percentile(&self.phone_ms, 99.0),
            ),
            (
                "  method floor (cat in tmux), median",
                percentile(&self.floor_ms, 50.0),
            ),
        ]
    }
}

/// What the bench's CRM saw of one search: the letter it answered with and its own time.
struct Search {
    letter: u8,
    own: Duration,
}

/// A CRM on loopback (HTTP/1.1, keep-alive): `POST /api/login` gives a token, `GET
/// /api/customers` the record of the current call, whose values are the letter `current`
/// names, repeated, after `delay` (a CRM's own work). Each search is stamped from its request
/// read to its reply written.
struct BenchCrm {
    addr: SocketAddr,
    current: Arc<AtomicUsize>,
    searches: Arc<Mutex<Vec<Search>>>,
}

/// The letter of call `i`: never the same twice in a row.
fn letter(i: usize) -> u8 {
    b'A' + (i % 26) as u8
}

/// The value the CRM answers for call `i`, and what the bench looks for on the screen.
fn marker(i: usize) -> String {
    String::from_utf8(vec![letter(i); 12]).unwrap_or_default()
}

impl BenchCrm {
    fn start(delay: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let current = Arc::new(AtomicUsize::new(0));
        let searches = Arc::new(Mutex::new(Vec::new()));
        let (cur, log) = (current.clone(), searches.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (cur, log) = (cur.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &cur, &log, delay));
            }
        });
        Ok(Self {
            addr,
            current,
            searches,
        })
    }
}

/// One connection: requests read one after the other (a head, then Content-Length bytes).
fn serve(stream: TcpStream, current: &AtomicUsize, log: &Mutex<Vec<Search>>, delay: Duration) {
    let _ = stream.set_nodelay(true);
    let Ok(mut out) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let end = line == "\r\n" || line == "\n";
            head.push_str(&line);
            if end {
                break;
            }
        }
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length.min(64 * 1024)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let read = Instant::now();
        let target = head.split_whitespace().nth(1).unwrap_or("");
        let (json, search) = if target.starts_with("/api/login") {
            ("{\"token\":\"bench\"}".to_owned(), None)
        } else if target.starts_with("/api/customers") {
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            let l = letter(current.load(Ordering::SeqCst));
            let v = String::from_utf8(vec![l; 12]).unwrap_or_default();
            (
                format!("{{\"company\":\"{v}\",\"name\":\"{v}\",\"id\":\"{v}\"}}"),
                Some(l),
            )
        } else {
            ("{}".to_owned(), None)
        };
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        );
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
        if let (Some(letter), Ok(mut s)) = (search, log.lock()) {
            s.push(Search {
                letter,
                own: read.elapsed(),
            });
        }
    }
}

/// A tmux server of its own with a control-mode client: commands in, `%output` lines out
/// (stamped on arrival, octal escapes decoded).
struct Tmux {
    socket: String,
    client: Child,
    commands: ChildStdin,
    output: Receiver<(Instant, String, Vec<u8>)>,
}

impl Tmux {
    fn start(cmd: &str, cols: u16, rows: u16) -> Result<Self, String> {
        let socket = format!("ctiphone-bench-popup-{}", std::process::id());
        let mut client = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "-C", "new-session"])
            .args(["-x", &cols.to_string(), "-y", &rows.to_string(), cmd])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start tmux: {e}"))?;
        let commands = client.stdin.take().ok_or("no tmux stdin")?;
        let stdout = client.stdout.take().ok_or("no tmux stdout")?;
        let (tx, output) = channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match lines.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let at = Instant::now();
                let Some(rest) = line.strip_prefix(b"%output %") else {
                    continue;
                };
                let Some(space) = rest.iter().position(|b| *b == b' ') else {
                    continue;
                };
                let pane = String::from_utf8_lossy(&rest[..space]).into_owned();
                let data = unescape(&rest[space + 1..]);
                if tx.send((at, pane, data)).is_err() {
                    break;
                }
            }
        });
        let mut t = Self {
            socket,
            client,
            commands,
            output,
        };
        t.command(&format!("refresh-client -C {cols}x{rows}"))?;
        Ok(t)
    }

    fn command(&mut self, c: &str) -> Result<(), String> {
        writeln!(self.commands, "{c}").map_err(|e| format!("tmux: {e}"))
    }

    /// Waits until `needle` shows in pane `pane`'s output, from output that arrived after
    /// `since`; the time it arrived.
    fn wait_for(&self, pane: &str, needle: &[u8], since: Instant, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        // The end of the previous chunk: a needle may straddle two.
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (at, p, data) = self.output.recv_timeout(left).ok()?;
            if p != pane || at < since {
                continue;
            }
            tail.extend_from_slice(&data);
            if tail.windows(needle.len()).any(|w| w == needle) {
                return Some(at);
            }
            let keep = tail.len().saturating_sub(needle.len());
            tail.drain(..keep);
        }
    }

    /// The visible text of pane `target` now.
    fn capture(&self, target: &str) -> String {
        Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", target])
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
        let _ = self.client.kill();
        let _ = self.client.wait();
    }
}

/// tmux's control-mode escapes: `\ooo` for a byte below 32 and for `\`.
fn unescape(s: &[u8]) -> Vec<u8> {
    let s = s.strip_suffix(b"\n").unwrap_or(s);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && s.get(i + 1..i + 4)
                .is_some_and(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
        {
            let v = s[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Rings a `ctiphone` in tmux `calls` times (`gap_ms` apart, each cancelled once its values
/// showed), the first call (which also logs in to the CRM) not counted; the CRM answers each
/// search after `crm_ms`.
pub fn measure(calls: usize, gap_ms: u64, crm_ms: u64) -> Result<PopupFigures, String> {
    which("tmux").ok_or("tmux is not installed (apt-get install tmux)")?;
    let crm = BenchCrm::start(Duration::from_millis(crm_ms))
        .map_err(|e| format!("the bench CRM cannot start: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_udp_port().map_err(|e| e.to_string())?;
    let cfg = dir.path().join("popup.toml");
    std::fs::write(
        &cfg,
        format!(
            "[account]\nuri = \"sip:bench@127.0.0.1\"\nregistrar = \"\"\nlisten = \"127.0.0.1:{port}\"\n\
             [audio]\ninput = \"null\"\noutput = \"null\"\n{}",
            crate::demo::world::cti_config(&format!("http://{}/", crm.addr))
        ),
    )
    .map_err(|e| e.to_string())?;
    let fifo = dir.path().join("floor");
    let c_fifo = std::ffi::CString::new(fifo.display().to_string()).map_err(|e| e.to_string())?;
    // SAFETY: mkfifo reads a NUL-terminated path that lives across the call.
    if unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) } != 0 {
        return Err(format!("mkfifo: {}", std::io::Error::last_os_error()));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let cmd = format!(
        "HOME={d} XDG_DATA_HOME={d}/data XDG_CONFIG_HOME={d}/config {exe} --no-daemon --config {cfg}",
        d = dir.path().display(),
        exe = exe.display(),
        cfg = cfg.display()
    );
    let mut tmux = Tmux::start(&cmd, 120, 40)?;
    tmux.command(&format!("new-window -d \"cat {}\"", fifo.display()))?;
    // The writer end, opened once `cat` has the reader end.
    let mut floor_in = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .map_err(|e| format!("{}: {e}", fifo.display()))?;
    // The phone in %0 is listening once its first screen is drawn.
    std::thread::sleep(Duration::from_millis(1500));
    let phone: SocketAddr = format!("127.0.0.1:{port}").parse().map_err(|e| format!("{e}"))?;
    let mut caller = Caller::new().map_err(|e| e.to_string())?;
    let (called, from) = (crate::demo::world::CALLED, crate::demo::crm::KNOWN.tel);
    let mut f = PopupFigures {
        total_ms: Vec::new(),
        crm_ms: Vec::new(),
        phone_ms: Vec::new(),
        floor_ms: Vec::new(),
        failed: 0,
        on_screen: false,
    };
    for i in 0..=calls {
        // The floor: a marker through `cat` in the same tmux server.
        let m = format!("floor{i:06}{}", marker(i + 7));
        let t0 = Instant::now();
        if writeln!(floor_in, "{m}").is_ok()
            && let Some(at) = tmux.wait_for("1", m.as_bytes(), t0, Duration::from_secs(2))
            && i > 0
        {
            f.floor_ms.push(ms(at - t0));
        }
        std::thread::sleep(Duration::from_millis(gap_ms));
        // The call.
        crm.current.store(i, Ordering::SeqCst);
        let Some(ring) = caller.ring(phone, called, from) else {
            f.failed += 1;
            continue;
        };
        let seen = tmux.wait_for("0", marker(i).as_bytes(), ring.sent, Duration::from_secs(5));
        let own = crm
            .searches
            .lock()
            .ok()
            .and_then(|s| s.iter().rev().find(|s| s.letter == letter(i)).map(|s| s.own));
        match (seen, own) {
            (Some(at), Some(own)) if i > 0 => {
                let total = ms(at - ring.sent);
                f.total_ms.push(total);
                f.crm_ms.push(ms(own));
                f.phone_ms.push(total - ms(own));
            }
            (Some(_), Some(_)) => {}
            _ => f.failed += 1,
        }
        if i == calls {
            f.on_screen = tmux.capture("%0").contains(&marker(i));
        }
        caller.cancel(phone, &ring);
        std::thread::sleep(Duration::from_millis(gap_ms));
    }
    drop(floor_in);
    Ok(f)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_mode_escapes_are_decoded() {
        assert_eq!(unescape(b"AB\\015\\012C\\134\n"), b"AB\r\nC\\".to_vec());
        assert_eq!(unescape(b"x\\01"), b"x\\01".to_vec());
    }

    #[test]
    fn markers_differ_from_one_call_to_the_next() {
        for i in 0..60 {
            assert_ne!(marker(i), marker(i + 1));
            assert_eq!(marker(i).len(), 12);
        }
    }
}
