//! Where the phone sends its RTP, and when it gives up on a silent peer. SIPp places the call
//! with an offer whose audio address is a UDP socket of the test (the real peer); a second
//! socket on another port plays a stranger sending RTP to the phone's media port (read from
//! the phone's SDP in its 200):
//!
//! - a stranger who sends before the real peer does not draw the phone's RTP away from the
//!   SDP address (RFC 3264 §5, §6: media goes to the address the answer/offer names);
//! - a stranger who sends in the middle of the call cannot take it over either;
//! - with `[media] rtp_timeout_seconds = 3`, a call whose peer sends no RTP at all ends with
//!   a `warning` then `ended` (reason `failed`) 3 to 5 s after the answer.

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use common::calls::{self, config, response, wait_trace};
use common::peers::{Phone, Sipp, ms, secs};
use common::rtp::{RtpPeer, sdp_audio};

/// A call from SIPp whose audio goes to `peer`, answered by the phone; SIPp hangs up after
/// `hold_ms`. Returns SIPp and the phone's media address.
fn call_to(p: &mut Phone, peer: &RtpPeer, hold_ms: u32) -> (Sipp, SocketAddr) {
    let (port, hold) = (peer.port().to_string(), hold_ms.to_string());
    let uac = calls::call(
        p,
        "cl_uac_call_hold.xml",
        &["-key", "rtp_port", &port, "-set", "hold", &hold],
    );
    p.expect("answered", secs(5));
    let r = wait_trace(&uac, secs(5), "SIPp ACKs the phone's 200", |r| {
        r.sent("ACK ") >= 1
    });
    let ok = response(&r, 200, "INVITE");
    let media = sdp_audio(ok.body()).unwrap_or_else(|| panic!("no audio address:\n{}", ok.text));
    (uac, media)
}

/// Over 1 s from now (after 200 ms of grace): RTP packets at the peer and at the stranger.
fn where_rtp_goes(peer: &RtpPeer, stranger: &RtpPeer) -> (usize, usize) {
    let t = Instant::now();
    std::thread::sleep(ms(1250));
    (
        peer.count_between(t + ms(200), t + ms(1200)),
        stranger.count_between(t + ms(200), t + ms(1200)),
    )
}

#[test]
fn a_stranger_sending_first_does_not_draw_the_phones_rtp_from_the_sdp_address() {
    let mut p = Phone::start(&config(""), &["--auto-answer"]);
    let (peer, stranger) = (RtpPeer::bind(), RtpPeer::bind());
    let (uac, media) = call_to(&mut p, &peer, 4000);
    // The real peer has not sent a packet; the stranger sends from another port.
    let s = stranger.stream(media, 1000.0);
    std::thread::sleep(ms(300));
    let (to_peer, to_stranger) = where_rtp_goes(&peer, &stranger);
    drop(s);
    assert!(
        to_peer >= 40 && to_stranger == 0,
        "with a stranger sending to the phone's media port {media} first: in 1 s, {to_peer} RTP \
         packets reached the SDP address {} (expected about 50) and {to_stranger} the stranger \
         {} (expected 0)",
        peer.addr(),
        stranger.addr()
    );
    let end = p.expect("ended", secs(10));
    assert_eq!(end["reason"], "remote_hangup", "{end}");
    uac.wait(secs(10)).assert_ok();
}

#[test]
fn a_stranger_sending_during_the_call_cannot_take_it_over() {
    let mut p = Phone::start(&config(""), &["--auto-answer"]);
    let (peer, stranger) = (RtpPeer::bind(), RtpPeer::bind());
    let (uac, media) = call_to(&mut p, &peer, 5000);
    let real = peer.stream(media, 440.0);
    std::thread::sleep(ms(1000));
    let s = stranger.stream(media, 1000.0);
    std::thread::sleep(ms(300));
    let (to_peer, to_stranger) = where_rtp_goes(&peer, &stranger);
    drop(s);
    drop(real);
    assert!(
        to_peer >= 40 && to_stranger == 0,
        "with a stranger joining the call from another port: in 1 s, {to_peer} RTP packets \
         reached the SDP address {} (expected about 50) and {to_stranger} the stranger {} \
         (expected 0)",
        peer.addr(),
        stranger.addr()
    );
    let end = p.expect("ended", secs(10));
    assert_eq!(end["reason"], "remote_hangup", "{end}");
    uac.wait(secs(10)).assert_ok();
}

#[test]
fn a_peer_that_sends_no_rtp_ends_the_call_after_rtp_timeout_seconds() {
    let cfg = config("[media]\nrtp_timeout_seconds = 3\n");
    let mut p = Phone::start(&cfg, &["--auto-answer"]);
    // SIPp's media port never sends a packet.
    let uac = calls::call(&p, "uac_wait_bye.xml", &[]);
    let ans = p.expect("answered", secs(5));
    let t0 = Instant::now();
    let warn = p.expect("warning", secs(8));
    let end = p.expect("ended", secs(8));
    let after = t0.elapsed().as_secs_f64();
    assert_eq!(end["call"], ans["call"], "{end}");
    assert_eq!(end["reason"], "failed", "{end}");
    assert!(
        (2.7..=5.5).contains(&after),
        "ended {after:.2} s after the answer, expected 3 to 5 s (rtp_timeout_seconds = 3); \
         warning: {warn}"
    );
    // The phone hung up: SIPp got its BYE and answered it.
    let r = uac.wait(secs(10));
    r.assert_ok();
    assert_eq!(r.received("BYE "), 1, "{}", r.report());
}
