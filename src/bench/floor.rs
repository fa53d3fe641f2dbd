//! The floor of the signalling benchmark: a minimal UAS on a loopback socket of its own, in a
//! thread of the bench process. To each INVITE it answers 180 Ringing and 200 OK at once, from
//! the headers it copies; no dialog, no transaction, no timer, no check of any kind. It ignores
//! ACKs and responses and answers every other request (BYE, CANCEL, …) with 200.
//!
//! Called on the same path as the phones (the same caller, the same INVITE, in the same run),
//! its response times are what that path costs by itself: the caller's own sending, waking and
//! receiving, and the loopback. The phones' figures are reported above it.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The running floor; it stops when dropped.
pub(super) struct Floor {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Floor {
    /// Binds a free loopback port and starts answering on it.
    pub(super) fn start() -> std::io::Result<Self> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        // Its SDP names a port of its own; nothing reads it (the calls are hung up at once).
        let rtp = UdpSocket::bind("127.0.0.1:0")?;
        // Only so that the thread sees `stop`: a datagram wakes it at once either way.
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = sock.local_addr()?;
        let rtp_port = rtp.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-floor".into())
            .spawn(move || {
                let _rtp = rtp;
                serve(&sock, addr, rtp_port, &flag);
            })?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(sock: &UdpSocket, local: SocketAddr, rtp_port: u16, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536];
    let mut invites: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let datagram = buf.get(..len).unwrap_or_default();
        if datagram.starts_with(b"INVITE ") {
            invites += 1;
        }
        let tag = format!("floor{invites}");
        // Replies go back where the request came from (the callers send from their SIP port).
        for reply in replies(datagram, local, rtp_port, &tag) {
            let _ = sock.send_to(reply.as_bytes(), from);
        }
    }
}

/// The floor's replies to one datagram: 180 and 200 (with an SDP answer offering PCMU on
/// `rtp_port`) to an INVITE, nothing to an ACK, a response or what is not text, 200 to any
/// other request. The To header gets `tag` when it has none.
fn replies(datagram: &[u8], contact: SocketAddr, rtp_port: u16, tag: &str) -> Vec<String> {
    let Ok(text) = std::str::from_utf8(datagram) else {
        return Vec::new();
    };
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default();
    let method = start.split(' ').next().unwrap_or_default();
    if method.is_empty() || method == "ACK" || start.starts_with("SIP/") {
        return Vec::new();
    }
    let mut copied = String::with_capacity(head.len());
    let mut to = None;
    for line in lines {
        let name = line.split(':').next().unwrap_or_default().trim();
        let is = |long: &str, short: &str| {
            name.eq_ignore_ascii_case(long) || (!short.is_empty() && name.eq_ignore_ascii_case(short))
        };
        if is("Via", "v") || is("From", "f") || is("Call-ID", "i") || is("CSeq", "") {
            copied.push_str(line);
            copied.push_str("\r\n");
        } else if is("To", "t") {
            to = Some(line);
        }
    }
    let Some(to) = to else {
        return Vec::new();
    };
    let to = if to.to_ascii_lowercase().contains(";tag=") {
        to.to_owned()
    } else {
        format!("{to};tag={tag}")
    };
    let response = |status: &str, extra: &str, body: &str| {
        format!(
            "SIP/2.0 {status}\r\n{copied}{to}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    if method != "INVITE" {
        return vec![response("200 OK", "", "")];
    }
    let ip = contact.ip();
    let sdp = format!(
        "v=0\r\no=floor 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    let contact = format!("Contact: <sip:floor@{contact}>\r\n");
    vec![
        response("180 Ringing", &contact, ""),
        response(
            "200 OK",
            &format!("{contact}Content-Type: application/sdp\r\n"),
            &sdp,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Message;

    const INVITE: &str = "INVITE sip:bench@127.0.0.1:5070 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
        f: <sip:caller@127.0.0.1:4000>;tag=a\r\nTo: <sip:bench@127.0.0.1:5070>\r\n\
        i: c1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:4000>\r\n\
        Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n";

    fn contact() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5070))
    }

    #[test]
    fn an_invite_gets_180_then_200_with_the_request_headers_and_an_answer() {
        let out = replies(INVITE.as_bytes(), contact(), 7000, "x1");
        assert_eq!(out.len(), 2, "{out:?}");
        let ringing = Message::parse(out[0].as_bytes()).expect("the 180 parses");
        let ok = Message::parse(out[1].as_bytes()).expect("the 200 parses");
        assert_eq!(ringing.code(), Some(180));
        assert_eq!(ok.code(), Some(200));
        for m in [&ringing, &ok] {
            assert_eq!(m.call_id(), Some("c1@127.0.0.1"));
            assert_eq!(m.cseq(), Some((1, "INVITE")));
            assert_eq!(m.get("Via"), Some("SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bK1"));
            assert_eq!(m.get("From"), Some("<sip:caller@127.0.0.1:4000>;tag=a"));
            assert_eq!(m.get("To"), Some("<sip:bench@127.0.0.1:5070>;tag=x1"));
        }
        assert_eq!(ok.get("Contact"), Some("<sip:floor@127.0.0.1:5070>"));
        let sdp = crate::call::sdp::Sdp::parse(&String::from_utf8_lossy(&ok.body)).expect("SDP");
        assert_eq!(sdp.audio().map(|a| a.port), Some(7000));
    }

    #[test]
    fn a_bye_gets_one_200_keeping_its_to_tag_and_an_ack_or_a_response_nothing() {
        let bye = "BYE sip:floor@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:4000;branch=b\r\n\
            From: <sip:caller@127.0.0.1>;tag=a\r\nTo: <sip:bench@127.0.0.1>;tag=x1\r\n\
            Call-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
        let out = replies(bye.as_bytes(), contact(), 7000, "other");
        assert_eq!(out.len(), 1, "{out:?}");
        let ok = Message::parse(out[0].as_bytes()).expect("the 200 parses");
        assert_eq!(ok.code(), Some(200));
        assert_eq!(ok.cseq(), Some((2, "BYE")));
        assert_eq!(ok.get("To"), Some("<sip:bench@127.0.0.1>;tag=x1"));
        let ack = bye.replace("BYE sip", "ACK sip").replace("2 BYE", "1 ACK");
        assert!(replies(ack.as_bytes(), contact(), 7000, "t").is_empty());
        let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:4000\r\nTo: <sip:a@b>\r\n\r\n";
        assert!(replies(response.as_bytes(), contact(), 7000, "t").is_empty());
        assert!(replies(b"\xff\xfe", contact(), 7000, "t").is_empty());
        assert!(replies(b"", contact(), 7000, "t").is_empty());
    }

    #[test]
    fn the_running_floor_answers_an_invite_on_loopback() {
        let floor = Floor::start().expect("the floor starts");
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        sock.send_to(INVITE.as_bytes(), floor.addr()).expect("send");
        let mut codes = Vec::new();
        let mut buf = vec![0u8; 65536];
        for _ in 0..2 {
            let (n, from) = sock.recv_from(&mut buf).expect("a reply");
            assert_eq!(from, floor.addr());
            codes.push(Message::parse(&buf[..n]).expect("parses").code());
        }
        assert_eq!(codes, [Some(180), Some(200)]);
    }
}
