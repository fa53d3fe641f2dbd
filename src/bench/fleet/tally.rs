//! What `ctiphone bench fleet` counts: the phones' event lines as they arrive (calls, CRM
//! searches and accesses, the central log's state), sipp's message trace (calls offered,
//! answered, INVITE -> 100 and -> 180), and the rows of the phones' histories against
//! PostgreSQL's (lost, duplicated).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::center::{Agent, Line};

/// What the bench learns from the phones' event lines.
#[derive(Default)]
pub(super) struct Observed {
    pub(super) ready: HashSet<usize>,
    pub(super) registered: HashSet<usize>,
    /// (agent, Call-ID) of every call that rang at an agent.
    pub(super) reached: BTreeSet<(usize, String)>,
    pub(super) active: HashSet<(usize, String)>,
    /// Hangups to send: when, to which agent, which call.
    pub(super) hangups: Vec<(Instant, usize, String)>,
    pub(super) searching: HashMap<(usize, String), Instant>,
    pub(super) crm_ms: Vec<f64>,
    pub(super) crm_failed: usize,
    pub(super) accesses_ok: usize,
    pub(super) accesses_failed: usize,
    /// Per agent: when it last reported a failing central log, and when it reported an empty
    /// outbox with PostgreSQL taking the calls after that.
    pub(super) failing_at: HashMap<usize, Instant>,
    pub(super) drained_at: HashMap<usize, Instant>,
}

impl Observed {
    pub(super) fn take(&mut self, (i, at, line): Line, hold: Duration) {
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
pub(super) struct SippCalls {
    pub(super) offered: usize,
    pub(super) answered: usize,
    /// Calls every agent refused (Kamailio's 486 once the group was tried).
    pub(super) all_busy: usize,
    /// The Call-IDs of the answered calls.
    pub(super) answered_ids: BTreeSet<String>,
    pub(super) ring_us: Vec<f64>,
    pub(super) trying_us: Vec<f64>,
}

pub(super) fn parse_sipp_trace(log: &str) -> SippCalls {
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
pub(super) fn epoch_us(s: &str) -> Option<f64> {
    let (sec, usec) = s.trim().split_once('.')?;
    Some(sec.parse::<u64>().ok()? as f64 * 1e6 + usec.parse::<u64>().ok()? as f64)
}

/// Rows lost and duplicated: `local` and `central` are (agent, Call-ID, result) rows of the
/// phones' histories and of PostgreSQL; `reached` the calls that rang at an agent.
pub(super) fn reconcile(
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
pub(super) fn local_rows(agents: &[Agent]) -> Result<BTreeSet<(String, String, String)>, String> {
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
