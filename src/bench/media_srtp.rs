//! `ctiphone bench media --srtp`: what SRTP costs (issue 19's "Speed"). Each round places
//! three G.711 calls at once, so they share one window of machine load: to ctiphone with plain
//! RTP (its own baseline), to a second ctiphone with `[media] srtp = "mandatory"` (and
//! `srtp_over_udp`, the bench's SIP being UDP), and to baresip with its srtp module and
//! `mediaenc=srtp-mand`. The bench's caller offers `RTP/SAVP` with one
//! `AES_CM_128_HMAC_SHA1_80` key, protects what it sends and checks that every packet the
//! callee sends authenticates with the answered key; the SRTP ctiphone's own `answered` and
//! `quality` events say it took SRTP and that the caller's packets authenticated there too. A
//! call whose packets do not authenticate is an error, never a figure.
//!
//! The CPU figure is the callee's scheduler run time (`/proc/PID/task/*/schedstat`, every
//! thread, nanoseconds) over the call's wall time, in % of one core; the floor of that
//! method is the same reading of an idle `sleep` process in the same window. Each figure is
//! the median over the rounds; each ratio is the median of the rounds' ratios (both sides
//! measured in the same window).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{MediaFigures, Peer, cpu_time, deviation, media_config, start_baresip_with, start_ctiphone};

/// Issue 19's goals: ctiphone's CPU in an SRTP call against its plain call, and against
/// baresip's in an SRTP call.
const GOAL_OVER_PLAIN: f64 = 1.5;
const GOAL_OVER_BARESIP: f64 = 0.5;

/// The three callees, in column order.
const LABELS: [&str; 3] = ["ctiphone_plain", "ctiphone_srtp", "baresip_srtp"];

/// A do-nothing process (the floor of the CPU reading), killed on drop.
struct Idle(Child);

impl Drop for Idle {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One round: each callee's figures (baresip's None when it is not installed) and the idle
/// process's CPU over the same window.
struct Round {
    calls: [Option<MediaFigures>; 3],
    floor_percent: Option<f64>,
}

/// What the SRTP ctiphone said of its calls on its event lines.
#[derive(Default)]
struct CalleeSaw {
    /// `answered` events, and those naming an SRTP suite.
    answered: u64,
    answered_srtp: u64,
    /// `quality` reports (every 5 s of a call), and the most SRTP packets of ours that one
    /// call dropped for failed authentication or as replays.
    quality: u64,
    auth_failed: u64,
    replayed: u64,
}

impl CalleeSaw {
    /// Reads the event lines that arrived (one round's call): an error when the call was not
    /// SRTP or our packets did not authenticate.
    fn read(&mut self, peer: &Peer) -> Result<(), String> {
        let Some(events) = peer.events.as_ref() else {
            return Ok(());
        };
        let (mut failed, mut replayed) = (0, 0);
        for (_, line) in events.try_iter() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            match v["event"].as_str() {
                Some("answered") => {
                    self.answered += 1;
                    if v["srtp"].is_string() {
                        self.answered_srtp += 1;
                    } else {
                        return Err(format!("ctiphone_srtp answered a plain call: {line}"));
                    }
                }
                Some("quality") => {
                    self.quality += 1;
                    failed = v["srtp_auth_failed"].as_u64().unwrap_or(0).max(failed);
                    replayed = v["srtp_replayed"].as_u64().unwrap_or(0).max(replayed);
                }
                _ => {}
            }
        }
        self.auth_failed += failed;
        self.replayed += replayed;
        if failed > 0 || replayed > 0 {
            return Err(format!(
                "ctiphone_srtp dropped {failed} of our SRTP packets for failed authentication,                  {replayed} as replays"
            ));
        }
        Ok(())
    }
}

/// One row: a figure of a call.
struct Row {
    name: &'static str,
    key: &'static str,
    unit: &'static str,
    decimals: usize,
    get: fn(&MediaFigures) -> Option<f64>,
}

const ROWS: [Row; 5] = [
    Row {
        name: "CPU in a call (one core)",
        key: "cpu_percent",
        unit: "%",
        decimals: 2,
        get: |f| Some(f.cpu_percent).filter(|v| v.is_finite()),
    },
    Row {
        name: "RSS in a call",
        key: "rss_in_call_kib",
        unit: "KiB",
        decimals: 0,
        get: |f| f.rss_kib.map(|v| v as f64),
    },
    Row {
        name: "RTP send interval |dev| p50",
        key: "send_interval_deviation_p50_ms",
        unit: "ms",
        decimals: 2,
        get: |f| deviation(&f.intervals_ms).0,
    },
    Row {
        name: "RTP send interval |dev| p99",
        key: "send_interval_deviation_p99_ms",
        unit: "ms",
        decimals: 2,
        get: |f| deviation(&f.intervals_ms).1,
    },
    Row {
        name: "RTP send interval |dev| max",
        key: "send_interval_deviation_max_ms",
        unit: "ms",
        decimals: 2,
        get: |f| deviation(&f.intervals_ms).2,
    },
];

