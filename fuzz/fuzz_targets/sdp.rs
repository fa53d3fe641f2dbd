//! SDP bodies (`ctiphone::call::sdp`, `ctiphone::call::offer_answer`): parsing a remote
//! description, answering it, and taking it as the answer to our offer.
//!
//! Checks, besides "never panics":
//! - what `to_text` writes parses again to the same description, and writing that gives the
//!   same text (our own SDP is always well-formed, whatever the remote sent);
//! - every line we write is one `x=value` line: no control character from the remote
//!   (codec names, fmtp, attributes, origin user) reaches our SDP;
//! - an answer has exactly the offer's m-lines in order (media type and proto each); one of
//!   them is enabled, the audio stream `select_audio` picked, over RTP/AVP or RTP/AVPF (or, with
//!   SRTP on, RTP/SAVP(F), with exactly one crypto line of ours when SRTP was taken); every
//!   other one is refused with port 0 and one of its offered formats (RFC 3264 §6);
//! - the accepted stream only uses payload types the offer listed, never more than one per
//!   type, holds an audio codec besides telephone-event, and its direction is what both sides
//!   allow (RFC 3264 §6.1);
//! - the negotiator agrees with `answer` (answered or refused alike), is `Done` with a
//!   negotiated codec after an answer and back where it was after a refusal, and its re-offer
//!   keeps the session's m-lines; taken as the answer to our offer, the description is
//!   refused unless it mirrors that offer.
//!
//! The first input byte picks our codec list, wanted direction, SRTP mode and address family;
//! the rest is the SDP text.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ctiphone::call::offer_answer::{LocalParams, Negotiator, State};
use ctiphone::call::sdes::{self, LocalKeys, SrtpMode};
use ctiphone::call::sdp::{self, Codec, Direction, Sdp};
use libfuzzer_sys::fuzz_target;

const DIRECTIONS: [Direction; 4] = [
    Direction::SendRecv,
    Direction::SendOnly,
    Direction::RecvOnly,
    Direction::Inactive,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    // As the user agent reads a body: lossy UTF-8.
    let text = String::from_utf8_lossy(rest);
    let Ok(remote) = Sdp::parse(&text) else {
        return;
    };
    check_written(&remote);

    let mut ours = vec![Codec::pcmu(), Codec::pcma(), Codec::telephone_event(101)];
    if pick & 1 != 0 {
        ours.reverse();
    }
    if pick & 2 != 0 {
        ours.remove(0);
    }
    let want = DIRECTIONS[usize::from(pick >> 2) % 4];
    let addr = if pick & 0x40 != 0 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))
    };

    let srtp = [SrtpMode::Off, SrtpMode::Optional, SrtpMode::Mandatory, SrtpMode::Optional][usize::from(pick >> 4) & 3];
    let answered = sdp::answer(&remote, "ctiphone", 7, 1, addr, 40000, &ours, want, srtp, &mut LocalKeys::default());
    if let Ok(answer) = &answered {
        check_answer(&remote, answer, &ours, want, addr, srtp);
    }
    check_negotiator(&remote, &ours, addr, want, srtp, answered.is_ok());
});

