//! Attended transfer through Kamailio among three registered phones: the agent (ctiphone
//! 1001) takes the customer's call (SIPp registered as 1002), consults a colleague (a second
//! ctiphone, 1003), and completes. The customer follows the REFER as a phone does: a new call
//! to the Refer-To target carrying its Replaces (a second SIPp run with the values the REFER
//! gave). The colleague's ctiphone finds the consult dialog, answers at once, shows the
//! customer in the same call, and hangs up the consult; the agent is left with no call.

mod common;

use serde_json::{Value, json};

use common::calls::{config_with, first, wait_trace};
use common::peers::{Kamailio, Phone, Sipp, account_toml, secs};

fn registered_phone(k: &Kamailio, user: &str) -> Phone {
    let cfg = config_with(
        &account_toml(user, &format!("pw{user}"), &k.addr(), "udp", 60),
        "",
    );
    let mut p = Phone::start(&cfg, &[]);
    p.expect("registered", secs(10));
    p
}

#[test]
fn consult_and_complete_between_three_registered_phones() {
    let k = Kamailio::start();
    let mut agent = registered_phone(&k, "1001");
    let mut colleague = registered_phone(&k, "1003");
    let customer = Sipp::spawn("kam_customer_transferred.xml", &[&k.addr(), "-s", "1001"]);
    k.wait_saved("1002", 1, secs(5));

    let inc = agent.expect("incoming", secs(5));
    assert_eq!(inc["tel"], "1002", "{inc}");
    let id = inc["call"].as_str().unwrap_or_default().to_owned();
    agent.send(json!({"cmd": "answer", "call": id}));
    agent.expect_call("answered", &id, secs(5));

    agent.send(json!({"cmd": "consult", "to": "1003"}));
    let c = agent.expect("consult", secs(5));
    let consult_id = c["consult"].as_str().unwrap_or_default().to_owned();
    let inc = colleague.expect("incoming", secs(5));
    assert_eq!(inc["tel"], "1001", "{inc}");
    let colleague_call = inc["call"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        colleague_call, consult_id,
        "one Call-ID end to end through the proxy"
    );
    colleague.send(json!({"cmd": "answer"}));
    agent.expect_call("answered", &consult_id, secs(5));
    agent.expect_call("held", &id, secs(5));

    agent.send(json!({"cmd": "complete"}));
    let trace = wait_trace(&customer, secs(5), "the agent's REFER", |r| {
        r.received("REFER ") >= 1
    });
    let refer = first(&trace, false, "REFER ");
    let refer_to = refer.header("Refer-To").unwrap_or_default().to_owned();
    let inner = refer_to.trim().trim_start_matches('<').trim_end_matches('>');
    let (target, replaces) = inner
        .split_once("?Replaces=")
        .unwrap_or_else(|| panic!("Refer-To without Replaces: {refer_to}"));
    assert!(target.starts_with("sip:1003@"), "{refer_to}");
    let replaces = percent_encoding::percent_decode_str(replaces)
        .decode_utf8_lossy()
        .into_owned();
    // The customer's new call, to the target, replacing the consult dialog.
    let new_call = Sipp::spawn(
        "kam_customer_replaces.xml",
        &[&k.addr(), "-s", "1003", "-key", "replaces", &replaces],
    );

    let rep = colleague.expect("replaced", secs(5));
    assert_eq!(rep["call"], colleague_call.as_str(), "the same call: {rep}");
    assert_eq!(rep["tel"], "1002", "now with the customer: {rep}");
    // The colleague hung up the replaced consult dialog: the agent's consult call ends from
    // the far end, and the NOTIFY's 200 ends the customer's.
    let end = agent.expect_call("ended", &consult_id, secs(5));
    assert_eq!(end["reason"], "remote_hangup", "{end}");
    let t = agent.expect("transferred", secs(6));
    assert_eq!(t["call"], id.as_str(), "{t}");
    let end = agent.expect_call("ended", &id, secs(5));
    assert_eq!(end["reason"], "local_hangup", "{end}");
    customer.wait(secs(10)).assert_ok();
    assert_eq!(colleague.count("ended"), 0, "{:?}", colleague.seen());

    colleague.send(json!({"cmd": "hangup"}));
    colleague.expect_where("ended", secs(5), |v: &Value| v["call"] == colleague_call.as_str());
    new_call.wait(secs(10)).assert_ok();
}
