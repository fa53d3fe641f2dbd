//! Incoming calls: SIPp calls `ctiphone headless` directly (registrar = "", no Kamailio) on
//! 127.0.0.1, over UDP and TCP. Caller ID in the `incoming` event, answer with SDP, remote and
//! local hang-up, CANCEL, busy, OPTIONS, unknown methods, and 2xx retransmission.

mod common;

use serde_json::{Value, json};

use common::peers::{Phone, Sipp, SippResult, account_toml, secs};

fn direct_phone(transport: &str) -> Phone {
    Phone::start(&account_toml("1001", "pw1001", "", transport, 60), &[])
}

/// A SIPp UAC calling the phone as "Taro Yamada" <0311112222> to 0312345678.
fn call(p: &Phone, scenario: &str, extra: &[&str]) -> Sipp {
    let target = p.target();
    let mut args = vec![target.as_str(), "-s", "0312345678"];
    args.extend_from_slice(extra);
    Sipp::spawn(scenario, &args)
}

#[track_caller]
fn assert_caller_id(inc: &Value) {
    assert_eq!(inc["tel"], "0311112222", "{inc}");
    assert_eq!(inc["telname"], "Taro Yamada", "{inc}");
    assert_eq!(inc["called"], "0312345678", "{inc}");
    assert_eq!(inc["anonymous"], false, "{inc}");
    assert!(
        inc["call"].as_str().is_some_and(|c| !c.is_empty()),
        "no Call-ID: {inc}"
    );
}

/// The phone's 200 OK to the INVITE carried an SDP answer with PCMU or PCMA.
#[track_caller]
fn assert_200_with_g711_sdp(r: &SippResult) {
    let oks = r.received_msgs("SIP/2.0 200");
    let ok = oks
        .iter()
        .find(|m| m.header("CSeq").is_some_and(|c| c.ends_with("INVITE")))
        .unwrap_or_else(|| panic!("no 200 to the INVITE\n{}", r.report()));
    let body = ok.body();
    assert!(
        ok.header("Content-Type")
            .is_some_and(|c| c.eq_ignore_ascii_case("application/sdp")),
        "{}",
        ok.text
    );
    let m = body
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .unwrap_or_else(|| panic!("no m=audio line in the 200's SDP:\n{}", ok.text));
    let formats: Vec<&str> = m.split_whitespace().skip(3).collect();
    assert!(
        formats.contains(&"0") || formats.contains(&"8"),
        "neither PCMU (0) nor PCMA (8) in {m:?}"
    );
    assert!(body.lines().any(|l| l.starts_with("c=IN IP4 ")), "{body}");
    assert!(
        ok.header("Contact").is_some(),
        "200 without Contact:\n{}",
        ok.text
    );
}

fn answer_and_remote_bye(transport: &str) {
    let mut p = direct_phone(transport);
    assert_eq!(p.ready["transport"], transport, "{}", p.ready);
    let extra: &[&str] = if transport == "tcp" { &["-t", "t1"] } else { &[] };
    let uac = call(&p, "uac_call_bye.xml", extra);

    let inc = p.expect("incoming", secs(5));
    assert_caller_id(&inc);
    let id = inc["call"].as_str().unwrap().to_owned();
    p.send(json!({"cmd": "answer"}));
    let ans = p.expect("answered", secs(5));
    assert_eq!(ans["call"], id.as_str(), "{ans}");
    let end = p.expect("ended", secs(10));
    assert_eq!(end["call"], id.as_str(), "{end}");
    assert_eq!(end["reason"], "remote_hangup", "{end}");
    let d = end["duration_s"].as_f64().unwrap_or(-1.0);
    assert!((0.3..10.0).contains(&d), "duration_s {d}: {end}");

    let r = uac.wait(secs(10));
    r.assert_ok();
    assert!(r.received("SIP/2.0 180") >= 1, "no 180 Ringing\n{}", r.report());
    assert_200_with_g711_sdp(&r);
    // The Call-ID in the event is the SIP Call-ID.
    let invite = &r.sent_msgs("INVITE ")[0];
    assert_eq!(invite.header("Call-ID"), Some(id.as_str()));
}

#[test]
fn incoming_call_shows_caller_id_is_answered_and_ends_on_remote_bye() {
    answer_and_remote_bye("udp");
}

#[test]
fn incoming_call_over_tcp() {
    answer_and_remote_bye("tcp");
}

