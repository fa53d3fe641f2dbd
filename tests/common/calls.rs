//! Shared parts of the call-layer tests (`tests/call_*.rs`): the phone's configuration, SIPp
//! runs that take the test's RTP port, and readers for what SIPp saw (responses by method,
//! headers by regex, timings).

use std::path::Path;
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;

use super::peers::{Phone, Sipp, SippMsg, SippResult, account_toml, account_toml_call_waiting};

/// A direct phone (no registrar) on UDP: PCMU only, no ring tone, null audio devices unless
/// the command line gives files; `extra` is appended (more sections).
pub fn config(extra: &str) -> String {
    config_with(&account_toml("1001", "pw1001", "", "udp", 60), extra)
}

/// As [`config`], with call waiting.
pub fn config_call_waiting(extra: &str) -> String {
    config_with(&account_toml_call_waiting("1001", "pw1001", "", "udp", 60), extra)
}

pub fn config_with(account: &str, extra: &str) -> String {
    format!(
        "{account}\n[audio]\ninput = \"null\"\noutput = \"null\"\ncodecs = [\"PCMU\"]\nring = false\n{extra}"
    )
}

/// `--audio-in=PATH`, `--audio-out=PATH`.
pub fn audio_args(mic: &Path, heard: &Path) -> [String; 2] {
    [
        format!("--audio-in={}", mic.display()),
        format!("--audio-out={}", heard.display()),
    ]
}

/// A SIPp UAC calling the phone as "Taro Yamada" <0311112222> to 0312345678, with `extra`
/// arguments (`-key rtp_port N`, `-set hold MS`, …).
pub fn call(p: &Phone, scenario: &str, extra: &[&str]) -> Sipp {
    let target = p.target();
    let mut args = vec![target.as_str(), "-s", "0312345678"];
    args.extend_from_slice(extra);
    Sipp::spawn(scenario, &args)
}

/// Polls SIPp's message trace until `pred` holds; panics with `why` and the trace after
/// `timeout`.
#[track_caller]
pub fn wait_trace(
    sipp: &Sipp,
    timeout: Duration,
    why: &str,
    pred: impl Fn(&SippResult) -> bool,
) -> SippResult {
    let end = Instant::now() + timeout;
    loop {
        let r = sipp.trace_now();
        if pred(&r) {
            return r;
        }
        if Instant::now() > end {
            panic!("{why} (waited {timeout:?})\n{}", r.report());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The responses SIPp received with status `code` to requests of `method` (by CSeq).
pub fn responses(r: &SippResult, code: u16, method: &str) -> Vec<SippMsg> {
    r.received_msgs(&format!("SIP/2.0 {code}"))
        .into_iter()
        .filter(|m| m.cseq().is_some_and(|(_, x)| x == method))
        .collect()
}

/// The first response `code` to `method`, or a panic with SIPp's report.
#[track_caller]
pub fn response(r: &SippResult, code: u16, method: &str) -> SippMsg {
    responses(r, code, method)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("SIPp received no {code} to {method}\n{}", r.report()))
}

/// Every value of header `name` in `m` (its compact form too; comma-separated values split).
pub fn header_values(m: &SippMsg, name: &str) -> Vec<String> {
    let compact = match name.to_ascii_lowercase().as_str() {
        "supported" => Some("k"),
        "content-type" => Some("c"),
        "content-length" => Some("l"),
        "from" => Some("f"),
        "to" => Some("t"),
        "via" => Some("v"),
        "call-id" => Some("i"),
        "contact" => Some("m"),
        "session-expires" => Some("x"),
        _ => None,
    };
    let head = m.text.split("\n\n").next().unwrap_or_default();
    head.lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let k = k.trim();
            (k.eq_ignore_ascii_case(name) || compact.is_some_and(|c| k.eq_ignore_ascii_case(c)))
                .then(|| v.trim().to_owned())
        })
        .flat_map(|v| v.split(',').map(|x| x.trim().to_owned()).collect::<Vec<_>>())
        .collect()
}

/// Whether header `name` of `m` lists the option tag `tag` (Supported, Require).
pub fn lists_tag(m: &SippMsg, name: &str, tag: &str) -> bool {
    header_values(m, name).iter().any(|v| v.eq_ignore_ascii_case(tag))
}

