//! `ctiphone bench sip`: how fast each phone answers an INVITE, measured like for like.
//!
//! One loopback caller (the bench's `Caller`) calls ctiphone (`headless --auto-answer`),
//! baresip (auto-answer) and the floor (`floor::Floor`, a minimal UAS of the bench's own) in
//! turn, with the same INVITE, and times INVITE → 100 Trying (where a phone sends one),
//! → 180 Ringing and → 200 OK, then ACKs and hangs up. Each INVITE leaves `--gap-ms` after the
//! previous call ended (agents do not take a call a millisecond after hanging up); a second
//! series with no gap, back to back, follows as extra rows that say so. The order of the three
//! turns round by round, so none always follows the same one.
//!
//! Every figure is a median or p99 over the calls. The floor's is what the caller and the
//! loopback cost by themselves; each phone is also given above it, and the ratio
//! ctiphone / baresip of the figures above the floor is the one the table prints.
//!
//! `--sipp` measures the same with sipp's own response times instead (`super::sipp`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::floor::Floor;
use super::{Caller, Metric, Samples, percentile, print_table, rss_kib, start_peers};

/// The phones' configuration for the signalling part: no audio devices.
pub(super) const AUDIO_NULL: &str = "[audio]\ninput = \"null\"\noutput = \"null\"\n";

/// The response times of one callee over a series of calls, in microseconds.
#[derive(Default)]
pub(super) struct Responses {
    pub trying: Vec<f64>,
    pub ringing: Vec<f64>,
    pub ok: Vec<f64>,
    /// Calls made, and calls that got no 200 (an error response, or nothing within 3 s).
    pub calls: usize,
    pub failed: usize,
}

/// One series: every callee called `calls` times in turn, each INVITE `gap_ms` after the
/// previous call ended.
pub(super) struct Series {
    pub gap_ms: u64,
    /// ctiphone, baresip when it ran, the floor.
    pub callees: Vec<(&'static str, Responses)>,
}

impl Series {
    pub(super) fn get(&self, name: &str) -> Option<&Responses> {
        self.callees.iter().find(|(n, _)| *n == name).map(|(_, r)| r)
    }

    /// How the rows of this series are named: back-to-back ones say so.
    fn prefix(&self) -> &'static str {
        if self.gap_ms == 0 { "back-to-back: " } else { "" }
    }

    /// The phones' medians that read at or below the floor's: a phone does everything the
    /// floor does and more, so such a reading is not the phone's time but the method's noise
    /// (a busy machine: the floor's calls slowed, or sipp descheduled between sending an INVITE
    /// and reading its clock).
    /// Named as in the table: `ctiphone INVITE -> 180 Ringing median`.
    fn below_floor(&self) -> Vec<String> {
        let Some(floor) = self.get("floor") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, r) in self.callees.iter().filter(|(n, _)| *n != "floor") {
            for resp in [Response::Ringing, Response::Ok] {
                let (Some(ours), Some(fl)) = (
                    percentile(resp.times(r), 50.0),
                    percentile(resp.floor_times(floor), 50.0),
                ) else {
                    continue;
                };
                if ours <= fl {
                    out.push(format!(
                        "{name} {}INVITE -> {} median",
                        self.prefix(),
                        resp.label()
                    ));
                }
            }
        }
        out
    }
}

/// How the figures were taken.
pub(super) enum Method {
    /// The bench's own caller.
    Bench,
    /// sipp's clock readings (`super::sipp`).
    Sipp(Sipp),
}

/// What the sipp method also reports.
pub(super) struct Sipp {
    /// `sipp -v`'s version line.
    pub version: String,
    /// The step of the clock sipp times its RTDs with (`CLOCK_MONOTONIC_COARSE`), µs.
    pub clock_step_us: Option<f64>,
    /// sipp's own RTDs (`NAME_180`, `NAME_200`), each value in µs, its first call left out.
    pub rtd: Vec<(String, Vec<f64>)>,
    /// sipp's CPU and the callees' (None: a single CPU, not split).
    pub cpus: Option<super::cpus::Split>,
}

