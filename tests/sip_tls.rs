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

/// A `sips:` URI is reached over TLS even from an account on UDP: never downgraded, and
/// the callee's certificate is checked (here against the CA the caller trusts).
#[test]
fn a_sips_uri_is_dialled_over_tls_from_a_udp_account() {
    let pki = pki();
    let mut callee = tls_server(&pki, "1002");
    let cfg = format!(
        "{}tls_ca = \"{}\"\n",
        account_toml("1001", "x", "", "udp", 60),
        pki.ca.display()
    );
    let mut caller = Phone::start(&cfg, &[]);
    assert_eq!(caller.ready["transport"], "udp", "{}", caller.ready);
    caller.send(json!({"cmd": "dial", "to": format!("sips:1002@{}", callee.listen())}));
    let inc = callee.expect("incoming", secs(5));
    assert_eq!(inc["tel"], "1001", "{inc}");
    caller.expect("answered", secs(5));
    // The callee hangs up: its BYE goes to the caller's sips: Contact over the TLS connection
    // the call came on (the caller, on UDP without a certificate, has no TLS server).
    callee.send(json!({"cmd": "hangup"}));
    assert_eq!(caller.expect("ended", secs(5))["reason"], "remote_hangup");
    // An untrusting caller on UDP: the TLS handshake fails, nothing goes over UDP instead.
    let other = self::pki();
    let cfg = format!(
        "{}tls_ca = \"{}\"\n",
        account_toml("1003", "x", "", "udp", 60),
        other.ca.display()
    );
    let mut stranger = Phone::start(&cfg, &[]);
    stranger.send(json!({"cmd": "dial", "to": format!("sips:1002@{}", callee.listen())}));
    let end = stranger.expect("ended", secs(5));
    assert_eq!(end["reason"], "failed", "{end}");
    // The call's end says why, as a registration would (both test CAs have the same name:
    // the certificate names an issuer we trust, whose key did not sign it).
    let detail = end["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with(
            "TLS: the certificate of 127.0.0.1 has a bad signature: not signed by the trusted CA"
        ),
        "{end}"
    );
    callee.expect_none("incoming", secs(1));
}

/// A TLS registrar whose port nobody listens on: the reason says so (not a certificate's).
#[test]
fn a_refused_tls_connection_is_named_as_such() {
    let port = common::peers::free_tcp_port();
    let cfg = account_toml("1001", "x", &format!("127.0.0.1:{port}"), "tls", 60);
    let mut p = Phone::start(&cfg, &[]);
    let f = p.expect("registration_failed", secs(10));
    let why = f["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("connection refused: nothing listens for TLS there"),
        "{f}"
    );
    assert_eq!(f["code"], 503, "{f}");
}

/// A request to a `sips:` URI that arrives over UDP or TCP is refused (416), never served in
/// clear; the same phone still takes `sip:` requests on those transports.
#[test]
fn a_sips_request_over_a_clear_transport_is_refused() {
    use common::wire::{Conn, Proto, Recv, status};
    let p = Phone::start(&account_toml("1002", "x", "", "udp", 60), &["--auto-answer=100"]);
    let to: std::net::SocketAddr = p.listen().parse().expect("listen address");
    for (proto, name) in [(Proto::Udp, "UDP"), (Proto::Tcp, "TCP")] {
        for (scheme, want) in [("sips", 416), ("sip", 200)] {
            let mut c = Conn::open(proto, to);
            let me = c.local();
            let req = format!(
                "OPTIONS {scheme}:1002@{to} SIP/2.0\r\nVia: SIP/2.0/{name} {me};branch=z9hG4bK-s{scheme}{name}\r\n\
                 From: <sip:t@{me}>;tag=1\r\nTo: <{scheme}:1002@{to}>\r\nCall-ID: sips-{scheme}-{name}@t\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            c.send(req.as_bytes());
            match c.recv(std::time::Instant::now() + secs(3)) {
                Recv::Msg(m) => assert_eq!(
                    status(&m),
                    Some(want),
                    "{scheme} over {name}: {}",
                    String::from_utf8_lossy(&m)
                ),
                _ => panic!("{scheme} over {name}: no answer"),
            }
        }
    }
}