/// Asserts that header `name` of `m` is present and its (first) value matches `re`.
#[track_caller]
pub fn assert_header(m: &SippMsg, name: &str, re: &str) {
    let re = Regex::new(re).expect("regex");
    let head = m.text.split("\n\n").next().unwrap_or_default();
    let value = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    });
    match value {
        Some(v) => assert!(
            re.is_match(&v),
            "{name}: {v:?} does not match /{re}/ in:\n{}",
            m.text
        ),
        None => panic!("no {name} header (expected /{re}/) in:\n{}", m.text),
    }
}

/// The tag parameter of a From or To header value.
pub fn tag_of(value: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("tag").then(|| v.trim().to_owned())
    })
}

/// SIPp's first message of `r` (sent if `sent`) whose first line starts with `start`.
#[track_caller]
pub fn first(r: &SippResult, sent: bool, start: &str) -> SippMsg {
    let all = if sent {
        r.sent_msgs(start)
    } else {
        r.received_msgs(start)
    };
    all.into_iter().next().unwrap_or_else(|| {
        panic!(
            "SIPp {} no {start:?}\n{}",
            if sent { "sent" } else { "received" },
            r.report()
        )
    })
}

/// `ctiphone history list --json --limit 100000` on the phone's data directory: every call,
/// newest first.
pub fn history_all(home: &Path) -> Vec<Value> {
    super::peers::history_list_with(home, &["--limit", "100000"])
}

/// The history database of a phone whose HOME is `home` (`history::default_path` under the
/// XDG_DATA_HOME the Phone helper sets).
pub fn history_db(home: &Path) -> std::path::PathBuf {
    home.join("xdg-data/ctiphone/history.sqlite3")
}

/// INVITE sent → first `code` received, in seconds, for every call of a SIPp trace (by Call-ID).
pub fn invite_to_response(r: &SippResult, code: u16) -> Vec<(String, f64)> {
    let msgs = r.parsed();
    let mut out = Vec::new();
    for inv in msgs.iter().filter(|m| m.sent && m.text.starts_with("INVITE ")) {
        let id = inv.header("Call-ID").unwrap_or_default().to_owned();
        if out.iter().any(|(x, _): &(String, f64)| *x == id) {
            continue;
        }
        let prefix = format!("SIP/2.0 {code}");
        if let Some(resp) = msgs
            .iter()
            .find(|m| !m.sent && m.text.starts_with(&prefix) && m.header("Call-ID") == Some(id.as_str()))
        {
            out.push((id, resp.at - inv.at));
        } else {
            out.push((id, f64::INFINITY));
        }
    }
    out
}

/// `p.expect(event, timeout)`, adding SIPp's trace so far to the failure (what the peer saw
/// explains most missing events).
#[track_caller]
pub fn expect_seen_by(p: &mut Phone, event: &str, timeout: Duration, sipp: &Sipp) -> Value {
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.expect(event, timeout)));
    match got {
        Ok(v) => v,
        Err(_) => panic!(
            "no {event:?} event within {timeout:?} (the phone's events are above); SIPp so far:\n{}",
            sipp.trace_now().report()
        ),
    }
}

/// For every request SIPp sent (ACK aside; retransmissions counted once, from the first
/// send): its method and the seconds until the phone's first response to it (infinity when
/// none came).
pub fn reply_times(r: &SippResult) -> Vec<(String, f64)> {
    let msgs = r.parsed();
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for m in msgs.iter().filter(|m| m.sent && !m.text.starts_with("SIP/2.0")) {
        let id = m.header("Call-ID").unwrap_or_default().to_owned();
        let cseq = m.header("CSeq").unwrap_or_default().to_owned();
        let method = cseq.split_whitespace().nth(1).unwrap_or_default().to_owned();
        if method == "ACK" || seen.contains(&(id.clone(), cseq.clone())) {
            continue;
        }
        seen.push((id.clone(), cseq.clone()));
        let reply = msgs.iter().find(|x| {
            !x.sent
                && x.at >= m.at
                && x.text.starts_with("SIP/2.0")
                && x.header("Call-ID") == Some(id.as_str())
                && x.header("CSeq") == Some(cseq.as_str())
        });
        out.push((method, reply.map_or(f64::INFINITY, |x| x.at - m.at)));
    }
    out
}