/// The median (the mean of the middle two for an even count); None when empty.
fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    if s.len() % 2 == 1 {
        s.get(mid).copied()
    } else {
        Some((s.get(mid - 1)? + s.get(mid)?) / 2.0)
    }
}

/// Starts the three callees: two ctiphones (plain, SRTP) and baresip with SRTP when installed.
fn start(dir: &std::path::Path) -> Result<Vec<Option<Peer>>, String> {
    let extra = media_config(dir)?;
    let plain = start_ctiphone(&extra)?;
    let srtp = start_ctiphone(&format!(
        "{extra}[media]\nsrtp = \"mandatory\"\nsrtp_over_udp = true\n"
    ))?;
    let baresip = start_baresip_with(true, true)?;
    if baresip.is_none() {
        eprintln!("{}", super::NO_BARESIP);
    }
    let mut peers = vec![Some(plain), Some(srtp), baresip];
    // Let them settle.
    std::thread::sleep(Duration::from_millis(1500));
    for (p, label) in peers.iter_mut().zip(LABELS) {
        if let Some(p) = p
            && !matches!(p.child.try_wait(), Ok(None))
        {
            return Err(format!("{label} exited at start"));
        }
    }
    Ok(peers)
}

/// One round: the three calls at once, each from its own caller, and the idle process read
/// over the same window.
fn round(peers: &[Option<Peer>], idle: u32, secs: u64, number: u64) -> Result<Round, String> {
    let floor0 = cpu_time(idle);
    let t0 = Instant::now();
    let calls: Vec<_> = peers
        .iter()
        .zip(LABELS)
        .map(|(p, label)| {
            let target = p.as_ref().map(|p| (p.addr, p.child.id()));
            std::thread::spawn(move || -> Result<Option<MediaFigures>, String> {
                let Some((addr, pid)) = target else {
                    return Ok(None);
                };
                // Fresh sockets (no late packet of the last round's call, under its old key),
                // numbered on: each round's Call-ID, tags and branches are new (else 482).
                let mut caller = super::Caller::new().map_err(|e| e.to_string())?;
                caller.n = number;
                let srtp = label != "ctiphone_plain";
                caller
                    .media_call(addr, pid, secs, srtp)
                    .map(Some)
                    .map_err(|e| format!("{label}: {e}"))
            })
        })
        .collect();
    let mut figures = Vec::with_capacity(3);
    for c in calls {
        figures.push(c.join().map_err(|_| "a media call panicked".to_owned())??);
    }
    let floor_percent = cpu_time(idle)
        .zip(floor0)
        .map(|(a, b)| a.saturating_sub(b).as_secs_f64() * 100.0 / t0.elapsed().as_secs_f64());
    let mut it = figures.into_iter();
    Ok(Round {
        calls: [it.next().flatten(), it.next().flatten(), it.next().flatten()],
        floor_percent,
    })
}

