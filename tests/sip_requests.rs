//! Requests SIPp sends straight to `ctiphone headless` on 127.0.0.1: malformed ones get their
//! error response (400, 505) without ringing, and the caller's identity headers
//! (P-Asserted-Identity, Privacy) shape the `incoming` event.

mod common;

use serde_json::Value;

use common::peers::{Phone, Sipp, SippResult, account_toml, ms, secs};

fn direct_phone() -> Phone {
    Phone::start(&account_toml("1001", "pw1001", "", "udp", 60), &[])
}

fn run(p: &Phone, scenario: &str) -> SippResult {
    let target = p.target();
    Sipp::spawn(scenario, &[target.as_str(), "-s", "0312345678"]).wait(secs(10))
}

/// The phone still answers an OPTIONS, and never rang.
fn still_fine(p: &mut Phone) {
    run(p, "uac_options.xml").assert_ok();
    p.expect_none("incoming", ms(300));
}

#[test]
fn invite_with_a_cseq_of_another_method_gets_400() {
    let mut p = direct_phone();
    let r = run(&p, "uac_bad_cseq.xml");
    r.assert_ok();
    let bad = &r.received_msgs("SIP/2.0 400")[0];
    let sent = &r.sent_msgs("INVITE ")[0];
    assert_eq!(bad.header("Call-ID"), sent.header("Call-ID"), "{}", bad.text);
    assert_eq!(bad.branch(), sent.branch(), "{}", bad.text);
    assert_eq!(r.sent_msgs("ACK ")[0].branch(), sent.branch(), "scenario's ACK");
    assert_eq!(r.received("SIP/2.0 180"), 0, "{}", r.report());
    assert_eq!(r.received("SIP/2.0 200"), 0, "{}", r.report());
    still_fine(&mut p);
}

#[test]
fn sip_7_0_gets_505() {
    let mut p = direct_phone();
    let r = run(&p, "uac_bad_version.xml");
    r.assert_ok();
    let bad = &r.received_msgs("SIP/2.0 505")[0];
    let sent = &r.sent_msgs("INVITE ")[0];
    assert_eq!(bad.header("Call-ID"), sent.header("Call-ID"), "{}", bad.text);
    assert_eq!(r.received("SIP/2.0 180"), 0, "{}", r.report());
    still_fine(&mut p);
}

/// Calls the phone with `scenario` (a UAC that cancels after 180) and returns `incoming`.
fn ring(scenario: &str) -> Value {
    let mut p = direct_phone();
    let target = p.target();
    let uac = Sipp::spawn(scenario, &[target.as_str(), "-s", "0312345678"]);
    let inc = p.expect("incoming", secs(5));
    let end = p.expect("ended", secs(5));
    assert_eq!(end["reason"], "cancelled", "{end}");
    uac.wait(secs(10)).assert_ok();
    inc
}

#[test]
fn p_asserted_identity_is_the_caller() {
    let inc = ring("uac_pai_cancel.xml");
    assert_eq!(inc["tel"], "+81312345678", "{inc}");
    assert_eq!(inc["telname"], "Hanako", "{inc}");
    assert_eq!(inc["called"], "0312345678", "{inc}");
    assert_eq!(inc["anonymous"], false, "{inc}");
}

#[test]
fn privacy_id_makes_the_caller_anonymous() {
    let inc = ring("uac_privacy_cancel.xml");
    assert_eq!(inc["anonymous"], true, "{inc}");
    assert_eq!(inc["called"], "0312345678", "{inc}");
}
