//! A hostile CRM never delays a call. `ctiphone headless --auto-answer` with `[cti.search]`
//! pointing at a CRM that gives no answer, a reply at 1 byte/s, a 10 MiB reply, broken JSON,
//! a redirect loop, an HTTPS server whose self-signed certificate nobody trusts, and a plain
//! HTTP port spoken to as HTTPS; sipp places 20 calls per case, one after the other. For each
//! case, against a phone with no CRM at all in the same run:
//!
//! - INVITE→200 (sipp's own timestamps): p99 within 200 ms, printed with p50 beside the
//!   no-CRM baseline;
//! - every search ends within the timeout (1 s) + 0.5 s: from the `cti` event that says it
//!   started ("searching") to the one with its result, as the headless front end prints them;
//! - the popup says what went wrong: the call's events into the terminal UI's state, the popup
//!   drawn at 80×24 shows the whole error;
//! - every call has its history row (`ctiphone history list --json`), answered.

mod common;
#[path = "common/ui.rs"]
mod ui;

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

use common::peers::{Phone, Sipp, account_toml, history_list, ms, secs};
use ctiphone::app::{CtiEvent, Event, PhoneEvent};
use ctiphone::ui::i18n::Lang;

const CALLS: usize = 20;
const TIMEOUT_S: f64 = 1.0;

/// One CRM case: its name, the search URL, and what its error must say.
struct Case {
    name: &'static str,
    url: String,
    says: &'static str,
}

/// What one case measured.
struct Figures {
    name: &'static str,
    p50_ms: f64,
    p99_ms: f64,
    max_search_s: f64,
    error: String,
}

fn config(search_url: Option<&str>) -> String {
    let mut c = format!(
        "{}\n[audio]\ninput = \"null\"\noutput = \"null\"\n",
        account_toml("1001", "pw1001", "", "udp", 60)
    );
    if let Some(url) = search_url {
        c.push_str(&format!(
            "[cti]\ntarget = \"custom\"\ntimeout_seconds = {TIMEOUT_S}\n\
             numbers = [{{ number = \"0312345678\" }}]\n\
             [cti.search]\nmethod = \"get\"\ntemplate = \"{url}?tel={{TEL}}\"\n\
             captures = {{ COMPANY = \"json:/company\", NAME = \"json:/name\" }}\n"
        ));
    }
    c
}

