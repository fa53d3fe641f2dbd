//! The busy-lamp field (RFC 4235) of `ctiphone headless` against a SIPp registrar and
//! presence server: the phone subscribes to each watched colleague's dialog event once
//! registered and reports each lamp change (ringing, busy, idle) as a `blf` event; `pickup`
//! of the ringing colleague sends the caller an INVITE with Replaces for its early dialog.

mod common;

use serde_json::{Value, json};

use common::calls::config_with;
use common::peers::{Kamailio, Phone, Sipp, account_toml, secs};

#[test]
fn lamps_follow_the_colleagues_dialogs() {
    let ps = Sipp::spawn("uas_registrar_blf.xml", &["-m", "2"]);
    let account = account_toml("1001", "pw1001", &ps.addr(), "udp", 60);
    let blf = "[blf]\nwatch = [{ number = \"1002\", name = \"Sato\" }]\n";
    let mut p = Phone::start(&config_with(&account, blf), &[]);
    p.expect("registered", secs(10));
    let states: Vec<String> = (0..3)
        .map(|_| {
            let v = p.expect("blf", secs(5));
            assert_eq!(
                (v["number"].as_str(), v["name"].as_str()),
                (Some("1002"), Some("Sato")),
                "{v}"
            );
            v["state"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(states, ["ringing", "busy", "idle"]);
    let r = ps.wait(secs(10));
    r.assert_ok();
    let sub = common::calls::first(&r, false, "SUBSCRIBE ");
    assert!(sub.text.starts_with("SUBSCRIBE sip:1002@"), "{}", sub.text);
    assert!(
        sub.header("Accept")
            .is_some_and(|a| a.contains("application/dialog-info+xml")),
        "{}",
        sub.text
    );
}

#[test]
fn pickup_of_a_ringing_colleague_replaces_the_callers_early_dialog() {
    // One SIPp is the registrar, the presence server and the caller (through the registrar,
    // as every outgoing INVITE goes): it checks the pickup's Replaces (to-tag = the caller's
    // own tag, from-tag = the colleague's, early-only) and answers 200.
    let ps = Sipp::spawn("uas_registrar_blf_ringing.xml", &["-m", "3"]);
    let account = account_toml("1001", "pw1001", &ps.addr(), "udp", 60);
    let blf = "[blf]\nwatch = [{ number = \"1002\", name = \"Sato\" }]\n";
    let mut p = Phone::start(&config_with(&account, blf), &[]);
    p.expect("registered", secs(10));
    p.expect_where("blf", secs(5), |v: &Value| v["state"] == "ringing");
    // Not watched, or not ringing: an error, nothing dialled.
    p.send(json!({"cmd": "pickup", "number": "1009"}));
    p.expect("error", secs(5));
    p.send(json!({"cmd": "pickup", "number": "1002"}));
    let out = p.expect("outgoing", secs(5));
    let id = out["call"].as_str().unwrap_or_default().to_owned();
    p.expect_call("answered", &id, secs(5));
    p.send(json!({"cmd": "hangup", "call": id}));
    p.expect_call("ended", &id, secs(5));
    ps.wait(secs(10)).assert_ok();
}

/// Through Kamailio as registrar and presence server (presence_dialoginfo, pua_dialoginfo):
/// ctiphone 1001 watches 1002 and 1003; a call to 1002 (another ctiphone, answering after a
/// second) from a SIPp caller turns 1002's lamp ringing, then busy, then idle; 1003 stays idle.
#[test]
fn lamps_through_kamailio_presence() {
    let k = Kamailio::start_presence();
    let blf =
        "[blf]\nwatch = [{ number = \"1002\", name = \"Sato\" }, { number = \"1003\", name = \"Suzuki\" }]\n";
    let mut watcher = Phone::start(
        &config_with(&account_toml("1001", "pw1001", &k.addr(), "udp", 60), blf),
        &[],
    );
    watcher.expect("registered", secs(10));
    let mut callee = Phone::start(
        &config_with(&account_toml("1002", "pw1002", &k.addr(), "udp", 60), ""),
        &["--auto-answer=1000"],
    );
    callee.expect("registered", secs(10));
    // Both lamps known (idle) once the presence server has answered.
    let lamp_seen = |w: &Phone, n: &str| {
        w.seen()
            .iter()
            .any(|v| v["event"] == "blf" && v["number"] == n && v["state"] == "idle")
    };
    for n in ["1002", "1003"] {
        if !lamp_seen(&watcher, n) {
            watcher.expect_where("blf", secs(10), |v: &Value| {
                v["number"] == n && v["state"] == "idle"
            });
        }
    }
    let r = common::peers::sipp("uac_auth_call_bye.xml", &[&k.addr(), "-s", "1002"]);
    r.assert_ok();
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("idle") || seen.len() < 2 {
        let v = watcher.expect_where("blf", secs(10), |v: &Value| v["number"] == "1002");
        seen.push(v["state"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(seen, ["ringing", "busy", "idle"], "{:?}", watcher.seen());
    assert!(
        watcher
            .seen()
            .iter()
            .filter(|v| v["event"] == "blf" && v["number"] == "1003")
            .all(|v| v["state"] == "idle"),
        "{:?}",
        watcher.seen()
    );
}
