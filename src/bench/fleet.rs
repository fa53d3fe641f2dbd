//! `ctiphone bench fleet`: a contact center simulated on this machine, all on 127.0.0.1 — a
//! throwaway PostgreSQL ([`Cluster`]), Kamailio as registrar and proxy with an agent group
//! (its dispatcher module, round-robin, the next agent on busy: `tests/peers/
//! kamailio_fleet.cfg.in`), the demo CRM, N headless ctiphones (each its own account, HOME
//! and history, auto-answer after 1 s, CTI searching the CRM and posting the ring and hangup
//! to it, central history on), and sipp calling the group at R calls per second
//! (`tests/peers/sipp/fleet_uac.xml`). The bench tells each phone to hang up a few seconds
//! after it answered. PostgreSQL is stopped in the middle of the run (an immediate shutdown,
//! like a crash) and started again after the outage.
//!
//! It measures, per N:
//! - INVITE → 180 through Kamailio, from sipp's own clock readings of each INVITE sent and
//!   each response read (`-trace_shortmsg`, `gettimeofday`, µs); the method's floor is
//!   INVITE → 100 Trying in the same trace: Kamailio answers it at once, before any agent,
//!   so it is what sipp, the loopback and Kamailio add without the phone;
//! - the CRM search: from the phone's `searching` line to its result line, as the bench
//!   reads them (both lines cross the same pipe, so its delay cancels out);
//! - CPU per agent over the calls (scheduler time of every thread) and each phone's peak
//!   resident memory (VmRSS, sampled every 2 s), and its peak proportional share (Pss: the
//!   pages the phones share, the binary's first, divided among them);
//! - the outbox drain: from PostgreSQL back to the last phone that had failed reporting an
//!   empty outbox (its `central` events), then every outbox read empty from its database;
//! - calls offered (sipp's INVITEs) and answered (sipp's 200s), the rows in PostgreSQL, the
//!   rows lost (in a phone's local history or seen ringing there, but not in PostgreSQL) and
//!   duplicated (a call answered at more than one agent, or a row no phone's history has),
//!   and stale (a row whose result in PostgreSQL is not the one its phone ended with, an
//!   update lost); and, from sipp's side, answered calls without a row saying `answered`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{cpu_time, free_udp_port, percentile, rss_kib, which};
use crate::central::cluster::Cluster;

const KAMAILIO_CFG: &str = include_str!("../../tests/peers/kamailio_fleet.cfg.in");
const SCENARIO: &str = include_str!("../../tests/peers/sipp/fleet_uac.xml");

/// The agent counts measured without `--agents`.
pub const DEFAULT_AGENTS: [usize; 4] = [10, 25, 50, 100];

/// What a run is asked for.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Calls per second; `None`: one per 10 agents (at ~4 s per call, 40 % of them busy).
    pub cps: Option<f64>,
    /// How long sipp places calls.
    pub secs: u64,
    /// How long PostgreSQL is down, in the middle of the calls.
    pub outage: u64,
    /// Seconds from the answer to the agent's hangup.
    pub hold: u64,
}

/// What one run with N agents measured.
#[derive(Debug, Default)]
struct Figures {
    agents: usize,
    cps: f64,
    offered: usize,
    answered: usize,
    all_busy: usize,
    reached: usize,
    busy_skips: usize,
    rows: usize,
    rows_answered: usize,
    /// Each result of the rows, counted.
    results: BTreeMap<String, usize>,
    /// Calls sipp saw answered without a row saying `answered`.
    answered_not_so_recorded: usize,
    /// Rows whose result in PostgreSQL is not the phone's final one (an update lost).
    stale: usize,
    lost: usize,
    duplicated: usize,
    ring_ms: Vec<f64>,
    floor_ms: Vec<f64>,
    crm_ms: Vec<f64>,
    crm_failed: usize,
    accesses_ok: usize,
    accesses_failed: usize,
    crm_call_events: usize,
    cpu_percent_per_agent: f64,
    rss_kib: Vec<u64>,
    pss_kib: Vec<u64>,
    outage_s: f64,
    drain_s: Option<f64>,
    /// From the last call's end to every outbox read empty from its database.
    outbox_empty_after_calls_s: f64,
}

