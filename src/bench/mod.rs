//! `ctiphone bench`: the phone measured against a peer (baresip) in the same run, on 127.0.0.1.
//! Each part starts `ctiphone headless --auto-answer` and, when installed, baresip with
//! auto-answer, and calls them from one loopback caller:
//!
//! - `sip` (`sip`, `floor`, `sipp`): INVITE → 100, → 180 and → 200 OK on both phones and on a
//!   minimal UAS of the bench's own (the floor of the method), calls spaced by a gap, then back
//!   to back; each phone's figures above the floor; each process's idle RSS. `--sipp` takes
//!   the same figures from sipp's own clock readings instead;
//! - `media`: a G.711 call with a file source and recording: CPU, RSS, and the RTP
//!   send-interval deviation; `media --srtp`: ctiphone plain, ctiphone SRTP and baresip SRTP
//!   at once, over several rounds ([`media_srtp`]);
//! - `audio`: a spoken reference streamed as RTP with seeded loss and jitter into both phones,
//!   what each plays scored with PESQ (P.862) ([`audio`]);
//! - `ui`: the terminal UI's drawing times and idle cost;
//! - `fleet`: a contact center on this machine (PostgreSQL, Kamailio with an agent group,
//!   the demo CRM, N phones, sipp) with PostgreSQL down in the middle ([`fleet`]);
//! - with no subcommand, `sip`, `media` and ring → CTI search result (the demo's CRM on
//!   loopback; baresip has no CTI) in one table with the ratio ctiphone / baresip.
//!
//! Each prints medians, p99 and ratios, or JSON.

pub mod audio;
mod cpus;
mod fleet;
mod floor;
mod media_srtp;
mod popup;
mod sip;
mod sipp;

pub use fleet::{Options as FleetOptions, fleet};
pub use sip::sip;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::media::srtp::{Inbound, MasterKey, Outbound, Suite};
use crate::sip::message::Message;

/// One peer under test.
struct Peer {
    name: &'static str,
    addr: SocketAddr,
    child: Child,
    /// ctiphone's event lines as they arrive on its stdout, with their arrival time.
    events: Option<std::sync::mpsc::Receiver<(Instant, String)>>,
    _dir: Option<tempfile::TempDir>,
}

impl Peer {
    /// Asks a headless ctiphone to quit (baresip is killed on drop).
    fn quit(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"{\"cmd\":\"quit\"}\n");
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Resident memory of a process (KiB), from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    proc_figure(pid, "status", "VmRSS:")
}

/// The process that started `pid` (`PPid:` in `/proc/PID/status`).
fn parent_of(pid: u32) -> Option<u32> {
    u32::try_from(proc_figure(pid, "status", "PPid:")?).ok()
}

/// The number on the line starting with `key` in `/proc/PID/<file>` (a size there is in KiB).
fn proc_figure(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn start_ctiphone(extra: &str) -> Result<Peer, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cfg = dir.path().join("bench.toml");
    let extra = extra.replace("@DIR@", &dir.path().display().to_string());
    std::fs::write(
        &cfg,
        format!(
            "[account]\nuri = \"sip:bench@127.0.0.1\"\nregistrar = \"\"\nlisten = \"127.0.0.1:0\"\n{extra}"
        ),
    )
    .map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // Its history and log stay in the temporary directory, not the user's.
    let mut child = Command::new(exe)
        .arg("--config")
        .arg(&cfg)
        .args(["headless", "--auto-answer"])
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start ctiphone headless: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let ready: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| format!("ctiphone said `{line}`: {e}"))?;
    let addr = ready["listen"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or("no listen address")?;
    // Every later line, timed on arrival; the thread ends with ctiphone's stdout.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    Ok(Peer {
        name: "ctiphone",
        addr,
        child,
        events: Some(rx),
        _dir: Some(dir),
    })
}

/// baresip with auto-answer; `record`: its sndfile module writes both directions to WAV files.
/// `srtp`: its srtp module, and the account takes only SRTP calls (`mediaenc=srtp-mand`).
fn start_baresip_with(record: bool, srtp: bool) -> Result<Option<Peer>, String> {
    let Some(bin) = which("baresip") else {
        return Ok(None);
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_udp_port().map_err(|e| e.to_string())?;
    let rtp = free_udp_port().map_err(|e| e.to_string())?;
    // baresip's file source: a 1 kHz tone, 8 kHz mono. Its SDP names 127.0.0.1, where its
    // packets come from (the phone listens only to the SDP address).
    let tone = dir.path().join("tone.wav");
    write_tone(&tone, 1000.0, 30)?;
    let config = format!(
        "sip_listen\t\t127.0.0.1:{port}\nnet_interface\t\t127.0.0.1\nsip_trans_def\t\tudp\naudio_source\t\taufile,{tone}\n\
         audio_player\t\taufile,{d}/heard.wav\naudio_alert\t\taufile,/dev/null\naudio_srate\t\t8000\n\
         audio_channels\t\t1\nrtp_ports\t\t{rtp}-{rtp2}\nmodule_path\t\t/usr/lib/baresip/modules\n\
         module\t\t\tg711.so\nmodule\t\t\taufile.so\n{srtp_module}module_app\t\taccount.so\n{rec}",
        srtp_module = if srtp { "module\t\t\tsrtp.so\n" } else { "" },
        d = dir.path().display(),
        rec = if record {
            format!("module\t\t\tsndfile.so\nsnd_path\t\t{}\n", dir.path().display())
        } else {
            String::new()
        },
        tone = tone.display(),
        rtp2 = rtp.saturating_add(9)
    );
    std::fs::write(dir.path().join("config"), config).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.path().join("accounts"),
        format!(
            "<sip:bench@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU{}\n",
            if srtp { ";mediaenc=srtp-mand" } else { "" }
        ),
    )
    .map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("-f")
        .arg(dir.path())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start baresip: {e}"))?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().map_err(|e| format!("{e}"))?;
    Ok(Some(Peer {
        name: "baresip",
        addr,
        child,
        events: None,
        _dir: Some(dir),
    }))
}

