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
//!   says so;
//! - a Kamailio speaking only TLS 1.3 takes the phone over 1.3 (Kamailio 5.6's tls.cfg has no
//!   `TLSv1.3` method: `TLSv1.2+` with a `cipher_list` of no TLS 1.2 suite a client shares,
//!   checked by a TLS 1.2-only rustls client being refused);
//! - IPv6: the same over TLS on [::1] only, a tone crossing the call;
//! - a `sips:` registrar is reached over TLS without `transport = "tls"`, and a `sips:` call
//!   goes over TLS with a `sips:` Contact, the BYE coming back over TLS to it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    server_with(names, expired, method, "")
}

/// [`server`] with more lines for Kamailio's TLS server (`cipher_list = …`).
fn server_with(names: &[&str], expired: bool, method: &str, extra: &str) -> Server {
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
    let k = if method == "v6" {
        Kamailio::start_tls_v6(&cert, &key)
    } else {
        Kamailio::start_tls_with(&cert, &key, method, extra)
    };
    Server {
        _dir: dir,
        ca: ca_path,
        k,
    }
}

/// A phone of the account `user@domain` registering at Kamailio's TLS port, trusting `ca`.
fn phone(s: &Server, user: &str, domain: &str, ca: &std::path::Path, extra: &str, args: &[&str]) -> Phone {
    phone_on(s, "127.0.0.1", user, domain, ca, extra, args)
}

