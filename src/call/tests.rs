//! The call layer as a whole, in this process on 127.0.0.1, talked to over a UDP socket:
//! RFC 2543 peers (no branch, no From tag), CANCEL matching, failures ACKed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::app::{Bus, Command, Event, PhoneEvent};
use crate::config::Config;
use crate::sip::message::Message;

use super::{CallConfig, run};

/// A user agent running in this process on 127.0.0.1 (`auto_answer`: answering every call
/// after that long), and a UDP socket to talk SIP to it.
async fn agent(auto_answer: Option<Duration>) -> (SocketAddr, UdpSocket, mpsc::Sender<Command>) {
    let text = "[account]\nuri = \"sip:1001@127.0.0.1\"\nregistrar = \"\"\n\
                listen = \"127.0.0.1:0\"\ncall_waiting = false\n\
                [audio]\ninput = \"null\"\noutput = \"null\"\n";
    let config = Config::parse(text, None).unwrap();
    let cfg = CallConfig::from_config(&config, auto_answer).await.unwrap();
    let bus = Bus::new();
    let mut events = bus.subscribe_as("test");
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(run(cfg, bus, rx));
    let listen = loop {
        if let Event::Phone(PhoneEvent::Ready { listen, .. }) = events.recv().await.unwrap() {
            break listen.parse().unwrap();
        }
    };
    (listen, UdpSocket::bind("127.0.0.1:0").await.unwrap(), tx)
}