/// A mono 16-bit 8 kHz WAV of a sine tone.
fn write_tone(path: &std::path::Path, freq: f64, secs: u32) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| e.to_string())?;
    for i in 0..8000 * secs {
        let v = (f64::from(i) * 2.0 * std::f64::consts::PI * freq / 8000.0).sin() * 8000.0;
        w.write_sample(v as i16).map_err(|e| e.to_string())?;
    }
    w.finalize().map_err(|e| e.to_string())
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The loopback caller.
struct Caller {
    sock: UdpSocket,
    rtp: UdpSocket,
    local: SocketAddr,
    n: u64,
    /// The receive buffer, allocated once: not between a response's arrival and its timing.
    buf: Vec<u8>,
}

impl Caller {
    fn new() -> std::io::Result<Self> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        let rtp = UdpSocket::bind("127.0.0.1:0")?;
        let local = sock.local_addr()?;
        Ok(Self {
            sock,
            rtp,
            local,
            n: 0,
            buf: vec![0u8; 65536],
        })
    }

    /// The next SIP message before `deadline`, with the time it was read (taken before
    /// parsing it).
    fn recv(&mut self, deadline: Instant) -> Option<(Instant, Message)> {
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            match self.sock.recv_from(&mut self.buf) {
                Ok((n, _)) => {
                    let at = Instant::now();
                    if let Ok(m) = Message::parse(self.buf.get(..n)?) {
                        return Some((at, m));
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// A request of the current call: `method` with CSeq `cseq`; `tag` keeps its branch unique.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        method: &str,
        uri: &str,
        from: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
        tag: &str,
    ) -> Message {
        let mut m = Message::request(method, uri);
        let branch = format!("z9hG4bK{tag}{}x{}", std::process::id(), self.n);
        m.push("Via", format!("SIP/2.0/UDP {};branch={branch}", self.local))
            .push("Max-Forwards", "70")
            .push("From", from.to_owned())
            .push("To", to.to_owned())
            .push("Call-ID", call_id.to_owned())
            .push("CSeq", format!("{cseq} {method}"));
        m
    }

    /// Our INVITE offering PCMU on our RTP port; with `srtp`, as `RTP/SAVP` with one
    /// `a=crypto` line (tag 1) carrying that key.
    fn invite(
        &self,
        uri: &str,
        from: &str,
        call_id: &str,
        tag: &str,
        srtp: Option<&MasterKey>,
    ) -> Option<Message> {
        let rtp_port = self.rtp.local_addr().ok()?.port();
        let (proto, crypto) = match srtp {
            Some(key) => {
                let line = crate::call::sdes::attribute(1, key);
                (
                    "RTP/SAVP",
                    format!("a=crypto:{}\r\n", line.value.unwrap_or_default()),
                )
            }
            None => ("RTP/AVP", String::new()),
        };
        let sdp = format!(
            "v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {rtp_port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n{crypto}a=sendrecv\r\n"
        );
        let mut inv = self.request("INVITE", uri, from, &format!("<{uri}>"), call_id, 1, tag);
        inv.push("Contact", format!("<sip:caller@{}>", self.local))
            .with_body("application/sdp", sdp.into_bytes());
        Some(inv)
    }

    /// One call to `sip:bench@TO` from `caller`.
    fn call(&mut self, to: SocketAddr) -> Option<Timing> {
        self.call_as(to, "bench", "caller")
    }

    /// One call to `sip:USER@TO` from `sip:FROM_USER@…`: INVITE, ACK, BYE. None when no 2xx
    /// came within 3 s.
    fn call_as(&mut self, to: SocketAddr, user: &str, from_user: &str) -> Option<Timing> {
        let Ringing {
            call_id,
            uri,
            from,
            sent: start,
            ..
        } = self.ring(to, user, from_user)?;
        let deadline = start + Duration::from_secs(3);
        let (mut trying, mut ringing) = (None, None);
        let mut ok = None;
        while ok.is_none() {
            let (at, m) = self.recv(deadline)?;
            if m.call_id() != Some(call_id.as_str()) {
                continue;
            }
            let code = m.code()?;
            let t = (at - start).as_secs_f64() * 1e6;
            match code {
                100 => trying = trying.or(Some(t)),
                180 => ringing = ringing.or(Some(t)),
                200..=299 => ok = Some((t, m)),
                300.. => return None,
                _ => {}
            }
        }
        let (t_ok, resp) = ok?;
        let to_hdr = resp.get("To")?.to_owned();
        let target = resp
            .get_all("Contact")
            .first()
            .and_then(|c| crate::sip::addr::NameAddr::parse(c).ok())
            .map_or(uri.clone(), |c| c.uri);
        for (method, cseq, br) in [("ACK", 1, "a"), ("BYE", 2, "b")] {
            let m = self.request(method, &target, &from, &to_hdr, &call_id, cseq, br);
            self.sock.send_to(&m.to_bytes(), to).ok()?;
        }
        // Wait for the BYE's answer so calls do not overlap.
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Some((_, m)) = self.recv(deadline) {
            if m.call_id() == Some(call_id.as_str()) && m.cseq().is_some_and(|(_, me)| me == "BYE") {
                break;
            }
        }
        Some(Timing {
            call_id,
            sent: start,
            trying_us: trying,
            ringing_us: ringing,
            ok_us: t_ok,
        })
    }
}

/// An INVITE of the caller's that is ringing: what its CANCEL needs.
struct Ringing {
    call_id: String,
    uri: String,
    from: String,
    /// The INVITE's branch tag and call number (the CANCEL's and the ACK's are the same).
    n: u64,
    /// When the INVITE left.
    sent: Instant,
}

impl Caller {
    /// Sends an INVITE to `sip:USER@TO` from `FROM_USER` and returns as it leaves.
    fn ring(&mut self, to: SocketAddr, user: &str, from_user: &str) -> Option<Ringing> {
        self.n += 1;
        let call_id = format!("bench-{}-{}@127.0.0.1", std::process::id(), self.n);
        let uri = format!("sip:{user}@{to}");
        let from = format!("<sip:{from_user}@{}>;tag=t{}", self.local, self.n);
        let inv = self.invite(&uri, &from, &call_id, "b", None)?.to_bytes();
        let sent = Instant::now();
        self.sock.send_to(&inv, to).ok()?;
        Some(Ringing {
            call_id,
            uri,
            from,
            n: self.n,
            sent,
        })
    }

    /// Cancels a ringing INVITE: CANCEL, then the 487 ACKed (RFC 3261 §9.1). Whether the
    /// call ended so within 3 s.
    fn cancel(&mut self, to: SocketAddr, r: &Ringing) -> bool {
        let n = std::mem::replace(&mut self.n, r.n);
        let to_hdr = format!("<{}>", r.uri);
        let cancel = self.request("CANCEL", &r.uri, &r.from, &to_hdr, &r.call_id, 1, "b");
        self.n = n;
        if self.sock.send_to(&cancel.to_bytes(), to).is_err() {
            return false;
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while let Some((_, m)) = self.recv(deadline) {
            if m.call_id() != Some(r.call_id.as_str()) || m.cseq().is_none_or(|(_, me)| me != "INVITE") {
                continue;
            }
            let Some(code) = m.code().filter(|c| *c >= 300) else {
                continue;
            };
            let n = std::mem::replace(&mut self.n, r.n);
            let to_tag = m.get("To").unwrap_or(&to_hdr).to_owned();
            let ack = self.request("ACK", &r.uri, &r.from, &to_tag, &r.call_id, 1, "b");
            self.n = n;
            let _ = self.sock.send_to(&ack.to_bytes(), to);
            return code == 487;
        }
        false
    }
}

/// What one call measured.
struct Timing {
    call_id: String,
    /// When the INVITE left.
    sent: Instant,
    /// INVITE → 100 Trying and → 180 Ringing (when sent) and → 200 OK, in microseconds.
    trying_us: Option<f64>,
    ringing_us: Option<f64>,
    ok_us: f64,
}

/// How many measurements the figures of a row rest on (signalling rows).
#[derive(Clone, Copy)]
struct Samples {
    ours: usize,
    /// None: baresip did not run.
    theirs: Option<usize>,
    floor: usize,
}

/// One row of a ctiphone-vs-baresip table.
struct Metric {
    name: String,
    unit: &'static str,
    decimals: usize,
    ours: Option<f64>,
    theirs: Option<f64>,
    /// The floor of the method (signalling rows): the same figure for the bench's minimal UAS,
    /// on the same path in the same run.
    floor: Option<f64>,
    samples: Option<Samples>,
    /// What an empty cell of a phone that ran says: "-", or "not sent" for a response a phone
    /// does not send.
    missing: &'static str,
    /// baresip has no such thing (CTI): its cell reads "—".
    ours_only: bool,
}

/// `a / b` of two figures above a floor: only when baresip's is above it (else the ratio says
/// nothing).
fn ratio_above(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

impl Metric {
    fn new(
        name: impl Into<String>,
        unit: &'static str,
        decimals: usize,
        ours: Option<f64>,
        theirs: Option<f64>,
    ) -> Self {
        Self {
            name: name.into(),
            unit,
            decimals,
            ours,
            theirs,
            floor: None,
            samples: None,
            missing: "-",
            ours_only: false,
        }
    }

    /// ctiphone / baresip of the two figures as measured.
    fn ratio(&self) -> Option<f64> {
        match (self.ours, self.theirs) {
            (Some(a), Some(b)) if b > 0.0 && a.is_finite() => Some(a / b),
            _ => None,
        }
    }

    /// A figure minus the floor's.
    fn above(&self, v: Option<f64>) -> Option<f64> {
        Some(v? - self.floor?)
    }

    /// ctiphone / baresip of the figures above the floor.
    fn ratio_above_floor(&self) -> Option<f64> {
        ratio_above(self.above(self.ours)?, self.above(self.theirs)?)
    }

    /// The ratio a table prints: above the floor where the row has one.
    fn headline_ratio(&self) -> Option<f64> {
        if self.floor.is_some() {
            self.ratio_above_floor()
        } else {
            self.ratio()
        }
    }
}

/// Prints the table; `baresip`: whether baresip ran (else its column reads "not installed").
/// Rows with a floor also show it and each phone above it, and their ratio is of those.
fn print_table(metrics: &[Metric], baresip: bool) {
    let floors = metrics.iter().any(|m| m.floor.is_some());
    let line = |cells: [&str; 7]| {
        let [name, ours, theirs, floor, ours_above, theirs_above, ratio] = cells;
        if floors {
            println!(
                "{name:<44} {ours:>10} {theirs:>13} {floor:>9} {ours_above:>14} {theirs_above:>13} {ratio:>6}"
            );
        } else {
            println!("{name:<36} {ours:>14} {theirs:>14} {ratio:>8}");
        }
    };
    line([
        "metric",
        "ctiphone",
        "baresip",
        "floor",
        "ctiphone-floor",
        "baresip-floor",
        "ratio",
    ]);
    for m in metrics {
        let d = m.decimals;
        let fmt = |v: Option<f64>| v.map_or_else(|| m.missing.to_owned(), |v| format!("{v:.d$} {}", m.unit));
        let has_floor = m.floor.is_some();
        let theirs = if m.ours_only {
            "—".to_owned()
        } else if !baresip {
            "not installed".to_owned()
        } else {
            fmt(m.theirs)
        };
        let above = |v: Option<f64>| {
            m.above(v).map_or_else(
                || if has_floor { "-".to_owned() } else { String::new() },
                |v| format!("{v:.d$} {}", m.unit),
            )
        };
        let floor = m
            .floor
            .map_or_else(String::new, |v| format!("{v:.d$} {}", m.unit));
        let ratio = m
            .headline_ratio()
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
        line([
            &m.name,
            &fmt(m.ours),
            &theirs,
            &floor,
            &above(m.ours),
            &above(if baresip { m.theirs } else { None }),
            &ratio,
        ]);
    }
    if floors {
        println!(
            "floor: the bench's own minimal UAS (180 and 200 at once, no logic) called the same way \
             in the same run (for the 100: its first response); X-floor: the figure above it;\n\
             ratio: (ctiphone - floor) / (baresip - floor) where there is a floor, else ctiphone / baresip"
        );
    }
}

/// The table as JSON rows: metric, unit, ctiphone, baresip (null when it did not run or has
/// no such thing), ratio (ctiphone / baresip as measured); signalling rows also: floor, each
/// phone above it, ratio_above_floor, and the samples behind each figure.
fn metrics_json(metrics: &[Metric]) -> serde_json::Value {
    metrics
        .iter()
        .map(|m| {
            let theirs = if m.ours_only { None } else { m.theirs };
            json!({
                "metric": m.name, "unit": m.unit, "ctiphone": m.ours,
                "baresip": theirs, "ratio": m.ratio(),
                "floor": m.floor,
                "ctiphone_above_floor": m.above(m.ours),
                "baresip_above_floor": m.above(theirs),
                "ratio_above_floor": m.ratio_above_floor(),
                "samples": m.samples.map(|s| json!({
                    "ctiphone": s.ours, "baresip": s.theirs, "floor": s.floor,
                })),
            })
        })
        .collect()
}

const NO_BARESIP: &str = "baresip is not installed: measuring ctiphone alone (apt-get install baresip-core)";

fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let idx = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s.get(idx).copied()
}

/// The peers of one part: ctiphone with `extra` configuration, and baresip when installed.
fn start_peers(extra: &str, record: bool) -> Result<Vec<Peer>, String> {
    let mut peers = vec![start_ctiphone(extra)?];
    match start_baresip_with(record, false)? {
        Some(b) => peers.push(b),
        None => eprintln!("{NO_BARESIP}"),
    }
    // Let both settle.
    std::thread::sleep(Duration::from_millis(1500));
    for p in &mut peers {
        if !matches!(p.child.try_wait(), Ok(None)) {
            return Err(format!("{} exited at start", p.name));
        }
    }
    Ok(peers)
}

/// CPU time of a process so far, in nanoseconds from the scheduler (`/proc/PID/task/*/schedstat`,
/// every thread), much finer than the clock ticks of `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let mut total: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(Duration::from_nanos(total))
}

/// What one media call measured.
struct MediaFigures {
    cpu_percent: f64,
    rss_kib: Option<u64>,
    intervals_ms: Vec<f64>,
    /// An SRTP call: what the answer chose and how the callee's packets fared.
    srtp: Option<SrtpCheck>,
}

/// What the bench's caller saw of an SRTP call.
#[derive(Clone, Debug)]
struct SrtpCheck {
    /// The answer's media profile (`RTP/SAVP`) and the suite of its `a=crypto` line.
    proto: String,
    suite: Suite,
    /// The callee's RTP packets that authenticated (and were decrypted) and those rejected.
    authenticated: u64,
    rejected: u64,
}

/// Our SRTP offer's key and the callee's answer: the contexts of both directions. Errors when
/// the answer is not `RTP/SAVP` with a usable `a=crypto` line answering ours (tag 1, our suite).
fn srtp_of_answer(
    ours: &MasterKey,
    audio: &crate::call::sdp::Media,
) -> Result<(Outbound, Inbound, SrtpCheck), String> {
    use crate::call::sdes;
    if !sdes::is_secure_proto(&audio.proto) {
        return Err(format!("the callee answered {}, not RTP/SAVP", audio.proto));
    }
    let line = sdes::usable(audio)
        .into_iter()
        .next()
        .ok_or("the callee's answer has no usable a=crypto line")?;
    if line.tag != 1 || line.key.suite() != ours.suite() {
        return Err(format!(
            "the callee answered a=crypto:{} {}, not our tag 1 {}",
            line.tag,
            line.key.suite(),
            ours.suite()
        ));
    }
    Ok((
        Outbound::new(ours)?,
        Inbound::new(&line.key)?,
        SrtpCheck {
            proto: audio.proto.clone(),
            suite: line.key.suite(),
            authenticated: 0,
            rejected: 0,
        },
    ))
}

impl Caller {
    /// A call of `secs` seconds with G.711 both ways: we send a paced PCMU stream and capture
    /// the arrival time of every RTP packet the callee sends. With `srtp` we offer SDES-SRTP
    /// (`AES_CM_128_HMAC_SHA1_80`), protect what we send with our key and check every packet
    /// received with the callee's: the call is an error unless they all authenticate.
    fn media_call(
        &mut self,
        to: SocketAddr,
        pid: u32,
        secs: u64,
        srtp: bool,
    ) -> Result<MediaFigures, String> {
        self.n += 1;
        let call_id = format!("media-{}-{}@127.0.0.1", std::process::id(), self.n);
        let uri = format!("sip:bench@{to}");
        let from = format!("<sip:caller@{}>;tag=m{}", self.local, self.n);
        let key = if srtp {
            Some(MasterKey::generate(Suite::AesCm128HmacSha1_80)?)
        } else {
            None
        };
        let inv = self
            .invite(&uri, &from, &call_id, "m", key.as_ref())
            .ok_or("no RTP port")?;
        self.sock
            .send_to(&inv.to_bytes(), to)
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(3);
        let ok = loop {
            let (_, m) = self.recv(deadline).ok_or("no answer to the INVITE")?;
            if m.call_id() != Some(call_id.as_str()) {
                continue;
            }
            match m.code() {
                Some(c) if (200..300).contains(&c) => break m,
                Some(c) if c >= 300 => return Err(format!("the callee refused the call: {c}")),
                _ => {}
            }
        };
        let answer = crate::call::sdp::Sdp::parse(&String::from_utf8_lossy(&ok.body))
            .map_err(|e| format!("callee SDP: {e}"))?;
        let audio = answer.audio().ok_or("no audio in the callee's SDP")?;
        let media_to = SocketAddr::new(audio.addr, audio.port);
        let crypto = key.as_ref().map(|k| srtp_of_answer(k, audio)).transpose();
        let to_hdr = ok.get("To").unwrap_or("").to_owned();
        let ack = self.request("ACK", &uri, &from, &to_hdr, &call_id, 1, "ma");
        self.sock
            .send_to(&ack.to_bytes(), to)
            .map_err(|e| e.to_string())?;
        let bye = self.request("BYE", &uri, &from, &to_hdr, &call_id, 2, "mb");
        let (mut outbound, mut inbound, mut check) = match crypto {
            Ok(Some((o, i, c))) => (Some(o), Some(i), Some(c)),
            Ok(None) => (None, None, None),
            Err(e) => {
                let _ = self.sock.send_to(&bye.to_bytes(), to);
                return Err(e);
            }
        };
        // Our stream: PCMU silence every 20 ms; theirs: arrival times.
        let sender = self.rtp.try_clone().map_err(|e| e.to_string())?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let tx = std::thread::spawn(move || {
            let start = Instant::now();
            let mut n: u32 = 0;
            let mut pkt = vec![0u8; 12 + 160];
            pkt[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34]);
            pkt[12..].fill(0xFF);
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                pkt[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                pkt[4..8].copy_from_slice(&n.wrapping_mul(160).to_be_bytes());
                let _ = match outbound.as_mut() {
                    Some(o) => o
                        .protect_rtp(&pkt)
                        .and_then(|p| sender.send_to(&p, media_to).map_err(|e| e.to_string())),
                    None => sender.send_to(&pkt, media_to).map_err(|e| e.to_string()),
                };
                n = n.wrapping_add(1);
                let next = start + Duration::from_millis(20 * u64::from(n));
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        });
        let cpu0 = cpu_time(pid);
        let t0 = Instant::now();
        let mut arrivals = Vec::with_capacity(secs as usize * 50 + 10);
        let mut rss = None;
        let mut buf = vec![0u8; 2048];
        self.rtp
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        while t0.elapsed() < Duration::from_secs(secs) {
            if let Ok((n, _)) = self.rtp.recv_from(&mut buf) {
                let at = Instant::now();
                let pkt = buf.get(..n).unwrap_or_default();
                // RTP only (not RTCP), version 2.
                if n > 12 && pkt[0] >> 6 == 2 && !crate::media::rtp::is_rtcp(pkt) {
                    match (inbound.as_mut(), check.as_mut()) {
                        (Some(i), Some(c)) => match i.unprotect_rtp(pkt) {
                            Ok(_) => {
                                c.authenticated += 1;
                                arrivals.push(at);
                            }
                            Err(_) => c.rejected += 1,
                        },
                        _ => arrivals.push(at),
                    }
                }
            }
            if rss.is_none() && t0.elapsed() > Duration::from_secs(secs / 2) {
                rss = rss_kib(pid);
            }
        }
        let cpu = cpu_time(pid).zip(cpu0).map(|(a, b)| a.saturating_sub(b));
        let wall = t0.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = tx.join();
        let _ = self.sock.send_to(&bye.to_bytes(), to);
        if let Some(c) = &check
            && (c.authenticated == 0 || c.rejected > 0)
        {
            return Err(format!(
                "SRTP packets did not authenticate: {} of {} rejected",
                c.rejected,
                c.rejected + c.authenticated
            ));
        }
        let intervals_ms = arrivals
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
            .collect();
        Ok(MediaFigures {
            cpu_percent: cpu.map_or(f64::NAN, |c| c.as_secs_f64() * 100.0 / wall.as_secs_f64()),
            rss_kib: rss,
            intervals_ms,
            srtp: check,
        })
    }
}

/// Runs the media benchmark (a `secs`-second G.711 call to each peer) and prints it; with
/// `srtp`, `rounds` rounds of three calls at once: ctiphone plain, ctiphone SRTP and baresip
/// SRTP ([`media_srtp`]).
pub fn media(secs: u64, as_json: bool, srtp: bool, rounds: usize) -> u8 {
    let run = if srtp {
        media_srtp::run(secs.max(5), rounds.max(1), as_json)
    } else {
        run_media(secs.max(5), as_json)
    };
    match run {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ctiphone bench: {e}");
            1
        }
    }
}

fn deviation(intervals: &[f64]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let dev: Vec<f64> = intervals.iter().map(|i| (i - 20.0).abs()).collect();
    (
        percentile(&dev, 50.0),
        percentile(&dev, 99.0),
        dev.iter().copied().reduce(f64::max),
    )
}

/// ctiphone's configuration for the media calls: a 440 Hz tone file (written into `dir`) as
/// its source, null output, PCMU only, every call recorded.
fn media_config(dir: &std::path::Path) -> Result<String, String> {
    let tone = dir.join("tone.wav");
    write_tone(&tone, 440.0, 10)?;
    Ok(format!(
        "[audio]\ninput = \"file:{}\"\noutput = \"null\"\ncodecs = [\"PCMU\"]\n[recording]\nauto = true\ndir = \"@DIR@/rec\"\n",
        tone.display()
    ))
}

/// The media part: one `secs`-second G.711 call to each peer, ctiphone first.
fn measure_media(secs: u64) -> Result<Vec<(&'static str, MediaFigures)>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let extra = media_config(dir.path())?;
    let mut peers = start_peers(&extra, true)?;
    // Both calls at once, each from its own caller: the two peers share one window of machine
    // load, so the CPU ratio does not drift with what else the machine did between two calls.
    let calls: Vec<_> = peers
        .iter()
        .map(|p| {
            let (name, addr, pid) = (p.name, p.addr, p.child.id());
            std::thread::spawn(move || -> Result<_, String> {
                let mut caller = Caller::new().map_err(|e| e.to_string())?;
                Ok((name, caller.media_call(addr, pid, secs, false)?))
            })
        })
        .collect();
    let mut results = Vec::new();
    for c in calls {
        results.push(c.join().map_err(|_| "a media call panicked".to_owned())??);
    }
    peers[0].quit();
    Ok(results)
}

/// The media rows of a table.
fn media_metrics(ours: &MediaFigures, theirs: Option<&MediaFigures>) -> Vec<Metric> {
    let (a50, a99, amax) = deviation(&ours.intervals_ms);
    let (b50, b99, bmax) = theirs.map_or((None, None, None), |t| deviation(&t.intervals_ms));
    vec![
        Metric::new(
            "CPU in a call (one core)",
            "%",
            2,
            Some(ours.cpu_percent),
            theirs.map(|t| t.cpu_percent),
        ),
        Metric::new(
            "RSS in a call",
            "KiB",
            0,
            ours.rss_kib.map(|v| v as f64),
            theirs.and_then(|t| t.rss_kib).map(|v| v as f64),
        ),
        Metric::new("RTP send interval |dev| p50", "ms", 2, a50, b50),
        Metric::new("RTP send interval |dev| p99", "ms", 2, a99, b99),
        Metric::new("RTP send interval |dev| max", "ms", 2, amax, bmax),
    ]
}

fn run_media(secs: u64, as_json: bool) -> Result<(), String> {
    let results = measure_media(secs)?;
    let json_of = |f: &MediaFigures| {
        let (p50, p99, max) = deviation(&f.intervals_ms);
        json!({
            "cpu_percent": f.cpu_percent,
            "rss_in_call_kib": f.rss_kib,
            "rtp_packets": f.intervals_ms.len() + 1,
            "send_interval_deviation_ms": { "p50": p50, "p99": p99, "max": max },
        })
    };
    if as_json {
        let m: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(n, f)| ((*n).to_owned(), json_of(f)))
            .collect();
        println!("{}", serde_json::Value::Object(m));
        return Ok(());
    }
    let ours = &results[0].1;
    let theirs = results.get(1).map(|r| &r.1);
    println!("ctiphone bench media: one {secs} s G.711 call each, both at once, file source, recording on");
    print_table(&media_metrics(ours, theirs), theirs.is_some());
    println!(
        "RTP packets received: ctiphone {}, baresip {}",
        ours.intervals_ms.len() + 1,
        theirs.map_or("not installed".to_owned(), |t| (t.intervals_ms.len() + 1)
            .to_string())
    );
    Ok(())
}

