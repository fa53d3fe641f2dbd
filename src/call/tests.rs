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
    let mut events = bus.subscribe();
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
