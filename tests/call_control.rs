//! Contact-center call control of `ctiphone headless` against SIPp on loopback (no
//! registrar): attended transfer (consult, complete with REFER + Replaces, cancel, a refused
//! REFER, a failed NOTIFY), being replaced (an INVITE with Replaces: the call's place taken,
//! the CRM searched again, the history following; 481 and 486 as RFC 3891 says), call waiting
//! with swap, and PBX-driven auto-answer (each header, the allowed host, the setting off,
//! `Auto;require` refused with 403, `NOTIFY Event: talk`).

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::calls::{config, config_call_waiting, first, tag_of};
use common::peers::{Phone, Sipp, SippResult, history_list, secs};

/// A SIPp UAC calling the phone as 0311112222 to 0312345678, with `extra` arguments.
fn call(p: &Phone, scenario: &str, extra: &[&str]) -> Sipp {
    common::calls::call(p, scenario, extra)
}

/// Waits for the incoming call and answers it; its Call-ID.
fn answer_incoming(p: &mut Phone) -> String {
    let inc = p.expect("incoming", secs(5));
    let id = inc["call"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty(), "{inc}");
    p.send(json!({"cmd": "answer", "call": id}));
    p.expect_where("answered", secs(5), |v: &Value| v["call"] == id.as_str());
    id
}

/// `consult` to the colleague: the consult call's id once the colleague answered; the
/// customer was held first.
fn consult(p: &mut Phone, customer: &str, colleague: &Sipp) -> String {
    p.send(json!({"cmd": "consult", "to": colleague.uri("1003")}));
    let c = p.expect("consult", secs(5));
    assert_eq!(c["call"], customer, "{c}");
    let consult = c["consult"].as_str().unwrap_or_default().to_owned();
    assert!(!consult.is_empty() && consult != customer, "{c}");
    p.expect_call("held", customer, secs(5));
    p.expect_call("answered", &consult, secs(5));
    consult
}

