//! Redirects of an outgoing call (issue 20): a SIPp UAS answers the phone's INVITE with 302 and
//! the Contact of a second SIPp, which answers; the call is up with the second, and the
//! `outgoing` CTI access and the history show the final target. A redirect back to a target
//! already tried is a loop: the call ends `failed`.

mod common;

use serde_json::json;

use common::peers::{Phone, Sipp, account_toml, secs};

#[test]
fn a_302_is_followed_to_its_contact_and_the_call_is_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("outgoing.log");
    // The outgoing access: a real OS command recording its argument.
    let cfg = format!(
        "{}[cti]\ntarget = \"custom\"\n[cti.outgoing]\nmethod = \"command\"\ntemplate = \"sh -c 'echo \\\"$1\\\" >> {}' - {{TEL}}\"\n",
        account_toml("1001", "pw1001", "", "udp", 60),
        log.display()
    );
    let mut p = Phone::start(&cfg, &[]);
    let second = Sipp::spawn("uas_answer.xml", &[]);
    let target = second.uri("2002");
    let first = Sipp::spawn("uas_redirect_302.xml", &["-key", "target", &target]);
    p.send(json!({"cmd": "dial", "to": first.uri("1002")}));
    let out = p.expect("outgoing", secs(2));
    let id = out["call"].as_str().unwrap_or_default().to_owned();
    let ident = p.expect("identity", secs(5));
    assert_eq!(
        (ident["call"].as_str(), ident["tel"].as_str()),
        (Some(id.as_str()), Some("2002")),
        "{ident}"
    );
    let ans = p.expect("answered", secs(5));
    assert_eq!(ans["call"], id.as_str(), "{ans}");
    first.wait(secs(5)).assert_ok();
    p.send(json!({"cmd": "hangup"}));
    p.expect("ended", secs(5));
    let r = second.wait(secs(5));
    r.assert_ok();
    let invite = &r.received_msgs("INVITE ")[0];
    assert!(
        invite.text.starts_with(&format!("INVITE {target} SIP/2.0")),
        "the second INVITE goes to the Contact: {}",
        invite.text
    );
    // The outgoing access ran once, for the final target; the history names it.
    let deadline = std::time::Instant::now() + secs(5);
    let ran = loop {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if !t.is_empty() || std::time::Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(ran, "2002\n", "the outgoing access's {{TEL}}");
    p.send(json!({"cmd": "quit"}));
    let _ = p.wait_exit(secs(3));
    let rows = common::calls::history_all(p.home());
    let row = rows
        .iter()
        .find(|r| r["call_id"] == id.as_str())
        .expect("the call's history row");
    assert_eq!(row["tel"], "2002", "{row}");
}

#[test]
fn a_redirect_back_to_the_first_target_is_a_loop() {
    let mut p = Phone::start(&account_toml("1001", "pw1001", "", "udp", 60), &[]);
    // The UAS redirects to itself: the target already tried.
    let port = common::peers::free_udp_port().to_string();
    let me = format!("sip:1002@127.0.0.1:{port}");
    let first = Sipp::spawn("uas_redirect_302.xml", &["-p", &port, "-key", "target", &me]);
    let to = first.uri("1002");
    assert_eq!(to, me, "the same URI twice");
    p.send(json!({"cmd": "dial", "to": to}));
    let end = p.expect("ended", secs(5));
    assert_eq!(end["reason"], "failed", "{end}");
    let said = p
        .seen()
        .iter()
        .any(|e| e["event"] == "error" && e["message"].as_str().is_some_and(|m| m.contains("loop")));
    assert!(said, "{:?}", p.seen());
}
