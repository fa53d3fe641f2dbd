//! Addresses behind NAT (issue 20): with `[account] public_address` the phone puts that address
//! (here another loopback address, 127.0.0.2, standing for the router's public one) in its
//! Contact and in its SDP, while it listens and sends from 127.0.0.1.

mod common;

use serde_json::json;

use common::peers::{Phone, Sipp, account_toml, secs};

#[test]
fn the_public_address_is_in_contact_and_sdp() {
    let cfg = format!(
        "{}public_address = \"127.0.0.2\"\n",
        account_toml("1001", "pw1001", "", "udp", 60)
    );
    let mut p = Phone::start(&cfg, &[]);
    let uas = Sipp::spawn("uas_answer.xml", &[]);
    p.send(json!({"cmd": "dial", "to": uas.uri("1002")}));
    p.expect("answered", secs(5));
    p.send(json!({"cmd": "hangup"}));
    p.expect("ended", secs(5));
    let r = uas.wait(secs(5));
    r.assert_ok();
    let invite = &r.received_msgs("INVITE ")[0];
    let contact = invite.header("Contact").unwrap_or_default();
    assert!(contact.contains("@127.0.0.2:"), "Contact: {contact}");
    assert!(invite.body().contains("c=IN IP4 127.0.0.2"), "{}", invite.body());
    // The phone itself is still on 127.0.0.1.
    assert!(p.listen().starts_with("127.0.0.1:"), "{}", p.listen());
}

#[test]
fn a_public_address_that_is_not_an_address_is_a_located_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[account]\npublic_address = \"my.router\"\n").expect("write");
    let out = std::process::Command::new(common::peers::ctiphone_bin())
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .expect("run ctiphone");
    let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("c.toml:2:18: `[account] public_address` is `my.router`, expected an IP address"),
        "{err}"
    );
}
