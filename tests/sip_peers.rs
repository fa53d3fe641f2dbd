//! Self-checks of the SIP test peers (tests/peers, tests/common/peers.rs) with no ctiphone
//! involved: Kamailio against the SIPp register scenario (and after a restart), SIPp UAC
//! scenarios against the SIPp UAS scenario, baresip registering through Kamailio. When these
//! fail, the peers (or their installation) are broken, not the phone.

mod common;

use std::time::Duration;

use common::peers::{Baresip, Kamailio, Sipp, sipp};

#[test]
fn kamailio_registers_the_sipp_register_scenario_and_forgets_it_on_restart() {
    let mut k = Kamailio::start();
    sipp("register_1001.xml", &[&k.addr()]).assert_ok();
    assert_eq!(
        k.requests("REGISTER"),
        2,
        "challenge then credentials:\n{}",
        k.log()
    );
    assert_eq!(k.saved("1001"), 1);

    k.restart();
    assert!(k.is_running());
    assert_eq!(k.saved("1001"), 0, "a new run starts with an empty log");
    sipp("register_1001.xml", &[&k.addr()]).assert_ok();
    assert_eq!(k.saved("1001"), 1);

    k.stop();
    assert!(!k.is_running());
}

#[test]
fn kamailio_listens_on_tcp_too() {
    let k = Kamailio::start();
    sipp("register_1001.xml", &[&k.addr(), "-t", "t1"]).assert_ok();
    let lines = k.request_lines("REGISTER");
    assert!(lines.iter().all(|l| l.contains("src=tcp:")), "{lines:?}");
}

#[test]
fn sipp_uac_scenarios_complete_against_the_uas_scenario() {
    // A plain call: INVITE, 180, 200, ACK, BYE.
    let uas = Sipp::spawn("uas_answer.xml", &[]);
    let uac = sipp("uac_call_bye.xml", &[&uas.addr(), "-s", "0312345678"]);
    uac.assert_ok();
    uas.wait(Duration::from_secs(10)).assert_ok();
    assert_eq!(uac.received("SIP/2.0 200"), 2, "{}", uac.report());

    // The first 200 is left unacknowledged: only a retransmitted 200 lets the UAC finish.
    let uas = Sipp::spawn("uas_answer.xml", &[]);
    let uac = sipp(
        "uac_drop_ack_retrans.xml",
        &[&uas.addr(), "-s", "0312345678", "-nr"],
    );
    uac.assert_ok();
    uas.wait(Duration::from_secs(10)).assert_ok();
    assert!(uac.received("SIP/2.0 200") >= 3, "{}", uac.report());
}

#[test]
fn baresip_registers_through_kamailio_and_answers_options() {
    let k = Kamailio::start();
    let b = Baresip::start(&k, "1002");
    assert!(k.saved("1002") >= 1);
    let target = format!("127.0.0.1:{}", b.port);
    sipp("uac_options.xml", &[&target, "-s", "1002"]).assert_ok();
    sipp("uac_unknown_method.xml", &[&target, "-s", "1002"]).assert_ok();
}

#[test]
fn kamailio_routes_an_authenticated_call_to_a_registered_baresip() {
    let k = Kamailio::start();
    let b = Baresip::start(&k, "1002");
    let r = sipp("uac_auth_call_bye.xml", &[&k.addr(), "-s", "1002"]);
    r.assert_ok();
    assert_eq!(r.received("SIP/2.0 407"), 1, "{}", r.report());
    b.wait_log("Call established", Duration::from_secs(5));
    b.wait_log("terminated (duration", Duration::from_secs(5));
    assert!(k.requests("BYE") >= 1, "BYE through kamailio (record-route)");
}
