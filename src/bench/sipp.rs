//! `ctiphone bench sip --sipp`: the signalling figures taken a second way, by sipp, to check
//! the bench's caller.
//!
//! sipp runs `tests/peers/sipp/bench_uac_rtd.xml` (compiled into the binary, written to a
//! temporary directory) against the same callees as the bench's method: ctiphone and baresip
//! started the same way, and the same floor UAS. Each sipp call calls the three in turn with
//! the bench's INVITE, with a pause of the gap after each.
//!
//! The figures come from sipp's own clock readings of when it sent each INVITE and when it
//! read each response (`-trace_shortmsg`: one line per message, `gettimeofday`, in
//! microseconds). sipp reads its clock for an INVITE after `sendto` returns: when it is
//! descheduled in between while the callee answers, that call reads short, even below the
//! floor. So sipp runs on a CPU of its own and the callees on the others (`super::cpus`), and
//! the report still names any median at or below the floor (`below_floor`) as not usable. The
//! scenario also times INVITE → 180 and INVITE → 200 with sipp's RTDs
//! (`-trace_rtt`), which are reported beside them; but sipp takes RTD times from
//! `CLOCK_MONOTONIC_COARSE`, which moves in steps of one kernel tick (4 ms at 250 Hz): each
//! RTD then reads 0 or a whole step, and since sipp's pauses end on such a step, the INVITE
//! leaves just after one and a response within the step reads 0. They count the calls; they
//! cannot time a sub-millisecond response.
//!
//! It lives in the binary rather than in a script so that it runs against exactly the phones
//! and the floor the bench's own method runs against, and reports through the same tables and
//! JSON.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use super::cpus::{self, Split};
use super::floor::Floor;
use super::sip::{AUDIO_NULL, Method, Responses, Series, SipFigures, Sipp};
use super::{Caller, free_udp_port, start_peers, which};

/// The scenario, and the name sipp gives its files (`bench_uac_rtd_<pid>_rtt.csv`, …).
const SCENARIO: &str = include_str!("../../tests/peers/sipp/bench_uac_rtd.xml");
const SCENARIO_NAME: &str = "bench_uac_rtd";

/// The callees, in the scenario's order; each names its `-key NAME_port` and its RTDs
/// `NAME_180` and `NAME_200`.
const CALLEES: [&str; 3] = ["ctiphone", "baresip", "floor"];

