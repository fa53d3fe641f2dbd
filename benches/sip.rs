//! SIP message benchmarks: parsing the INVITE of `ctiphone bench sip` (the same headers and
//! SDP) and writing a 180 to it, warm, as the ring path's share that is the parser's
//! (docs/decisions.md D6: the ring path's profile).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ctiphone::sip::message::Message;

const INVITE: &str = "INVITE sip:bench@127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKb1234x1\r\n\
Max-Forwards: 70\r\n\
From: <sip:caller@127.0.0.1:40000>;tag=t1\r\n\
To: <sip:bench@127.0.0.1:5070>\r\n\
Call-ID: bench-1234-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:caller@127.0.0.1:40000>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 138\r\n\
\r\n\
v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n";

fn parse(c: &mut Criterion) {
    assert!(
        Message::parse(INVITE.as_bytes()).is_ok(),
        "the bench INVITE parses"
    );
    c.bench_function("parse the bench INVITE", |b| {
        b.iter(|| Message::parse(black_box(INVITE.as_bytes())))
    });
    let Ok(inv) = Message::parse(INVITE.as_bytes()) else {
        return;
    };
    c.bench_function("write a 180 to it", |b| {
        b.iter(|| {
            let mut r = Message::response(black_box(&inv), 180, "Ringing");
            r.set("To", "<sip:bench@127.0.0.1:5070>;tag=abcdef0123");
            r.push("Contact", "<sip:bench@127.0.0.1:5070>");
            r.to_bytes()
        })
    });
}

criterion_group!(benches, parse);
criterion_main!(benches);