/// Everything `ctiphone bench sip` measured.
pub(super) struct SipFigures {
    pub method: Method,
    pub calls: usize,
    /// The series at the asked gap, then (when that gap is not 0) the back-to-back one.
    pub series: Vec<Series>,
    /// Idle RSS of each phone after start (the bench's method only).
    pub idle_rss_kib: Vec<(&'static str, Option<u64>)>,
    pub baresip: bool,
}

impl SipFigures {
    /// Calls with no 200, over every series, of one callee (None: it did not run).
    pub(super) fn failed(&self, name: &str) -> Option<usize> {
        let mut found = false;
        let mut n = 0;
        for s in &self.series {
            if let Some(r) = s.get(name) {
                found = true;
                n += r.failed;
            }
        }
        found.then_some(n)
    }

    /// Every series' medians that read at or below the floor ([`Series::below_floor`]).
    pub(super) fn below_floor(&self) -> Vec<String> {
        self.series.iter().flat_map(Series::below_floor).collect()
    }

    /// The line the text reports print when some median read at or below the floor.
    pub(super) fn below_floor_note(&self) -> Option<String> {
        let below = self.below_floor();
        if below.is_empty() {
            return None;
        }
        let why = match self.method {
            Method::Bench => "the floor's calls were slowed",
            Method::Sipp(_) => "sipp reads its clock after sending the INVITE and was descheduled in between",
        };
        Some(format!(
            "NOT USABLE: {} read at or below the floor, which a phone cannot do; {why}: the \
             machine was busy. Run again on an idle machine.",
            below.join(", ")
        ))
    }
}

/// The three responses timed, in the order of the rows.
#[derive(Clone, Copy)]
enum Response {
    Trying,
    Ringing,
    Ok,
}

impl Response {
    const ALL: [Response; 3] = [Response::Trying, Response::Ringing, Response::Ok];

    fn label(self) -> &'static str {
        match self {
            Response::Trying => "100 Trying",
            Response::Ringing => "180 Ringing",
            Response::Ok => "200 OK",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Response::Trying => "invite_to_100_us",
            Response::Ringing => "invite_to_180_us",
            Response::Ok => "invite_to_200_us",
        }
    }

    fn times(self, r: &Responses) -> &[f64] {
        match self {
            Response::Trying => &r.trying,
            Response::Ringing => &r.ringing,
            Response::Ok => &r.ok,
        }
    }

    /// The floor's figure for this response: it sends no 100, so for the 100 its first
    /// response (the 180) is what the same path costs.
    fn floor_times(self, floor: &Responses) -> &[f64] {
        match self {
            Response::Trying | Response::Ringing => &floor.ringing,
            Response::Ok => &floor.ok,
        }
    }
}

/// Runs the signalling benchmark (the bench's caller, or sipp) and prints it; the exit code.
pub fn sip(calls: usize, gap_ms: u64, sipp: bool, as_json: bool) -> u8 {
    let calls = calls.max(1);
    let figures = if sipp {
        super::sipp::measure(calls, gap_ms)
    } else {
        measure(calls, gap_ms)
    };
    match figures {
        Ok(f) => {
            if as_json {
                println!("{}", report_json(&f));
            } else {
                print_report(&f);
            }
            0
        }
        Err(e) => {
            eprintln!("ctiphone bench: {e}");
            1
        }
    }
}

