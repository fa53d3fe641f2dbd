//! SDP bodies (`ctiphone::call::sdp`): parsing a remote description and answering it.
//!
//! Checks, besides "never panics":
//! - what `to_text` writes parses again, and writing that gives the same text (our own SDP
//!   is always well-formed, whatever the remote sent);
//! - every line we write is one `x=value` line: no control character from the remote
//!   (codec names, fmtp, origin user) reaches our SDP;
//! - an answer only uses payload types the offer listed, never more than one per type,
//!   holds an audio codec besides telephone-event, and its direction is what both sides
//!   allow (RFC 3264 §6.1).
//!
//! The first input byte picks our codec list and wanted direction; the rest is the SDP text.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    let Ok(answer) = sdp::answer(&remote, "ctiphone", 7, 1, addr, 40000, &ours, want) else {
        return;
    };
    check_written(&answer);
    let offered = remote.audio.as_ref().expect("an answered offer has audio");
    let answered = answer.audio.as_ref().expect("an answer has audio");
    let mut seen = Vec::new();
    for c in &answered.codecs {
        assert!(
            offered.codecs.iter().any(|o| o.pt == c.pt),
            "answer uses payload type {} the offer did not list",
            c.pt
        );
        assert!(!seen.contains(&c.pt), "payload type {} answered twice", c.pt);
        seen.push(c.pt);
        assert!(
            ours.iter()
                .any(|o| o.name.eq_ignore_ascii_case(&c.name) && o.rate == c.rate),
            "answer holds {c:?}, which we do not support"
        );
    }
    assert!(
        answered
            .codecs
            .iter()
            .any(|c| !c.name.eq_ignore_ascii_case("telephone-event")),
        "answer without an audio codec"
    );
    assert_eq!(answered.direction, want.intersect(offered.direction.reverse()));
    let _ = sdp::offer(
        "ctiphone",
        7,
        2,
        addr,
        40000,
        &answered.codecs,
        answered.direction,
    )
    .to_text();
});

/// Our text for `s`: parses back, and is a fixed point.
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
    assert_eq!(again.addr, s.addr);
    match (&again.audio, &s.audio) {
        (Some(a), Some(b)) => {
            assert_eq!(
                (a.addr, a.port, a.direction, a.ptime),
                (b.addr, b.port, b.direction, b.ptime)
            );
            let pts = |x: &sdp::Audio| x.codecs.iter().map(|c| c.pt).collect::<Vec<_>>();
            assert_eq!(pts(a), pts(b));
        }
        (None, None) => {}
        _ => panic!("audio stream lost or gained when written\n{text}"),
    }
}
