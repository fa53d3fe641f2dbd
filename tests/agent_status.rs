//! The agent's status (AGT-1…6) in `ctiphone headless` with SIPp callers and a loopback CRM:
//! every change reaches the CRM's `[cti.status]` access with {STATUS}, {REASON}, {WRAPUP} and
//! the last call's {ID}; a call while not ready gets 486 (and keeps its history row); after an
//! answered call the agent is in after-call work until a wrap-up code (which goes into the
//! call's history row and its hangup access, held back until then) or the timer; with
//! `ring_when_not_ready` a call rings silently instead; the PBX feature codes reach a SIPp
//! registrar as INVITEs to `*46` and `*45`.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::Crm;
use common::calls::config;
use common::peers::{Phone, Sipp, account_toml, history_list, secs};

fn cti(crm: &Crm, agent: &str) -> String {
    format!(
        "[agent]\n{agent}\n\
         [cti]\ntarget = \"custom\"\nserver_address = \"{}/\"\nnumbers = [{{ number = \"0312345678\" }}]\n\
         [cti.status]\nmethod = \"get\"\ntemplate = \"{{SVADDR}}status?s={{STATUS}}&r={{REASON}}&w={{WRAPUP}}&id={{ID}}\"\n\
         [cti.hangup]\nmethod = \"get\"\ntemplate = \"{{SVADDR}}hangup?id={{ID}}&w={{WRAPUP}}&r={{RESULT}}\"\n",
        crm.url()
    )
}

/// The queries the CRM received on `path`, in order.
fn queries(crm: &Crm, path: &str) -> Vec<String> {
    crm.seen_path(path)
        .into_iter()
        .map(|s| s.query.unwrap_or_default())
        .collect()
}

/// Waits until the CRM received `n` requests on `path`.
#[track_caller]
fn wait_queries(crm: &Crm, path: &str, n: usize) -> Vec<String> {
    let end = Instant::now() + secs(5);
    loop {
        let q = queries(crm, path);
        if q.len() >= n {
            return q;
        }
        assert!(Instant::now() < end, "{path}: {q:?}, expected {n}");
        std::thread::sleep(Duration::from_millis(30));
    }
}

fn status(p: &mut Phone, state: &str) -> Value {
    p.expect_where("status", secs(5), |v: &Value| v["state"] == state)
}