/// The bench's method: idle RSS, a warm-up call to each (not counted), the series at `gap_ms`,
/// then the back-to-back one when `gap_ms` is not 0.
pub(super) fn measure(calls: usize, gap_ms: u64) -> Result<SipFigures, String> {
    let mut peers = start_peers(AUDIO_NULL, false)?;
    let floor = Floor::start().map_err(|e| format!("the floor UAS cannot start: {e}"))?;
    let idle_rss_kib = peers.iter().map(|p| (p.name, rss_kib(p.child.id()))).collect();
    let mut callees: Vec<(&'static str, SocketAddr)> = peers.iter().map(|p| (p.name, p.addr)).collect();
    callees.push(("floor", floor.addr()));
    let mut caller = Caller::new().map_err(|e| e.to_string())?;
    for (_, addr) in &callees {
        let _ = caller.call(*addr);
    }
    let mut series = vec![run_series(&mut caller, &callees, calls, gap_ms)];
    if gap_ms > 0 {
        series.push(run_series(&mut caller, &callees, calls, 0));
    }
    peers[0].quit();
    Ok(SipFigures {
        method: Method::Bench,
        calls,
        series,
        idle_rss_kib,
        baresip: peers.len() > 1,
    })
}

/// `calls` rounds; in each, every callee is called once, the first one turning round by round.
fn run_series(
    caller: &mut Caller,
    callees: &[(&'static str, SocketAddr)],
    calls: usize,
    gap_ms: u64,
) -> Series {
    let gap = Duration::from_millis(gap_ms);
    let mut out: Vec<Responses> = callees.iter().map(|_| Responses::default()).collect();
    let mut ended = Instant::now();
    for round in 0..calls {
        for k in 0..callees.len() {
            let i = (round + k) % callees.len();
            if let Some(wait) = (ended + gap).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let r = &mut out[i];
            r.calls += 1;
            match caller.call(callees[i].1) {
                Some(t) => {
                    r.trying.extend(t.trying_us);
                    r.ringing.extend(t.ringing_us);
                    r.ok.push(t.ok_us);
                }
                None => r.failed += 1,
            }
            ended = Instant::now();
        }
    }
    Series {
        gap_ms,
        callees: callees.iter().map(|c| c.0).zip(out).collect(),
    }
}

/// The rows of one series: each response's median and p99 (the 100's only when `trying`: the
/// sipp method does not time it).
fn series_metrics(s: &Series, trying: bool) -> Vec<Metric> {
    let (Some(ours), Some(floor)) = (s.get("ctiphone"), s.get("floor")) else {
        return Vec::new();
    };
    let theirs = s.get("baresip");
    let mut rows = Vec::new();
    for resp in Response::ALL {
        if matches!(resp, Response::Trying) && !trying {
            continue;
        }
        for (stat, p) in [("median", 50.0), ("p99", 99.0)] {
            let mut m = Metric::new(
                format!("{}INVITE -> {} {stat}", s.prefix(), resp.label()),
                "us",
                0,
                percentile(resp.times(ours), p),
                theirs.and_then(|t| percentile(resp.times(t), p)),
            );
            m.floor = percentile(resp.floor_times(floor), p);
            m.samples = Some(Samples {
                ours: resp.times(ours).len(),
                theirs: theirs.map(|t| resp.times(t).len()),
                floor: resp.floor_times(floor).len(),
            });
            m.missing = "not sent";
            rows.push(m);
        }
    }
    rows
}

/// The signalling rows of a table: every series, then (the bench's method) idle RSS.
pub(super) fn sip_metrics(f: &SipFigures) -> Vec<Metric> {
    let trying = matches!(f.method, Method::Bench);
    let mut rows: Vec<Metric> = f.series.iter().flat_map(|s| series_metrics(s, trying)).collect();
    if trying {
        let rss = |name: &str| {
            f.idle_rss_kib
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, r)| r.map(|v| v as f64))
        };
        rows.push(Metric::new("idle RSS", "KiB", 0, rss("ctiphone"), rss("baresip")));
    }
    rows
}

/// What was run, for the first line of the text report.
pub(super) fn describe(f: &SipFigures) -> String {
    let who = if f.baresip {
        "ctiphone, baresip and the floor"
    } else {
        "ctiphone and the floor"
    };
    let spacing = match f.series.first().map(|s| s.gap_ms) {
        Some(0) | None => "back to back (each INVITE as soon as the previous call ended)".to_owned(),
        Some(g) if f.series.len() > 1 => {
            format!("each INVITE {g} ms after the previous call ended, then as many back to back")
        }
        Some(g) => format!("each INVITE {g} ms after the previous call ended"),
    };
    format!("{} calls to each of {who}, in turn; {spacing}", f.calls)
}

/// "answered (200) / rang (180)" of each callee in each series, and the failed calls.
fn print_counts(f: &SipFigures) {
    for s in &f.series {
        let counts: Vec<String> = s
            .callees
            .iter()
            .map(|(n, r)| format!("{n} {}/{} of {}", r.ok.len(), r.ringing.len(), r.calls))
            .collect();
        println!(
            "{}calls answered/rang: {}",
            if s.gap_ms == 0 { "back to back, " } else { "" },
            counts.join(", ")
        );
    }
    let failed = |n: &str| f.failed(n).map_or("not installed".to_owned(), |v| v.to_string());
    println!(
        "failed calls: ctiphone {}, baresip {}, floor {}",
        failed("ctiphone"),
        failed("baresip"),
        failed("floor")
    );
}

fn print_report(f: &SipFigures) {
    match &f.method {
        Method::Bench => println!("ctiphone bench sip: {}; loopback UDP, auto-answer", describe(f)),
        Method::Sipp(sipp) => println!(
            "ctiphone bench sip --sipp: sipp's clock readings of each INVITE sent and each response \
             read ({}, -trace_shortmsg); {}; loopback UDP, auto-answer",
            sipp.version,
            describe(f)
        ),
    }
    print_table(&sip_metrics(f), f.baresip);
    print_counts(f);
    if let Method::Sipp(sipp) = &f.method {
        match &sipp.cpus {
            Some(c) => println!(
                "sipp ran on CPU {}, the phones and the floor on CPU {:?}",
                c.sipp, c.callees
            ),
            None => {
                println!("a single CPU: sipp and the phones shared it (readings may fall below the floor)")
            }
        }
    }
    if let Some(note) = f.below_floor_note() {
        println!("{note}");
    }
    if let Method::Sipp(sipp) = &f.method {
        let step = sipp
            .clock_step_us
            .map_or("unknown steps".to_owned(), |s| format!("steps of {s:.0} us here"));
        println!("sipp's own RTDs (-trace_rtt), timed on CLOCK_MONOTONIC_COARSE ({step}), not used above:");
        for (name, v) in &sipp.rtd {
            let mean = (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
            let us = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.0} us"));
            println!(
                "  {name:<14} {} values, median {}, mean {}",
                v.len(),
                us(percentile(v, 50.0)),
                us(mean)
            );
        }
    }
}

fn stat_json(v: &[f64]) -> Value {
    json!({ "median": percentile(v, 50.0), "p99": percentile(v, 99.0) })
}

/// A figure minus the floor's, median and p99.
fn above_json(v: &[f64], floor: &[f64]) -> Value {
    let above = |p| Some(percentile(v, p)? - percentile(floor, p)?);
    json!({ "median": above(50.0), "p99": above(99.0) })
}

fn responses_json(r: &Responses, floor: Option<&Responses>, trying: bool) -> Value {
    let mut o = json!({
        "calls": r.calls,
        "failed": r.failed,
        "answered": r.ok.len(),
        "rang": r.ringing.len(),
        "invite_to_100_us": if trying {
            json!({ "median": percentile(&r.trying, 50.0), "p99": percentile(&r.trying, 99.0), "sent": r.trying.len() })
        } else {
            Value::Null
        },
        "invite_to_180_us": stat_json(&r.ringing),
        "invite_to_200_us": stat_json(&r.ok),
    });
    if let Some(fl) = floor {
        let mut above = serde_json::Map::new();
        for resp in Response::ALL {
            if matches!(resp, Response::Trying) && !trying {
                continue;
            }
            above.insert(resp.key().into(), above_json(resp.times(r), resp.floor_times(fl)));
        }
        o["above_floor"] = Value::Object(above);
    }
    o
}

/// One series as JSON: each callee, and the ratios ctiphone / baresip above the floor.
fn series_json(s: &Series, trying: bool) -> Value {
    let floor = s.get("floor");
    let peer = |n: &str| s.get(n).map_or(Value::Null, |r| responses_json(r, floor, trying));
    let mut ratios = serde_json::Map::new();
    if let (Some(ours), Some(theirs), Some(fl)) = (s.get("ctiphone"), s.get("baresip"), floor) {
        for resp in Response::ALL {
            if matches!(resp, Response::Trying) && !trying {
                continue;
            }
            let ratio = |p| {
                let fl = percentile(resp.floor_times(fl), p)?;
                super::ratio_above(
                    percentile(resp.times(ours), p)? - fl,
                    percentile(resp.times(theirs), p)? - fl,
                )
            };
            ratios.insert(
                resp.key().trim_end_matches("_us").into(),
                json!({ "median": ratio(50.0), "p99": ratio(99.0) }),
            );
        }
    }
    json!({
        "gap_ms": s.gap_ms,
        "ctiphone": peer("ctiphone"),
        "baresip": peer("baresip"),
        "floor": floor.map_or(Value::Null, |r| responses_json(r, None, false)),
        "ratio_above_floor": ratios,
        "below_floor": s.below_floor(),
    })
}

/// `ctiphone bench sip --json`: the first series at the top level (`ctiphone` and `baresip`
/// keep the keys they had before the floor; `baresip` is null when it did not run), the
/// back-to-back series under `back_to_back` (null when the first series is back to back).
pub(super) fn report_json(f: &SipFigures) -> Value {
    let trying = matches!(f.method, Method::Bench);
    let mut top = f.series.first().map_or(json!({}), |s| series_json(s, trying));
    for (name, rss) in &f.idle_rss_kib {
        if let Some(o) = top.get_mut(*name).and_then(Value::as_object_mut) {
            o.insert("idle_rss_kib".into(), json!(rss));
        }
    }
    top["method"] = match &f.method {
        Method::Bench => json!("bench"),
        Method::Sipp(_) => json!("sipp"),
    };
    if let Method::Sipp(sipp) = &f.method {
        top["sipp_version"] = json!(sipp.version);
        let rtd: serde_json::Map<String, Value> = sipp
            .rtd
            .iter()
            .map(|(name, v)| {
                let mean = (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
                (
                    name.clone(),
                    json!({ "values": v.len(), "median": percentile(v, 50.0), "mean": mean }),
                )
            })
            .collect();
        top["sipp_rtd_us"] = json!({ "clock_step_us": sipp.clock_step_us, "rtds": rtd });
        top["cpus"] = sipp
            .cpus
            .as_ref()
            .map_or(Value::Null, |c| json!({ "sipp": c.sipp, "callees": c.callees }));
    }
    top["calls"] = json!(f.calls);
    top["baresip_installed"] = json!(f.baresip);
    top["back_to_back"] = f.series.get(1).map_or(Value::Null, |s| series_json(s, trying));
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    fn responses(ringing: &[f64], ok: &[f64]) -> Responses {
        Responses {
            ringing: ringing.to_vec(),
            ok: ok.to_vec(),
            calls: ok.len(),
            ..Responses::default()
        }
    }

    #[test]
    fn a_phone_median_at_or_below_the_floor_is_named_as_not_usable() {
        let series = Series {
            gap_ms: 0,
            callees: vec![
                ("ctiphone", responses(&[29.0, 30.0, 600.0], &[90.0, 95.0, 900.0])),
                (
                    "baresip",
                    responses(&[190.0, 200.0, 210.0], &[117.0, 760.0, 780.0]),
                ),
                ("floor", responses(&[70.0, 77.0, 80.0], &[110.0, 117.0, 120.0])),
            ],
        };
        assert_eq!(
            series.below_floor(),
            [
                "ctiphone back-to-back: INVITE -> 180 Ringing median",
                "ctiphone back-to-back: INVITE -> 200 OK median",
            ]
        );
        let f = SipFigures {
            method: Method::Bench,
            calls: 3,
            series: vec![series],
            idle_rss_kib: Vec::new(),
            baresip: true,
        };
        let note = f.below_floor_note().unwrap_or_default();
        assert!(note.starts_with("NOT USABLE: ctiphone back-to-back"), "{note}");
        assert_eq!(report_json(&f)["below_floor"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn phones_above_the_floor_or_without_one_give_no_note() {
        let mut f = SipFigures {
            method: Method::Bench,
            calls: 2,
            series: vec![Series {
                gap_ms: 50,
                callees: vec![
                    ("ctiphone", responses(&[200.0, 210.0], &[300.0, 310.0])),
                    ("floor", responses(&[70.0, 80.0], &[110.0, 120.0])),
                ],
            }],
            idle_rss_kib: Vec::new(),
            baresip: false,
        };
        assert!(f.below_floor().is_empty() && f.below_floor_note().is_none());
        f.series[0].callees.pop();
        assert!(f.below_floor().is_empty());
    }
}
