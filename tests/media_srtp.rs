//! SRTP with another implementation (issue 19): baresip with its `srtp` module, through
//! Kamailio, carrying real audio both ways. ctiphone plays 440 Hz, baresip 1 kHz; each side's
//! output is checked by frequency, and tcpdump on the loopback interface shows what a stranger
//! on the path would: the RTP payloads of an SRTP call carry neither tone, while those of a
//! plain call (the same check, which therefore can fail) carry both. Also the policies against
//! a baresip with best-effort SRTP and one without SRTP, both ways. baresip 1.0's `srtp`
//! module offers one line, `a=crypto:1 AES_CM_128_HMAC_SHA1_80`, in `RTP/AVP` (`mediaenc=srtp`),
//! `RTP/SAVP` (`srtp-mand`) or `RTP/SAVPF` (`srtp-mandf`); as answerer `srtp-mand`/`srtp-mandf`
//! refuse (488) an offer in any other profile, even with crypto lines.

mod common;

use serde_json::json;

use common::capture::{Capture, Datagram};
use common::peers::{Baresip, Kamailio, Phone, account_toml, secs};
use ctiphone::media::{g711, goertzel};

const SUITE: &str = "AES_CM_128_HMAC_SHA1_80";

/// ctiphone as 1001 with `[media] srtp` and `srtp_over_udp` (the calls here signal over UDP).
fn ctiphone(k: &Kamailio, srtp: &str, over_udp: bool, dir: &std::path::Path, args: &[&str]) -> Phone {
    let mic = dir.join("mic440.wav");
    common::tone(&mic, 440.0, 8000, 10);
    let cfg = format!(
        "{}\n[audio]\ncodecs = [\"PCMU\"]\n[media]\nsrtp = \"{srtp}\"\nsrtp_over_udp = {over_udp}\n",
        account_toml("1001", "pw1001", &k.addr(), "udp", 60)
    );
    let mut a: Vec<String> = vec![
        format!("--audio-in={}", mic.display()),
        format!("--audio-out={}", dir.join("heard.wav").display()),
    ];
    a.extend(args.iter().map(|s| (*s).to_owned()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut p = Phone::start(&cfg, &a);
    p.expect("registered", secs(10));
    p
}

/// The SNR (dB) of `freq` in the RTP payloads (PCMU, 160 bytes after a 12-byte header) of the
/// captured datagrams, decoded as if they were plain.
fn snr_on_the_wire(datagrams: &[Datagram], freq: f64, sent_by: impl Fn(&Datagram) -> bool) -> f64 {
    let samples: Vec<i16> = datagrams
        .iter()
        .filter(|d| sent_by(d))
        .filter(|d| d.payload.len() >= 172 && d.payload[0] >> 6 == 2 && d.payload[1] & 0x7f == 0)
        .flat_map(|d| d.payload[12..172].iter().map(|b| g711::ulaw_decode(*b)))
        .collect();
    assert!(
        samples.len() >= 8000,
        "only {} samples of RTP captured",
        samples.len()
    );
    goertzel::tone_snr_db(&samples, 8000, freq)
}

fn tone_in(path: &std::path::Path, freq: f64) -> f64 {
    let (s, rate) = common::wav_channel(path, 0);
    let skip = rate as usize / 2;
    assert!(s.len() > 3 * skip, "{}: only {} samples", path.display(), s.len());
    goertzel::tone_snr_db(&s[skip..s.len() - skip], rate, freq)
}

/// A 4 s call between ctiphone (`srtp`) and baresip (`mediaenc`), placed by `from_baresip`
/// or by ctiphone; returns both answered events' srtp, the wire's SNR of 440 and 1000 Hz, and
/// the tone SNRs heard by ctiphone (1 kHz) and baresip (440 Hz).
fn call(srtp: &str, mediaenc: &str, from_baresip: bool) -> (serde_json::Value, [f64; 4]) {
    call_keys(srtp, true, mediaenc, from_baresip)
}

/// As [`call`], with `srtp_over_udp` = `over_udp` (false: ctiphone sends no keys over UDP).
fn call_keys(
    srtp: &str,
    over_udp: bool,
    mediaenc: &str,
    from_baresip: bool,
) -> (serde_json::Value, [f64; 4]) {
    let k = Kamailio::start();
    let b = Baresip::start_with_srtp(&k, "1002", "PCMU", 1000, mediaenc);
    let dir = tempfile::tempdir().expect("temp dir");
    let auto: &[&str] = if from_baresip { &["--auto-answer=100"] } else { &[] };
    let mut p = ctiphone(&k, srtp, over_udp, dir.path(), auto);
    let cap = Capture::udp_ports(&b.rtp_ports().collect::<Vec<_>>());
    if from_baresip {
        b.command("dial", &format!("sip:1001@{}", k.addr()));
    } else {
        p.send(json!({"cmd": "dial", "to": "1002"}));
    }
    let ans = p.expect("answered", secs(10));
    std::thread::sleep(secs(4));
    p.send(json!({"cmd": "hangup"}));
    p.expect("ended", secs(5));
    p.send(json!({"cmd": "quit"}));
    let _ = p.wait_exit(secs(3));
    std::thread::sleep(secs(1));
    let wire = cap.finish();
    let theirs = b.rtp_ports();
    let figures = [
        // ctiphone's 440 Hz on its way to baresip, baresip's 1 kHz on its way back.
        snr_on_the_wire(&wire, 440.0, |d| theirs.contains(&d.dst_port)),
        snr_on_the_wire(&wire, 1000.0, |d| theirs.contains(&d.src_port)),
        tone_in(&dir.path().join("heard.wav"), 1000.0),
        tone_in(&Baresip::heard_wav(b.dir()), 440.0),
    ];
    (ans, figures)
}

fn assert_encrypted((ans, [w440, w1k, ours, theirs]): (serde_json::Value, [f64; 4])) {
    eprintln!("on the wire 440 Hz {w440:.1} dB, 1 kHz {w1k:.1} dB; heard {ours:.1} / {theirs:.1} dB");
    assert_eq!(ans["srtp"], SUITE, "{ans}");
    assert!(ours >= 15.0, "ctiphone heard baresip's 1 kHz at {ours:.1} dB");
    assert!(
        theirs >= 15.0,
        "baresip heard ctiphone's 440 Hz at {theirs:.1} dB"
    );
    assert!(
        w440 < 3.0 && w1k < 3.0,
        "a tone is readable on the wire: 440 Hz {w440:.1} dB, 1 kHz {w1k:.1} dB"
    );
}

#[test]
fn mandatory_srtp_ctiphone_calls_baresip() {
    assert_encrypted(call("mandatory", "srtp-mand", false));
}

#[test]
fn mandatory_srtp_baresip_calls_ctiphone() {
    assert_encrypted(call("mandatory", "srtp-mand", true));
}

#[test]
fn optional_srtp_with_a_best_effort_baresip_is_encrypted() {
    assert_encrypted(call("optional", "srtp", false));
}

/// A plain call: `srtp: null`, both tones heard and readable on the wire.
fn assert_plain((ans, [w440, w1k, ours, theirs]): (serde_json::Value, [f64; 4])) {
    eprintln!("plain: on the wire 440 Hz {w440:.1} dB, 1 kHz {w1k:.1} dB; heard {ours:.1} / {theirs:.1} dB");
    assert!(ans["srtp"].is_null(), "{ans}");
    assert!(ours >= 15.0 && theirs >= 15.0, "{ours:.1} {theirs:.1}");
    assert!(
        w440 >= 15.0 && w1k >= 15.0,
        "the plain tones on the wire: {w440:.1} {w1k:.1}"
    );
}

#[test]
fn optional_srtp_called_by_a_best_effort_baresip_is_encrypted() {
    // baresip offers RTP/AVP with one a=crypto (AES_CM_128_HMAC_SHA1_80).
    assert_encrypted(call("optional", "srtp", true));
}

#[test]
fn optional_srtp_called_by_a_mandatory_baresip_is_encrypted() {
    // baresip offers RTP/SAVP; ctiphone answers RTP/SAVP.
    assert_encrypted(call("optional", "srtp-mand", true));
}

#[test]
fn mandatory_srtp_called_by_a_baresip_offering_savpf_is_encrypted() {
    // baresip's srtp-mandf offers RTP/SAVPF; ctiphone answers with the same profile.
    assert_encrypted(call("mandatory", "srtp-mandf", true));
}

/// The proof that the wire check can fail: a plain call shows both tones to tcpdump.
#[test]
fn a_plain_call_is_readable_on_the_wire_and_optional_falls_back_to_it() {
    assert_plain(call("optional", "", false));
}

#[test]
fn optional_srtp_called_by_a_baresip_without_it_is_plain() {
    assert_plain(call("optional", "", true));
}

/// Optional SRTP without `srtp_over_udp` offers no keys over UDP; baresip's best-effort
/// `srtp` still answers with an a=crypto line (not asked for), and the call stays plain.
#[test]
fn no_keys_over_udp_with_a_best_effort_baresip_is_a_plain_call() {
    assert_plain(call_keys("optional", false, "srtp", false));
}

#[test]
fn mandatory_srtp_refuses_a_baresip_without_it_both_ways() {
    let k = Kamailio::start();
    let b = Baresip::start_with_srtp(&k, "1002", "PCMU", 1000, "");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = ctiphone(&k, "mandatory", true, dir.path(), &["--auto-answer=100"]);
    // baresip calls: its plain offer is refused with 488.
    b.command("dial", &format!("sip:1001@{}", k.addr()));
    b.wait_log("488", secs(10));
    p.expect_none("answered", secs(1));
    // ctiphone calls: the call fails, never answered.
    p.send(json!({"cmd": "dial", "to": "1002"}));
    let end = p.expect("ended", secs(10));
    assert_eq!(end["reason"], "failed", "{end}");
    assert_eq!(p.count("answered"), 0, "{:?}", p.seen());
}
