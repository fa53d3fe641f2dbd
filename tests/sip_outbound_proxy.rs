//! The outbound proxy (issue 20): a Kamailio as proxy (an SBC's part,
//! tests/peers/kamailio_proxy.cfg.in) in front of a second Kamailio, the registrar
//! (kamailio_path.cfg.in). The phones send everything outside a dialog to the proxy with its
//! Route (loose routing); the proxy adds a Path to the REGISTER, the registrar answers with a
//! Service-Route, and the phones' INVITEs then carry both Routes; the call to a phone comes
//! back along the Path.

mod common;

use serde_json::json;

use common::peers::{Kamailio, Phone, secs};

fn phone(registrar: &Kamailio, proxy: &Kamailio, user: &str, args: &[&str]) -> Phone {
    let cfg = format!(
        "[account]\nuri = \"sip:{user}@{reg}\"\nusername = \"{user}\"\npassword = \"pw{user}\"\n\
         registrar = \"{reg}\"\noutbound_proxy = \"sip:{proxy}\"\ntransport = \"udp\"\n\
         listen = \"127.0.0.1:0\"\nexpires = 60\n\
         [audio]\ninput = \"null\"\noutput = \"null\"\ncodecs = [\"PCMU\"]\nring = false\n",
        reg = registrar.addr(),
        proxy = proxy.addr()
    );
    Phone::start(&cfg, args)
}

#[test]
fn everything_goes_through_the_proxy_with_path_and_service_route() {
    let registrar = Kamailio::start_template("kamailio_path.cfg.in");
    let proxy = Kamailio::start_template("kamailio_proxy.cfg.in");
    let mut callee = phone(&registrar, &proxy, "1002", &["--auto-answer=100"]);
    let mut caller = phone(&registrar, &proxy, "1001", &[]);
    callee.expect("registered", secs(10));
    caller.expect("registered", secs(10));
    registrar.wait_saved("1002", 1, secs(5));
    let proxy_route = format!("<sip:{};lr>", proxy.addr());
    // Every REGISTER reached the proxy with its Route, and the registrar from the proxy.
    let at_proxy = proxy.request_lines("REGISTER");
    assert!(!at_proxy.is_empty(), "{}", proxy.log());
    assert!(
        at_proxy
            .iter()
            .all(|l| l.contains(&format!("route={proxy_route}"))),
        "{at_proxy:?}"
    );
    let at_registrar = registrar.request_lines("REGISTER");
    assert!(
        at_registrar
            .iter()
            .all(|l| l.contains(&format!("src=udp:127.0.0.1:{} ", proxy.port))),
        "the registrar hears the proxy only: {at_registrar:?}"
    );
    caller.send(json!({"cmd": "dial", "to": "1002"}));
    callee.expect("incoming", secs(10));
    caller.expect("answered", secs(10));
    // The INVITE: the proxy's Route, then the registrar's Service-Route.
    let service_route = format!("<sip:{};lr>", registrar.addr());
    let invites = proxy.request_lines("INVITE");
    let first = invites
        .iter()
        .find(|l| l.contains("from=1001"))
        .expect("the caller's INVITE at the proxy");
    assert!(
        first.contains(&format!("route={proxy_route},{service_route}"))
            || first.contains(&format!("route={proxy_route}, {service_route}")),
        "{first}"
    );
    // The call to 1002 came back through the proxy (the Path).
    assert!(
        invites
            .iter()
            .any(|l| l.contains(&format!("src=udp:127.0.0.1:{} ", registrar.port))),
        "{invites:?}"
    );
    caller.send(json!({"cmd": "hangup"}));
    caller.expect("ended", secs(5));
    assert_eq!(callee.expect("ended", secs(5))["reason"], "remote_hangup");
    let byes = proxy.request_lines("BYE");
    assert!(
        !byes.is_empty(),
        "the BYE went through the proxy too (it record-routed)"
    );
}

#[test]
fn a_bad_outbound_proxy_is_a_located_config_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[account]\nregistrar = \"127.0.0.1:5060\"\noutbound_proxy = \"sip:sbc.example;transport=sctp\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(common::peers::ctiphone_bin())
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .expect("run ctiphone");
    let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("c.toml:3:18: `[account] outbound_proxy`: unknown transport `sctp`"),
        "{err}"
    );
}