/// The demo CRM on loopback, serving from a runtime thread of its own (keep the runtime as
/// long as the CRM is used).
pub(crate) fn demo_crm() -> Result<(tokio::runtime::Runtime, crate::demo::crm::Crm), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let crm = rt
        .block_on(crate::demo::crm::Crm::start())
        .map_err(|e| format!("the demo CRM cannot start: {e}"))?;
    Ok((rt, crm))
}

/// Ring → CTI search result: `calls` calls from the demo CRM's known customer to a ctiphone
/// whose CTI searches the demo CRM on loopback; the time from the INVITE leaving to the
/// search result on the phone's JSON output, in milliseconds. Also counts failed searches.
fn measure_cti(calls: usize) -> Result<(Vec<f64>, usize), String> {
    let (_rt, crm) = demo_crm()?;
    let extra = format!(
        "[audio]\ninput = \"null\"\noutput = \"null\"\n{}",
        crate::demo::world::cti_config(&crm.url())
    );
    let mut phone = start_ctiphone(&extra)?;
    std::thread::sleep(Duration::from_millis(500));
    let events = phone.events.take().ok_or("no event lines")?;
    let mut caller = Caller::new().map_err(|e| e.to_string())?;
    let called = crate::demo::world::CALLED;
    let from = crate::demo::crm::KNOWN.tel;
    let mut times = Vec::with_capacity(calls);
    let mut failed = 0;
    // The first call also logs in to the CRM: not counted.
    for i in 0..=calls {
        let Some(t) = caller.call_as(phone.addr, called, from) else {
            failed += 1;
            continue;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break None;
            };
            let Ok((at, line)) = events.recv_timeout(left) else {
                break None;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let result = v["event"] == "cti" && v["access"] == "search" && v["ok"].is_boolean();
            if result && v["call"] == t.call_id.as_str() {
                break Some((at, v["ok"] == true));
            }
        };
        match found {
            Some((at, true)) if i > 0 => times.push((at - t.sent).as_secs_f64() * 1000.0),
            Some((_, true)) => {}
            _ => failed += 1,
        }
    }
    phone.quit();
    if crm.searches() == 0 {
        return Err("the phone never searched the loopback CRM".to_owned());
    }
    Ok((times, failed))
}