/// The next message on `sock` within `within`.
async fn recv(sock: &UdpSocket, within: Duration) -> Option<Message> {
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(within, sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(Message::parse(&buf[..n]).expect("the agent's message parses"))
}

/// Sends `invite` and returns the agent's 200 (after any provisional answers).
async fn answered(sock: &UdpSocket, invite: &str, ua: SocketAddr) -> Message {
    sock.send_to(invite.as_bytes(), ua).await.unwrap();
    loop {
        let m = recv(sock, Duration::from_secs(5)).await.expect("an answer");
        if m.code() == Some(200) {
            return m;
        }
    }
}

/// An INVITE (RFC 2543 style: no branch, no From tag) with a PCMU offer, and its ACK for
/// the final response `resp`.
fn invite_2543(ua: SocketAddr, me: SocketAddr, content_type: &str) -> (String, impl Fn(&Message) -> String) {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let common = format!(
        "Via: SIP/2.0/UDP {me}\r\nFrom: <sip:a@{me}>\r\nCall-ID: rfc2543-{}\r\n",
        me.port()
    );
    let invite = format!(
        "INVITE sip:1001@{ua} SIP/2.0\r\n{common}To: <sip:1001@{ua}>\r\nCSeq: 1 INVITE\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let ack = move |resp: &Message| {
        format!(
            "ACK sip:1001@{ua} SIP/2.0\r\n{common}To: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            resp.get("To").unwrap()
        )
    };
    (invite, ack)
}

#[tokio::test]
async fn an_ack_matching_the_invite_transaction_reaches_the_call_after_a_2xx() {
    // An RFC 2543 peer's ACK for our 200 has the INVITE's transaction id (Call-ID, CSeq,
    // From tag): it is the dialog's ACK, and the 200 stops being retransmitted (it was
    // swallowed by the transaction: the 200 went on for 32 s and the call was hung up).
    let (ua, sock, _commands) = agent(Some(Duration::ZERO)).await;
    let (invite, ack) = invite_2543(ua, sock.local_addr().unwrap(), "application/sdp");
    let ok = answered(&sock, &invite, ua).await;
    sock.send_to(ack(&ok).as_bytes(), ua).await.unwrap();
    // T1 is 500 ms: a retransmission would come within 1.2 s.
    if let Some(m) = recv(&sock, Duration::from_millis(1200)).await {
        panic!("after the ACK: {:?}", m.start);
    }
}

#[tokio::test]
async fn a_cancel_after_the_answer_gets_200_and_an_unknown_one_481() {
    // RFC 3261 §9.2: a CANCEL that matches a transaction is answered 200 even when the
    // INVITE was already answered (and then has no effect); one matching nothing, 481.
    let (ua, sock, _commands) = agent(Some(Duration::ZERO)).await;
    let (invite, ack) = invite_2543(ua, sock.local_addr().unwrap(), "application/sdp");
    let ok = answered(&sock, &invite, ua).await;
    sock.send_to(ack(&ok).as_bytes(), ua).await.unwrap();
    let cancel =
        invite
            .replacen("INVITE sip:", "CANCEL sip:", 1)
            .replacen("CSeq: 1 INVITE", "CSeq: 1 CANCEL", 1);
    let cancel = format!(
        "{}\r\n\r\n",
        &cancel[..cancel.find("Content-Type").unwrap()].trim_end()
    );
    let cancel = cancel.replacen("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n", 1);
    sock.send_to(cancel.as_bytes(), ua).await.unwrap();
    let answer = recv(&sock, Duration::from_secs(5))
        .await
        .expect("an answer to the CANCEL");
    assert_eq!(
        (answer.code(), answer.cseq().map(|c| c.1.to_owned())),
        (Some(200), Some("CANCEL".to_owned()))
    );
    let unknown = cancel.replace("Call-ID: rfc2543-", "Call-ID: nothing-");
    sock.send_to(unknown.as_bytes(), ua).await.unwrap();
    let answer = recv(&sock, Duration::from_secs(5))
        .await
        .expect("an answer to the CANCEL");
    assert_eq!(answer.code(), Some(481));
}

#[tokio::test]
async fn an_acked_failure_is_not_retransmitted() {
    let (ua, sock, _commands) = agent(None).await;
    let (invite, ack) = invite_2543(ua, sock.local_addr().unwrap(), "text/plain");
    sock.send_to(invite.as_bytes(), ua).await.unwrap();
    let refused = recv(&sock, Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(refused.code(), Some(415));
    sock.send_to(ack(&refused).as_bytes(), ua).await.unwrap();
    // The ACK's retransmission is absorbed too.
    sock.send_to(ack(&refused).as_bytes(), ua).await.unwrap();
    if let Some(m) = recv(&sock, Duration::from_millis(1200)).await {
        panic!("after the ACK: {:?}", m.start);
    }
}

/// A request from `me` to the agent at `ua` in call `call_id`, From tag `ftag`, To tag `ttag`
/// (none: out of dialog), with `extra` headers and `body` as SDP.
#[allow(clippy::too_many_arguments)]
fn request(
    method: &str,
    ua: SocketAddr,
    me: SocketAddr,
    call_id: &str,
    ftag: &str,
    ttag: Option<&str>,
    cseq: u32,
    extra: &str,
    body: &str,
) -> String {
    let to_tag = ttag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    format!(
        "{method} sip:1001@{ua} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{}\r\n\
         From: <sip:0311112222@{me}>;tag={ftag}\r\nTo: <sip:1001@{ua}>{to_tag}\r\nCall-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\nContact: <sip:caller@{me}>\r\nMax-Forwards: 70\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        crate::sip::stack::random_token(12),
        body.len()
    )
}

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                     m=audio 9000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// The next response to `method` on `sock` with a final or the given code.
async fn response(sock: &UdpSocket, method: &str, code: u16) -> Message {
    loop {
        let m = recv(sock, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("no {code} to {method}"));
        if m.cseq().map(|c| c.1) == Some(method) && m.code() == Some(code) {
            return m;
        }
    }
}

/// An answered call with the agent: its Call-ID and the agent's tag.
async fn call_up(
    ua: SocketAddr,
    sock: &UdpSocket,
    call_id: &str,
    extra: &str,
    body: &str,
) -> (String, Message) {
    let me = sock.local_addr().unwrap();
    let inv = request("INVITE", ua, me, call_id, "caller", None, 1, extra, body);
    let ok = answered(sock, &inv, ua).await;
    let tag = crate::sip::addr::NameAddr::parse(ok.get("To").unwrap())
        .unwrap()
        .tag()
        .unwrap()
        .to_owned();
    (tag, ok)
}

#[tokio::test]
async fn requests_with_the_call_id_but_wrong_tags_get_481_and_the_call_goes_on() {
    let (ua, sock, _c) = agent(Some(Duration::ZERO)).await;
    let me = sock.local_addr().unwrap();
    let (tag, _) = call_up(ua, &sock, "spoof-1", "", OFFER).await;
    sock.send_to(
        request("ACK", ua, me, "spoof-1", "caller", Some(&tag), 1, "", "").as_bytes(),
        ua,
    )
    .await
    .unwrap();
    // A stranger's BYE: right Call-ID, wrong From tag; then wrong To tag.
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sm = stranger.local_addr().unwrap();
    for (ftag, ttag) in [("other", tag.as_str()), ("caller", "forged")] {
        let bye = request("BYE", ua, sm, "spoof-1", ftag, Some(ttag), 2, "", "");
        stranger.send_to(bye.as_bytes(), ua).await.unwrap();
        assert_eq!(response(&stranger, "BYE", 481).await.code(), Some(481));
        let reinvite = request("INVITE", ua, sm, "spoof-1", ftag, Some(ttag), 3, "", OFFER);
        stranger.send_to(reinvite.as_bytes(), ua).await.unwrap();
        assert_eq!(response(&stranger, "INVITE", 481).await.code(), Some(481));
    }
    // A CSeq lower than the last: 500; the real BYE: 200.
    let old = request("INFO", ua, me, "spoof-1", "caller", Some(&tag), 1, "", "");
    sock.send_to(old.as_bytes(), ua).await.unwrap();
    assert_eq!(response(&sock, "INFO", 500).await.code(), Some(500));
    let bye = request("BYE", ua, me, "spoof-1", "caller", Some(&tag), 5, "", "");
    sock.send_to(bye.as_bytes(), ua).await.unwrap();
    assert_eq!(response(&sock, "BYE", 200).await.code(), Some(200));
}

#[tokio::test]
async fn a_late_offer_is_made_in_the_200_and_answered_in_the_ack() {
    let (ua, sock, _c) = agent(Some(Duration::ZERO)).await;
    let me = sock.local_addr().unwrap();
    let (tag, ok) = call_up(ua, &sock, "late-1", "", "").await;
    let offer =
        crate::call::sdp::Sdp::parse(&String::from_utf8_lossy(&ok.body)).expect("an offer in the 200");
    let port = offer.audio().map(|a| a.port).unwrap();
    assert_ne!(port, 0);
    // No ACK yet: the 200 is retransmitted.
    assert_eq!(response(&sock, "INVITE", 200).await.code(), Some(200));
    // The answer in the ACK points the phone's media at a socket of ours: RTP arrives there.
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let answer = OFFER.replace("9000", &rtp.local_addr().unwrap().port().to_string());
    let ack = request("ACK", ua, me, "late-1", "caller", Some(&tag), 1, "", &answer);
    sock.send_to(ack.as_bytes(), ua).await.unwrap();
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_secs(3), rtp.recv_from(&mut buf)).await;
    assert!(got.is_ok(), "no RTP after the answer in the ACK");
}

#[tokio::test]
async fn a_required_100rel_gets_a_reliable_180_until_its_prack() {
    let (ua, sock, _c) = agent(Some(Duration::from_secs(30))).await;
    let me = sock.local_addr().unwrap();
    let inv = request(
        "INVITE",
        ua,
        me,
        "rel-1",
        "caller",
        None,
        1,
        "Require: 100rel\r\n",
        OFFER,
    );
    sock.send_to(inv.as_bytes(), ua).await.unwrap();
    let ringing = response(&sock, "INVITE", 180).await;
    assert!(
        ringing.get("Require").is_some_and(|r| r.contains("100rel")),
        "{:?}",
        ringing.headers
    );
    let rseq: u32 = ringing
        .get("RSeq")
        .and_then(|r| r.trim().parse().ok())
        .expect("RSeq");
    // Not PRACKed: retransmitted (T1).
    let again = response(&sock, "INVITE", 180).await;
    assert_eq!(again.get("RSeq").and_then(|r| r.trim().parse().ok()), Some(rseq));
    let tag = crate::sip::addr::NameAddr::parse(ringing.get("To").unwrap())
        .unwrap()
        .tag()
        .unwrap()
        .to_owned();
    // A PRACK for another RSeq: 481; the right one: 200, and the retransmissions stop.
    let wrong = request(
        "PRACK",
        ua,
        me,
        "rel-1",
        "caller",
        Some(&tag),
        2,
        &format!("RAck: {} 1 INVITE\r\n", rseq + 7),
        "",
    );
    sock.send_to(wrong.as_bytes(), ua).await.unwrap();
    assert_eq!(response(&sock, "PRACK", 481).await.code(), Some(481));
    let prack = request(
        "PRACK",
        ua,
        me,
        "rel-1",
        "caller",
        Some(&tag),
        3,
        &format!("RAck: {rseq} 1 INVITE\r\n"),
        "",
    );
    sock.send_to(prack.as_bytes(), ua).await.unwrap();
    assert_eq!(response(&sock, "PRACK", 200).await.code(), Some(200));
    while let Some(m) = recv(&sock, Duration::from_millis(1500)).await {
        assert_ne!(m.code(), Some(180), "the 180 was retransmitted after its PRACK");
    }
}

#[tokio::test]
async fn a_session_interval_below_90_s_is_refused_with_our_minimum() {
    let (ua, sock, _c) = agent(Some(Duration::ZERO)).await;
    let me = sock.local_addr().unwrap();
    let inv = request(
        "INVITE",
        ua,
        me,
        "se-1",
        "caller",
        None,
        1,
        "Session-Expires: 30\r\nSupported: timer\r\n",
        OFFER,
    );
    sock.send_to(inv.as_bytes(), ua).await.unwrap();
    let r = response(&sock, "INVITE", 422).await;
    assert_eq!(r.get("Min-SE"), Some("90"));
    // Asked properly: the 200 says who refreshes and requires the timer.
    let (_, ok) = call_up(
        ua,
        &sock,
        "se-2",
        "Session-Expires: 120;refresher=uac\r\nSupported: timer\r\n",
        OFFER,
    )
    .await;
    assert_eq!(ok.get("Session-Expires"), Some("120;refresher=uac"));
    assert!(ok.get("Require").is_some_and(|r| r.contains("timer")));
}

#[tokio::test]
async fn a_re_invite_without_sdp_gets_our_offer() {
    let (ua, sock, _c) = agent(Some(Duration::ZERO)).await;
    let me = sock.local_addr().unwrap();
    let (tag, _) = call_up(ua, &sock, "reinv-1", "", OFFER).await;
    sock.send_to(
        request("ACK", ua, me, "reinv-1", "caller", Some(&tag), 1, "", "").as_bytes(),
        ua,
    )
    .await
    .unwrap();
    let re = request("INVITE", ua, me, "reinv-1", "caller", Some(&tag), 2, "", "");
    sock.send_to(re.as_bytes(), ua).await.unwrap();
    let ok = response(&sock, "INVITE", 200).await;
    let offer = crate::call::sdp::Sdp::parse(&String::from_utf8_lossy(&ok.body)).expect("an offer");
    assert!(offer.audio().is_some_and(|a| a.port != 0));
}

/// A response from our UAS socket to `req` (the phone's request) with `code`, our To tag,
/// `extra` headers and `body` as SDP.
fn reply(req: &Message, code: u16, reason: &str, tag: &str, extra: &str, body: &str) -> String {
    let mut r = Message::response(req, code, reason);
    if !r.get("To").is_some_and(|t| t.contains("tag=")) {
        let to = format!("{};tag={tag}", r.get("To").unwrap_or(""));
        r.set("To", to);
    }
    for line in extra.split("\r\n").filter(|l| !l.is_empty()) {
        let (n, v) = line.split_once(':').unwrap();
        r.push(n.trim(), v.trim().to_owned());
    }
    if !body.is_empty() {
        r.with_body("application/sdp", body.as_bytes().to_vec());
    }
    String::from_utf8(r.to_bytes()).unwrap()
}

#[tokio::test]
async fn an_update_in_the_early_dialog_of_an_outgoing_call_is_answered() {
    // RFC 3311 §5.1: after a reliable 183 with SDP (and its PRACK), the callee may offer again
    // in an UPDATE before the call is answered; the phone answers it (200 with SDP).
    let (ua, sock, commands) = agent(None).await;
    let me = sock.local_addr().unwrap();
    commands
        .send(Command::Dial {
            to: format!("sip:1002@{me}"),
        })
        .await
        .unwrap();
    let invite = loop {
        let m = recv(&sock, Duration::from_secs(5)).await.expect("the INVITE");
        if m.method() == Some("INVITE") {
            break m;
        }
    };
    assert!(invite.get("Supported").is_some_and(|s| s.contains("100rel")));
    let early = OFFER.replace("9000", "9100");
    let contact = format!("Contact: <sip:1002@{me}>\r\n");
    let r183 = reply(
        &invite,
        183,
        "Session Progress",
        "callee",
        &format!("{contact}Require: 100rel\r\nRSeq: 1\r\n"),
        &early,
    );
    sock.send_to(r183.as_bytes(), ua).await.unwrap();
    let prack = loop {
        let m = recv(&sock, Duration::from_secs(5)).await.expect("the PRACK");
        if m.method() == Some("PRACK") {
            break m;
        }
    };
    assert_eq!(prack.get("RAck"), Some("1 1 INVITE"));
    sock.send_to(reply(&prack, 200, "OK", "callee", "", "").as_bytes(), ua)
        .await
        .unwrap();
    // The UPDATE, in the early dialog: From is the callee (our tag), To the phone's.
    let phone_tag = crate::sip::addr::NameAddr::parse(invite.get("From").unwrap())
        .unwrap()
        .tag()
        .unwrap()
        .to_owned();
    let call_id = invite.call_id().unwrap().to_owned();
    let offer = OFFER.replace("9000", "9200").replace("o=- 1 1", "o=- 1 2");
    let update = format!(
        "UPDATE sip:1001@{ua} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKupd1\r\n\
         From: <sip:1002@{me}>;tag=callee\r\nTo: <sip:1001@127.0.0.1>;tag={phone_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 UPDATE\r\n{contact}Max-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
        offer.len()
    );
    sock.send_to(update.as_bytes(), ua).await.unwrap();
    let ok = response(&sock, "UPDATE", 200).await;
    let answer = crate::call::sdp::Sdp::parse(&String::from_utf8_lossy(&ok.body)).expect("an answer");
    assert!(answer.audio().is_some_and(|a| a.port != 0), "{answer:?}");
}

#[tokio::test]
async fn a_call_that_rings_at_once_gets_its_180_first_and_no_100() {
    // RFC 3261 §17.2.1: 100 Trying is for a TU that will not answer within 200 ms; this one
    // rings at once, so the ring path carries one response, not two.
    let (ua, sock, _c) = agent(Some(Duration::from_secs(30))).await;
    let me = sock.local_addr().unwrap();
    sock.send_to(
        request("INVITE", ua, me, "ring-1", "caller", None, 1, "", OFFER).as_bytes(),
        ua,
    )
    .await
    .unwrap();
    let first = recv(&sock, Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(first.code(), Some(180), "{:?}", first.start);
    if let Some(m) = recv(&sock, Duration::from_millis(300)).await {
        assert_ne!(m.code(), Some(100), "a 100 Trying after the 180");
    }
}