/// An answer mirrors the offer and accepts one audio stream as RFC 3264 says.
fn check_answer(offer: &Sdp, answer: &Sdp, ours: &[Codec], want: Direction, addr: IpAddr, srtp: SrtpMode) {
    check_written(answer);
    assert_eq!(answer.media.len(), offer.media.len(), "m-line count");
    let (chosen, _) = sdp::select_audio(offer, addr, ours, srtp).expect("an answered offer has an audio stream");
    // SRTP: off answers without crypto; on, one line exactly when the offer had a usable one,
    // and a secure profile or mandatory SRTP is never answered without it.
    let offered = !sdes::usable(&offer.media[chosen]).is_empty();
    let lines = sdes::usable(&answer.media[chosen]).len();
    match srtp {
        SrtpMode::Off => assert!(!sdes::has_crypto(&answer.media[chosen]), "crypto with SRTP off"),
        _ => assert_eq!(lines, usize::from(offered), "one crypto line iff the offer had a usable one"),
    }
    if sdes::is_secure_proto(&offer.media[chosen].proto) || srtp == SrtpMode::Mandatory {
        assert_eq!(lines, 1, "SRTP required and answered without crypto");
    }
    for (i, (a, o)) in answer.media.iter().zip(&offer.media).enumerate() {
        assert_eq!((&a.kind, &a.proto), (&o.kind, &o.proto), "m-line {i} retyped");
        if i != chosen {
            assert_eq!(a.port, 0, "m-line {i} not refused");
            assert_eq!(a.formats.len(), 1, "m-line {i}: one format");
            assert!(
                o.formats.contains(&a.formats[0]),
                "m-line {i}: format not offered"
            );
            continue;
        }
        assert!(
            a.is_acceptable_audio(),
            "accepted stream {i} is not RTP/AVP(F) audio"
        );
        assert_eq!(answer.audio_index(), Some(i));
        let mut seen = Vec::new();
        for c in &a.codecs {
            assert!(
                o.codecs.iter().any(|x| x.pt == c.pt),
                "answer uses payload type {} the offer did not list",
                c.pt
            );
            assert!(!seen.contains(&c.pt), "payload type {} answered twice", c.pt);
            seen.push(c.pt);
            assert!(
                ours.iter()
                    .any(|x| x.name.eq_ignore_ascii_case(&c.name) && x.rate == c.rate),
                "answer holds {c:?}, which we do not support"
            );
        }
        assert!(
            a.codecs.iter().any(|c| !c.is_telephone_event()),
            "answer without an audio codec"
        );
        assert_eq!(a.direction, want.intersect(o.direction.reverse()));
    }
}

/// The negotiator, with `remote` as the peer's offer and as the answer to ours.
fn check_negotiator(remote: &Sdp, ours: &[Codec], addr: IpAddr, want: Direction, srtp: SrtpMode, answerable: bool) {
    let params = LocalParams {
        user: "ctiphone".into(),
        addr,
        port: 40000,
        rtcp: None,
        codecs: ours.to_vec(),
        hold: want == Direction::SendOnly,
        srtp,
    };

    // As their offer.
    let mut n = Negotiator::new(7);
    n.receive_offer(remote.clone())
        .expect("an initial offer is always taken");
    match n.create_answer(&params) {
        Ok(answer) => {
            assert!(answerable, "the negotiator answered what sdp::answer refuses");
            assert_eq!(answer.media.len(), remote.media.len());
            assert_eq!(n.state(), State::Done);
            assert!(n.negotiated().is_some(), "answered without a codec");
            // Our re-offer keeps the session's m-lines; only the audio one is enabled.
            let reoffer = n.create_offer(&params).expect("an offer from Done");
            check_written(&reoffer);
            assert_eq!(reoffer.media.len(), remote.media.len());
            assert_eq!(reoffer.media.iter().filter(|m| m.is_enabled()).count(), 1);
            assert!(n.rollback());
            assert_eq!(n.state(), State::Done);
        }
        Err(_) => {
            assert!(!answerable, "the negotiator refused what sdp::answer answers");
            assert_eq!((n.state(), n.negotiated()), (State::Idle, None));
        }
    }

    // As the answer to our offer.
    let mut n = Negotiator::new(7);
    let offer = n.create_offer(&params).expect("an initial offer");
    check_written(&offer);
    match n.receive_answer(remote.clone()) {
        Ok(()) => {
            assert_eq!(
                remote.media.len(),
                offer.media.len(),
                "an answer that does not mirror"
            );
            assert_eq!(remote.media[0].kind, "audio");
            assert!(n.negotiated().is_some());
        }
        Err(_) => assert_eq!((n.state(), n.negotiated()), (State::Idle, None)),
    }
}

/// Our text for `s`: one line per field, parses back to `s`, and is a fixed point.
fn check_written(s: &Sdp) {
    let text = s.to_text();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let b = line.as_bytes();
        assert!(
            b.len() >= 2 && b[0].is_ascii_lowercase() && b[1] == b'=',
            "not an SDP line: {line:?}"
        );
        assert!(
            !line.chars().any(char::is_control),
            "control character in our SDP line {line:?}"
        );
    }
    let again = Sdp::parse(&text).unwrap_or_else(|e| panic!("our own SDP does not parse: {e}\n{text}"));
    assert_eq!(again.to_text(), text, "writing is not stable");
    assert_eq!(
        &again, s,
        "written and parsed again, the description changed\n{text}"
    );
}
