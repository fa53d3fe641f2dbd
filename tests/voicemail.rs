//! The voicemail light (RFC 3842) of `ctiphone headless` against SIPp: with `[account] mwi`
//! the phone subscribes to message-summary once registered and reports the NOTIFY in its
//! dialog; an unsolicited message-summary NOTIFY is taken from the registrar's address and
//! refused (403, no event) from anyone else.

mod common;

use std::time::Duration;

use common::calls::config_with;
use common::peers::{Phone, Sipp, account_toml, secs};

fn phone(registrar: &Sipp, mwi: bool) -> Phone {
    let account = account_toml("1001", "pw1001", &registrar.addr(), "udp", 60).replace(
        "call_waiting = false\n",
        &format!("call_waiting = false\nmwi = {mwi}\n"),
    );
    let mut p = Phone::start(&config_with(&account, ""), &[]);
    p.expect("registered", secs(10));
    p
}

#[test]
fn the_phone_subscribes_and_shows_what_the_notify_says() {
    let registrar = Sipp::spawn("uas_registrar_mwi.xml", &["-m", "2"]);
    let mut p = phone(&registrar, true);
    let v = p.expect("voicemail", secs(5));
    assert_eq!(
        (v["waiting"].as_bool(), v["new"].as_u64(), v["old"].as_u64()),
        (Some(true), Some(2), Some(8)),
        "{v}"
    );
    let r = registrar.wait(secs(10));
    r.assert_ok();
    let sub = common::calls::first(&r, false, "SUBSCRIBE ");
    assert!(
        sub.header("Accept")
            .is_some_and(|a| a.contains("application/simple-message-summary")),
        "{}",
        sub.text
    );
    assert!(
        sub.text.starts_with("SUBSCRIBE sip:1001@"),
        "to the account's own AOR:\n{}",
        sub.text
    );
}

#[test]
fn an_unsolicited_notify_is_taken_from_the_registrar_only() {
    let registrar = Sipp::spawn("uas_registrar.xml", &[]);
    let mut p = phone(&registrar, false);
    registrar.wait(secs(10)).assert_ok();
    let target = p.target();
    // From another address: refused, nothing reported.
    Sipp::spawn(
        "uac_mwi_notify_403.xml",
        &[target.as_str(), "-s", "1001", "-i", "127.0.0.2"],
    )
    .wait(secs(10))
    .assert_ok();
    p.expect_none("voicemail", Duration::from_millis(500));
    // From the registrar's address (127.0.0.1): taken.
    Sipp::spawn("uac_mwi_notify.xml", &[target.as_str(), "-s", "1001"])
        .wait(secs(10))
        .assert_ok();
    let v = p.expect("voicemail", secs(5));
    assert_eq!(v["new"], 2, "{v}");
    assert_eq!(p.count("voicemail"), 1, "{:?}", p.seen());
}
