//! A burst of calls at the phone: SIPp sends 2,000 INVITEs in 10 s (200 a second), each one
//! refused (486/503) or ringing and cancelled 150 ms later (`cl_uac_burst.xml`).
//!
//! - With call waiting and the CTI on (a loopback CRM with a `hangup` access on the target
//!   number): afterwards `ctiphone history list --json` has exactly one row per Call-ID that
//!   rang (none twice, none unknown), and the CRM got exactly one hangup access per call that
//!   rang, none for the others.
//! - Without call waiting, most calls are refused busy: they leave history rows with result
//!   `busy` up to a rate limit; the phone says so with a `warning` event whose message says
//!   "not stored" (the number of rows is left loose: at least one busy row, at most one row
//!   per INVITE).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::Value;

use common::calls::{config, config_call_waiting, history_all};
use common::peers::{Phone, Sipp, SippResult, ms, secs};

const CALLS: usize = 2000;

/// The burst at `p`; returns SIPp's result once every call is done.
fn burst(p: &Phone) -> SippResult {
    let target = p.target();
    let calls = CALLS.to_string();
    let uac = Sipp::spawn(
        "cl_uac_burst.xml",
        &[
            target.as_str(),
            "-s",
            "0312345678",
            "-r",
            "200",
            "-rp",
            "1000",
            "-m",
            &calls,
            "-l",
            &calls,
            "-timeout",
            "120s",
            "-cid_str",
            "%u-cl-burst@%s",
        ],
    );
    let r = uac.wait(secs(120));
    // Every call went one of the scenario's ways (refused, or rang and was cancelled).
    r.assert_ok();
    r
}

/// The Call-IDs of the INVITEs SIPp sent, and of those that got `code`.
fn call_ids(r: &SippResult) -> (BTreeSet<String>, BTreeMap<u16, BTreeSet<String>>) {
    let mut sent = BTreeSet::new();
    let mut got: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    for m in r.parsed() {
        let id = m.header("Call-ID").unwrap_or_default().to_owned();
        if m.sent && m.text.starts_with("INVITE ") {
            sent.insert(id);
        } else if !m.sent
            && m.cseq().is_some_and(|c| c.1 == "INVITE")
            && let Some(code) = m
                .text
                .strip_prefix("SIP/2.0 ")
                .and_then(|t| t.get(..3))
                .and_then(|c| c.parse().ok())
        {
            got.entry(code).or_default().insert(id);
        }
    }
    (sent, got)
}

/// The history once it stops changing (1 s without a new row, at most 30 s).
fn settled_history(p: &Phone) -> Vec<Value> {
    let end = Instant::now() + secs(30);
    let mut rows = history_all(p.home());
    loop {
        std::thread::sleep(ms(1000));
        let again = history_all(p.home());
        if again.len() == rows.len() || Instant::now() > end {
            return again;
        }
        rows = again;
    }
}