/// `bench media --srtp`: `rounds` rounds of `secs`-second calls; prints the table or JSON.
pub(super) fn run(secs: u64, rounds: usize, as_json: bool) -> Result<(), String> {
    // Started first: settled (exec'd, loaded) by the first round.
    let idle = Command::new("sleep")
        .arg("infinity")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map(Idle)
        .map_err(|e| format!("cannot start the idle process (sleep): {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut peers = start(dir.path())?;
    let mut done = Vec::with_capacity(rounds);
    let mut saw = CalleeSaw::default();
    for i in 0..rounds {
        if i > 0 {
            // The last round's BYEs handled.
            std::thread::sleep(Duration::from_millis(500));
        }
        done.push(round(&peers, idle.0.id(), secs, i as u64)?);
        // The call's last event lines (its end) out.
        std::thread::sleep(Duration::from_millis(300));
        if let Some(p) = &peers[1] {
            saw.read(p)?;
        }
    }
    for p in peers.iter_mut().flatten() {
        p.quit();
    }
    if saw.answered_srtp < rounds as u64 {
        return Err(format!(
            "ctiphone_srtp reported {} SRTP calls answered of {rounds}",
            saw.answered_srtp
        ));
    }
    let report = Report { rounds: &done, saw };
    if as_json {
        println!("{}", report.json(secs, rounds));
    } else {
        report.print(secs, rounds);
    }
    Ok(())
}

/// The rounds' figures reduced to medians.
struct Report<'a> {
    rounds: &'a [Round],
    saw: CalleeSaw,
}

impl Report<'_> {
    fn installed(&self, i: usize) -> bool {
        self.rounds.iter().any(|r| r.calls[i].is_some())
    }

    /// Each round's figure of callee `i`.
    fn per_round(&self, i: usize, row: &Row) -> Vec<f64> {
        self.rounds
            .iter()
            .filter_map(|r| r.calls[i].as_ref().and_then(row.get))
            .collect()
    }

    fn figure(&self, i: usize, row: &Row) -> Option<f64> {
        median(&self.per_round(i, row))
    }

    /// The median over the rounds of callee `a`'s figure / callee `b`'s, each round's pair
    /// measured in the same window.
    fn ratio(&self, a: usize, b: usize, row: &Row) -> Option<f64> {
        median(&self.ratios(a, b, row))
    }

    fn ratios(&self, a: usize, b: usize, row: &Row) -> Vec<f64> {
        self.rounds
            .iter()
            .filter_map(|r| {
                let x = r.calls[a].as_ref().and_then(row.get)?;
                let y = r.calls[b].as_ref().and_then(row.get)?;
                (y > 0.0).then(|| x / y)
            })
            .collect()
    }

    fn floor(&self) -> Option<f64> {
        median(
            &self
                .rounds
                .iter()
                .filter_map(|r| r.floor_percent)
                .collect::<Vec<_>>(),
        )
    }

    /// Packets received over every round of callee `i`, and its SRTP check summed.
    fn packets(&self, i: usize) -> usize {
        self.rounds
            .iter()
            .filter_map(|r| r.calls[i].as_ref())
            .map(|f| f.intervals_ms.len() + 1)
            .sum()
    }

    fn srtp(&self, i: usize) -> Option<serde_json::Value> {
        let checks: Vec<_> = self
            .rounds
            .iter()
            .filter_map(|r| r.calls[i].as_ref()?.srtp.as_ref())
            .collect();
        let first = checks.first()?;
        Some(json!({
            "answer_proto": first.proto,
            "suite": first.suite.name(),
            "authenticated": checks.iter().map(|c| c.authenticated).sum::<u64>(),
            "rejected": checks.iter().map(|c| c.rejected).sum::<u64>(),
        }))
    }

    fn json(&self, secs: u64, rounds: usize) -> serde_json::Value {
        let callee = |i: usize| {
            if !self.installed(i) {
                return serde_json::Value::Null;
            }
            let mut m = serde_json::Map::new();
            for row in &ROWS {
                m.insert(row.key.to_owned(), json!(self.figure(i, row)));
            }
            m.insert("cpu_percent_per_round".into(), json!(self.per_round(i, &ROWS[0])));
            m.insert("rtp_packets".into(), json!(self.packets(i)));
            if let Some(s) = self.srtp(i) {
                m.insert("srtp".into(), s);
            }
            if i == 1 {
                m.insert(
                    "callee_events".into(),
                    json!({
                        "answered": self.saw.answered,
                        "answered_srtp": self.saw.answered_srtp,
                        "quality_reports": self.saw.quality,
                        "srtp_auth_failed": self.saw.auth_failed,
                        "srtp_replayed": self.saw.replayed,
                    }),
                );
            }
            serde_json::Value::Object(m)
        };
        let ratio_rows = |a: usize, b: usize| {
            let mut m = serde_json::Map::new();
            for row in &ROWS {
                m.insert(row.key.to_owned(), json!(self.ratio(a, b, row)));
            }
            m.insert("cpu_percent_per_round".into(), json!(self.ratios(a, b, &ROWS[0])));
            serde_json::Value::Object(m)
        };
        json!({
            "secs": secs,
            "rounds": rounds,
            "cpu_method": "the callee's scheduler run time (/proc/PID/task/*/schedstat, every thread) over the call's wall time, % of one core; median over the rounds",
            "ctiphone_plain": callee(0),
            "ctiphone_srtp": callee(1),
            "baresip_srtp": callee(2),
            "floor": {
                "what": "an idle process (sleep) read the same way over each round",
                "cpu_percent": self.floor(),
            },
            "ratios": {
                "what": "median over the rounds of each round's ratio",
                "ctiphone_srtp_over_plain": ratio_rows(1, 0),
                "ctiphone_srtp_over_baresip_srtp": ratio_rows(1, 2),
            },
            "goals": {
                "ctiphone_srtp_over_plain_cpu_max": GOAL_OVER_PLAIN,
                "ctiphone_srtp_over_baresip_srtp_cpu_max": GOAL_OVER_BARESIP,
            },
        })
    }

    fn print(&self, secs: u64, rounds: usize) {
        println!(
            "ctiphone bench media --srtp: {rounds} round(s), each three {secs} s G.711 calls at once \
             (file source, recording on); SRTP: SDES AES_CM_128_HMAC_SHA1_80 over loopback UDP"
        );
        let baresip = self.installed(2);
        println!(
            "{:<30} {:>14} {:>14} {:>14} {:>11} {:>17}",
            "metric", "ctiphone plain", "ctiphone SRTP", "baresip SRTP", "SRTP/plain", "ctiphone/baresip"
        );
        for row in &ROWS {
            let d = row.decimals;
            let fig = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.d$} {}", row.unit));
            let ratio = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
            println!(
                "{:<30} {:>14} {:>14} {:>14} {:>11} {:>17}",
                row.name,
                fig(self.figure(0, row)),
                fig(self.figure(1, row)),
                if baresip {
                    fig(self.figure(2, row))
                } else {
                    "not installed".to_owned()
                },
                ratio(self.ratio(1, 0, row)),
                ratio(self.ratio(1, 2, row)),
            );
        }
        let list = |v: Vec<f64>| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" ");
        println!(
            "CPU: the callee's scheduler run time (schedstat, every thread) / the call's wall time, \
             % of one core; floor (an idle process read the same way): {}",
            self.floor()
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.3} %"))
        );
        println!("figures: medians over the rounds; ratios: the median of each round's ratio (same window)");
        println!(
            "CPU per round (%): plain [{}], SRTP [{}], baresip SRTP [{}]",
            list(self.per_round(0, &ROWS[0])),
            list(self.per_round(1, &ROWS[0])),
            list(self.per_round(2, &ROWS[0]))
        );
        let goal = |v: Option<f64>, max: f64| match v {
            Some(v) if v <= max => format!("{v:.2} <= {max}: met"),
            Some(v) => format!("{v:.2} > {max}: missed"),
            None => "not measured".to_owned(),
        };
        println!(
            "goals (issue 19): CPU SRTP/plain {}; CPU ctiphone/baresip SRTP {}",
            goal(self.ratio(1, 0, &ROWS[0]), GOAL_OVER_PLAIN),
            goal(self.ratio(1, 2, &ROWS[0]), GOAL_OVER_BARESIP)
        );
        for (i, label) in [(1, "ctiphone"), (2, "baresip")] {
            if let Some(s) = self.srtp(i) {
                println!(
                    "{label}'s answer: {} {}; its packets authenticated: {}, rejected: {}",
                    s["answer_proto"].as_str().unwrap_or("-"),
                    s["suite"].as_str().unwrap_or("-"),
                    s["authenticated"],
                    s["rejected"]
                );
            }
        }
        println!(
            "ctiphone SRTP's events: {} of {} calls answered with SRTP; {} quality reports, our \
             packets dropped there: {} failed authentication, {} replayed",
            self.saw.answered_srtp,
            self.saw.answered,
            self.saw.quality,
            self.saw.auth_failed,
            self.saw.replayed
        );
        println!(
            "RTP packets received: plain {}, SRTP {}, baresip SRTP {}",
            self.packets(0),
            self.packets(1),
            self.packets(2)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::median;
    use crate::bench::srtp_of_answer;
    use crate::call::sdes;
    use crate::call::sdp::Sdp;
    use crate::media::srtp::{MasterKey, Suite};

    fn audio(proto: &str, crypto: &str) -> crate::call::sdp::Media {
        let text = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 4000 {proto} 0\r\n{crypto}"
        );
        Sdp::parse(&text).unwrap().media.remove(0)
    }

    #[test]
    fn only_an_savp_answer_to_our_crypto_line_gives_contexts() {
        let ours = MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap();
        let theirs = MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap();
        let line = |tag| format!("a=crypto:{}\r\n", sdes::attribute(tag, &theirs).value.unwrap());
        let (mut out, mut inb, check) = srtp_of_answer(&ours, &audio("RTP/SAVP", &line(1))).unwrap();
        assert_eq!(
            (check.proto.as_str(), check.suite),
            ("RTP/SAVP", Suite::AesCm128HmacSha1_80)
        );
        // Our outbound is under our key, the inbound under theirs: ours does not pass it.
        let mut pkt = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0x12, 0x34];
        pkt.extend([0xFF; 160]);
        let sealed = out.protect_rtp(&pkt).unwrap();
        assert!(inb.unprotect_rtp(&sealed).is_err());
        assert!(srtp_of_answer(&ours, &audio("RTP/AVP", &line(1))).is_err());
        assert!(srtp_of_answer(&ours, &audio("RTP/SAVP", "")).is_err());
        assert!(srtp_of_answer(&ours, &audio("RTP/SAVP", &line(2))).is_err());
        let other = MasterKey::generate(Suite::AesCm128HmacSha1_32).unwrap();
        let wrong_suite = format!("a=crypto:{}\r\n", sdes::attribute(1, &other).value.unwrap());
        assert!(srtp_of_answer(&ours, &audio("RTP/SAVP", &wrong_suite)).is_err());
    }

    #[test]
    fn the_median_takes_the_middle_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }
}