/// Runs sipp: `calls` counted calls to each callee (after one, sipp's first, not counted),
/// `gap_ms` apart.
pub(super) fn measure(calls: usize, gap_ms: u64) -> Result<SipFigures, String> {
    let sipp = which("sipp").ok_or("sipp is not installed (apt-get install sip-tester)")?;
    let version = sipp_version(&sipp);
    // The phones and the floor (a thread of this one) start on the callees' CPUs; the mask
    // comes back when `placed` is dropped.
    let placed = Placement::new();
    placed.callees()?;
    let mut peers = start_peers(AUDIO_NULL, false)?;
    if peers.len() < 2 {
        return Err(
            "the sipp method compares the two phones: baresip is not installed (apt-get install baresip-core)"
                .into(),
        );
    }
    let floor = Floor::start().map_err(|e| format!("the floor UAS cannot start: {e}"))?;
    let callees: Vec<(&'static str, u16)> = CALLEES
        .into_iter()
        .zip([peers[0].addr.port(), peers[1].addr.port(), floor.addr().port()])
        .collect();
    // A first call to each from the bench's caller, as in the bench's method.
    let mut caller = Caller::new().map_err(|e| e.to_string())?;
    for p in &peers {
        let _ = caller.call(p.addr);
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let scenario = dir.path().join(format!("{SCENARIO_NAME}.xml"));
    std::fs::write(&scenario, SCENARIO).map_err(|e| e.to_string())?;
    let port = free_udp_port().map_err(|e| e.to_string())?;
    let media = free_media_port().ok_or("no free media port for sipp")?;
    let rounds = calls + 1;
    // sipp's own limit: generous, for calls that would hang.
    let secs = 30 + rounds as u64 * 3 * (gap_ms + 200) / 1000;
    let mut cmd = Command::new(&sipp);
    // The keys first: sipp reads the scenario as it meets -sf.
    for (name, p) in &callees {
        cmd.args(["-key", &format!("{name}_port"), &p.to_string()]);
    }
    let (port, media, rounds, gap) = (
        port.to_string(),
        media.to_string(),
        rounds.to_string(),
        gap_ms.to_string(),
    );
    cmd.arg("-sf")
        .arg(&scenario)
        .args(["-i", "127.0.0.1", "-p", &port, "-mp", &media])
        .args(["-m", &rounds, "-l", "1", "-r", "1000", "-d", &gap])
        .args([
            "-trace_shortmsg",
            "-trace_rtt",
            "-rtt_freq",
            "1",
            "-trace_err",
            "-nostdin",
        ])
        .args(["-timeout", &format!("{secs}s"), "-timeout_error"])
        .arg(format!("127.0.0.1:{}", callees[0].1))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    placed.sipp()?;
    let child = cmd.spawn();
    placed.callees()?;
    let out = child
        .and_then(std::process::Child::wait_with_output)
        .map_err(|e| format!("cannot run sipp: {e}"))?;
    peers[0].quit();
    let errors = read_named(dir.path(), "_errors.log").unwrap_or_default();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    // 0: every call succeeded; 1: some failed (counted below); anything else: sipp gave up.
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(format!("sipp failed ({}): {stderr}{}", out.status, tail(&errors)));
    }
    let trace = read_named(dir.path(), "_shortmessages.log")
        .ok_or_else(|| format!("sipp wrote no message trace: {stderr}{}", tail(&errors)))?;
    if out.status.code() == Some(1) {
        eprintln!("sipp counted failed calls{}", tail(&errors));
    }
    let rtd = read_named(dir.path(), "_rtt.csv").map_or_else(BTreeMap::new, |csv| parse_rtt(&csv));
    Ok(SipFigures {
        method: Method::Sipp(Sipp {
            version,
            clock_step_us: coarse_clock_step_us(),
            cpus: placed.split.clone(),
            // Without sipp's first call, as the figures.
            rtd: rtd
                .into_iter()
                .map(|(name, v)| (name, v.into_iter().skip(1).collect()))
                .collect(),
        }),
        calls,
        series: vec![series_of(&parse_trace(&trace, &callees), calls, gap_ms)],
        idle_rss_kib: Vec::new(),
        baresip: true,
    })
}

/// sipp's CPU and the callees' ([`cpus`]), and the mask to return to.
struct Placement {
    before: Option<Vec<usize>>,
    split: Option<Split>,
}

impl Placement {
    /// The split of this thread's CPUs; none with a single CPU (or an unreadable mask).
    fn new() -> Self {
        let before = cpus::allowed().ok();
        let split = before.as_deref().and_then(cpus::split);
        Self { before, split }
    }

    fn pin(&self, which: impl Fn(&Split) -> Vec<usize>) -> Result<(), String> {
        match &self.split {
            Some(s) => cpus::pin_this_thread(&which(s))
                .map_err(|e| format!("cannot place sipp and the callees on CPUs: {e}")),
            None => Ok(()),
        }
    }

    /// What this thread starts from now on runs on the callees' CPUs.
    fn callees(&self) -> Result<(), String> {
        self.pin(|s| s.callees.clone())
    }

    /// What this thread starts from now on runs on sipp's CPU.
    fn sipp(&self) -> Result<(), String> {
        self.pin(|s| vec![s.sipp])
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        if let (Some(before), Some(_)) = (&self.before, &self.split) {
            let _ = cpus::pin_this_thread(before);
        }
    }
}

/// The step of `CLOCK_MONOTONIC_COARSE`, sipp's clock for RTDs, in microseconds.
fn coarse_clock_step_us() -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes one timespec through a valid pointer to a local.
    let ok = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } == 0;
    ok.then(|| ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3)
}

/// `sipp -v`'s version line ("SIPp v3.6.1-…"), or "sipp".
fn sipp_version(sipp: &Path) -> String {
    Command::new(sipp)
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.contains("SIPp v"))
                .map(|l| l.trim().trim_end_matches('.').to_owned())
        })
        .unwrap_or_else(|| "sipp".into())
}

/// An even UDP port with the three above it free too (sipp binds its media port and the
/// port two above, each with its RTCP).
fn free_media_port() -> Option<u16> {
    (0..50).find_map(|_| {
        let p = free_udp_port().ok()? & !1;
        let free = (0..4).all(|i| {
            p.checked_add(i)
                .is_some_and(|q| std::net::UdpSocket::bind(("127.0.0.1", q)).is_ok())
        });
        (p >= 1024 && free).then_some(p)
    })
}

/// The file sipp wrote in `dir` whose name starts with the scenario's and ends with `suffix`.
fn read_named(dir: &Path, suffix: &str) -> Option<String> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        (name.starts_with(SCENARIO_NAME) && name.ends_with(suffix))
            .then(|| std::fs::read_to_string(e.path()).ok())
            .flatten()
    })
}