/// Rows per Call-ID.
fn rows_per_call(rows: &[Value]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for r in rows {
        *n.entry(r["call_id"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    n
}

#[test]
fn burst_with_call_waiting_one_history_row_and_one_hangup_access_per_call_that_rang() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let crm = rt.block_on(common::Crm::start());
    let cti = format!(
        "[cti]\ntarget = \"custom\"\nserver_address = \"{}/\"\n\
         numbers = [{{ number = \"0312345678\" }}]\n\
         [cti.hangup]\nmethod = \"get\"\ntemplate = \"{{SVADDR}}hangup?id={{ID}}\"\n",
        crm.url()
    );
    let mut p = Phone::start(&config_call_waiting(&cti), &[]);
    let t0 = Instant::now();
    let r = burst(&p);
    let took = t0.elapsed().as_secs_f64();
    let (sent, got) = call_ids(&r);
    let rang = got.get(&180).cloned().unwrap_or_default();
    let refused: usize = [486, 503]
        .iter()
        .filter_map(|c| got.get(c))
        .map(BTreeSet::len)
        .sum();
    println!(
        "burst: {} INVITEs in {took:.1} s, {} rang, {refused} refused",
        sent.len(),
        rang.len()
    );
    assert_eq!(sent.len(), CALLS, "{}", r.report());
    assert!(!rang.is_empty(), "no call rang\n{}", r.report());

    let rows = settled_history(&p);
    let per_call = rows_per_call(&rows);
    let twice: Vec<_> = per_call.iter().filter(|(_, n)| **n > 1).collect();
    let unknown: Vec<_> = per_call.keys().filter(|id| !sent.contains(*id)).collect();
    let missing: Vec<_> = rang.iter().filter(|id| !per_call.contains_key(*id)).collect();
    assert!(
        twice.is_empty() && unknown.is_empty() && missing.is_empty(),
        "history: {} rows; Call-IDs with more than one row: {} (first {:?}); rows for no INVITE \
         sent: {} (first {:?}); calls that rang without a row: {} of {} (first {:?})",
        rows.len(),
        twice.len(),
        twice.first(),
        unknown.len(),
        unknown.first(),
        missing.len(),
        rang.len(),
        missing.first()
    );

    // The CRM: one hangup access per call that rang.
    let hangups = || -> BTreeMap<String, usize> {
        let mut n = BTreeMap::new();
        for s in crm.seen_path("/hangup") {
            let q = s.query.unwrap_or_default();
            let id = common::pairs(q.as_bytes())
                .into_iter()
                .find(|(k, _)| k == "id")
                .map(|(_, v)| v)
                .unwrap_or_default();
            *n.entry(id).or_insert(0) += 1;
        }
        n
    };
    let end = Instant::now() + secs(30);
    while hangups().len() < rang.len() && Instant::now() < end {
        std::thread::sleep(ms(200));
    }
    std::thread::sleep(ms(1000));
    let h = hangups();
    let twice: Vec<_> = h.iter().filter(|(_, n)| **n > 1).collect();
    let not_rung: Vec<_> = h.keys().filter(|id| !rang.contains(*id)).collect();
    let missing: Vec<_> = rang.iter().filter(|id| !h.contains_key(*id)).collect();
    assert!(
        twice.is_empty() && not_rung.is_empty() && missing.is_empty(),
        "CRM hangup accesses: {} calls; more than once: {} (first {:?}); for calls that never \
         rang: {} (first {:?}); calls that rang without one: {} of {} (first {:?})",
        h.len(),
        twice.len(),
        twice.first(),
        not_rung.len(),
        not_rung.first(),
        missing.len(),
        rang.len(),
        missing.first()
    );
    assert!(p.alive(), "the phone died in the burst\n{}", p.stderr());
}

#[test]
fn burst_without_call_waiting_stores_busy_calls_up_to_a_rate_limit() {
    let mut p = Phone::start(&config(""), &[]);
    let r = burst(&p);
    let (sent, got) = call_ids(&r);
    assert_eq!(sent.len(), CALLS, "{}", r.report());
    let busy_refused = got.get(&486).map_or(0, BTreeSet::len);
    assert!(busy_refused > 0, "no call was refused busy\n{}", r.report());

    let rows = settled_history(&p);
    let per_call = rows_per_call(&rows);
    let busy = rows.iter().filter(|r| r["result"] == "busy").count();
    println!(
        "burst without call waiting: {} INVITEs, {busy_refused} refused 486; history: {} rows, \
         {busy} busy",
        sent.len(),
        rows.len()
    );
    assert!(
        busy >= 1,
        "no history row with result `busy` for {busy_refused} calls refused 486 (rows: {})",
        rows.len()
    );
    assert!(rows.len() <= CALLS, "{} rows for {CALLS} INVITEs", rows.len());
    assert!(
        per_call.values().all(|n| *n == 1),
        "a Call-ID with more than one row"
    );
    assert!(
        per_call.keys().all(|id| sent.contains(id)),
        "a row for no INVITE sent"
    );
    p.drain(ms(300));
    let warned = p.seen().iter().any(|v| {
        v["event"] == "warning"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.to_ascii_lowercase().contains("not stored"))
    });
    assert!(
        warned,
        "no `warning` event saying calls were \"not stored\" (the rate limit of busy rows)\n{}",
        p.diagnostics()
    );
    assert!(p.alive(), "the phone died in the burst\n{}", p.stderr());
}
