//! In-call features of `ctiphone headless` against SIPp on 127.0.0.1 (no registrar): hold and
//! unhold by the agent (re-INVITE with a=sendonly / a=sendrecv, ACKed), hold from the far end
//! (the phone answers a=recvonly), DTMF by SIP INFO both ways, blind transfer (REFER, NOTIFY,
//! BYE), and call waiting.

mod common;

use serde_json::{Value, json};

use common::peers::{Phone, Sipp, SippMsg, SippResult, account_toml, account_toml_call_waiting, ms, secs};

fn direct_phone() -> Phone {
    Phone::start(&account_toml("1001", "pw1001", "", "udp", 60), &[])
}

/// A SIPp UAC calling the phone directly, to 0312345678.
fn call(p: &Phone, scenario: &str) -> Sipp {
    let target = p.target();
    Sipp::spawn(scenario, &[target.as_str(), "-s", "0312345678"])
}

/// Waits for the incoming call, answers it, returns its Call-ID.
fn answer_incoming(p: &mut Phone) -> String {
    let inc = p.expect("incoming", secs(5));
    let id = inc["call"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty(), "{inc}");
    p.send(json!({"cmd": "answer"}));
    let ans = p.expect("answered", secs(5));
    assert_eq!(ans["call"], id.as_str(), "{ans}");
    id
}

/// The `a=` direction attribute of an SDP body (session or media level), if any.
fn direction(sdp: &str) -> Option<&'static str> {
    ["sendrecv", "sendonly", "recvonly", "inactive"]
        .into_iter()
        .find(|d| sdp.lines().any(|l| l.trim() == format!("a={d}")))
}

/// Messages of `r` received whose CSeq method is `method` and whose first line starts with
/// `start`.
fn received_for(r: &SippResult, start: &str, method: &str) -> Vec<SippMsg> {
    r.received_msgs(start)
        .into_iter()
        .filter(|m| m.cseq().is_some_and(|(_, x)| x == method))
        .collect()
}

#[test]
fn agent_holds_and_resumes_with_re_invites() {
    let mut p = direct_phone();
    let uas = Sipp::spawn("uas_hold.xml", &[]);
    p.send(json!({"cmd": "dial", "to": uas.uri("1002")}));
    let out = p.expect("outgoing", secs(2));
    let id = out["call"].as_str().unwrap_or_default().to_owned();
    p.expect("answered", secs(5));
    uas.wait_received("ACK ", 1, secs(5), "the ACK of the call's 200");

    p.send(json!({"cmd": "hold"}));
    let held = p.expect("held", secs(5));
    assert_eq!(held["call"], id.as_str(), "{held}");
    // The hold transaction completes (200, then the ACK) before the agent resumes.
    uas.wait_received(
        "ACK ",
        2,
        secs(5),
        "the phone must ACK the 200 to its hold re-INVITE",
    );

    p.send(json!({"cmd": "unhold"}));
    let resumed = p.expect("resumed", secs(5));
    assert_eq!(resumed["call"], id.as_str(), "{resumed}");
    uas.wait_received(
        "ACK ",
        3,
        secs(5),
        "the phone must ACK the 200 to its unhold re-INVITE",
    );

    p.send(json!({"cmd": "hangup"}));
    let end = p.expect("ended", secs(5));
    assert_eq!(end["reason"], "local_hangup", "{end}");

    let r = uas.wait(secs(10));
    r.assert_ok();
    let invites = r.received_msgs("INVITE ");
    let mut cseqs: Vec<u32> = invites.iter().filter_map(|m| m.cseq()).map(|c| c.0).collect();
    cseqs.dedup();
    assert_eq!(
        cseqs.len(),
        3,
        "INVITE, hold re-INVITE, unhold re-INVITE\n{}",
        r.report()
    );
    assert!(cseqs.windows(2).all(|w| w[0] < w[1]), "CSeq grows: {cseqs:?}");
    let hold = invites
        .iter()
        .find(|m| m.cseq().map(|c| c.0) == Some(cseqs[1]))
        .unwrap();
    let resume = invites
        .iter()
        .find(|m| m.cseq().map(|c| c.0) == Some(cseqs[2]))
        .unwrap();
    assert_eq!(direction(hold.body()), Some("sendonly"), "{}", hold.text);
    assert_eq!(
        direction(resume.body()).unwrap_or("sendrecv"),
        "sendrecv",
        "{}",
        resume.text
    );
    // In-dialog: same Call-ID, and the To carries SIPp's tag.
    for m in [hold, resume] {
        assert_eq!(m.header("Call-ID"), Some(id.as_str()), "{}", m.text);
        assert!(
            m.header("To").is_some_and(|t| t.contains("tag=")),
            "re-INVITE outside the dialog:\n{}",
            m.text
        );
    }
    // Each re-INVITE's 200 was ACKed with its CSeq number.
    let acks: Vec<u32> = r
        .received_msgs("ACK ")
        .iter()
        .filter_map(|m| m.cseq())
        .map(|c| c.0)
        .collect();
    for n in &cseqs {
        assert!(
            acks.contains(n),
            "no ACK with CSeq {n} (ACKs: {acks:?})\n{}",
            r.report()
        );
    }
}