/// The last lines of sipp's error log, to quote.
fn tail(errors: &str) -> String {
    let lines: Vec<&str> = errors.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "; sipp's errors: {}",
        lines[lines.len().saturating_sub(5)..].join(" | ")
    )
}

/// sipp's `-trace_rtt` CSV (`Date_ms;response_time_ms;rtd_no`, the RTD by name): every
/// response time of each RTD in microseconds, in the order sipp took them.
fn parse_rtt(csv: &str) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in csv.lines() {
        let cells: Vec<&str> = line.trim().split(';').collect();
        let [_, ms, rtd] = cells[..] else {
            continue;
        };
        // The header line, repeated at each of sipp's dumps, does not parse.
        let Ok(ms) = ms.trim().parse::<f64>() else {
            continue;
        };
        // sipp's figures are whole microseconds: rounding to the nanosecond drops float noise.
        out.entry(rtd.trim().to_owned())
            .or_default()
            .push((ms * 1e6).round() / 1e3);
    }
    out
}

/// One INVITE of sipp's trace: its callee, and its 180 and 200 (µs after it) when they came.
struct Invite {
    callee: &'static str,
    sent_us: f64,
    ringing_us: Option<f64>,
    ok_us: Option<f64>,
}

/// sipp's `-trace_shortmsg` log: one line per message sent (`S`) or read (`R`), tab-separated:
/// date, time, `EPOCH.USEC`, S/R, Call-ID, `CSeq:N METHOD`, first line. Every INVITE sent, in
/// order, with its callee (from the port of its Request-URI) and the times of the INVITE's 180
/// and 2xx read after it, before the next INVITE (sipp runs one call at a time, one callee at a
/// time). A retransmission of an INVITE still unanswered is not a new one.
fn parse_trace(log: &str, callees: &[(&'static str, u16)]) -> Vec<Invite> {
    let mut out: Vec<Invite> = Vec::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (Some(at), Some(dir), Some(cseq), Some(first)) = (f.get(2), f.get(3), f.get(5), f.get(6)) else {
            continue;
        };
        let Some(at) = epoch_us(at) else {
            continue;
        };
        if *dir == "S" {
            let Some(uri) = first.strip_prefix("INVITE ") else {
                continue;
            };
            let port = uri
                .split(' ')
                .next()
                .and_then(|u| u.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok());
            let Some(&(callee, _)) = callees.iter().find(|(_, p)| Some(*p) == port) else {
                continue;
            };
            let resent = out
                .last()
                .is_some_and(|i| i.callee == callee && i.ringing_us.is_none() && i.ok_us.is_none());
            if !resent {
                out.push(Invite {
                    callee,
                    sent_us: at,
                    ringing_us: None,
                    ok_us: None,
                });
            }
        } else if *dir == "R" && cseq.trim_end().ends_with(" INVITE") {
            let (Some(inv), Some(code)) = (
                out.last_mut(),
                first.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok()),
            ) else {
                continue;
            };
            let t = Some(at - inv.sent_us);
            match code {
                180 => inv.ringing_us = inv.ringing_us.or(t),
                200..=299 => inv.ok_us = inv.ok_us.or(t),
                _ => {}
            }
        }
    }
    out
}

/// `1796380702.069942` → microseconds.
fn epoch_us(s: &str) -> Option<f64> {
    let (sec, usec) = s.trim().split_once('.')?;
    Some(sec.parse::<u64>().ok()? as f64 * 1e6 + usec.parse::<u64>().ok()? as f64)
}