/// [`phone`] on the loopback address `ip` (`[::1]` for IPv6).
fn phone_on(
    s: &Server,
    ip: &str,
    user: &str,
    domain: &str,
    ca: &std::path::Path,
    extra: &str,
    args: &[&str],
) -> Phone {
    let cfg = format!(
        "[account]\nuri = \"sip:{user}@{domain}\"\nusername = \"{user}\"\npassword = \"pw{user}\"\n\
         registrar = \"{ip}:{port}\"\ntransport = \"tls\"\nlisten = \"{ip}:0\"\nexpires = 60\n\
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

/// IPv6 (issue 20): Kamailio on [::1] only, with TLS; two phones on [::1] register and call
/// over TLS with SRTP, and a 440 Hz tone crosses the call, checked by frequency at the callee
/// (the phones' sockets are on [::1] only: the SDP had to say `IN IP6`).
#[test]
fn register_and_call_over_tls_on_ipv6() {
    let s = server(&["kamailio.test"], false, "v6");
    assert!(s.k.addr().starts_with("[::1]:"), "{}", s.k.addr());
    let dir = tempfile::tempdir().expect("temp dir");
    let (mic, heard) = (dir.path().join("mic.wav"), dir.path().join("heard.wav"));
    common::tone(&mic, 440.0, 8000, 10);
    let srtp = "[media]\nsrtp = \"mandatory\"\n";
    let mut callee = phone_on(
        &s,
        "[::1]",
        "1002",
        "kamailio.test",
        &s.ca,
        srtp,
        &["--auto-answer=100", &format!("--audio-out={}", heard.display())],
    );
    let mut caller = phone_on(
        &s,
        "[::1]",
        "1001",
        "kamailio.test",
        &s.ca,
        srtp,
        &[&format!("--audio-in={}", mic.display())],
    );
    assert!(callee.listen().starts_with("[::1]:"), "{}", callee.listen());
    callee.expect("registered", secs(10));
    caller.expect("registered", secs(10));
    s.k.wait_saved("1002", 1, secs(5));
    let registers = s.k.request_lines("REGISTER");
    assert!(
        registers
            .iter()
            .all(|l| l.contains("src=tls:::1:") || l.contains("src=tls:[::1]:")),
        "every REGISTER came over TLS on [::1]: {registers:?}"
    );
    caller.send(json!({"cmd": "dial", "to": "1002"}));
    callee.expect("incoming", secs(10));
    let a = caller.expect("answered", secs(10));
    assert_eq!(a["srtp"], "AES_CM_128_HMAC_SHA1_80", "{a}");
    std::thread::sleep(secs(3));
    caller.send(json!({"cmd": "hangup"}));
    caller.expect("ended", secs(5));
    callee.expect("ended", secs(5));
    callee.send(json!({"cmd": "quit"}));
    let _ = callee.wait_exit(secs(3));
    let (samples, rate) = common::wav_channel(&heard, 0);
    let skip = rate as usize / 2;
    assert!(samples.len() > 3 * skip, "only {} samples", samples.len());
    let snr = ctiphone::media::goertzel::tone_snr_db(&samples[skip..samples.len() - skip], rate, 440.0);
    assert!(snr >= 15.0, "440 Hz at {snr:.1} dB");
    let invites = s.k.request_lines("INVITE");
    assert!(
        !invites.is_empty() && invites.iter().all(|l| l.contains("src=tls:")),
        "{invites:?}"
    );
}

/// The `registration_failed` reason of a phone that cannot trust the server; a call it
/// dials through the server fails with the same words in its `ended` detail.
fn refusal(s: &Server, domain: &str, ca: &std::path::Path) -> String {
    let mut p = phone(s, "1001", domain, ca, "", &[]);
    let f = p.expect("registration_failed", secs(10));
    p.expect_none("registered", secs(1));
    let why = f["reason"].as_str().unwrap_or_default().to_owned();
    assert!(why.starts_with("TLS"), "{f}");
    p.send(json!({"cmd": "dial", "to": "1002"}));
    let end = p.expect("ended", secs(10));
    assert_eq!(end["reason"], "failed", "{end}");
    assert_eq!(end["detail"].as_str(), Some(why.as_str()), "{end}");
    assert_eq!(s.k.requests("REGISTER"), 0, "nothing reached Kamailio");
    assert_eq!(s.k.requests("INVITE"), 0, "nothing reached Kamailio");
    eprintln!("registration_failed {}: {why}", f["code"]);
    why
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

/// A TLS 1.3-only Kamailio: 5.6 knows no `method = TLSv1.3`, so `TLSv1.2+` with TLS 1.2 suites
/// no client offers (PSK); TLS 1.3's suites are not set by `cipher_list`.
const TLS13_ONLY: &str = "cipher_list = PSK-AES128-CBC-SHA\n";

/// A handshake of a rustls client speaking only `version` with the server on `port`, trusting
/// `ca`, for `kamailio.test`: the version agreed, or why it failed.
fn handshake(
    port: u16,
    ca: &Path,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("CA PEM") {
        roots.add(c.expect("CA PEM")).expect("CA certificate");
    }
    let cfg =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_protocol_versions(&[version])
            .expect("protocol version")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = ServerName::try_from("kamailio.test").expect("name");
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("client");
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to Kamailio");
    sock.set_read_timeout(Some(secs(5))).expect("timeout");
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
    }
    Ok(format!("{:?}", conn.protocol_version()))
}

#[test]
fn a_tls_1_3_only_server_takes_the_phone_over_1_3() {
    let s = server_with(&["kamailio.test"], false, "TLSv1.2+", TLS13_ONLY);
    // The server is really 1.3-only: a 1.2-only client is refused, a 1.3 one taken.
    let v12 = handshake(s.k.tls_port, &s.ca, &rustls::version::TLS12);
    assert!(v12.is_err(), "TLS 1.2 was taken: {v12:?}");
    let v13 = handshake(s.k.tls_port, &s.ca, &rustls::version::TLS13);
    assert_eq!(v13.as_deref(), Ok("Some(TLSv1_3)"), "{v13:?}");
    let mut p = phone(&s, "1001", "kamailio.test", &s.ca, "", &[]);
    p.expect("registered", secs(10));
    s.k.wait_saved("1001", 1, secs(5));
    let log = s.k.log();
    let line = log
        .lines()
        .find(|l| l.contains("CTIPHONE-TLS 1001"))
        .unwrap_or_else(|| panic!("no CTIPHONE-TLS line:\n{log}"));
    assert!(line.contains(" TLSv1.3 "), "{line}");
}

#[test]
fn a_sips_registrar_and_a_sips_call_go_over_tls_only() {
    let s = server(&["kamailio.test"], false, "TLSv1.2+");
    let mut callee = phone(&s, "1002", "kamailio.test", &s.ca, "", &[]);
    // No `transport`: the sips: registrar alone says TLS.
    let cfg = format!(
        "[account]\nuri = \"sip:1001@kamailio.test\"\nusername = \"1001\"\npassword = \"pw1001\"\n\
         registrar = \"sips:127.0.0.1:{port}\"\nlisten = \"127.0.0.1:0\"\nexpires = 60\n\
         tls_ca = \"{ca}\"\n[audio]\ninput = \"null\"\noutput = \"null\"\ncodecs = [\"PCMU\"]\nring = false\n",
        port = s.k.tls_port,
        ca = s.ca.display()
    );
    let mut caller = Phone::start(&cfg, &[]);
    assert_eq!(caller.ready["transport"], "tls", "{}", caller.ready);
    callee.expect("registered", secs(10));
    caller.expect("registered", secs(10));
    s.k.wait_saved("1002", 1, secs(5));
    let registers = s.k.request_lines("REGISTER");
    assert!(
        !registers.is_empty() && registers.iter().all(|l| l.contains("src=tls:")),
        "{registers:?}"
    );
    caller.send(json!({"cmd": "dial", "to": "sips:1002@kamailio.test"}));
    let inc = callee.expect("incoming", secs(10));
    assert_eq!(inc["tel"], "1001", "{inc}");
    callee.send(json!({"cmd": "answer"}));
    caller.expect("answered", secs(10));
    let invites = s.k.request_lines("INVITE");
    assert!(!invites.is_empty(), "no INVITE reached Kamailio");
    for l in &invites {
        assert!(l.contains("ruri=sips:1002@kamailio.test"), "{l}");
        assert!(l.contains("src=tls:"), "{l}");
        assert!(
            l.contains("contact=<sips:1001@127.0.0.1:"),
            "a sips: Contact: {l}"
        );
    }
    // The callee hangs up: its BYE reaches the caller through Kamailio at that sips: Contact.
    callee.send(json!({"cmd": "hangup"}));
    assert_eq!(caller.expect("ended", secs(5))["reason"], "remote_hangup");
    let byes = s.k.request_lines("BYE");
    assert!(
        !byes.is_empty() && byes.iter().all(|l| l.contains("src=tls:")),
        "{byes:?}"
    );
}