/// The `q` quantile (nearest rank) of `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// The popup's text, its rows inside the border joined by spaces.
fn popup_text(buf: &ratatui::buffer::Buffer) -> String {
    let p = ui::frame_titled(buf, " Incoming call ");
    (p.top + 1..p.bottom)
        .map(|y| {
            let (row, _) = ui::row(buf, y);
            let inner: String = row
                .chars()
                .skip(usize::from(p.left) + 1)
                .take(usize::from(p.right - p.left) - 1)
                .collect();
            inner.trim().to_owned()
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs one case: a phone on `search_url` (None: no CRM), 20 calls; checks and returns the
/// figures.
fn run_case(name: &'static str, search_url: Option<&str>, says: &str) -> Figures {
    let mut p = Phone::start(&config(search_url), &["--auto-answer"]);
    let target = p.target();
    let sipp = Sipp::spawn(
        "uac_calls.xml",
        &[
            target.as_str(),
            "-s",
            "0312345678",
            "-m",
            &CALLS.to_string(),
            "-l",
            "1",
            "-r",
            "20",
            "-d",
            "50",
            "-timeout",
            "60s",
        ],
    );
    // Every event, stamped when it arrived.
    let mut events: Vec<(Instant, Value)> = Vec::new();
    let mut sipp = Some(sipp);
    let mut sipp_done: Option<Instant> = None;
    let mut result = None;
    loop {
        for ev in p.drain(ms(2)) {
            events.push((Instant::now(), ev));
        }
        if let Some(s) = sipp.as_mut()
            && !s.running()
        {
            result = Some(sipp.take().unwrap().wait(secs(5)));
            sipp_done = Some(Instant::now());
        }
        let Some(done) = sipp_done else { continue };
        // After the last call, until every search has its result (or past any timeout).
        let searches = events.iter().filter(|(_, e)| is_search(e, true)).count();
        let results = events.iter().filter(|(_, e)| is_search(e, false)).count();
        if (searches == results && done.elapsed() > ms(300)) || done.elapsed() > secs(5) {
            break;
        }
    }
    let r = result.unwrap();
    r.assert_ok();

    // INVITE -> 200, per call, from sipp's trace.
    let mut sent: BTreeMap<String, f64> = BTreeMap::new();
    let mut latency = Vec::new();
    for m in r.parsed() {
        let cid = m.header("Call-ID").unwrap_or_default().to_owned();
        if m.sent && m.text.starts_with("INVITE ") {
            sent.entry(cid).or_insert(m.at);
        } else if !m.sent
            && m.text.starts_with("SIP/2.0 200")
            && m.cseq().is_some_and(|(_, meth)| meth == "INVITE")
            && let Some(t0) = sent.remove(&cid)
        {
            latency.push((m.at - t0) * 1000.0);
        }
    }
    assert_eq!(
        latency.len(),
        CALLS,
        "{name}: {} answered calls\n{}",
        latency.len(),
        r.report()
    );
    let p50 = quantile(&latency, 0.5);
    let p99 = quantile(&latency, 0.99);
    assert!(
        p99 <= 200.0,
        "{name}: INVITE->200 p99 {p99:.1} ms, over 200 ms: {latency:?}"
    );

    // Every search, from its start to its result.
    let incoming: Vec<&Value> = events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e["event"] == "incoming")
        .collect();
    assert_eq!(incoming.len(), CALLS, "{name}\n{}", p.diagnostics());
    let mut max_search = 0.0f64;
    let mut error = String::new();
    if search_url.is_some() {
        for inc in &incoming {
            let call = inc["call"].as_str().unwrap();
            let at = |searching: bool| {
                events
                    .iter()
                    .find(|(_, e)| e["call"] == call && is_search(e, searching))
                    .map(|(t, e)| (*t, e.clone()))
                    .unwrap_or_else(|| {
                        panic!(
                            "{name}: call {call} has no search {} event\n{}",
                            if searching { "start" } else { "result" },
                            p.diagnostics()
                        )
                    })
            };
            let (t0, _) = at(true);
            let (t1, res) = at(false);
            let took = (t1 - t0).as_secs_f64();
            max_search = max_search.max(took);
            assert!(
                took <= TIMEOUT_S + 0.5,
                "{name}: call {call}'s search took {took:.3} s (timeout {TIMEOUT_S} s): {res}"
            );
            assert_eq!(res["ok"], false, "{name}: the search should fail: {res}");
            let e = res["error"].as_str().unwrap_or_default();
            assert!(e.contains(says), "{name}: error {e:?} does not say {says:?}");
            error = e.to_owned();
        }
        // The popup of the first call: its events into the terminal UI's state.
        let inc = incoming[0];
        let call = inc["call"].as_str().unwrap().to_owned();
        let mut app = ui::app("");
        app.on_event(&Event::Phone(PhoneEvent::Incoming {
            call: call.clone(),
            tel: inc["tel"].as_str().unwrap_or_default().to_owned(),
            telname: inc["telname"].as_str().unwrap_or_default().to_owned(),
            called: inc["called"].as_str().unwrap_or_default().to_owned(),
            calledname: inc["calledname"].as_str().unwrap_or_default().to_owned(),
            anonymous: inc["anonymous"].as_bool().unwrap_or(false),
        }));
        app.on_event(&Event::Cti(CtiEvent::Searching {
            call_id: call.clone(),
        }));
        let shown = popup_text(&ui::render(&app, Lang::En, 80, 24));
        assert!(shown.contains("searching CRM"), "{name}: {shown}");
        app.on_event(&Event::Cti(CtiEvent::SearchFailed {
            call_id: call,
            error: error.clone(),
        }));
        let buf = ui::render(&app, Lang::En, 80, 24);
        ui::assert_straight(&buf);
        let shown = popup_text(&buf);
        let want = format!("CRM search failed: {error}");
        assert!(
            shown.contains(&want),
            "{name}: the popup does not say {want:?}\n{}",
            ui::dump(&buf)
        );
    } else {
        assert!(
            !events.iter().any(|(_, e)| e["access"] == "search"),
            "{name}: a search with no CRM"
        );
    }

    // The history: one answered row per call.
    std::thread::sleep(ms(200));
    let rows = history_list(p.home());
    assert_eq!(rows.len(), CALLS, "{name}: {rows:#?}");
    for row in &rows {
        assert_eq!(row["result"], "answered", "{name}: {row}");
        assert_eq!(row["state"], "closed", "{name}: {row}");
        assert_eq!(row["company"], "", "{name}: {row}");
    }
    assert!(p.alive(), "{name}: the phone died\n{}", p.diagnostics());
    Figures {
        name,
        p50_ms: p50,
        p99_ms: p99,
        max_search_s: max_search,
        error,
    }
}

/// A `cti` event of the search: its start (`searching`), or its result.
fn is_search(e: &Value, searching: bool) -> bool {
    e["event"] == "cti"
        && e["access"] == "search"
        && if searching {
            e["searching"] == true
        } else {
            e.get("ok").is_some()
        }
}

#[test]
fn a_hostile_crm_never_delays_a_call() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let crm = rt.block_on(common::Crm::start());
    let tls = rt.block_on(common::untrusted_tls_server());
    let base = crm.url();
    let cases = [
        Case {
            name: "no answer",
            url: format!("{base}/slow"),
            says: "timeout after 1 s: no answer",
        },
        Case {
            name: "1 byte/s",
            url: format!("{base}/drip"),
            says: "timeout after 1 s: the reply was still coming",
        },
        Case {
            name: "10 MiB reply",
            url: format!("{base}/big"),
            says: "the reply is larger than 1024 KiB",
        },
        Case {
            name: "broken JSON",
            url: format!("{base}/broken"),
            says: "the reply is not valid JSON",
        },
        Case {
            name: "redirect loop",
            url: format!("{base}/loop"),
            says: "redirect: too many redirects",
        },
        Case {
            name: "untrusted cert",
            url: format!("https://{tls}/search"),
            says: "TLS: invalid peer certificate: UnknownIssuer",
        },
        Case {
            name: "HTTP as HTTPS",
            url: format!("https://{}/search", crm.addr),
            says: "TLS: received corrupt message",
        },
    ];
    let mut figures = vec![run_case("no CRM (baseline)", None, "")];
    for c in &cases {
        figures.push(run_case(c.name, Some(&c.url), c.says));
    }
    let base = &figures[0];
    eprintln!(
        "\nINVITE->200 over {CALLS} calls per case (ctiphone headless --auto-answer, sipp), \
         search timeout {TIMEOUT_S} s:"
    );
    eprintln!(
        "{:<20} {:>8} {:>8} {:>9} {:>12}  popup error",
        "case", "p50 ms", "p99 ms", "p99-base", "search max s"
    );
    for f in &figures {
        eprintln!(
            "{:<20} {:>8.1} {:>8.1} {:>+9.1} {:>12}  {}",
            f.name,
            f.p50_ms,
            f.p99_ms,
            f.p99_ms - base.p99_ms,
            if f.error.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.3}", f.max_search_s)
            },
            f.error
        );
    }
    // Requests really reached the CRM (the loop: at least its 11 hops per search).
    assert!(crm.seen_path("/slow").len() >= CALLS);
    assert!(crm.seen_path("/drip").len() >= CALLS);
    assert!(crm.seen_path("/loop").len() >= CALLS * 11);
}
