//! SIP over TLS: a private CA made for the test, ctiphone as a TLS server (`tls_cert`,
//! `tls_key`) called by a second ctiphone that trusts only that CA (`tls_ca`). (Debian's sipp
//! is built without OpenSSL, so it cannot be the TLS peer.)

mod common;

use std::path::{Path, PathBuf};

use serde_json::json;

use common::peers::{Phone, account_toml, secs};

struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA and a server certificate for 127.0.0.1, as PEM files.
fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = common::test_pki();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    };
    Pki {
        ca: write("ca.pem", p.ca_pem),
        cert: write("cert.pem", p.cert.pem()),
        key: write("key.pem", p.key.serialize_pem()),
        _dir: dir,
    }
}

fn tls_server(pki: &Pki, user: &str) -> Phone {
    let cfg = format!(
        "{}tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        account_toml(user, "x", "", "tls", 60),
        pki.cert.display(),
        pki.key.display()
    );
    Phone::start(&cfg, &["--auto-answer=100"])
}

fn tls_client(ca: &Path, user: &str) -> Phone {
    let cfg = format!(
        "{}tls_ca = \"{}\"\n",
        account_toml(user, "x", "", "tls", 60),
        ca.display()
    );
    Phone::start(&cfg, &[])
}

#[test]
fn two_phones_call_over_tls_with_a_private_ca() {
    let pki = pki();
    let mut callee = tls_server(&pki, "1002");
    assert_eq!(callee.ready["transport"], "tls", "{}", callee.ready);
    let mut caller = tls_client(&pki.ca, "1001");
    let to = format!("sip:1002@{};transport=tls", callee.listen());
    caller.send(json!({"cmd": "dial", "to": to}));
    let out = caller.expect("outgoing", secs(2));
    let inc = callee.expect("incoming", secs(5));
    assert_eq!(inc["tel"], "1001", "{inc}");
    assert_eq!(inc["call"], out["call"], "{inc} {out}");
    caller.expect("answered", secs(5));
    caller.send(json!({"cmd": "hangup"}));
    assert_eq!(caller.expect("ended", secs(5))["reason"], "local_hangup");
    assert_eq!(callee.expect("ended", secs(5))["reason"], "remote_hangup");
}

#[test]
fn a_caller_that_does_not_trust_the_certificate_cannot_connect() {
    let pki = pki();
    let mut callee = tls_server(&pki, "1002");
    // Trust a different CA: the handshake fails, and so does the call, at once (a transport
    // error counts as 503, RFC 3261 §8.1.3.1).
    let other = self::pki();
    let mut caller = tls_client(&other.ca, "1001");
    caller.send(json!({"cmd": "dial", "to": format!("sip:1002@{};transport=tls", callee.listen())}));
    caller.expect("outgoing", secs(2));
    let end = caller.expect("ended", secs(5));
    assert_eq!(end["reason"], "failed", "{end}");
    assert_eq!(end["code"], 503, "{end}");
    let said_why = caller
        .seen()
        .iter()
        .any(|e| e["event"] == "error" && e["message"].as_str().is_some_and(|m| m.contains("certificate")));
    assert!(
        said_why,
        "the reason (the certificate) is reported: {:?}",
        caller.seen()
    );
    callee.expect_none("incoming", secs(1));
}