/// `ctiphone bench fleet`: one run per agent count; a table or one JSON object per count.
pub fn fleet(agents: &[usize], opts: Options, as_json: bool) -> u8 {
    let counts: Vec<usize> = if agents.is_empty() {
        DEFAULT_AGENTS.to_vec()
    } else {
        agents.to_vec()
    };
    if counts.contains(&0) {
        eprintln!("ctiphone bench fleet: --agents must be at least 1");
        return 2;
    }
    if opts
        .cps
        .is_some_and(|c| !(c.is_finite() && c > 0.0 && c <= 1000.0))
    {
        eprintln!("ctiphone bench fleet: --cps must be above 0 and at most 1000");
        return 2;
    }
    if opts.secs == 0 || (opts.outage > 0 && opts.outage >= opts.secs) {
        eprintln!("ctiphone bench fleet: --secs must be above 0 and above --outage");
        return 2;
    }
    if !as_json {
        println!(
            "ctiphone bench fleet: {} s of calls to the agent group through Kamailio, PostgreSQL \
             down for {} s in the middle, auto-answer after 1 s, hangup {} s after the answer; all on \
             127.0.0.1",
            opts.secs, opts.outage, opts.hold
        );
        println!("{}", header());
    }
    let mut failed = false;
    for n in counts {
        match run_one(n, opts) {
            Ok(f) => {
                if as_json {
                    println!("{}", to_json(&f));
                } else {
                    println!("{}", row(&f));
                }
                failed |= f.lost > 0 || f.duplicated > 0 || f.stale > 0 || f.answered_not_so_recorded > 0;
            }
            Err(e) => {
                eprintln!("ctiphone bench fleet: {n} agents: {e}");
                return 1;
            }
        }
    }
    if !as_json {
        println!(
            "ring: INVITE -> 180 at sipp through Kamailio (floor: INVITE -> Kamailio's 100 Trying, \
             same trace); CRM: search line -> result line of the phone; CPU: per agent over the \
             calls, % of one core; RSS: median (max) of each phone's peak (--json: its proportional share, Pss, too); drain: PostgreSQL back -> \
             the last failing phone's outbox empty"
        );
    }
    u8::from(failed)
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

fn header() -> String {
    format!(
        "{:>6} {:>5} {:>7} {:>8} {:>7} {:>5} {:>4} {:>4} {:>5} {:>9} {:>9} {:>9} {:>8} {:>6} {:>13} {:>7}",
        "agents",
        "cps",
        "offered",
        "answered",
        "no agt",
        "rows",
        "lost",
        "dup",
        "stale",
        "ring p50",
        "ring p99",
        "floor p50",
        "crm p99",
        "cpu %",
        "rss KiB",
        "drain s"
    )
}

fn row(f: &Figures) -> String {
    let (rss, rss_max) = rss_figures(&f.rss_kib);
    format!(
        "{:>6} {:>5.1} {:>7} {:>8} {:>7} {:>5} {:>4} {:>4} {:>5} {:>9} {:>9} {:>9} {:>8} {:>6.2} {:>13} {:>7}",
        f.agents,
        f.cps,
        f.offered,
        f.answered,
        f.all_busy,
        f.rows,
        f.lost,
        f.duplicated,
        f.stale,
        ms(percentile(&f.ring_ms, 50.0)),
        ms(percentile(&f.ring_ms, 99.0)),
        ms(percentile(&f.floor_ms, 50.0)),
        ms(percentile(&f.crm_ms, 99.0)),
        f.cpu_percent_per_agent,
        format!(
            "{} ({})",
            rss.map_or("-".into(), |v| v.to_string()),
            rss_max.map_or("-".into(), |v| v.to_string())
        ),
        f.drain_s.map_or("-".into(), |d| format!("{d:.1}")),
    )
}

/// A process's proportional share of memory (KiB): its own pages, and each page it shares
/// (the binary's, the libraries') divided by the processes sharing it. N phones of the same
/// binary share its pages, which RSS counts in full in each.
fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The median and the largest of the phones' peak RSS.
fn rss_figures(v: &[u64]) -> (Option<u64>, Option<u64>) {
    let mut s = v.to_vec();
    s.sort_unstable();
    (s.get(s.len() / 2).copied(), s.last().copied())
}

fn to_json(f: &Figures) -> Value {
    let (rss, rss_max) = rss_figures(&f.rss_kib);
    json!({
        "agents": f.agents,
        "cps": f.cps,
        "offered": f.offered,
        "answered": f.answered,
        "all_agents_busy": f.all_busy,
        "reached_agent": f.reached,
        "busy_skips": f.busy_skips,
        "rows": f.rows,
        "rows_answered": f.rows_answered,
        "results": f.results,
        "answered_not_so_recorded": f.answered_not_so_recorded,
        "stale": f.stale,
        "lost": f.lost,
        "duplicated": f.duplicated,
        "ring_p50_ms": percentile(&f.ring_ms, 50.0),
        "ring_p99_ms": percentile(&f.ring_ms, 99.0),
        "ring_samples": f.ring_ms.len(),
        "ring_floor_p50_ms": percentile(&f.floor_ms, 50.0),
        "ring_floor_p99_ms": percentile(&f.floor_ms, 99.0),
        "crm_p50_ms": percentile(&f.crm_ms, 50.0),
        "crm_p99_ms": percentile(&f.crm_ms, 99.0),
        "crm_searches_failed": f.crm_failed,
        "crm_accesses_ok": f.accesses_ok,
        "crm_accesses_failed": f.accesses_failed,
        "crm_call_events": f.crm_call_events,
        "cpu_percent_per_agent": f.cpu_percent_per_agent,
        "rss_per_agent_kib": rss,
        "rss_max_kib": rss_max,
        "pss_per_agent_kib": rss_figures(&f.pss_kib).0,
        "outage_s": f.outage_s,
        "drain_s": f.drain_s,
        "outbox_empty_after_calls_s": f.outbox_empty_after_calls_s,
    })
}

/// A child process killed (with its process group, for Kamailio's workers) when dropped.
struct Proc {
    child: Child,
    group: bool,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.group {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // SAFETY: kill(2) on the process group this bench created for the child.
                unsafe { libc::kill(-pid, libc::SIGTERM) };
                let end = Instant::now() + Duration::from_secs(3);
                while Instant::now() < end && matches!(self.child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                // SAFETY: as above.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// One agent's phone.
struct Agent {
    id: String,
    proc: Proc,
    stdin: Option<ChildStdin>,
    home: PathBuf,
}

impl Agent {
    fn send(&mut self, cmd: &Value) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = s.write_all(format!("{cmd}\n").as_bytes());
        }
    }

    fn db(&self) -> PathBuf {
        self.home.join("xdg-data/ctiphone/history.sqlite3")
    }

    fn stderr_tail(&self) -> String {
        let s = std::fs::read_to_string(self.home.join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

/// A UDP port of 127.0.0.1 held by the bench until a phone takes it: the socket is dropped
/// just before the phone starts, so nothing else on the machine (other tests, other phones'
/// sockets) takes it while the others start.
fn reserve_port() -> Result<(u16, UdpSocket), String> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("no free UDP port: {e}"))?;
    let p = s
        .local_addr()
        .map_err(|e| format!("no free UDP port: {e}"))?
        .port();
    Ok((p, s))
}

/// A port of 127.0.0.1 free for UDP, not in `taken`.
fn fresh_port(taken: &mut HashSet<u16>) -> Result<u16, String> {
    for _ in 0..50 {
        let p = free_udp_port().map_err(|e| format!("no free UDP port: {e}"))?;
        if taken.insert(p) {
            return Ok(p);
        }
    }
    Err("no free UDP port".into())
}

fn kamailio_bin() -> Result<PathBuf, String> {
    which("kamailio")
        .or_else(|| {
            let p = PathBuf::from("/usr/sbin/kamailio");
            p.is_file().then_some(p)
        })
        .ok_or_else(|| "kamailio is not installed (apt-get install -y kamailio)".into())
}

/// Starts Kamailio on `port` with the dispatcher list of the agents and waits until it
/// answers a request.
fn start_kamailio(dir: &Path, port: u16, list: &str) -> Result<Proc, String> {
    let bin = kamailio_bin()?;
    let dispatcher = Path::new("/usr/lib/x86_64-linux-gnu/kamailio/modules/dispatcher.so");
    if !dispatcher.exists() {
        return Err(format!(
            "{} is missing (apt-get install -y kamailio)",
            dispatcher.display()
        ));
    }
    let list_path = dir.join("dispatcher.list");
    std::fs::write(&list_path, list).map_err(|e| format!("{}: {e}", list_path.display()))?;
    let cfg = KAMAILIO_CFG
        .replace("@PORT@", &port.to_string())
        .replace("@LIST@", &list_path.display().to_string());
    let cfg_path = dir.join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
    let log_path = dir.join("kamailio.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("-f")
        .arg(&cfg_path)
        .args(["-DD", "-E", "-P"])
        .arg(dir.join("kamailio.pid"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start kamailio: {e}"))?;
    let mut proc = Proc { child, group: true };
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let me = sock.local_addr().map_err(|e| e.to_string())?.port();
    let end = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while Instant::now() < end {
        if let Ok(Some(st)) = proc.child.try_wait() {
            return Err(format!(
                "kamailio exited at start ({st}): {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            ));
        }
        n += 1;
        let probe = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-fleet{n}\r\n\
             From: <sip:probe@127.0.0.1:{me}>;tag=p{n}\r\nTo: <sip:127.0.0.1:{port}>\r\n\
             Call-ID: fleet-probe-{me}-{n}\r\nCSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(probe.as_bytes(), ("127.0.0.1", port));
        let mut buf = [0u8; 2048];
        if let Ok((len, _)) = sock.recv_from(&mut buf)
            && buf[..len].starts_with(b"SIP/2.0 ")
        {
            return Ok(proc);
        }
    }
    Err(format!(
        "kamailio on 127.0.0.1:{port} did not answer within 10 s: {}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    ))
}

/// The configuration of agent `id` listening on `port`, registered at Kamailio's `kport`.
fn agent_config(id: &str, port: u16, kport: u16, central: &str, crm_url: &str) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    format!(
        "[account]\nuri = {uri}\nusername = {user}\npassword = \"fleet\"\nregistrar = \"127.0.0.1:{kport}\"\n\
         transport = \"udp\"\nlisten = \"127.0.0.1:{port}\"\nexpires = 600\ndisplay_name = {user}\n\
         call_waiting = false\n\n[audio]\ninput = \"null\"\noutput = \"null\"\n\n\
         [history]\ncentral = {central}\nagent_id = {user}\n\n{cti}\n\
         # The contact center's CRM hears of each ring and hangup.\n\
         [cti.ring]\nmethod = \"post\"\n\
         template = \"{{SVADDR}}api/calls?event=ring&id={{ID}}&tel={{TEL}}&agent={{AID}}&token={{TOKEN}}\"\n\n\
         [cti.hangup]\nmethod = \"post\"\n\
         template = \"{{SVADDR}}api/calls?event=hangup&id={{ID}}&result={{RESULT}}&duration={{DURATION}}&token={{TOKEN}}\"\n",
        uri = q(&format!("sip:{id}@127.0.0.1:{kport}")),
        user = q(id),
        central = q(central),
        cti = crate::demo::world::cti_config(crm_url),
    )
}

/// An event line of agent `.0`, read at `.1`.
type Line = (usize, Instant, String);

/// Starts agent `i` (`id`): its HOME under `dir`, its stdout's lines into `tx`.
fn start_agent(dir: &Path, i: usize, id: String, config: &str, tx: Sender<Line>) -> Result<Agent, String> {
    let home = dir.join(&id);
    std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
    let cfg = home.join("config.toml");
    std::fs::write(&cfg, config).map_err(|e| format!("{}: {e}", cfg.display()))?;
    let stderr = std::fs::File::create(home.join("stderr.log")).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .arg("--config")
        .arg(&cfg)
        .args(["headless", "--auto-answer", "1000"])
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .env("XDG_CONFIG_HOME", home.join("xdg-config"))
        .env("XDG_RUNTIME_DIR", home.join("xdg-runtime"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start ctiphone headless: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stdin = child.stdin.take();
    std::thread::Builder::new()
        .name(format!("fleet-{i}"))
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((i, Instant::now(), line)).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(Agent {
        id,
        proc: Proc { child, group: false },
        stdin,
        home,
    })
}

/// What the bench learns from the phones' event lines.
#[derive(Default)]
struct Observed {
    ready: HashSet<usize>,
    registered: HashSet<usize>,
    /// (agent, Call-ID) of every call that rang at an agent.
    reached: BTreeSet<(usize, String)>,
    active: HashSet<(usize, String)>,
    /// Hangups to send: when, to which agent, which call.
    hangups: Vec<(Instant, usize, String)>,
    searching: HashMap<(usize, String), Instant>,
    crm_ms: Vec<f64>,
    crm_failed: usize,
    accesses_ok: usize,
    accesses_failed: usize,
    /// Per agent: when it last reported a failing central log, and when it reported an empty
    /// outbox with PostgreSQL taking the calls after that.
    failing_at: HashMap<usize, Instant>,
    drained_at: HashMap<usize, Instant>,
}

impl Observed {
    fn take(&mut self, (i, at, line): Line, hold: Duration) {
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            return;
        };
        let call = v["call"].as_str().unwrap_or_default().to_owned();
        match v["event"].as_str().unwrap_or_default() {
            "ready" => {
                self.ready.insert(i);
            }
            "registered" => {
                self.registered.insert(i);
            }
            "incoming" => {
                self.reached.insert((i, call.clone()));
                self.active.insert((i, call));
            }
            "answered" => self.hangups.push((at + hold, i, call)),
            "ended" => {
                self.active.remove(&(i, call));
            }
            "central" => {
                let error = v["error"].as_str().unwrap_or_default();
                if !error.is_empty() {
                    self.failing_at.insert(i, at);
                    self.drained_at.remove(&i);
                } else if v["backlog"] == 0 && self.failing_at.contains_key(&i) {
                    self.drained_at.entry(i).or_insert(at);
                }
            }
            "cti" => match v["access"].as_str() {
                Some("search") if v["searching"] == true => {
                    self.searching.insert((i, call), at);
                }
                Some("search") => {
                    let started = self.searching.remove(&(i, call));
                    match (v["ok"].as_bool(), started) {
                        (Some(true), Some(t)) => self.crm_ms.push((at - t).as_secs_f64() * 1000.0),
                        _ => self.crm_failed += 1,
                    }
                }
                Some("ring" | "hangup") => {
                    if v["ok"] == true {
                        self.accesses_ok += 1;
                    } else {
                        self.accesses_failed += 1;
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
}

/// sipp's `-trace_shortmsg` log read per Call-ID: INVITEs sent, and the 100, 180 and 200 of
/// each (µs after its first INVITE).
#[derive(Debug, Default, PartialEq)]
struct SippCalls {
    offered: usize,
    answered: usize,
    /// Calls every agent refused (Kamailio's 486 once the group was tried).
    all_busy: usize,
    /// The Call-IDs of the answered calls.
    answered_ids: BTreeSet<String>,
    ring_us: Vec<f64>,
    trying_us: Vec<f64>,
}

fn parse_sipp_trace(log: &str) -> SippCalls {
    #[derive(Default)]
    struct Call {
        sent: Option<f64>,
        trying: Option<f64>,
        ringing: Option<f64>,
        ok: bool,
        busy: bool,
    }
    let mut calls: BTreeMap<&str, Call> = BTreeMap::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (Some(at), Some(dir), Some(id), Some(cseq), Some(first)) =
            (f.get(2), f.get(3), f.get(4), f.get(5), f.get(6))
        else {
            continue;
        };
        let Some(at) = epoch_us(at) else { continue };
        let c = calls.entry(id).or_default();
        if *dir == "S" && first.starts_with("INVITE ") {
            c.sent = c.sent.or(Some(at));
        } else if *dir == "R" && cseq.trim_end().ends_with(" INVITE") {
            let (Some(sent), Some(code)) = (
                c.sent,
                first.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok()),
            ) else {
                continue;
            };
            match code {
                100 => c.trying = c.trying.or(Some(at - sent)),
                180 => c.ringing = c.ringing.or(Some(at - sent)),
                200..=299 => c.ok = true,
                486 => c.busy = true,
                _ => {}
            }
        }
    }
    let mut out = SippCalls::default();
    for (id, c) in calls.iter().filter(|(_, c)| c.sent.is_some()) {
        out.offered += 1;
        out.answered += usize::from(c.ok);
        if c.ok {
            out.answered_ids.insert((*id).to_owned());
        }
        out.all_busy += usize::from(c.busy && !c.ok);
        out.ring_us.extend(c.ringing);
        out.trying_us.extend(c.trying);
    }
    out
}

/// `1796380702.069942` → microseconds.
fn epoch_us(s: &str) -> Option<f64> {
    let (sec, usec) = s.trim().split_once('.')?;
    Some(sec.parse::<u64>().ok()? as f64 * 1e6 + usec.parse::<u64>().ok()? as f64)
}

/// Rows lost and duplicated: `local` and `central` are (agent, Call-ID, result) rows of the
/// phones' histories and of PostgreSQL; `reached` the calls that rang at an agent.
fn reconcile(
    local: &BTreeSet<(String, String, String)>,
    central: &BTreeSet<(String, String, String)>,
    reached: &BTreeSet<(String, String)>,
) -> (usize, usize) {
    let key = |r: &(String, String, String)| (r.0.clone(), r.1.clone());
    let central_keys: BTreeSet<(String, String)> = central.iter().map(key).collect();
    let local_keys: BTreeSet<(String, String)> = local.iter().map(key).collect();
    let lost = local_keys
        .union(reached)
        .filter(|k| !central_keys.contains(*k))
        .count();
    let strangers = central_keys.difference(&local_keys).count();
    let mut answered_at: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, call, result) in central {
        if result == "answered" {
            *answered_at.entry(call).or_default() += 1;
        }
    }
    let twice = answered_at.values().filter(|n| **n > 1).count();
    (lost, strangers + twice)
}

/// (agent, Call-ID, result or "") of every call in the phones' local histories.
fn local_rows(agents: &[Agent]) -> Result<BTreeSet<(String, String, String)>, String> {
    let mut local = BTreeSet::new();
    for a in agents {
        let db = crate::history::open_db(&a.db()).map_err(|e| format!("{}: {e}", a.id))?;
        let mut st = db
            .prepare("SELECT call_id, coalesce(result, '') FROM calls")
            .map_err(|e| format!("{}: history: {e}", a.id))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| format!("{}: history: {e}", a.id))?;
        for r in rows {
            let (c, res) = r.map_err(|e| format!("{}: history: {e}", a.id))?;
            local.insert((a.id.clone(), c, res));
        }
    }
    Ok(local)
}

/// One run with `n` agents.
fn run_one(n: usize, opts: Options) -> Result<Figures, String> {
    let sipp = which("sipp").ok_or("sipp is not installed (apt-get install -y sip-tester)")?;
    let dir = tempfile::Builder::new()
        .prefix("ctiphone-fleet-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let cps = opts.cps.unwrap_or((n as f64 / 10.0).max(1.0));
    let hold = Duration::from_secs(opts.hold);
    // The CRM serves from a runtime thread of its own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let crm = rt
        .block_on(crate::demo::crm::Crm::start())
        .map_err(|e| format!("the demo CRM cannot start: {e}"))?;
    let mut cluster = Cluster::start()?;
    let mut taken = HashSet::new();
    let kport = fresh_port(&mut taken)?;
    let mut ports: Vec<(u16, Option<UdpSocket>)> = (0..n)
        .map(|_| reserve_port().map(|(p, s)| (p, Some(s))))
        .collect::<Result<_, _>>()?;
    taken.extend(ports.iter().map(|p| p.0));
    let list: String = ports
        .iter()
        .enumerate()
        .map(|(i, (p, _))| format!("1 sip:agent-{}@127.0.0.1:{p}\n", i + 1))
        .collect();
    let _kamailio = start_kamailio(dir.path(), kport, &list)?;

    let (tx, rx): (Sender<Line>, Receiver<Line>) = channel();
    let mut agents = Vec::with_capacity(n);
    for (i, (port, held)) in ports.iter_mut().enumerate() {
        let id = format!("agent-{}", i + 1);
        let config = agent_config(&id, *port, kport, &cluster.url(), &crm.url());
        drop(held.take());
        agents.push(start_agent(dir.path(), i, id, &config, tx.clone())?);
    }
    drop(tx);
    let mut seen = Observed::default();
    let end = Instant::now() + Duration::from_secs(30 + n as u64 / 2);
    while seen.registered.len() < n {
        let left = end.checked_duration_since(Instant::now()).ok_or_else(|| {
            let missing: Vec<String> = (0..n)
                .filter(|i| !seen.registered.contains(i))
                .map(|i| format!("{} ({})", agents[i].id, agents[i].stderr_tail()))
                .take(3)
                .collect();
            format!(
                "{} of {n} agents registered; not: {}",
                seen.registered.len(),
                missing.join("; ")
            )
        })?;
        if let Ok(l) = rx.recv_timeout(left.min(Duration::from_millis(200))) {
            seen.take(l, hold);
        }
    }

    // sipp calls the group.
    std::fs::write(dir.path().join("fleet_uac.xml"), SCENARIO).map_err(|e| e.to_string())?;
    let sport = fresh_port(&mut taken)?;
    let media = (0..50)
        .find_map(|_| {
            let p = fresh_port(&mut taken).ok()? & !1;
            ((0..4).all(|k| UdpSocket::bind(("127.0.0.1", p.saturating_add(k))).is_ok()) && p >= 1024)
                .then_some(p)
        })
        .ok_or("no free media port for sipp")?;
    let total_calls = ((cps * opts.secs as f64).round() as u64).max(1);
    let cpu0: Vec<Option<Duration>> = agents.iter().map(|a| cpu_time(a.proc.child.id())).collect();
    let t0 = Instant::now();
    let sipp_child = Command::new(&sipp)
        .arg("-sf")
        .arg(dir.path().join("fleet_uac.xml"))
        .args(["-s", crate::demo::world::CALLED])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &sport.to_string(),
            "-mp",
            &media.to_string(),
        ])
        .args([
            "-r",
            &format!("{cps}"),
            "-rp",
            "1000",
            "-m",
            &total_calls.to_string(),
        ])
        .args(["-l", &(2 * n).to_string()])
        .args(["-trace_shortmsg", "-trace_err", "-nostdin"])
        .args([
            "-timeout",
            &format!("{}s", opts.secs + opts.hold + 120),
            "-timeout_error",
        ])
        .arg(format!("127.0.0.1:{kport}"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run sipp: {e}"))?;
    let mut sipp_proc = Proc {
        child: sipp_child,
        group: false,
    };

    // PostgreSQL down in the middle of the calls, on a thread of its own (pg_ctl waits).
    let (outage_tx, outage_rx) = channel();
    let outage = Duration::from_secs(opts.outage);
    let down_after = Duration::from_secs(opts.secs.saturating_sub(opts.outage) / 2);
    let outage_thread = std::thread::spawn(move || {
        let r = (|| {
            if outage.is_zero() {
                return Ok(None);
            }
            std::thread::sleep(down_after);
            let down = Instant::now();
            cluster.stop()?;
            std::thread::sleep(outage.saturating_sub(down.elapsed()));
            cluster.start_again()?;
            Ok::<_, String>(Some((down, Instant::now())))
        })();
        let _ = outage_tx.send(());
        (cluster, r)
    });

    let mut peak_rss: Vec<u64> = vec![0; n];
    let mut peak_pss: Vec<u64> = vec![0; n];
    let mut next_sample = Instant::now();
    let mut sipp_status = None;
    let mut sipp_done_at = None;
    let mut outage_done = opts.outage == 0;
    let limit = Instant::now() + Duration::from_secs(opts.secs + opts.hold + 150);
    // On an error too, the outage thread gives the cluster back (to be stopped) below.
    let calls: Result<(), String> = loop {
        let now = Instant::now();
        if now > limit {
            break Err("the calls did not end in time".into());
        }
        // Due hangups.
        let (due, later): (Vec<_>, Vec<_>) = seen.hangups.drain(..).partition(|(t, _, _)| *t <= now);
        seen.hangups = later;
        for (_, i, call) in due {
            agents[i].send(&json!({"cmd": "hangup", "call": call}));
        }
        if now >= next_sample {
            for (i, a) in agents.iter().enumerate() {
                peak_rss[i] = peak_rss[i].max(rss_kib(a.proc.child.id()).unwrap_or(0));
                peak_pss[i] = peak_pss[i].max(pss_kib(a.proc.child.id()).unwrap_or(0));
            }
            next_sample = now + Duration::from_secs(2);
        }
        if sipp_status.is_none()
            && let Ok(Some(st)) = sipp_proc.child.try_wait()
        {
            sipp_status = Some(st);
            sipp_done_at = Some(now);
        }
        if !outage_done && outage_rx.try_recv().is_ok() {
            outage_done = true;
        }
        if sipp_status.is_some() && seen.active.is_empty() && seen.hangups.is_empty() && outage_done {
            break Ok(());
        }
        let wait = seen
            .hangups
            .iter()
            .map(|(t, _, _)| t.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_millis(50))
            .min(Duration::from_millis(50));
        match rx.recv_timeout(wait) {
            Ok(l) => seen.take(l, hold),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                break Err("every phone's output ended".into());
            }
        }
    };
    let calls_end = sipp_done_at.unwrap_or_else(Instant::now);
    let wall = calls_end.duration_since(t0).as_secs_f64().max(0.001);
    let cpu_total: f64 = agents
        .iter()
        .zip(&cpu0)
        .filter_map(|(a, c0)| Some(cpu_time(a.proc.child.id())?.saturating_sub((*c0)?).as_secs_f64()))
        .sum();
    let (cluster, outage_r) = outage_thread
        .join()
        .map_err(|_| "the outage thread failed".to_owned())?;
    calls?;
    let window = outage_r?;
    let sipp_stderr = {
        let mut s = String::new();
        if let Some(mut e) = sipp_proc.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    };
    if let Some(st) = sipp_status
        && !matches!(st.code(), Some(0 | 1))
    {
        return Err(format!("sipp failed ({st}): {}", sipp_stderr.trim()));
    }

    // Every call finished in its phone's history (a result written, in the same transaction
    // as its outbox entry), then every outbox empty: what PostgreSQL holds is then final.
    let drain_limit = Instant::now() + Duration::from_secs(120);
    let back_at = window.map(|(_, up)| up);
    let (outbox_empty_at, local) = loop {
        while let Ok(l) = rx.try_recv() {
            seen.take(l, hold);
        }
        let local = local_rows(&agents)?;
        let open = local.iter().filter(|r| r.2.is_empty()).count();
        let mut left = 0u64;
        for a in &agents {
            match crate::central::shipper::sync_state(&a.db()) {
                Ok(s) => left += s.outbox,
                Err(e) => return Err(format!("{}: history: {e}", a.id)),
            }
        }
        if left == 0 && open == 0 {
            break (Instant::now(), local);
        }
        if Instant::now() > drain_limit {
            return Err(format!(
                "120 s after the calls, {open} calls still without a result in the phones' histories \
                 and {left} changes in their outboxes"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let drain_s = back_at.map(|up| {
        seen.failing_at
            .keys()
            .map(|i| {
                seen.drained_at
                    .get(i)
                    .copied()
                    .unwrap_or(outbox_empty_at)
                    .saturating_duration_since(up)
                    .as_secs_f64()
            })
            .fold(0.0, f64::max)
    });

    // Rows: PostgreSQL against the phones' own histories.
    let mut central = BTreeSet::new();
    let out = cluster.psql("SELECT agent, call_id, coalesce(result, '') FROM ctiphone.calls")?;
    for line in out.lines().filter(|l| !l.is_empty()) {
        let mut f = line.splitn(3, '|');
        if let (Some(a), Some(c), Some(r)) = (f.next(), f.next(), f.next()) {
            central.insert((a.to_owned(), c.to_owned(), r.to_owned()));
        }
    }
    let reached: BTreeSet<(String, String)> = seen
        .reached
        .iter()
        .map(|(i, c)| (agents[*i].id.clone(), c.clone()))
        .collect();
    let (lost, duplicated) = reconcile(&local, &central, &reached);

    let trace = std::fs::read_dir(dir.path())
        .map_err(|e| e.to_string())?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("_shortmessages.log"))
        .and_then(|e| std::fs::read_to_string(e.path()).ok())
        .ok_or_else(|| format!("sipp wrote no message trace: {}", sipp_stderr.trim()))?;
    let sipp_calls = parse_sipp_trace(&trace);
    // A call sipp saw answered must have its agent's row say so: any other is named.
    let answered_rows: HashSet<&str> = central
        .iter()
        .filter(|r| r.2 == "answered")
        .map(|r| r.1.as_str())
        .collect();
    let mut not_so_recorded = 0;
    for id in sipp_calls
        .answered_ids
        .iter()
        .filter(|id| !answered_rows.contains(id.as_str()))
    {
        not_so_recorded += 1;
        let rows: Vec<String> = central
            .iter()
            .filter(|r| r.1 == *id)
            .map(|r| format!("{} says {:?}", r.0, r.2))
            .collect();
        eprintln!(
            "ctiphone bench fleet: call {id}: sipp saw it answered; its rows: {}",
            if rows.is_empty() {
                "none".to_owned()
            } else {
                rows.join(", ")
            }
        );
        // What its phones logged of it.
        for a in agents
            .iter()
            .filter(|a| central.iter().any(|r| r.0 == a.id && r.1 == *id))
        {
            let log = std::fs::read_to_string(a.home.join("stderr.log")).unwrap_or_default();
            for l in log.lines().filter(|l| l.contains(id.as_str())).take(10) {
                eprintln!("  {}: {l}", a.id);
            }
        }
    }
    let final_result: HashMap<(&str, &str), &str> = local
        .iter()
        .map(|r| ((r.0.as_str(), r.1.as_str()), r.2.as_str()))
        .collect();
    let stale = central
        .iter()
        .filter(|r| {
            final_result
                .get(&(r.0.as_str(), r.1.as_str()))
                .is_some_and(|res| *res != r.2)
        })
        .count();
    let mut results = BTreeMap::new();
    for r in &central {
        *results.entry(r.2.clone()).or_insert(0) += 1;
    }
    for a in &mut agents {
        a.send(&json!({"cmd": "quit"}));
    }
    let figures = Figures {
        agents: n,
        cps,
        offered: sipp_calls.offered,
        answered: sipp_calls.answered,
        all_busy: sipp_calls.all_busy,
        reached: seen.reached.len(),
        busy_skips: central.iter().filter(|r| r.2 == "busy").count(),
        rows: central.len(),
        rows_answered: central.iter().filter(|r| r.2 == "answered").count(),
        results,
        answered_not_so_recorded: not_so_recorded,
        stale,
        lost,
        duplicated,
        ring_ms: sipp_calls.ring_us.iter().map(|u| u / 1000.0).collect(),
        floor_ms: sipp_calls.trying_us.iter().map(|u| u / 1000.0).collect(),
        crm_ms: seen.crm_ms,
        crm_failed: seen.crm_failed,
        accesses_ok: seen.accesses_ok,
        accesses_failed: seen.accesses_failed,
        crm_call_events: crm.call_events(),
        cpu_percent_per_agent: cpu_total / n as f64 / wall * 100.0,
        rss_kib: peak_rss,
        pss_kib: peak_pss,
        outage_s: window.map_or(0.0, |(down, up)| (up - down).as_secs_f64()),
        drain_s,
        outbox_empty_after_calls_s: outbox_empty_at.saturating_duration_since(calls_end).as_secs_f64(),
    };
    // Let the phones quit on their own before they are killed.
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end
        && agents
            .iter_mut()
            .any(|a| matches!(a.proc.child.try_wait(), Ok(None)))
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(agents);
    drop(crm);
    rt.shutdown_timeout(Duration::from_millis(200));
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at: &str, dir: &str, id: &str, cseq: &str, first: &str) -> String {
        format!("2026-12-04\t10:38:22.069942\t{at}\t{dir}\t{id}\tCSeq:{cseq}\t{first}\n")
    }

    #[test]
    fn the_trace_gives_each_call_its_ring_and_trying_times() {
        let inv = "INVITE sip:0120000111@127.0.0.1:5060 SIP/2.0";
        let log = [
            line("100.000000", "S", "1-1@x", "1 INVITE", inv),
            line("100.000200", "S", "2-1@x", "1 INVITE", inv),
            line("100.000300", "R", "1-1@x", "1 INVITE", "SIP/2.0 100 Trying"),
            line("100.002000", "R", "2-1@x", "1 INVITE", "SIP/2.0 180 Ringing"),
            line("100.004000", "R", "1-1@x", "1 INVITE", "SIP/2.0 180 Ringing"),
            // A retransmitted INVITE keeps the first one's time.
            line("100.500000", "S", "3-1@x", "1 INVITE", inv),
            line("101.000000", "S", "3-1@x", "1 INVITE", inv),
            line("101.000100", "R", "3-1@x", "1 INVITE", "SIP/2.0 100 Trying"),
            line("101.000000", "R", "1-1@x", "1 INVITE", "SIP/2.0 200 OK"),
            line("101.100000", "R", "1-1@x", "2 BYE", "SIP/2.0 200 OK"),
            "a torn line\n".into(),
            // A response to no INVITE of ours.
            line("102.000000", "R", "9-1@x", "1 INVITE", "SIP/2.0 200 OK"),
            // Every agent busy.
            line("103.000000", "S", "4-1@x", "1 INVITE", inv),
            line("103.000900", "R", "4-1@x", "1 INVITE", "SIP/2.0 486 Busy Here"),
        ]
        .concat();
        let c = parse_sipp_trace(&log);
        assert_eq!(
            c,
            SippCalls {
                offered: 4,
                answered: 1,
                all_busy: 1,
                answered_ids: ["1-1@x".to_owned()].into(),
                ring_us: vec![4000.0, 1800.0],
                trying_us: vec![300.0, 500_100.0],
            }
        );
    }

    fn set3(v: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
        v.iter()
            .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
            .collect()
    }

    #[test]
    fn lost_and_duplicated_rows_are_counted() {
        let reached: BTreeSet<(String, String)> = [("a1", "c1"), ("a2", "c2"), ("a2", "c9")]
            .iter()
            .map(|(a, c)| ((*a).to_owned(), (*c).to_owned()))
            .collect();
        let local = set3(&[
            ("a1", "c1", "answered"),
            ("a2", "c2", "busy"),
            ("a3", "c2", "answered"),
        ]);
        // Everything there: nothing lost (c9 rang but the phone never wrote it: lost).
        let central = local.clone();
        assert_eq!(reconcile(&local, &central, &reached), (1, 0));
        // Two rows no history has, one of them a call answered at a second agent.
        let mut central = set3(&[
            ("a1", "c1", "answered"),
            ("a2", "c2", "busy"),
            ("a3", "c2", "answered"),
            ("a2", "c9", "answered"),
            ("a4", "c1", "answered"),
        ]);
        assert_eq!(reconcile(&local, &central, &reached), (0, 3));
        central.remove(&("a1".to_owned(), "c1".to_owned(), "answered".to_owned()));
        assert_eq!(reconcile(&local, &central, &reached), (1, 2));
    }
}
