//! A real call between `ctiphone headless` and baresip (a real softphone) through Kamailio, both
//! registered: signalling only.

mod common;

use serde_json::json;

use common::peers::{Baresip, Kamailio, Phone, account_toml, secs};

#[test]
fn dial_baresip_through_kamailio_it_answers_then_hang_up() {
    let k = Kamailio::start();
    let b = Baresip::start(&k, "1002");
    let mut p = Phone::start(&account_toml("1001", "pw1001", &k.addr(), "udp", 60), &[]);
    p.expect("registered", secs(10));

    p.send(json!({"cmd": "dial", "to": "1002"}));
    let out = p.expect("outgoing", secs(2));
    let id = out["call"].clone();
    let ans = p.expect("answered", secs(10));
    assert_eq!(ans["call"], id, "{ans}");
    b.wait_log("Call established", secs(5));

    std::thread::sleep(secs(2));
    p.send(json!({"cmd": "hangup"}));
    let end = p.expect("ended", secs(5));
    assert_eq!(end["call"], id, "{end}");
    assert_eq!(end["reason"], "local_hangup", "{end}");
    assert!(end["duration_s"].as_f64().is_some_and(|d| d >= 1.5), "{end}");
    b.wait_log("terminated (duration", secs(5));
}
