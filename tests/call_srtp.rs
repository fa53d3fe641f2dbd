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
use ctiphone::media::srtp::Suite;

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
    // A clean loopback call: nothing lost or late, the E-model's near-ceiling MOS, a short
    // buffer.
    assert_eq!(
        (q["lost"].as_u64(), q["late"].as_u64()),
        (Some(0), Some(0)),
        "{q}"
    );
    let mos = q["mos"].as_f64().unwrap_or_default();
    assert!((4.0..=4.5).contains(&mos), "MOS {mos}: {q}");
    let buffer = q["buffer_ms"].as_u64().unwrap_or(u64::MAX);
    assert!((1..=150).contains(&buffer), "buffer {buffer} ms: {q}");
    assert!(q["concealed_s"].as_f64().is_some_and(|c| c < 1.0), "{q}");
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

/// One PCMU RTP packet of a `freq` Hz tone (packet `n` of the stream, SSRC 0x5e5e).
fn tone_packet(n: u16, freq: f64) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x5e, 0x5e];
    p[2..4].copy_from_slice(&n.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(n) * 160).to_be_bytes());
    p.extend((0..160).map(|i| {
        let t = f64::from(u32::from(n) * 160 + i) / 8000.0;
        common::rtp::ulaw((8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16)
    }));
    p
}

/// The peer (SIPp's signalling, the test's media) offers SRTP with a key the test knows and
/// sends a 1 kHz tone; in between come replays of packets already taken, packets of a 2 kHz
/// tone with one bit flipped, and plain RTP of it. The phone plays the 1 kHz tone only, counts
/// each kind in its `quality` event, and what it sends authenticates under its own key. For
/// each suite: the peer offers only that one.
#[test]
fn tampered_replayed_and_plain_packets_are_dropped_counted_and_never_played() {
    peer_with_its_own_key(Suite::AesCm128HmacSha1_80);
}

#[test]
fn a_peer_offering_only_aes_cm_32_gets_it() {
    peer_with_its_own_key(Suite::AesCm128HmacSha1_32);
}

#[test]
fn a_peer_offering_only_aead_aes_128_gcm_gets_it() {
    peer_with_its_own_key(Suite::AeadAes128Gcm);
}

fn peer_with_its_own_key(suite: Suite) {
    use ctiphone::call::sdes;
    use ctiphone::call::sdp::Sdp;
    use ctiphone::media::srtp::{Inbound, MasterKey, Outbound};

    let dir = tempfile::tempdir().expect("temp dir");
    let heard = dir.path().join("heard.wav");
    let cfg = common::calls::config(&media("mandatory", true));
    let mut p = Phone::start(
        &cfg,
        &["--auto-answer", &format!("--audio-out={}", heard.display())],
    );
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let key = MasterKey::generate(suite).expect("key");
    let b64 = key.key_params().trim_start_matches("inline:").to_owned();
    let port = peer.local_addr().expect("addr").port().to_string();
    let uac = common::calls::call(
        &p,
        "cl_uac_srtp_hold.xml",
        &[
            "-key",
            "rtp_port",
            &port,
            "-key",
            "srtp_suite",
            suite.name(),
            "-key",
            "srtp_key",
            &b64,
            "-set",
            "hold",
            "7000",
        ],
    );
    let ans = p.expect("answered", secs(5));
    assert_eq!(ans["srtp"], suite.name(), "{ans}");
    let r = common::calls::wait_trace(&uac, secs(5), "SIPp ACKs the 200", |r| r.sent("ACK ") >= 1);
    let ok = common::calls::response(&r, 200, "INVITE");
    let answer = Sdp::parse(ok.body()).expect("the phone's SDP");
    let audio = answer.audio().expect("audio");
    assert_eq!(audio.proto, "RTP/SAVP");
    let theirs = sdes::usable(audio);
    assert_eq!(theirs.len(), 1, "{}", ok.body());
    let media_to = std::net::SocketAddr::new(audio.addr, audio.port);
    let mut seal = Outbound::new(&key).expect("context");
    let (mut sent, mut replays, mut tampered, mut plain) = (Vec::new(), 0u64, 0u64, 0u64);
    let start = std::time::Instant::now();
    for n in 1..=150u16 {
        let genuine = seal.protect_rtp(&tone_packet(n, 1000.0)).expect("protect");
        peer.send_to(&genuine, media_to).expect("send");
        sent.push(genuine);
        if n % 3 == 0 {
            peer.send_to(&sent[usize::from(n) - 2], media_to).expect("send");
            replays += 1;
        }
        if n % 5 == 0 {
            // A fresh packet of another tone, one bit flipped in its payload.
            let mut bad = seal
                .protect_rtp(&tone_packet(n + 20_000, 2000.0))
                .expect("protect");
            bad[12 + usize::from(n) % 160] ^= 1 << (n % 8);
            peer.send_to(&bad, media_to).expect("send");
            tampered += 1;
        }
        // Sequence numbers less than 2^15 ahead: further ahead would read as the previous
        // rollover, i.e. old, and count as replays (RFC 3711 §3.3.1).
        if n % 10 == 0 {
            peer.send_to(&tone_packet(n + 10_000, 2000.0), media_to)
                .expect("send");
            plain += 1;
        }
        let next = start + std::time::Duration::from_millis(20 * u64::from(n));
        if let Some(d) = next.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let q = p.expect_where("quality", secs(8), |q| {
        q["srtp_auth_failed"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(q["srtp"], suite.name(), "{q}");
    assert_eq!(q["srtp_auth_failed"].as_u64(), Some(tampered + plain), "{q}");
    assert_eq!(q["srtp_replayed"].as_u64(), Some(replays), "{q}");
    // What the phone sent authenticates under the key of its answer, and is not plain PCMU.
    let mut open = Inbound::new(&theirs[0].key).expect("context");
    peer.set_read_timeout(Some(secs(1))).expect("timeout");
    let mut buf = [0u8; 2048];
    let mut opened = 0;
    for _ in 0..20 {
        let (n, _) = peer.recv_from(&mut buf).expect("the phone's RTP");
        if buf[1] & 0x7f < 64 {
            let tag = match suite {
                Suite::AesCm128HmacSha1_80 => 10,
                Suite::AesCm128HmacSha1_32 => 4,
                Suite::AeadAes128Gcm => 16,
            };
            assert_eq!(n, 12 + 160 + tag, "SRTP with the suite's tag");
            assert!(
                open.unprotect_rtp(&buf[..n]).is_ok(),
                "the phone's packet authenticates"
            );
            opened += 1;
        }
    }
    assert!(opened >= 10, "{opened}");
    uac.wait(secs(10)).assert_ok();
    p.expect("ended", secs(5));
    p.send(json!({"cmd": "quit"}));
    let _ = p.wait_exit(secs(3));
    let (samples, rate) = common::wav_channel(&heard, 0);
    let tone = common::rtp::snr_between(&samples, rate, 0.5, 3.0, 1000.0);
    let forged = common::rtp::snr_between(&samples, rate, 0.5, 3.0, 2000.0);
    assert!(tone >= 15.0, "the genuine 1 kHz tone: {tone:.1} dB");
    assert!(forged < 0.0, "the forged 2 kHz tone was played: {forged:.1} dB");
}
