//! Offer/answer of the call layer (RFC 3261 §13, RFC 3264) against SIPp on 127.0.0.1, with the
//! audio checked on a plain UDP socket of the test (the peer's RTP) and in the phone's
//! `--audio-out` recording (by frequency):
//!
//! - late offer: an INVITE without SDP gets the offer in the 200, the ACK's answer starts the
//!   audio both ways (and the usual direction, the phone's offer answered in a 200, the same);
//! - an offer of video and audio gets an answer with both m= lines in order, video port 0;
//!   an offer of SRTP audio only gets 488;
//! - a re-INVITE without SDP gets an offer of the current session in the 200, and the ACK's
//!   answer moves the audio;
//! - early media: a 183 with SDP on an outgoing call is heard before the 200.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use regex::Regex;
use serde_json::json;

use common::calls::{self, audio_args, config, response, responses, wait_trace};
use common::peers::{Phone, Sipp, ms, secs};
use common::rtp::{RtpPeer, m_lines, sdp_audio, sdp_origin, snr_between, snr_per_second, wav_mono};

/// A phone playing a 440 Hz microphone and recording what it hears; auto-answer if `answer`.
fn phone_with_audio(dir: &Path, answer: bool) -> (Phone, std::path::PathBuf) {
    let mic = dir.join("mic440.wav");
    common::tone(&mic, 440.0, 8000, 5);
    let heard = dir.join("heard.wav");
    let [a, b] = audio_args(&mic, &heard);
    let mut args = vec![a.as_str(), b.as_str()];
    if answer {
        args.push("--auto-answer");
    }
    (Phone::start(&config(""), &args), heard)
}

/// The formats of an m= line.
fn formats(m: &str) -> Vec<String> {
    m.split_whitespace().skip(3).map(str::to_owned).collect()
}

/// RTP both ways for 2 s between the test's `peer` and the phone's media address: the phone's
/// packets counted at the peer (≥ 60 of the 75 a 20 ms stream sends in 1.5 s), and a 1 kHz
/// tone streamed to the phone. Returns when the stream stops.
fn rtp_both_ways(peer: &RtpPeer, phone_media: SocketAddr) {
    let t0 = Instant::now();
    let stream = peer.stream(phone_media, 1000.0);
    std::thread::sleep(ms(2000));
    let n = peer.count_between(t0 + ms(500), t0 + ms(2000));
    let sent = stream.sent();
    stream.stop();
    assert!(
        n >= 60,
        "the phone sent {n} RTP packets to the SDP address {} in 1.5 s (expected about 75); \
         the test sent {sent} to the phone's {phone_media}; all received: {:?}",
        peer.addr(),
        peer.packets().len()
    );
}

/// The recording holds the 1 kHz tone the test streamed: some second of it at 15 dB SNR.
#[track_caller]
fn assert_heard_1k(heard: &Path) {
    let (s, rate) = wav_mono(heard);
    let per_second = snr_per_second(&s, rate, 1000.0);
    let best = per_second.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(
        best >= 15.0,
        "{}: {:.1} s of audio, 1 kHz SNR per second {per_second:.1?} dB: the test's tone was \
         not heard",
        heard.display(),
        s.len() as f64 / f64::from(rate)
    );
}

#[test]
fn late_offer_invite_gets_the_offer_in_the_200_and_the_acks_answer_starts_rtp_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, heard) = phone_with_audio(dir.path(), true);
    let peer = RtpPeer::bind();
    let port = peer.port().to_string();
    let uac = calls::call(
        &p,
        "cl_uac_late_offer.xml",
        &["-key", "rtp_port", &port, "-set", "hold", "3000"],
    );
    p.expect("answered", secs(5));
    let r = wait_trace(&uac, secs(5), "SIPp sends the ACK with the answer", |r| {
        r.sent("ACK ") >= 1
    });
    let ok = response(&r, 200, "INVITE");
    assert!(
        ok.header("Content-Type")
            .is_some_and(|c| c.eq_ignore_ascii_case("application/sdp")),
        "the 200 to an INVITE without SDP must carry the offer:\n{}",
        ok.text
    );
    let m = m_lines(ok.body());
    assert_eq!(m.len(), 1, "{}", ok.text);
    assert!(
        Regex::new(r"^m=audio [1-9]\d* RTP/AVP( \d+)+$")
            .unwrap()
            .is_match(&m[0]),
        "{}",
        ok.text
    );
    assert!(formats(&m[0]).contains(&"0".to_owned()), "PCMU offered: {}", m[0]);
    let phone_media = sdp_audio(ok.body()).unwrap_or_else(|| panic!("no audio address:\n{}", ok.text));
    rtp_both_ways(&peer, phone_media);
    let end = p.expect("ended", secs(5));
    assert_eq!(end["reason"], "remote_hangup", "{end}");
    uac.wait(secs(10)).assert_ok();
    std::thread::sleep(ms(300));
    assert_heard_1k(&heard);
}