/// `ctiphone bench`: signalling (calls `gap_ms` apart, then back to back, above the floor),
/// media and ring → CTI search result in one table (or JSON), ctiphone against baresip.
pub fn all(calls: usize, gap_ms: u64, secs: u64, as_json: bool) -> u8 {
    match run_all(calls.max(1), gap_ms, secs.max(5), as_json) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ctiphone bench: {e}");
            1
        }
    }
}

fn run_all(calls: usize, gap_ms: u64, secs: u64, as_json: bool) -> Result<(), String> {
    let sip = sip::measure(calls, gap_ms)?;
    let media = measure_media(secs)?;
    let (cti, cti_failed) = measure_cti(calls)?;
    let baresip = sip.baresip;
    let mut metrics = sip::sip_metrics(&sip);
    metrics.extend(media_metrics(&media[0].1, media.get(1).map(|m| &m.1)));
    for (name, p) in [
        ("ring -> CTI search result median", 50.0),
        ("ring -> CTI search result p99", 99.0),
    ] {
        metrics.push(Metric {
            ours_only: true,
            ..Metric::new(name, "ms", 2, percentile(&cti, p), None)
        });
    }
    if as_json {
        let report = json!({
            "calls": calls,
            "gap_ms": gap_ms,
            "media_secs": secs,
            "baresip": if baresip { "installed" } else { "not installed" },
            "metrics": metrics_json(&metrics),
            "failed_calls": {
                "ctiphone": sip.failed("ctiphone"),
                "baresip": sip.failed("baresip"),
                "floor": sip.failed("floor"),
            },
            "failed_cti_searches": cti_failed,
            "below_floor": sip.below_floor(),
        });
        println!("{report}");
        return Ok(());
    }
    println!(
        "ctiphone bench: signalling: {}; CTI: {calls} calls; media: one {secs} s G.711 call each, \
         both at once; loopback UDP, auto-answer; CTI against the demo CRM on loopback",
        sip::describe(&sip)
    );
    print_table(&metrics, baresip);
    let failed = |n: &str| {
        sip.failed(n)
            .map_or("not installed".to_owned(), |v| v.to_string())
    };
    println!(
        "failed calls: ctiphone {}, baresip {}, floor {}; failed CTI searches: {cti_failed}",
        failed("ctiphone"),
        failed("baresip"),
        failed("floor")
    );
    if let Some(note) = sip.below_floor_note() {
        println!("{note}");
    }
    Ok(())
}

