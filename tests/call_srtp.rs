//! SRTP between two ctiphones (SDES keys in the SDP, issue 19): over TLS signalling with a
//! private CA, a tone each way checked by frequency and the suite reported in `answered` and
//! `quality`; the policy over clear signalling (UDP): optional SRTP puts no keys on the wire
//! unless `srtp_over_udp`, mandatory SRTP refuses a plain offer with 488 and fails a call to a
//! phone without SRTP. The interoperability with another implementation is tests/media_srtp.rs
//! (baresip).

mod common;

use std::path::{Path, PathBuf};

use serde_json::json;

use common::peers::{Phone, account_toml, secs};
use ctiphone::media::goertzel;

struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

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

fn assert_tone(what: &str, path: &Path, freq: f64) {
    let (samples, rate) = common::wav_channel(path, 0);
    let skip = rate as usize / 2;
    assert!(samples.len() > 3 * skip, "{what}: only {} samples", samples.len());
    let snr = goertzel::tone_snr_db(&samples[skip..samples.len() - skip], rate, freq);
    assert!(snr >= 15.0, "{what}: {freq} Hz SNR {snr:.1} dB (below 15 dB)");
}

fn media(srtp: &str, over_udp: bool) -> String {
    format!("[media]\nsrtp = \"{srtp}\"\nsrtp_over_udp = {over_udp}\n")
}

#[test]
fn two_phones_over_tls_talk_srtp_a_tone_each_way() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("temp dir");
    let (mic_a, mic_b) = (dir.path().join("a440.wav"), dir.path().join("b1000.wav"));
    common::tone(&mic_a, 440.0, 8000, 10);
    common::tone(&mic_b, 1000.0, 8000, 10);
    let (heard_a, heard_b) = (dir.path().join("heard_a.wav"), dir.path().join("heard_b.wav"));
    let callee_cfg = format!(
        "{}tls_cert = \"{}\"\ntls_key = \"{}\"\n[audio]\ncodecs = [\"PCMU\"]\n{}",
        account_toml("1002", "x", "", "tls", 60),
        pki.cert.display(),
        pki.key.display(),
        media("mandatory", false)
    );
    let arg = |k: &str, p: &Path| format!("--audio-{k}={}", p.display());
    let mut callee = Phone::start(
        &callee_cfg,
        &["--auto-answer=100", &arg("in", &mic_b), &arg("out", &heard_b)],
    );
    let caller_cfg = format!(
        "{}tls_ca = \"{}\"\n[audio]\ncodecs = [\"PCMU\"]\n{}",
        account_toml("1001", "x", "", "tls", 60),
        pki.ca.display(),
        media("optional", false)
    );
    let mut caller = Phone::start(&caller_cfg, &[&arg("in", &mic_a), &arg("out", &heard_a)]);
    caller.send(json!({"cmd": "dial", "to": format!("sip:1002@{};transport=tls", callee.listen())}));
    let a = caller.expect("answered", secs(5));
    let b = callee.expect("answered", secs(5));
    assert_eq!(a["srtp"], "AES_CM_128_HMAC_SHA1_80", "{a}");
    assert_eq!(b["srtp"], "AES_CM_128_HMAC_SHA1_80", "{b}");
    // A quality report (every 5 s): the suite, nothing dropped.
    let q = caller.expect("quality", secs(8));
    assert_eq!(q["srtp"], "AES_CM_128_HMAC_SHA1_80", "{q}");
    assert_eq!(
        (q["srtp_auth_failed"].as_u64(), q["srtp_replayed"].as_u64()),
        (Some(0), Some(0)),
        "{q}"
    );
    caller.send(json!({"cmd": "hangup"}));
    caller.expect("ended", secs(5));
    callee.expect("ended", secs(5));
    for p in [&mut caller, &mut callee] {
        p.send(json!({"cmd": "quit"}));
        let _ = p.wait_exit(secs(3));
    }
    // The keys are in no event and no log line.
    for p in [&caller, &callee] {
        let said = format!("{:?}{}", p.seen(), p.stderr());
        assert!(!said.contains("inline:"), "a key was shown: {said}");
    }
    assert_tone("the caller heard the callee", &heard_a, 1000.0);
    assert_tone("the callee heard the caller", &heard_b, 440.0);
}

/// Two phones over UDP; the caller's `event` (`answered` or `ended`), and the callee.
fn udp_call(caller_media: &str, callee_media: &str, event: &str) -> (serde_json::Value, Phone) {
    let callee_cfg = format!("{}{callee_media}", account_toml("1002", "x", "", "udp", 60));
    let callee = Phone::start(&callee_cfg, &["--auto-answer=100"]);
    let caller_cfg = format!("{}{caller_media}", account_toml("1001", "x", "", "udp", 60));
    let mut caller = Phone::start(&caller_cfg, &[]);
    caller.send(json!({"cmd": "dial", "to": format!("sip:1002@{}", callee.listen())}));
    let e = caller.expect(event, secs(8));
    if event == "ended" {
        assert_eq!(caller.count("answered"), 0, "{:?}", caller.seen());
    }
    (e, callee)
}

#[test]
fn over_clear_signalling_keys_stay_home_unless_allowed() {
    // Optional without srtp_over_udp offers no keys: a mandatory callee (which allows UDP)
    // refuses the plain offer with 488.
    let (end, _callee) = udp_call(&media("optional", false), &media("mandatory", true), "ended");
    assert_eq!(end["code"].as_u64(), Some(488), "{end}");
    // With srtp_over_udp the same call is encrypted.
    let (ans, _callee) = udp_call(&media("optional", true), &media("mandatory", true), "answered");
    assert_eq!(ans["event"], "answered", "{ans}");
    assert_eq!(ans["srtp"], "AES_CM_128_HMAC_SHA1_80", "{ans}");
}

#[test]
fn mandatory_fails_against_a_phone_without_srtp_and_optional_falls_back() {
    // RTP/SAVP to a phone with SRTP off: 488 (its Warning says SRTP is off).
    let (end, _callee) = udp_call(&media("mandatory", true), &media("off", false), "ended");
    assert_eq!(end["code"].as_u64(), Some(488), "{end}");
    assert_eq!(end["reason"], "failed", "{end}");
    // Optional SRTP to the same phone: a plain call.
    let (ans, _callee) = udp_call(&media("optional", true), &media("off", false), "answered");
    assert_eq!(ans["event"], "answered", "{ans}");
    assert!(ans["srtp"].is_null(), "{ans}");
}