/// The usual direction (already working before the rewrite): the phone's INVITE carries the
/// offer, the 200 the answer, RTP flows both ways.
#[test]
fn outgoing_offer_answered_in_the_200_rtp_flows_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, heard) = phone_with_audio(dir.path(), false);
    let peer = RtpPeer::bind();
    let port = peer.port().to_string();
    let uas = Sipp::spawn("cl_uas_answer_rtp.xml", &["-key", "rtp_port", &port]);
    p.send(json!({"cmd": "dial", "to": uas.uri("1002")}));
    p.expect("answered", secs(5));
    let r = wait_trace(&uas, secs(5), "SIPp gets the ACK", |r| r.received("ACK ") >= 1);
    let invite = calls::first(&r, false, "INVITE ");
    let phone_media =
        sdp_audio(invite.body()).unwrap_or_else(|| panic!("no audio address in the offer:\n{}", invite.text));
    rtp_both_ways(&peer, phone_media);
    p.send(json!({"cmd": "hangup"}));
    let end = p.expect("ended", secs(5));
    assert_eq!(end["reason"], "local_hangup", "{end}");
    uas.wait(secs(10)).assert_ok();
    std::thread::sleep(ms(300));
    assert_heard_1k(&heard);
}

#[test]
fn video_and_audio_offer_gets_two_m_lines_in_order_with_video_declined() {
    let mut p = Phone::start(&config(""), &["--auto-answer"]);
    let video = RtpPeer::bind();
    let port = video.port().to_string();
    let uac = calls::call(&p, "cl_uac_video_audio.xml", &["-key", "rtp_port", &port]);
    let end = p.expect("ended", secs(10));
    assert_eq!(end["reason"], "remote_hangup", "{end}");
    let r = uac.wait(secs(10));
    r.assert_ok();
    let ok = response(&r, 200, "INVITE");
    let m = m_lines(ok.body());
    assert_eq!(
        m.len(),
        2,
        "RFC 3264 §6: the answer has as many m= lines as the offer (video, audio):\n{}",
        ok.text
    );
    assert!(
        Regex::new(r"^m=video 0 RTP/AVP( \d+)+$").unwrap().is_match(&m[0]),
        "the first m= line answers the video stream, declined with port 0: {:?}\n{}",
        m[0],
        ok.text
    );
    assert!(
        Regex::new(r"^m=audio [1-9]\d* RTP/AVP( \d+)+$")
            .unwrap()
            .is_match(&m[1]),
        "the second m= line answers the audio stream: {:?}\n{}",
        m[1],
        ok.text
    );
    assert!(formats(&m[1]).contains(&"0".to_owned()), "{}", m[1]);
    // No RTP goes to the declined video stream.
    assert_eq!(video.packets().len(), 0, "RTP sent to the declined video port");
}

#[test]
fn srtp_only_offer_gets_488() {
    let mut p = Phone::start(&config(""), &["--auto-answer"]);
    let r = calls::call(&p, "cl_uac_savp_only.xml", &[]).wait(secs(10));
    r.assert_ok();
    assert_eq!(responses(&r, 200, "INVITE").len(), 0, "{}", r.report());
    p.expect_none("answered", ms(500));
}