#[test]
fn not_ready_refuses_after_call_work_holds_the_hangup_access_until_the_wrap_up_code() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let crm = rt.block_on(Crm::start());
    let agent = "not_ready_reasons = [\"Break\", \"Lunch\"]\nafter_call_seconds = 60\nwrapup_codes = [\"Sale\", \"Complaint\"]\n";
    let mut p = Phone::start(&config(&cti(&crm, agent)), &[]);
    // Announced at start.
    let s = status(&mut p, "ready");
    assert!(s["since"].as_str().is_some_and(|t| t.contains('T')), "{s}");
    assert_eq!(wait_queries(&crm, "/status", 1)[0], "s=ready&r=&w=&id=");

    // Not ready needs one of the reasons.
    p.send(json!({"cmd": "status", "state": "not_ready", "reason": "Nap"}));
    let e = p.expect("error", secs(5));
    assert!(
        e["message"].as_str().unwrap_or_default().contains("Break, Lunch"),
        "{e}"
    );
    p.send(json!({"cmd": "status", "state": "not_ready", "reason": "Lunch"}));
    let s = status(&mut p, "not_ready");
    assert_eq!(s["reason"], "Lunch", "{s}");
    assert_eq!(wait_queries(&crm, "/status", 2)[1], "s=not_ready&r=Lunch&w=&id=");

    // A call while not ready: 486, no ring, a history row.
    common::calls::call(&p, "uac_expect_busy.xml", &[])
        .wait(secs(10))
        .assert_ok();
    assert_eq!(p.count("incoming"), 0, "{:?}", p.seen());

    p.send(json!({"cmd": "status", "state": "ready"}));
    status(&mut p, "ready");
    assert_eq!(wait_queries(&crm, "/status", 3)[2], "s=ready&r=&w=&id=");

    // An answered call: after-call work follows its end.
    let caller = common::calls::call(&p, "uac_wait_bye.xml", &[]);
    let inc = p.expect("incoming", secs(5));
    let id = inc["call"].as_str().unwrap_or_default().to_owned();
    p.send(json!({"cmd": "answer"}));
    p.expect_call("answered", &id, secs(5));
    p.send(json!({"cmd": "hangup"}));
    p.expect_call("ended", &id, secs(5));
    caller.wait(secs(10)).assert_ok();
    status(&mut p, "after_call");
    let enc = id.replace('@', "%40");
    assert_eq!(
        wait_queries(&crm, "/status", 4)[3],
        format!("s=after_call&r=&w=&id={enc}")
    );
    // The hangup access waits for the wrap-up code.
    std::thread::sleep(Duration::from_millis(300));
    assert!(queries(&crm, "/hangup").is_empty(), "{:?}", crm.seen());
    // And the agent takes no call meanwhile.
    common::calls::call(&p, "uac_expect_busy.xml", &[])
        .wait(secs(10))
        .assert_ok();

    p.send(json!({"cmd": "wrapup", "code": "Upsell"}));
    let e = p.expect("error", secs(5));
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Sale, Complaint"),
        "{e}"
    );
    p.send(json!({"cmd": "wrapup", "code": "Sale"}));
    let s = status(&mut p, "ready");
    assert_eq!(s["wrapup"], "Sale", "{s}");
    let hangups = wait_queries(&crm, "/hangup", 1);
    assert_eq!(hangups, [format!("id={enc}&w=Sale&r=answered")]);
    assert_eq!(
        wait_queries(&crm, "/status", 5)[4],
        format!("s=ready&r=&w=Sale&id={enc}")
    );
    // Nothing to wrap up now.
    p.send(json!({"cmd": "wrapup", "code": "Sale"}));
    p.expect("error", secs(5));

    // The history row has the code, and the export too.
    let end = Instant::now() + secs(5);
    loop {
        let rows = history_list(p.home());
        if let Some(r) = rows.iter().find(|r| r["call_id"] == id.as_str())
            && r["wrapup"] == "Sale"
        {
            assert_eq!(
                rows.iter().filter(|r| r["result"] == "busy").count(),
                2,
                "the refused calls are kept: {rows:?}"
            );
            break;
        }
        assert!(Instant::now() < end, "{rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(rt);
}

#[test]
fn after_call_work_ends_by_itself_and_ring_when_not_ready_rings_silently() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let crm = rt.block_on(Crm::start());
    let agent = "after_call_seconds = 1\nring_when_not_ready = true\n";
    let mut p = Phone::start(&config(&cti(&crm, agent)), &[]);
    status(&mut p, "ready");
    let caller = common::calls::call(&p, "uac_call_bye.xml", &[]);
    let inc = p.expect("incoming", secs(5));
    let id = inc["call"].as_str().unwrap_or_default().to_owned();
    p.send(json!({"cmd": "answer"}));
    p.expect_call("ended", &id, secs(10));
    caller.wait(secs(10)).assert_ok();
    let t0 = Instant::now();
    status(&mut p, "after_call");
    // While in after-call work (not ready), a call still rings: silently.
    let second = common::calls::call(&p, "uac_cancel.xml", &[]);
    p.expect_where("incoming", secs(5), |v: &Value| v["call"] != id.as_str());
    second.wait(secs(10)).assert_ok();
    let s = status(&mut p, "ready");
    let took = t0.elapsed();
    assert!(took < secs(3), "after-call work lasted {took:?}");
    assert_eq!(s.get("wrapup"), None, "no code: {s}");
    let enc = id.replace('@', "%40");
    // The missed call's hangup access ran at once; the answered one's at the end of its
    // after-call work, without a code.
    let hangups = wait_queries(&crm, "/hangup", 2);
    assert!(
        hangups.contains(&format!("id={enc}&w=&r=answered")),
        "{hangups:?}"
    );
    assert!(hangups.iter().any(|h| h.ends_with("&w=&r=missed")), "{hangups:?}");
    drop(rt);
}

#[test]
fn feature_codes_reach_the_pbx_and_stay_out_of_sight() {
    let pbx = Sipp::spawn("uas_feature_code.xml", &["-m", "2", "-timeout", "30s"]);
    // Direct calls to the PBX's address: a feature code goes to sip:*46@PBX.
    let account = account_toml("1001", "pw1001", "", "udp", 60).replace(
        "uri = \"sip:1001@127.0.0.1\"",
        &format!("uri = \"sip:1001@{}\"", pbx.addr()),
    );
    let agent = "[agent]\nready_code = \"*45\"\nnot_ready_code = \"*46\"\n";
    let mut p = Phone::start(&common::calls::config_with(&account, agent), &[]);
    status(&mut p, "ready");
    p.send(json!({"cmd": "status", "state": "not_ready"}));
    status(&mut p, "not_ready");
    let trace = common::calls::wait_trace(&pbx, secs(5), "the BYE of *46", |r| r.received("BYE ") >= 1);
    assert_eq!(trace.received("INVITE sip:*46@"), 1, "{}", trace.report());
    p.send(json!({"cmd": "status", "state": "ready"}));
    status(&mut p, "ready");
    let r = pbx.wait(secs(10));
    r.assert_ok();
    assert_eq!(r.received("INVITE sip:*45@"), 1, "{}", r.report());
    assert_eq!(
        r.received("BYE "),
        2,
        "each hung up once answered: {}",
        r.report()
    );
    // The front ends never heard of those calls, nor did the history.
    p.expect_none("outgoing", Duration::from_millis(500));
    for e in ["outgoing", "answered", "ended", "ringing"] {
        assert_eq!(p.count(e), 0, "{e}: {:?}", p.seen());
    }
    assert!(
        p.seen()
            .iter()
            .all(|v| v["event"] != "cti" || v["for"] == "status"),
        "only the status went to the CTI engine: {:?}",
        p.seen()
    );
    assert!(
        history_list(p.home()).is_empty(),
        "no history row for a feature code"
    );
}
