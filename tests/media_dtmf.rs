//! RFC 4733 telephone-events received in a call: sipp plays its own capture of the digit 5
//! (RTP payload type 101) into a call the phone answered; the phone reports one `dtmf` event.

mod common;

use common::peers::{Phone, Sipp, account_toml, secs};

#[test]
fn rfc4733_digit_from_sipp_becomes_one_dtmf_event() {
    let cfg = format!(
        "{}\n[audio]\ninput = \"null\"\noutput = \"null\"\n",
        account_toml("1001", "pw1001", "", "udp", 60)
    );
    let mut p = Phone::start(&cfg, &["--auto-answer"]);
    let target = p.target();
    let uac = Sipp::spawn("uac_dtmf_2833.xml", &[target.as_str(), "-s", "0312345678"]);
    let inc = p.expect("incoming", secs(5));
    let d = p.expect("dtmf", secs(10));
    assert_eq!(d["digit"], "5", "{d}");
    assert_eq!(d["call"], inc["call"], "{d}");
    p.expect("ended", secs(10));
    assert_eq!(p.count("dtmf"), 1, "one event per key press: {:?}", p.seen());
    uac.wait(secs(10)).assert_ok();
}
