//! SIP over TLS against an independent server: Kamailio with its TLS module
//! (`kamailio-tls-modules`), a certificate for `kamailio.test` issued by a CA the test makes.
//! The phones reach it at 127.0.0.1 and check its certificate against their account's domain
//! (`sip:…@kamailio.test`, the Request-URI of their REGISTER).
//!
//! - register with digest auth and call through it, both phones over TLS, with SRTP;
//! - a CA the phone does not trust, an expired certificate and a certificate for another name
//!   each fail the registration with their own reason;
//! - a Kamailio speaking only TLS 1.2 takes the phone over 1.2, one speaking 1.2 or newer over
//!   1.3; one speaking only TLS 1.1 (which rustls never speaks) is refused, and the reason
//!   says so.

mod common;

use std::path::PathBuf;

use serde_json::json;

use common::TestCa;
use common::peers::{Kamailio, Phone, secs};

struct Server {
    _dir: tempfile::TempDir,
    /// The CA the phones are told to trust.
    ca: PathBuf,
    k: Kamailio,
}

/// Kamailio over TLS (`method` as its tls.cfg writes it) with a certificate for `names` from
/// the test's CA (`expired`: valid in 2020 only).
fn server(names: &[&str], expired: bool, method: &str) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new("ctiphone test CA");
    let (cert, key) = ca.issue(names, expired);
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write PEM");
        p
    };
    let (cert, key, ca_path) = (
        write("cert.pem", &cert),
        write("key.pem", &key),
        write("ca.pem", &ca.pem),
    );
    let k = Kamailio::start_tls(&cert, &key, method);
    Server {
        _dir: dir,
        ca: ca_path,
        k,
    }
}

/// A phone of the account `user@domain` registering at Kamailio's TLS port, trusting `ca`.
fn phone(s: &Server, user: &str, domain: &str, ca: &std::path::Path, extra: &str, args: &[&str]) -> Phone {
    let cfg = format!(
        "[account]\nuri = \"sip:{user}@{domain}\"\nusername = \"{user}\"\npassword = \"pw{user}\"\n\
         registrar = \"127.0.0.1:{port}\"\ntransport = \"tls\"\nlisten = \"127.0.0.1:0\"\nexpires = 60\n\
         tls_ca = \"{ca}\"\n[audio]\ninput = \"null\"\noutput = \"null\"\ncodecs = [\"PCMU\"]\nring = false\n{extra}",
        port = s.k.tls_port,
        ca = ca.display()
    );
    Phone::start(&cfg, args)
}

#[test]
fn register_and_call_through_kamailio_over_tls_with_srtp() {
    let s = server(&["kamailio.test"], false, "TLSv1.2+");
    let srtp = "[media]\nsrtp = \"mandatory\"\n";
    let mut callee = phone(&s, "1002", "kamailio.test", &s.ca, srtp, &["--auto-answer=100"]);
    let mut caller = phone(&s, "1001", "kamailio.test", &s.ca, srtp, &[]);
    callee.expect("registered", secs(10));
    caller.expect("registered", secs(10));
    s.k.wait_saved("1002", 1, secs(5));
    let registers = s.k.request_lines("REGISTER");
    assert!(
        registers.iter().all(|l| l.contains("src=tls:")),
        "every REGISTER came over TLS: {registers:?}"
    );
    caller.send(json!({"cmd": "dial", "to": "1002"}));
    let inc = callee.expect("incoming", secs(10));
    assert_eq!(inc["tel"], "1001", "{inc}");
    let a = caller.expect("answered", secs(10));
    let b = callee.expect("answered", secs(5));
    assert_eq!(a["srtp"], "AES_CM_128_HMAC_SHA1_80", "{a}");
    assert_eq!(b["srtp"], "AES_CM_128_HMAC_SHA1_80", "{b}");
    let invites = s.k.request_lines("INVITE");
    assert!(
        !invites.is_empty() && invites.iter().all(|l| l.contains("src=tls:")),
        "{invites:?}"
    );
    caller.send(json!({"cmd": "hangup"}));
    caller.expect("ended", secs(5));
    assert_eq!(callee.expect("ended", secs(5))["reason"], "remote_hangup");
}

/// The `registration_failed` reason of a phone that cannot trust the server.
fn refusal(s: &Server, domain: &str, ca: &std::path::Path) -> String {
    let mut p = phone(s, "1001", domain, ca, "", &[]);
    let f = p.expect("registration_failed", secs(10));
    p.expect_none("registered", secs(1));
    assert_eq!(s.k.requests("REGISTER"), 0, "nothing reached Kamailio");
    f["reason"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_ca_the_phone_does_not_trust_is_named_as_such() {
    let s = server(&["kamailio.test"], false, "TLSv1.2+");
    let other = TestCa::new("someone else's CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&other_ca, &other.pem).expect("write PEM");
    let why = refusal(&s, "kamailio.test", &other_ca);
    assert!(why.contains("unknown CA"), "{why}");
    assert!(why.contains("kamailio.test"), "{why}");
}

#[test]
fn an_expired_certificate_is_named_as_such() {
    let s = server(&["kamailio.test"], true, "TLSv1.2+");
    let why = refusal(&s, "kamailio.test", &s.ca);
    assert!(why.contains("expired on 2020-12-31"), "{why}");
}

#[test]
fn a_certificate_for_another_name_is_named_as_such() {
    let s = server(&["kamailio.test"], false, "TLSv1.2+");
    let why = refusal(&s, "pbx.example.test", &s.ca);
    assert!(
        why.contains("is for kamailio.test, not pbx.example.test"),
        "{why}"
    );
}

#[test]
fn tls_1_2_only_and_tls_1_3_servers_both_take_the_phone() {
    // Kamailio 5.6's tls.cfg knows TLSv1.2 (only) and TLSv1.2+ (1.2 or newer, OpenSSL picks
    // 1.3 when the client has it); it logs the version of each REGISTER's connection.
    for (method, version) in [("TLSv1.2", "TLSv1.2"), ("TLSv1.2+", "TLSv1.3")] {
        let s = server(&["kamailio.test"], false, method);
        let mut p = phone(&s, "1001", "kamailio.test", &s.ca, "", &[]);
        p.expect("registered", secs(10));
        s.k.wait_saved("1001", 1, secs(5));
        let log = s.k.log();
        let line = log
            .lines()
            .find(|l| l.contains("CTIPHONE-TLS 1001"))
            .unwrap_or_else(|| panic!("no CTIPHONE-TLS line:\n{log}"));
        assert!(line.contains(&format!(" {version} ")), "{method}: {line}");
    }
    // TLS 1.1 is not spoken: refused, and the reason says why.
    let s = server(&["kamailio.test"], false, "TLSv1.1");
    let why = refusal(&s, "kamailio.test", &s.ca);
    assert!(why.contains("TLS version"), "{why}");
}
