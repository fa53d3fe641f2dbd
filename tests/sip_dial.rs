//! Outgoing calls from `ctiphone headless`: straight to a SIPp UAS, and through Kamailio (407
//! challenge, location lookup) to a second ctiphone registered as 1002 that auto-answers.

mod common;

use serde_json::json;

use common::peers::{Kamailio, Phone, Sipp, account_toml, secs};

#[test]
fn dial_a_sipp_uas_directly_then_hang_up() {
    let mut p = Phone::start(&account_toml("1001", "pw1001", "", "udp", 60), &[]);
    let uas = Sipp::spawn("uas_answer.xml", &[]);
    let to = uas.uri("1002");
    p.send(json!({"cmd": "dial", "to": to}));
    let out = p.expect("outgoing", secs(2));
    let id = out["call"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty(), "{out}");
    assert!(out["to"].as_str().is_some_and(|t| t.contains("1002")), "{out}");
    let ringing = p.expect("ringing", secs(5));
    assert_eq!(ringing["call"], id.as_str(), "{ringing}");
    let ans = p.expect("answered", secs(5));
    assert_eq!(ans["call"], id.as_str(), "{ans}");
    std::thread::sleep(secs(1));
    p.send(json!({"cmd": "hangup"}));
    let end = p.expect("ended", secs(5));
    assert_eq!(end["call"], id.as_str(), "{end}");
    assert_eq!(end["reason"], "local_hangup", "{end}");
    assert!(end["duration_s"].as_f64().is_some_and(|d| d >= 0.5), "{end}");

    let r = uas.wait(secs(10));
    r.assert_ok();
    let invite = &r.received_msgs("INVITE ")[0];
    assert_eq!(invite.header("Call-ID"), Some(id.as_str()));
    assert!(
        invite
            .header("Content-Type")
            .is_some_and(|c| c.eq_ignore_ascii_case("application/sdp")),
        "{}",
        invite.text
    );
    let m = invite
        .body()
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .unwrap_or_else(|| panic!("INVITE without m=audio:\n{}", invite.text));
    assert!(
        m.split_whitespace().skip(3).any(|f| f == "0" || f == "8"),
        "no PCMU/PCMA offered: {m}"
    );
    assert_eq!(r.received("ACK "), 1, "{}", r.report());
    assert_eq!(r.received("BYE "), 1, "{}", r.report());
}

#[test]
fn dial_a_sipp_uas_over_tcp() {
    let mut p = Phone::start(&account_toml("1001", "pw1001", "", "tcp", 60), &[]);
    let uas = Sipp::spawn("uas_answer.xml", &["-t", "t1"]);
    p.send(json!({"cmd": "dial", "to": uas.uri("1002")}));
    p.expect("answered", secs(5));
    p.send(json!({"cmd": "hangup"}));
    let end = p.expect("ended", secs(5));
    assert_eq!(end["reason"], "local_hangup", "{end}");
    let r = uas.wait(secs(10));
    r.assert_ok();
    assert_eq!(r.received("BYE "), 1, "{}", r.report());
}

#[test]
fn call_between_two_ctiphones_through_kamailio_with_a_407_challenge() {
    let k = Kamailio::start();
    let mut a = Phone::start(&account_toml("1001", "pw1001", &k.addr(), "udp", 60), &[]);
    let mut b = Phone::start(
        &account_toml("1002", "pw1002", &k.addr(), "udp", 60),
        &["--auto-answer"],
    );
    a.expect("registered", secs(10));
    b.expect("registered", secs(10));

    a.send(json!({"cmd": "dial", "to": "1002"}));
    let out = a.expect("outgoing", secs(2));
    let id = out["call"].as_str().unwrap_or_default().to_owned();

    let inc = b.expect("incoming", secs(10));
    assert_eq!(inc["tel"], "1001", "{inc}");
    assert_eq!(inc["called"], "1002", "{inc}");
    assert_eq!(inc["call"], id.as_str(), "same SIP Call-ID end to end: {inc}");
    b.expect("answered", secs(5));
    let ans = a.expect("answered", secs(10));
    assert_eq!(ans["call"], id.as_str(), "{ans}");

    // The INVITE was challenged (407) and sent again with credentials.
    let invites = k.request_lines("INVITE");
    assert!(invites.len() >= 2, "{invites:#?}");

    std::thread::sleep(secs(1));
    a.send(json!({"cmd": "hangup"}));
    let end_a = a.expect("ended", secs(5));
    assert_eq!(end_a["reason"], "local_hangup", "{end_a}");
    let end_b = b.expect("ended", secs(5));
    assert_eq!(end_b["reason"], "remote_hangup", "{end_b}");
    assert!(
        k.requests("BYE") >= 1,
        "the BYE went through kamailio (record-route)"
    );
}

#[test]
fn dial_an_unregistered_extension_fails() {
    let k = Kamailio::start();
    let mut a = Phone::start(&account_toml("1001", "pw1001", &k.addr(), "udp", 60), &[]);
    a.expect("registered", secs(10));
    a.send(json!({"cmd": "dial", "to": "1003"}));
    let end = a.expect("ended", secs(10));
    assert_eq!(
        end["code"], 404,
        "kamailio answers 404 for nobody registered: {end}"
    );
    assert_eq!(end["reason"], "failed", "{end}");
}