/// The series of one sipp run: each callee's INVITEs without the first (sipp's first call);
/// one that got no 2xx counts as failed.
fn series_of(invites: &[Invite], calls: usize, gap_ms: u64) -> Series {
    let callees = CALLEES
        .iter()
        .map(|name| {
            let mine: Vec<&Invite> = invites.iter().filter(|i| i.callee == *name).skip(1).collect();
            let ok: Vec<f64> = mine.iter().filter_map(|i| i.ok_us).collect();
            let responses = Responses {
                trying: Vec::new(),
                ringing: mine.iter().filter_map(|i| i.ringing_us).collect(),
                failed: calls.saturating_sub(ok.len()),
                ok,
                calls,
            };
            (*name, responses)
        })
        .collect();
    Series { gap_ms, callees }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rtt_csv_is_read_per_rtd_in_microseconds() {
        let csv = "Date_ms;response_time_ms;rtd_no\n\
                   104.001;0.431;ctiphone_180\n\
                   Date_ms;response_time_ms;rtd_no\n\
                   104.002;4;ctiphone_200\n\
                   154.1;0;ctiphone_180\n\
                   garbage line\n";
        let t = parse_rtt(csv);
        assert_eq!(t["ctiphone_180"], [431.0, 0.0]);
        assert_eq!(t["ctiphone_200"], [4000.0]);
        assert_eq!(t.len(), 2);
    }

    /// A line of sipp's short message trace at `sec.usec`.
    fn line(at: &str, dir: &str, cseq: &str, first: &str) -> String {
        format!("2026-12-04\t10:38:22.069942\t{at}\t{dir}\t1-1@127.0.0.1\tCSeq:{cseq}\t{first}\n")
    }

    #[test]
    fn the_message_trace_gives_each_invite_its_callee_and_response_times() {
        let callees = [("ctiphone", 5001), ("baresip", 5002), ("floor", 5003)];
        let mut log = String::new();
        for (i, (at, dir, cseq, first)) in [
            // sipp's first call to ctiphone: not counted.
            (
                "100.000000",
                "S",
                "1 INVITE",
                "INVITE sip:bench@127.0.0.1:5001 SIP/2.0",
            ),
            ("100.000300", "R", "1 INVITE", "SIP/2.0 180 Ringing"),
            ("100.000500", "R", "1 INVITE", "SIP/2.0 200 OK"),
            // The counted one: a 100 first, and the BYE's 200 after.
            (
                "101.000000",
                "S",
                "1 INVITE",
                "INVITE sip:bench@127.0.0.1:5001 SIP/2.0",
            ),
            ("101.000100", "R", "1 INVITE", "SIP/2.0 100 Trying"),
            ("101.000450", "R", "1 INVITE", "SIP/2.0 180 Ringing"),
            ("101.000600", "R", "1 INVITE", "SIP/2.0 200 OK"),
            ("101.000700", "S", "1 ACK", "ACK sip:bench@127.0.0.1:5001 SIP/2.0"),
            ("101.000800", "S", "2 BYE", "BYE sip:bench@127.0.0.1:5001 SIP/2.0"),
            ("101.000900", "R", "2 BYE", "SIP/2.0 200 OK"),
            // baresip: an INVITE retransmitted 0.5 s later, then answered.
            (
                "102.000000",
                "S",
                "1 INVITE",
                "INVITE sip:bench@127.0.0.1:5002 SIP/2.0",
            ),
            (
                "102.500000",
                "S",
                "1 INVITE",
                "INVITE sip:bench@127.0.0.1:5002 SIP/2.0",
            ),
            ("102.500400", "R", "1 INVITE", "SIP/2.0 180 Ringing"),
            ("102.501000", "R", "1 INVITE", "SIP/2.0 200 OK"),
            // An INVITE to nobody of ours is no call.
            (
                "103.000000",
                "S",
                "1 INVITE",
                "INVITE sip:bench@127.0.0.1:6000 SIP/2.0",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            log.push_str(&line(at, dir, cseq, first));
            if i == 2 {
                log.push_str("a torn line\n");
            }
        }
        let invites = parse_trace(&log, &callees);
        let got: Vec<_> = invites
            .iter()
            .map(|i| (i.callee, i.ringing_us, i.ok_us))
            .collect();
        assert_eq!(
            got,
            [
                ("ctiphone", Some(300.0), Some(500.0)),
                ("ctiphone", Some(450.0), Some(600.0)),
                ("baresip", Some(500_400.0), Some(501_000.0)),
            ]
        );
        let s = series_of(&invites, 1, 50);
        let ct = s.get("ctiphone").expect("ctiphone");
        assert_eq!(
            (ct.ringing.as_slice(), ct.ok.as_slice(), ct.failed),
            (&[450.0][..], &[600.0][..], 0)
        );
        // baresip's only call was its first (not counted); the floor was never called.
        for who in ["baresip", "floor"] {
            assert_eq!(s.get(who).map(|r| (r.ok.len(), r.failed)), Some((0, 1)), "{who}");
        }
    }

    #[test]
    fn the_scenario_names_every_key_and_rtd_the_bench_reads() {
        for name in CALLEES {
            for needle in [
                format!("[{name}_port]"),
                format!("start_rtd=\"{name}_180\""),
                format!("start_rtd=\"{name}_200\""),
                format!(" rtd=\"{name}_180\""),
                format!(" rtd=\"{name}_200\""),
            ] {
                assert!(SCENARIO.contains(&needle), "no {needle} in {SCENARIO_NAME}.xml");
            }
        }
    }
}