/// The Replaces value of a Refer-To header, unescaped.
fn replaces_of(refer_to: &str) -> String {
    let inner = refer_to.trim().trim_start_matches('<').trim_end_matches('>');
    let (_, v) = inner
        .split_once("?Replaces=")
        .unwrap_or_else(|| panic!("no ?Replaces= in {refer_to:?}"));
    let v = v.split('&').next().unwrap_or(v);
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

/// Call-ID, our (the phone's) tag and the colleague's tag of the consult dialog, as the
/// colleague's SIPp saw it.
fn consult_dialog(colleague: &SippResult) -> (String, String, String) {
    let invite = first(colleague, false, "INVITE ");
    let ok = first(colleague, true, "SIP/2.0 200");
    let call_id = invite.header("Call-ID").unwrap_or_default().trim().to_owned();
    let ours = invite.header("From").and_then(tag_of).unwrap_or_default();
    let theirs = ok.header("To").and_then(tag_of).unwrap_or_default();
    (call_id, ours, theirs)
}

#[test]
fn consult_then_complete_refers_the_customer_with_the_consult_dialog() {
    let mut p = Phone::start(&config(""), &[]);
    let customer = call(&p, "uac_customer_attended.xml", &[]);
    let id = answer_incoming(&mut p);
    let colleague = Sipp::spawn("uas_answer.xml", &[]);
    let consult_id = consult(&mut p, &id, &colleague);

    p.send(json!({"cmd": "complete"}));
    let t = p.expect("transferred", secs(5));
    assert_eq!(t["call"], id.as_str(), "{t}");
    assert_eq!(t["consult"], consult_id.as_str(), "{t}");
    assert_eq!(
        t["to"], "1003",
        "the consulted party as the agent knows them: {t}"
    );
    let end = p.expect_where("ended", secs(5), |v: &Value| v["call"] == id.as_str());
    assert_eq!(end["reason"], "local_hangup", "{end}");
    // The consult leg goes too (the colleague normally ends it; here nobody replaces it, so
    // the phone hangs it up after its grace time).
    p.expect_where("ended", secs(5), |v: &Value| v["call"] == consult_id.as_str());

    let r = customer.wait(secs(10));
    r.assert_ok();
    let c = colleague.wait(secs(10));
    c.assert_ok();
    let refer = first(&r, false, "REFER ");
    let refer_to = refer.header("Refer-To").unwrap_or_default().to_owned();
    assert!(
        refer.header("Referred-By").is_some(),
        "REFER without Referred-By:\n{}",
        refer.text
    );
    // RFC 3891 / 5589 §7: the consult dialog as the colleague knows it: its tag is the
    // to-tag, ours the from-tag.
    let (call_id, ours, theirs) = consult_dialog(&c);
    let want = format!("{call_id};to-tag={theirs};from-tag={ours}");
    assert_eq!(replaces_of(&refer_to), want, "Refer-To: {refer_to}");
    assert_eq!(call_id, consult_id, "the consult call's id is its Call-ID");
    assert!(refer_to.starts_with("<sip:1003@127.0.0.1:"), "{refer_to}");
}

#[test]
fn cancel_hangs_up_the_consult_and_resumes_the_customer() {
    let mut p = Phone::start(&config(""), &[]);
    let customer = call(&p, "uac_customer_consult_cancel.xml", &[]);
    let id = answer_incoming(&mut p);
    let colleague = Sipp::spawn("uas_answer.xml", &[]);
    let consult_id = consult(&mut p, &id, &colleague);

    p.send(json!({"cmd": "cancel"}));
    let end = p.expect_where("ended", secs(5), |v: &Value| v["call"] == consult_id.as_str());
    assert_eq!(end["reason"], "local_hangup", "{end}");
    p.expect_where("resumed", secs(5), |v: &Value| v["call"] == id.as_str());
    p.send(json!({"cmd": "hangup", "call": id}));
    p.expect_where("ended", secs(5), |v: &Value| v["call"] == id.as_str());
    customer.wait(secs(10)).assert_ok();
    colleague.wait(secs(10)).assert_ok();
}

/// A refused transfer: the error shows why, and both calls stay up (and can be hung up).
fn refused_transfer_leaves_both_calls(scenario: &str, why: &str) {
    let mut p = Phone::start(&config(""), &[]);
    let customer = call(&p, scenario, &[]);
    let id = answer_incoming(&mut p);
    let colleague = Sipp::spawn("uas_answer.xml", &[]);
    let consult_id = consult(&mut p, &id, &colleague);

    p.send(json!({"cmd": "complete"}));
    let err = p.expect("error", secs(5));
    let msg = err["message"].as_str().unwrap_or_default();
    assert!(msg.contains("transfer failed") && msg.contains(why), "{err}");
    p.expect_none("ended", Duration::from_millis(2500));
    assert_eq!(p.count("transferred"), 0, "{:?}", p.seen());
    // Both calls are still there to hang up.
    for c in [&consult_id, &id] {
        p.send(json!({"cmd": "hangup", "call": c}));
        let end = p.expect_where("ended", secs(5), |v: &Value| v["call"] == c.as_str());
        assert_eq!(end["reason"], "local_hangup", "{end}");
    }
    customer.wait(secs(10)).assert_ok();
    colleague.wait(secs(10)).assert_ok();
}

#[test]
fn a_refer_answered_603_leaves_both_calls_as_they_were() {
    refused_transfer_leaves_both_calls("uac_customer_refer_603.xml", "603");
}

#[test]
fn a_transfer_that_fails_after_202_leaves_both_calls() {
    refused_transfer_leaves_both_calls("uac_customer_notify_fail.xml", "486");
}

#[test]
fn complete_without_a_consult_call_is_an_error_not_a_refer() {
    let mut p = Phone::start(&config(""), &[]);
    let customer = call(&p, "uac_wait_bye.xml", &[]);
    let id = answer_incoming(&mut p);
    for cmd in ["complete", "cancel"] {
        p.send(json!({ "cmd": cmd }));
        let err = p.expect("error", secs(5));
        assert!(
            err["message"]
                .as_str()
                .unwrap_or_default()
                .contains("no consult call"),
            "{err}"
        );
    }
    p.send(json!({"cmd": "hangup", "call": id}));
    p.expect("ended", secs(5));
    let r = customer.wait(secs(10));
    r.assert_ok();
    assert_eq!(r.received("REFER "), 0, "{}", r.report());
}

/// The `Replaces` value naming the phone's dialog with `r`'s SIPp (UAC): its Call-ID, the
/// phone's tag (to-tag) and SIPp's (from-tag).
fn replaces_for(r: &SippResult) -> String {
    let invite = first(r, true, "INVITE ");
    let ok = first(r, false, "SIP/2.0 200");
    let call_id = invite.header("Call-ID").unwrap_or_default().trim().to_owned();
    let sipp_tag = invite.header("From").and_then(tag_of).unwrap_or_default();
    let phone_tag = ok.header("To").and_then(tag_of).unwrap_or_default();
    format!("{call_id};to-tag={phone_tag};from-tag={sipp_tag}")
}

#[test]
fn an_invite_with_replaces_takes_the_calls_place_and_the_crm_is_searched_again() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let crm = rt.block_on(common::Crm::start());
    let cti = format!(
        "[cti]\ntarget = \"custom\"\nserver_address = \"{}/\"\n\
         numbers = [{{ number = \"0312345678\" }}]\n\
         [cti.search]\nmethod = \"get\"\ntemplate = \"{{SVADDR}}search?tel={{TEL}}\"\n\
         captures = {{ COMPANY = \"json:/company\", NAME = \"json:/name\" }}\n",
        crm.url()
    );
    let mut p = Phone::start(&config(&cti), &[]);
    let first_party = call(&p, "uac_wait_bye.xml", &[]);
    let id = answer_incoming(&mut p);
    let trace = common::calls::wait_trace(&first_party, secs(5), "the call's ACK", |r| r.sent("ACK ") >= 1);
    let replaces = replaces_for(&trace);

    let second = call(&p, "uac_replaces.xml", &["-key", "replaces", &replaces]);
    let rep = p.expect("replaced", secs(5));
    assert_eq!(rep["call"], id.as_str(), "the same call, another party: {rep}");
    assert_eq!(rep["tel"], "0399998888", "{rep}");
    assert_eq!(rep["telname"], "Hanako Suzuki", "{rep}");
    // The replaced party is hung up; the call goes on.
    first_party.wait(secs(10)).assert_ok();
    assert_eq!(p.count("ended"), 0, "{:?}", p.seen());
    // The CRM is asked about the new party.
    let end = Instant::now() + secs(5);
    while crm
        .seen_path("/search")
        .iter()
        .all(|s| !s.query.as_deref().unwrap_or("").contains("0399998888"))
    {
        assert!(
            Instant::now() < end,
            "no CRM search for the new party: {:?}",
            crm.seen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p.send(json!({"cmd": "hangup", "call": id}));
    p.expect("ended", secs(5));
    second.wait(secs(10)).assert_ok();
    // The history's row is the call's, with the party it ended with.
    let end = Instant::now() + secs(5);
    loop {
        let rows = history_list(p.home());
        if let Some(row) = rows.iter().find(|r| r["call_id"] == id.as_str())
            && row["tel"] == "0399998888"
            && row["result"] == "answered"
        {
            assert_eq!(rows.len(), 1, "one call, one row: {rows:?}");
            break;
        }
        assert!(Instant::now() < end, "history: {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(rt);
}

#[test]
fn a_replaces_naming_no_call_is_481_and_early_only_on_an_answered_call_is_486() {
    let mut p = Phone::start(&config(""), &[]);
    // Nothing to replace.
    call(
        &p,
        "uac_replaces_481.xml",
        &["-key", "replaces", "nosuch@127.0.0.1;to-tag=a;from-tag=b"],
    )
    .wait(secs(10))
    .assert_ok();
    let first_party = call(&p, "uac_wait_bye.xml", &[]);
    let id = answer_incoming(&mut p);
    let trace = common::calls::wait_trace(&first_party, secs(5), "the call's ACK", |r| r.sent("ACK ") >= 1);
    let replaces = replaces_for(&trace);
    // The right Call-ID with a wrong tag is no match either.
    let wrong = replaces.replace("from-tag=", "from-tag=x");
    call(&p, "uac_replaces_481.xml", &["-key", "replaces", &wrong])
        .wait(secs(10))
        .assert_ok();
    // RFC 3891 §3: early-only on a confirmed dialog is 486.
    let early_only = format!("{replaces};early-only");
    call(&p, "uac_replaces_486.xml", &["-key", "replaces", &early_only])
        .wait(secs(10))
        .assert_ok();
    // A Replaces that does not parse: 400.
    for bad in ["no-tags-here", "a b;to-tag=1;from-tag=2", "x;to-tag=;from-tag=2"] {
        call(&p, "uac_replaces_400.xml", &["-key", "replaces", bad])
            .wait(secs(10))
            .assert_ok();
    }
    assert_eq!(p.count("replaced"), 0, "{:?}", p.seen());
    assert_eq!(p.count("incoming"), 1, "no refused INVITE rang: {:?}", p.seen());
    p.send(json!({"cmd": "hangup", "call": id}));
    p.expect("ended", secs(5));
    first_party.wait(secs(10)).assert_ok();
}

#[test]
fn a_replaces_for_a_call_ringing_here_is_481() {
    // RFC 3891 §3: an early dialog this UA did not start is not to be replaced (that would
    // let a stranger who saw the INVITE pick up the agent's call).
    let mut p = Phone::start(&config_call_waiting(""), &[]);
    let ringing = call(&p, "uac_wait_bye.xml", &[]);
    let inc = p.expect("incoming", secs(5));
    let id = inc["call"].as_str().unwrap_or_default().to_owned();
    let trace = common::calls::wait_trace(&ringing, secs(5), "the 180", |r| r.received("SIP/2.0 180") >= 1);
    let invite = first(&trace, true, "INVITE ");
    let ring = first(&trace, false, "SIP/2.0 180");
    let replaces = format!(
        "{};to-tag={};from-tag={}",
        invite.header("Call-ID").unwrap_or_default().trim(),
        ring.header("To").and_then(tag_of).unwrap_or_default(),
        invite.header("From").and_then(tag_of).unwrap_or_default()
    );
    call(&p, "uac_replaces_481.xml", &["-key", "replaces", &replaces])
        .wait(secs(10))
        .assert_ok();
    // The call still rings and can be answered.
    p.send(json!({"cmd": "answer", "call": id}));
    p.expect_call("answered", &id, secs(5));
    p.send(json!({"cmd": "hangup", "call": id}));
    p.expect_call("ended", &id, secs(5));
    ringing.wait(secs(10)).assert_ok();
}

#[test]
fn call_waiting_answer_holds_the_first_and_swap_toggles() {
    let mut p = Phone::start(&config_call_waiting(""), &[]);
    // Both accept a hold then a resume, then the phone's BYE.
    let one = call(&p, "uac_customer_consult_cancel.xml", &[]);
    let id1 = answer_incoming(&mut p);
    let two = call(&p, "uac_customer_consult_cancel.xml", &[]);
    let inc = p.expect_where("incoming", secs(5), |v: &Value| v["call"] != id1.as_str());
    let id2 = inc["call"].as_str().unwrap_or_default().to_owned();
    // `answer` with no call named: the ringing one; the first waits on hold.
    p.send(json!({"cmd": "answer"}));
    // (Either order: the answer goes out while the hold's re-INVITE waits for its 200.)
    p.expect_call("held", &id1, secs(5));
    p.expect_call("answered", &id2, secs(5));
    // swap: the second held, the first resumed.
    p.send(json!({"cmd": "swap"}));
    p.expect_call("held", &id2, secs(5));
    p.expect_call("resumed", &id1, secs(5));
    p.send(json!({"cmd": "hangup", "call": id1}));
    p.expect_where("ended", secs(5), |v: &Value| v["call"] == id1.as_str());
    p.send(json!({"cmd": "unhold", "call": id2}));
    p.expect_where("resumed", secs(5), |v: &Value| v["call"] == id2.as_str());
    p.send(json!({"cmd": "hangup", "call": id2}));
    p.expect_where("ended", secs(5), |v: &Value| v["call"] == id2.as_str());
    one.wait(secs(10)).assert_ok();
    two.wait(secs(10)).assert_ok();
}

// ------------------------------------------------------------------------------- auto-answer

/// A phone taking PBX auto-answer requests from `from` (none: the setting off).
fn auto_phone(from: Option<&str>) -> Phone {
    let calls = match from {
        Some(h) => format!("[calls]\nremote_answer = true\nremote_answer_from = [\"{h}\"]\n"),
        None => String::new(),
    };
    Phone::start(&config(&calls), &[])
}

/// Rings the phone from `ip` with the header line `hdr`: whether the phone answered by
/// itself within `wait` (if not, the agent answers). The call is hung up after.
fn answers_by_itself(p: &mut Phone, ip: &str, hdr: &str, wait: Duration) -> bool {
    let target = p.target();
    let sipp = Sipp::spawn(
        "uac_auto_answer.xml",
        &[target.as_str(), "-s", "0312345678", "-i", ip, "-key", "hdr", hdr],
    );
    let inc = p.expect("incoming", secs(5));
    let id = inc["call"].as_str().unwrap_or_default().to_owned();
    let answered = p
        .drain(wait)
        .iter()
        .any(|v| v["event"] == "answered" && v["call"] == id.as_str());
    if !answered {
        p.send(json!({"cmd": "answer", "call": id}));
        p.expect_where("answered", secs(5), |v: &Value| v["call"] == id.as_str());
    }
    p.send(json!({"cmd": "hangup", "call": id}));
    p.expect_where("ended", secs(5), |v: &Value| v["call"] == id.as_str());
    sipp.wait(secs(10)).assert_ok();
    answered
}

/// How long from the ring to the phone's answer (it must answer within `limit`).
fn answered_after(p: &mut Phone, hdr: &str, limit: Duration) -> Duration {
    let target = p.target();
    let sipp = Sipp::spawn(
        "uac_auto_answer.xml",
        &[target.as_str(), "-s", "0312345678", "-key", "hdr", hdr],
    );
    let inc = p.expect("incoming", secs(5));
    let rang = Instant::now();
    let id = inc["call"].as_str().unwrap_or_default().to_owned();
    p.expect_where("answered", limit, |v: &Value| v["call"] == id.as_str());
    let took = rang.elapsed();
    p.send(json!({"cmd": "hangup", "call": id}));
    p.expect_where("ended", secs(5), |v: &Value| v["call"] == id.as_str());
    sipp.wait(secs(10)).assert_ok();
    took
}

#[test]
fn each_auto_answer_header_from_the_allowed_host_is_answered_on_time() {
    let mut p = auto_phone(Some("127.0.0.1"));
    for (hdr, n) in [
        ("Call-Info: <sip:127.0.0.1>;answer-after=0", 0.0),
        ("Call-Info: <sip:127.0.0.1>;answer-after=2", 2.0),
        ("Alert-Info: <http://127.0.0.1/>;info=alert-autoanswer", 0.0),
        ("Answer-Mode: Auto", 0.0),
        ("Priv-Answer-Mode: Auto", 0.0),
    ] {
        let took = answered_after(&mut p, hdr, secs(4)).as_secs_f64();
        println!("{hdr}: answered after {took:.3} s (asked: {n} s)");
        assert!(
            (took - n).abs() <= 0.5,
            "{hdr}: answered after {took:.3} s, expected {n} s ± 0.5"
        );
    }
}

#[test]
fn auto_answer_from_another_host_or_with_the_setting_off_rings() {
    // 127.0.0.2 is not the allowed host.
    let mut p = auto_phone(Some("127.0.0.1"));
    let hdr = "Call-Info: <sip:127.0.0.2>;answer-after=0";
    assert!(
        !answers_by_itself(&mut p, "127.0.0.2", hdr, secs(2)),
        "answered for a stranger"
    );
    drop(p);
    let mut p = auto_phone(None);
    assert!(
        !answers_by_itself(&mut p, "127.0.0.1", "Answer-Mode: Auto", secs(2)),
        "answered with remote_answer off"
    );
    // What it will not honour, the caller required: 403 (RFC 5373 §7.2), no ring.
    let target = p.target();
    Sipp::spawn(
        "uac_auto_answer_403.xml",
        &[
            target.as_str(),
            "-s",
            "0312345678",
            "-key",
            "hdr",
            "Answer-Mode: Auto;require",
        ],
    )
    .wait(secs(10))
    .assert_ok();
    assert_eq!(
        p.count("incoming"),
        1,
        "the refused call never rang: {:?}",
        p.seen()
    );
}

#[test]
fn notify_talk_from_another_host_does_not_answer() {
    let mut p = auto_phone(Some("127.0.0.1"));
    let target = p.target();
    let sipp = Sipp::spawn(
        "uac_notify_talk.xml",
        &[target.as_str(), "-s", "0312345678", "-i", "127.0.0.2"],
    );
    let inc = p.expect("incoming", secs(5));
    let id = inc["call"].as_str().unwrap_or_default().to_owned();
    let w = p.expect("warning", secs(5));
    assert!(
        w["message"].as_str().unwrap_or_default().contains("not honoured"),
        "{w}"
    );
    p.expect_none("answered", secs(1));
    p.send(json!({"cmd": "answer", "call": id}));
    p.expect_call("answered", &id, secs(5));
    p.send(json!({"cmd": "hangup", "call": id}));
    p.expect("ended", secs(5));
    sipp.wait(secs(10)).assert_ok();
}

#[test]
fn notify_talk_from_the_pbx_answers_the_ringing_call() {
    let mut p = auto_phone(Some("127.0.0.1"));
    let sipp = call(&p, "uac_notify_talk.xml", &[]);
    let inc = p.expect("incoming", secs(5));
    let id = inc["call"].as_str().unwrap_or_default().to_owned();
    p.expect_where("answered", secs(3), |v: &Value| v["call"] == id.as_str());
    p.send(json!({"cmd": "hangup", "call": id}));
    p.expect("ended", secs(5));
    sipp.wait(secs(10)).assert_ok();
}

#[test]
fn conference_resumes_the_held_customer_and_ends_with_a_leg() {
    let mut p = Phone::start(&config(""), &[]);
    // The customer is held by the consult, then resumed by the conference (checked).
    let customer = call(&p, "uac_customer_consult_cancel.xml", &[]);
    let id = answer_incoming(&mut p);
    let colleague = Sipp::spawn("uas_answer.xml", &[]);
    let consult_id = consult(&mut p, &id, &colleague);
    p.send(json!({"cmd": "conference"}));
    let conf = p.expect("conference", secs(5));
    assert_eq!(conf["calls"], json!([id, consult_id]), "{conf}");
    p.expect_call("resumed", &id, secs(5));
    // The colleague leaves: the customer's call goes on, the conference is over.
    p.send(json!({"cmd": "hangup", "call": consult_id}));
    let conf = p.expect("conference", secs(5));
    assert_eq!(conf["calls"], json!([]), "{conf}");
    colleague.wait(secs(10)).assert_ok();
    p.send(json!({"cmd": "hangup", "call": id}));
    p.expect_call("ended", &id, secs(5));
    customer.wait(secs(10)).assert_ok();
    // A conference needs two answered calls.
    p.send(json!({"cmd": "conference"}));
    let err = p.expect("error", secs(5));
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("two answered calls"),
        "{err}"
    );
}

#[test]
fn an_auto_answer_request_over_a_call_in_progress_rings_as_a_waiting_call() {
    let cfg = config_call_waiting("[calls]\nremote_answer = true\nremote_answer_from = [\"127.0.0.1\"]\n");
    let mut p = Phone::start(&cfg, &[]);
    let first_party = call(&p, "uac_held_then_bye.xml", &[]);
    let id1 = answer_incoming(&mut p);
    let target = p.target();
    let intercom = Sipp::spawn(
        "uac_auto_answer.xml",
        &[
            target.as_str(),
            "-s",
            "0312345678",
            "-key",
            "hdr",
            "Answer-Mode: Auto",
        ],
    );
    let inc = p.expect_where("incoming", secs(5), |v: &Value| v["call"] != id1.as_str());
    let id2 = inc["call"].as_str().unwrap_or_default().to_owned();
    p.expect_none("answered", Duration::from_millis(1500));
    // The agent takes it: the first call waits on hold.
    p.send(json!({"cmd": "answer"}));
    p.expect_call("answered", &id2, secs(5));
    p.expect_call("held", &id1, secs(5));
    for id in [&id2, &id1] {
        p.send(json!({"cmd": "hangup", "call": id}));
        p.expect_call("ended", id, secs(5));
    }
    intercom.wait(secs(10)).assert_ok();
    first_party.wait(secs(10)).assert_ok();
}