#[test]
fn far_end_hold_is_answered_recvonly_and_the_call_goes_on() {
    let mut p = direct_phone();
    let uac = call(&p, "uac_remote_hold.xml");
    let id = answer_incoming(&mut p);
    let end = p.expect("ended", secs(10));
    assert_eq!(end["call"], id.as_str(), "{end}");
    assert_eq!(end["reason"], "remote_hangup", "{end}");
    let r = uac.wait(secs(10));
    r.assert_ok();
    let oks = received_for(&r, "SIP/2.0 200", "INVITE");
    let re_ok = oks
        .iter()
        .find(|m| m.cseq().map(|c| c.0) == Some(2))
        .unwrap_or_else(|| panic!("no 200 to the re-INVITE\n{}", r.report()));
    assert!(
        re_ok
            .header("Content-Type")
            .is_some_and(|c| c.eq_ignore_ascii_case("application/sdp")),
        "{}",
        re_ok.text
    );
    assert_eq!(direction(re_ok.body()), Some("recvonly"), "{}", re_ok.text);
    // The far end's hold is not the agent's: no held/resumed events, and no error.
    assert_eq!(p.count("held"), 0, "{:?}", p.seen());
    assert_eq!(p.count("error"), 0, "{:?}", p.seen());
}

#[test]
fn dtmf_by_sip_info_both_ways() {
    let mut p = direct_phone();
    let uac = call(&p, "uac_dtmf_info.xml");
    let id = answer_incoming(&mut p);
    p.send(json!({"cmd": "dtmf", "digits": "1#"}));
    let d = p.expect("dtmf", secs(5));
    assert_eq!(d["call"], id.as_str(), "{d}");
    assert_eq!(d["digit"], "5", "{d}");
    let end = p.expect("ended", secs(5));
    assert_eq!(end["reason"], "remote_hangup", "{end}");
    let r = uac.wait(secs(10));
    r.assert_ok();
    let infos = r.received_msgs("INFO ");
    let mut cseqs: Vec<u32> = infos.iter().filter_map(|m| m.cseq()).map(|c| c.0).collect();
    cseqs.dedup();
    assert_eq!(cseqs.len(), 2, "one INFO per digit\n{}", r.report());
    let signals: Vec<String> = infos
        .iter()
        .map(|m| {
            assert!(
                m.header("Content-Type")
                    .is_some_and(|c| c.eq_ignore_ascii_case("application/dtmf-relay")),
                "{}",
                m.text
            );
            assert_eq!(m.header("Call-ID"), Some(id.as_str()), "{}", m.text);
            m.body()
                .lines()
                .find_map(|l| l.strip_prefix("Signal="))
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect();
    let mut signals = signals;
    signals.dedup();
    assert_eq!(signals, ["1", "#"], "{}", r.report());
    // The phone answered SIPp's INFO 200 (checked by the scenario) and reported the digit once.
    assert_eq!(p.count("dtmf"), 1, "{:?}", p.seen());
}

#[test]
fn blind_transfer_refer_notify_then_bye() {
    let mut p = direct_phone();
    let uac = call(&p, "uac_refer_notify.xml");
    let id = answer_incoming(&mut p);
    p.send(json!({"cmd": "transfer", "to": "1003"}));
    let end = p.expect("ended", secs(5));
    assert_eq!(end["call"], id.as_str(), "{end}");
    assert_eq!(end["reason"], "local_hangup", "{end}");
    let r = uac.wait(secs(10));
    r.assert_ok();
    let refer = &r.received_msgs("REFER ")[0];
    let refer_to = refer.header("Refer-To").unwrap_or_default();
    assert!(
        refer_to.starts_with("<sip:1003@") && refer_to.ends_with('>'),
        "Refer-To: {refer_to:?}\n{}",
        refer.text
    );
    assert!(
        refer.header("To").is_some_and(|t| t.contains("tag=")),
        "REFER outside the dialog:\n{}",
        refer.text
    );
    // Order on the wire: REFER, (202), NOTIFY, its 200, then BYE.
    let seq: Vec<String> = r
        .parsed()
        .iter()
        .map(|m| {
            let first = m.text.lines().next().unwrap_or_default();
            let what = first.split(' ').take(2).collect::<Vec<_>>().join(" ");
            format!("{}{what}", if m.sent { ">" } else { "<" })
        })
        .collect();
    let pos = |s: &str| seq.iter().position(|x| x.starts_with(s));
    let notify = pos(">NOTIFY").expect("NOTIFY sent");
    let bye = pos("<BYE").unwrap_or_else(|| panic!("no BYE: {seq:?}"));
    assert!(notify < bye, "{seq:?}");
    let ok_notify = received_for(&r, "SIP/2.0 200", "NOTIFY");
    assert_eq!(ok_notify.len(), 1, "{}", r.report());
    assert_eq!(r.received("BYE "), 1, "{}", r.report());
}

#[test]
fn call_waiting_rings_a_second_call() {
    let mut p = Phone::start(&account_toml_call_waiting("1001", "pw1001", "", "udp", 60), &[]);
    let first = call(&p, "uac_wait_bye.xml");
    let id1 = answer_incoming(&mut p);

    // The second caller gives up after its 180 (uac_cancel.xml fails on a 486).
    let second = call(&p, "uac_cancel.xml");
    let inc2 = p.expect_where("incoming", secs(5), |v: &Value| v["call"] != id1.as_str());
    let id2 = inc2["call"].as_str().unwrap_or_default().to_owned();
    assert_eq!(inc2["tel"], "0311112222", "{inc2}");
    let end2 = p.expect("ended", secs(5));
    assert_eq!(end2["call"], id2.as_str(), "the waiting call ends first: {end2}");
    assert_eq!(end2["reason"], "cancelled", "{end2}");
    let r2 = second.wait(secs(10));
    r2.assert_ok();
    assert!(r2.received("SIP/2.0 180") >= 1, "{}", r2.report());
    assert_eq!(r2.received("SIP/2.0 486"), 0, "{}", r2.report());

    // The first call is untouched.
    p.expect_none("ended", ms(200));
    p.send(json!({"cmd": "hangup", "call": id1}));
    let end1 = p.expect("ended", secs(5));
    assert_eq!(end1["call"], id1.as_str(), "{end1}");
    assert_eq!(end1["reason"], "local_hangup", "{end1}");
    first.wait(secs(10)).assert_ok();
}