#[test]
fn caller_cancels_while_ringing() {
    let mut p = direct_phone("udp");
    let uac = call(&p, "uac_cancel.xml", &[]);
    let inc = p.expect("incoming", secs(5));
    assert_caller_id(&inc);
    let end = p.expect("ended", secs(5));
    assert_eq!(end["call"], inc["call"], "{end}");
    assert_eq!(end["reason"], "cancelled", "{end}");
    uac.wait(secs(10)).assert_ok();
    p.expect_none("answered", secs(1));
}

#[test]
fn phone_hangs_up_an_answered_call_with_bye() {
    let mut p = direct_phone("udp");
    let uac = call(&p, "uac_wait_bye.xml", &[]);
    let inc = p.expect("incoming", secs(5));
    p.send(json!({"cmd": "answer"}));
    p.expect("answered", secs(5));
    std::thread::sleep(secs(1));
    p.send(json!({"cmd": "hangup"}));
    let end = p.expect("ended", secs(5));
    assert_eq!(end["call"], inc["call"], "{end}");
    assert_eq!(end["reason"], "local_hangup", "{end}");
    let r = uac.wait(secs(10));
    r.assert_ok();
    assert_eq!(r.received("BYE "), 1, "{}", r.report());
}

#[test]
fn reject_answers_603() {
    let mut p = direct_phone("udp");
    let uac = call(&p, "uac_expect_decline.xml", &[]);
    let inc = p.expect("incoming", secs(5));
    p.send(json!({"cmd": "reject"}));
    let end = p.expect("ended", secs(5));
    assert_eq!(end["call"], inc["call"], "{end}");
    assert_eq!(end["reason"], "rejected", "{end}");
    let r = uac.wait(secs(10));
    r.assert_ok();
    assert_eq!(
        r.received("SIP/2.0 603"),
        1,
        "the ACK stops the 603 retransmissions\n{}",
        r.report()
    );
}

#[test]
fn second_invite_during_a_call_gets_486() {
    let mut p = direct_phone("udp");
    let first = call(&p, "uac_wait_bye.xml", &[]);
    let inc = p.expect("incoming", secs(5));
    p.send(json!({"cmd": "answer"}));
    p.expect("answered", secs(5));

    let second = call(&p, "uac_expect_busy.xml", &[]);
    second.wait(secs(10)).assert_ok();

    p.send(json!({"cmd": "hangup"}));
    let end = p.expect("ended", secs(5));
    assert_eq!(
        end["call"], inc["call"],
        "the first call ends, not the refused one: {end}"
    );
    assert_eq!(end["reason"], "local_hangup", "{end}");
    first.wait(secs(10)).assert_ok();
}

#[test]
fn options_gets_200() {
    let p = direct_phone("udp");
    let r = call(&p, "uac_options.xml", &[]).wait(secs(10));
    r.assert_ok();
}

#[test]
fn unknown_method_gets_501() {
    let mut p = direct_phone("udp");
    call(&p, "uac_unknown_method.xml", &[]).wait(secs(10)).assert_ok();
    // and the phone is still fine
    let r = call(&p, "uac_options.xml", &[]).wait(secs(10));
    r.assert_ok();
    p.expect_none("incoming", secs(1));
}

#[test]
fn unacknowledged_200_is_retransmitted_until_the_ack() {
    let mut p = direct_phone("udp");
    // -nr: see the scenario's comment (SIPp would drop the retransmission otherwise).
    let uac = call(&p, "uac_drop_ack_retrans.xml", &["-nr"]);
    let inc = p.expect("incoming", secs(5));
    p.send(json!({"cmd": "answer"}));
    p.expect("answered", secs(5));
    let end = p.expect("ended", secs(10));
    assert_eq!(end["call"], inc["call"], "{end}");
    assert_eq!(end["reason"], "remote_hangup", "{end}");
    let r = uac.wait(secs(10));
    r.assert_ok();
    let oks: Vec<_> = r
        .received_msgs("SIP/2.0 200")
        .into_iter()
        .filter(|m| m.header("CSeq").is_some_and(|c| c.ends_with("INVITE")))
        .collect();
    assert!(oks.len() >= 2, "no retransmitted 200\n{}", r.report());
    // RFC 3261 13.3.1.4: first retransmission after T1 (500 ms).
    let gap = oks[1].at - oks[0].at;
    assert!(
        (0.3..2.5).contains(&gap),
        "200 retransmitted {gap:.3} s after the first, expected about 0.5 s"
    );
    assert_eq!(oks[0].text, oks[1].text, "a retransmission is the same message");
}