#[test]
fn re_invite_without_sdp_gets_an_offer_of_the_current_session_and_the_acks_answer_is_used() {
    let mut p = Phone::start(&config(""), &["--auto-answer"]);
    let (a, b) = (RtpPeer::bind(), RtpPeer::bind());
    let (pa, pb) = (a.port().to_string(), b.port().to_string());
    let uac = calls::call(
        &p,
        "cl_uac_reinvite_no_sdp.xml",
        &[
            "-key",
            "rtp_port",
            &pa,
            "-key",
            "rtp_port2",
            &pb,
            "-set",
            "hold",
            "1500",
            "-set",
            "hold2",
            "3000",
        ],
    );
    let ans = p.expect("answered", secs(5));
    let r = wait_trace(&uac, secs(5), "SIPp ACKs the 200", |r| r.sent("ACK ") >= 1);
    let t1 = Instant::now();
    let ok1 = response(&r, 200, "INVITE");
    let first = sdp_audio(ok1.body()).unwrap_or_else(|| panic!("{}", ok1.text));
    std::thread::sleep(ms(1000));
    let before = a.count_between(t1 + ms(200), t1 + ms(1000));
    assert!(
        before >= 30,
        "before the re-INVITE: {before} RTP packets at the first address"
    );

    let r = wait_trace(&uac, secs(5), "SIPp ACKs the 200 to its re-INVITE", |r| {
        r.sent("ACK ") >= 2
    });
    let t2 = Instant::now();
    let ok2 = responses(&r, 200, "INVITE")
        .into_iter()
        .find(|m| m.cseq().map(|c| c.0) == Some(2))
        .unwrap_or_else(|| panic!("no 200 to the re-INVITE\n{}", r.report()));
    assert!(
        ok2.header("Content-Type")
            .is_some_and(|c| c.eq_ignore_ascii_case("application/sdp")),
        "the 200 to a re-INVITE without SDP must carry an offer:\n{}",
        ok2.text
    );
    let again = sdp_audio(ok2.body()).unwrap_or_else(|| panic!("{}", ok2.text));
    assert_eq!(
        again, first,
        "the offer is of the current session (same address and port)"
    );
    let (s1, v1) = sdp_origin(ok1.body()).unwrap_or_else(|| panic!("{}", ok1.text));
    let (s2, v2) = sdp_origin(ok2.body()).unwrap_or_else(|| panic!("{}", ok2.text));
    assert_eq!(s2, s1, "RFC 3264 §8: the same o= session");
    assert!(
        v2 == v1 + 1 || (v2 == v1 && ok2.body() == ok1.body()),
        "RFC 3264 §8: o= version {v1} then {v2}:\n{}\n{}",
        ok1.body(),
        ok2.body()
    );
    let m = m_lines(ok2.body());
    assert!(formats(&m[0]).contains(&"0".to_owned()), "{}", ok2.text);

    // The ACK's answer moved the audio to the second address.
    std::thread::sleep(ms(1300));
    let to_b = b.count_between(t2 + ms(300), t2 + ms(1300));
    let to_a = a.count_between(t2 + ms(300), t2 + ms(1300));
    assert!(
        to_b >= 40 && to_a == 0,
        "after the ACK's answer: {to_b} RTP packets in 1 s at its address {}, {to_a} still at \
         the old one {}",
        b.addr(),
        a.addr()
    );
    let end = p.expect("ended", secs(5));
    assert_eq!(end["call"], ans["call"], "{end}");
    assert_eq!(
        end["reason"], "remote_hangup",
        "the call went on until SIPp's BYE: {end}"
    );
    uac.wait(secs(10)).assert_ok();
}

#[test]
fn early_media_of_a_183_is_heard_before_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, heard) = phone_with_audio(dir.path(), false);
    let peer = RtpPeer::bind();
    let port = peer.port().to_string();
    let uas = Sipp::spawn(
        "cl_uas_early_media.xml",
        &["-key", "rtp_port", &port, "-set", "hold", "2500"],
    );
    p.send(json!({"cmd": "dial", "to": uas.uri("1002")}));
    let r = wait_trace(&uas, secs(5), "the phone's INVITE reaches SIPp", |r| {
        r.received("INVITE ") >= 1
    });
    let invite = calls::first(&r, false, "INVITE ");
    let phone_media = sdp_audio(invite.body()).unwrap_or_else(|| panic!("{}", invite.text));
    wait_trace(&uas, secs(5), "SIPp sends its 183", |r| {
        r.sent("SIP/2.0 183") >= 1
    });
    // The announcement: 1 kHz until the 200, then 2 kHz.
    let t183 = Instant::now();
    let stream = peer.stream(phone_media, 1000.0);
    wait_trace(&uas, secs(6), "SIPp sends its 200", |r| {
        r.sent("SIP/2.0 200") >= 1
    });
    stream.set_freq(2000.0);
    let t200 = Instant::now();
    p.expect("answered", secs(5));
    std::thread::sleep(ms(1500));
    p.send(json!({"cmd": "hangup"}));
    let t_end = Instant::now();
    p.expect("ended", secs(5));
    stream.stop();
    uas.wait(secs(10)).assert_ok();
    std::thread::sleep(ms(300));

    let (s, rate) = wav_mono(&heard);
    let len = s.len() as f64 / f64::from(rate);
    let early = t200.duration_since(t183).as_secs_f64();
    let call = t_end.duration_since(t183).as_secs_f64();
    let snr_early = snr_between(&s, rate, 0.3, early - 0.5, 1000.0);
    assert!(
        len >= call - 0.8,
        "the recording ({len:.2} s) does not cover the early media: {early:.2} s from the 183 to \
         the 200, {call:.2} s from the 183 to the hang-up"
    );
    assert!(
        snr_early >= 10.0,
        "the 183's tone (1 kHz) is not in the recording's first {:.1} s: SNR {snr_early:.1} dB \
         (per second: {:.1?})",
        early - 0.5,
        snr_per_second(&s, rate, 1000.0)
    );
}