/// `ctiphone bench ui`: ring event → popup frame drawn and CRM reply → fields drawn, through
/// the real state and drawing code into an in-memory terminal of the given size (medians and
/// p99 over `n` calls); then, when tmux is installed, `ctiphone` idle in a real terminal for
/// 10 s: CPU ticks and RSS; and `tmux_calls` calls end to end, INVITE → the CRM's values on
/// the screen ([`popup`]).
pub fn ui(n: usize, tmux_calls: usize, gap_ms: u64, crm_ms: u64, as_json: bool) -> u8 {
    use crate::app::{CtiEvent, Event, PhoneEvent};
    use crate::ui::{i18n, keys, state, theme, view};
    use ratatui::backend::TestBackend;

    let config = match crate::config::Config::parse("[popup]\nsize = \"large\"\n", None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let Ok(keymap) = keys::KeyMap::new(&Default::default()) else {
        return 1;
    };
    let Ok(th) = theme::Theme::load("default", None) else {
        return 1;
    };
    let cat = i18n::Catalog::new(i18n::Lang::Ja);
    let look = view::Look {
        theme: &th,
        cat: &cat,
    };
    let Ok(mut term) = ratatui::Terminal::new(TestBackend::new(120, 40));
    let mut ring = Vec::with_capacity(n);
    let mut reply = Vec::with_capacity(n);
    for i in 0..n.max(1) {
        let mut app = state::App::new(&config, keymap.clone());
        let id = format!("bench-{i}");
        let incoming = Event::Phone(PhoneEvent::Incoming {
            call: id.clone(),
            tel: "0312345678".into(),
            telname: "山田 太郎".into(),
            called: "0120000111".into(),
            calledname: String::new(),
            anonymous: false,
        });
        let t0 = Instant::now();
        app.on_event(&incoming);
        let _ = term.draw(|f| view::draw(f, &app, &look));
        ring.push(t0.elapsed().as_secs_f64() * 1e6);
        let vars = [
            ("COMPANY", "Acme 株式会社"),
            ("NAME", "山田 太郎"),
            ("EXT_ID", "C-42"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let found = Event::Cti(CtiEvent::SearchResult { call_id: id, vars });
        let t0 = Instant::now();
        app.on_event(&found);
        let _ = term.draw(|f| view::draw(f, &app, &look));
        reply.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let idle = idle_in_tmux();
    let popup = match popup::measure(tmux_calls.max(1), gap_ms, crm_ms) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ctiphone bench ui: {e}");
            return 1;
        }
    };
    let report = json!({
        "ring_to_popup_drawn_us": { "median": percentile(&ring, 50.0), "p99": percentile(&ring, 99.0) },
        "crm_reply_to_fields_drawn_us": { "median": percentile(&reply, 50.0), "p99": percentile(&reply, 99.0) },
        "idle_10s_cpu_ticks": idle.as_ref().and_then(Idle::ticks),
        "idle_rss_kib": idle.as_ref().and_then(Idle::rss_kib),
        "idle": idle.as_ref().map(|i| json!({
            "tui": { "cpu_ticks_10s": i.tui_ticks, "rss_kib": i.tui_rss_kib },
            "daemon": { "cpu_ticks_10s": i.daemon_ticks, "rss_kib": i.daemon_rss_kib },
        })),
        "terminal": "120x40, Japanese catalog, large popup",
        "ring_to_crm_values_on_screen_ms": {
            "calls": popup.total_ms.len(),
            "gap_ms": gap_ms,
            "crm_delay_ms": crm_ms,
            "total": { "median": percentile(&popup.total_ms, 50.0), "p99": percentile(&popup.total_ms, 99.0) },
            "crm_reply": { "median": percentile(&popup.crm_ms, 50.0), "p99": percentile(&popup.crm_ms, 99.0) },
            "phone": { "median": percentile(&popup.phone_ms, 50.0), "p99": percentile(&popup.phone_ms, 99.0) },
            "floor": { "median": percentile(&popup.floor_ms, 50.0), "p99": percentile(&popup.floor_ms, 99.0) },
            "failed": popup.failed,
            "last_on_screen": popup.on_screen,
        },
    });
    if as_json {
        println!("{report}");
    } else {
        println!(
            "ctiphone bench ui: {n} calls, 120x40, Japanese, large popup (target: one 60 Hz frame, 16 ms)"
        );
        let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{:.0} us", v));
        println!(
            "ring event -> popup drawn       median {:>10}  p99 {:>10}",
            f(percentile(&ring, 50.0)),
            f(percentile(&ring, 99.0))
        );
        println!(
            "CRM reply  -> fields drawn      median {:>10}  p99 {:>10}",
            f(percentile(&reply, 50.0)),
            f(percentile(&reply, 99.0))
        );
        let n = |v: Option<u64>, unit: &str| v.map_or("-".to_owned(), |v| format!("{v}{unit}"));
        match &idle {
            Some(i) => println!(
                "idle 10 s in tmux (the TUI and its daemon): {} CPU ticks (TUI {}, daemon {}; the 1 Hz clock included), RSS {} (TUI {}, daemon {})",
                n(i.ticks(), ""),
                n(i.tui_ticks, ""),
                n(i.daemon_ticks, ""),
                n(i.rss_kib(), " KiB"),
                n(i.tui_rss_kib, " KiB"),
                n(i.daemon_rss_kib, " KiB"),
            ),
            None => println!("idle in tmux: not measured (tmux is not installed)"),
        }
        println!(
            "end to end in tmux: {} calls {gap_ms} ms apart to `ctiphone` (120x40) whose CTI engine searches a loopback CRM \
             answering after {crm_ms} ms; phone's share = total - the CRM's own time, call by call (target: <= 2 ms)",
            popup.total_ms.len()
        );
        let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms"));
        for (name, v) in popup.rows() {
            println!("{name:<44} {:>10}", f(v));
        }
        println!(
            "calls whose values never showed: {}; the last call's values on the screen (capture-pane): {}",
            popup.failed,
            if popup.on_screen { "yes" } else { "no" }
        );
    }
    u8::from(popup.failed > 0 || !popup.on_screen)
}

/// What `ctiphone` idle in tmux cost over 10 s: the TUI and the daemon it started.
struct Idle {
    /// CPU ticks (user + system) of each over the 10 s.
    tui_ticks: Option<u64>,
    daemon_ticks: Option<u64>,
    tui_rss_kib: Option<u64>,
    daemon_rss_kib: Option<u64>,
}

impl Idle {
    /// Both processes together (None when either was not read).
    fn ticks(&self) -> Option<u64> {
        Some(self.tui_ticks? + self.daemon_ticks?)
    }

    fn rss_kib(&self) -> Option<u64> {
        Some(self.tui_rss_kib? + self.daemon_rss_kib?)
    }
}

/// Runs `ctiphone` (this binary, as an agent starts it: the TUI attached to a daemon it starts;
/// direct calls on a free port, null audio) in a detached tmux session for 10 s and reads the
/// CPU ticks and RSS of both processes; then ends the tmux server and the daemon.
fn idle_in_tmux() -> Option<Idle> {
    which("tmux")?;
    let dir = tempfile::tempdir().ok()?;
    let cfg = dir.path().join("c.toml");
    let port = free_udp_port().ok()?;
    std::fs::write(
        &cfg,
        format!("[account]\nuri = \"sip:b@127.0.0.1\"\nregistrar = \"\"\nlisten = \"127.0.0.1:{port}\"\n[audio]\ninput = \"null\"\noutput = \"null\"\n"),
    )
    .ok()?;
    let exe = std::env::current_exe().ok()?;
    let sock = format!("ctiphone-bench-{}", std::process::id());
    // The daemon's socket and lock live under XDG_RUNTIME_DIR: one of the bench's own, so it
    // cannot meet an agent's running phone.
    let cmd = format!(
        "HOME={d} XDG_DATA_HOME={d}/data XDG_RUNTIME_DIR={d}/run {exe} --config {cfg}",
        d = dir.path().display(),
        exe = exe.display(),
        cfg = cfg.display()
    );
    std::fs::create_dir_all(dir.path().join("run")).ok()?;
    let ok = Command::new("tmux")
        .args(["-L", &sock, "new-session", "-d", "-x", "100", "-y", "30", &cmd])
        .status()
        .ok()?
        .success();
    // The daemon's PID file: named for its configuration (`daemon::paths::Paths`), under the
    // runtime directory given to it above.
    let pid_file = dir.path().join("run/ctiphone").join(
        crate::daemon::paths::Paths::for_config(Some(&cfg))
            .pid
            .file_name()?,
    );
    let daemon_pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()
    };
    let stop = || {
        let _ = Command::new("tmux")
            .args(["-L", &sock, "kill-server"])
            .stderr(Stdio::null())
            .status();
        // The daemon outlives its TUI by design (calls survive a lost terminal): end it too.
        if let Some(pid) = daemon_pid() {
            stop_process(pid);
        }
    };
    if !ok {
        stop();
        return None;
    }
    std::thread::sleep(Duration::from_secs(2));
    // The daemon is the TUI's child (the TUI started it).
    let Some((tui, daemon)) = daemon_pid().and_then(|d| Some((parent_of(d)?, d))) else {
        stop();
        return None;
    };
    let ticks = |p: u32| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    };
    let over = |p: u32, t0: Option<u64>| Some(ticks(p)?.saturating_sub(t0?));
    let (tui0, daemon0) = (ticks(tui), ticks(daemon));
    std::thread::sleep(Duration::from_secs(10));
    let idle = Idle {
        tui_ticks: over(tui, tui0),
        daemon_ticks: over(daemon, daemon0),
        tui_rss_kib: rss_kib(tui),
        daemon_rss_kib: rss_kib(daemon),
    };
    stop();
    Some(idle)
}

/// SIGTERM, then SIGKILL if it is still there after 3 s.
fn stop_process(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a pid read from /proc and a signal number; no memory is passed.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() > deadline {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
