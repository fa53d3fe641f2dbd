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

mod center;
mod tally;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{cpu_time, percentile, rss_kib, which};
use crate::central::cluster::Cluster;
use center::{Line, Proc, agent_config, fresh_port, reserve_port, start_agent, start_kamailio};
use tally::{Observed, local_rows, parse_sipp_trace, reconcile};

const SCENARIO: &str = include_str!("../../../tests/peers/sipp/fleet_uac.xml");

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
    super::proc_figure(pid, "smaps_rollup", "Pss:")
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

/// One run with `n` agents.
fn run_one(n: usize, opts: Options) -> Result<Figures, String> {
    let sipp = which("sipp").ok_or("sipp is not installed (apt-get install -y sip-tester)")?;
    let dir = tempfile::Builder::new()
        .prefix("ctiphone-fleet-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let cps = opts.cps.unwrap_or((n as f64 / 10.0).max(1.0));
    let hold = Duration::from_secs(opts.hold);
    let (rt, crm) = super::demo_crm()?;
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
