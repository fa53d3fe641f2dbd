//! STUN on the SIP socket against hostile input (`[account] stun_server`, a scripted server
//! and registrar on 127.0.0.1): while the phone's Binding request is out, the right answer
//! sent by a stranger, an answer with another transaction's ID and one with a bad FINGERPRINT
//! teach it nothing, nor are they taken for SIP; the server's genuine answer goes into the
//! Contact of the first REGISTER and the `registered` event. A Binding success from anyone
//! after that (no request out) changes nothing: no new REGISTER.

use std::net::SocketAddr;
use std::time::Duration;

use stun::fingerprint::FINGERPRINT;
use stun::message::{BINDING_SUCCESS, Message, Setter};
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::app::{Bus, Event, PhoneEvent};
use crate::config::Config;
use crate::sip::message::Message as Sip;

use super::{CallConfig, run};

/// A Binding success answering the request `req` (or with a fresh ID), saying `mapped`,
/// with a FINGERPRINT.
fn answer(req: Option<&[u8]>, mapped: SocketAddr) -> Vec<u8> {
    let mut m = Message::new();
    m.set_type(BINDING_SUCCESS);
    match req {
        Some(r) => {
            let mut q = Message::new();
            q.unmarshal_binary(r).unwrap();
            m.transaction_id = q.transaction_id;
        }
        None => {
            let _ = m.new_transaction_id();
        }
    }
    m.write_header(); // the magic cookie too: FINGERPRINT covers it
    XorMappedAddress {
        ip: mapped.ip(),
        port: mapped.port(),
    }
    .add_to(&mut m)
    .unwrap();
    FINGERPRINT.add_to(&mut m).unwrap();
    m.encode();
    m.raw
}

async fn recv(s: &UdpSocket, within: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65536];
    let (n, from) = tokio::time::timeout(within, s.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some((buf[..n].to_vec(), from))
}

#[tokio::test]
async fn stun_answers_from_strangers_or_for_other_transactions_or_forged_are_not_a_mapping() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let registrar = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let text = format!(
        "[account]\nuri = \"sip:1001@127.0.0.1\"\nregistrar = \"{}\"\ntransport = \"udp\"\n\
         listen = \"127.0.0.1:0\"\nexpires = 60\nstun_server = \"{}\"\nkeepalive_seconds = 0\n\
         [audio]\ninput = \"null\"\noutput = \"null\"\n",
        registrar.local_addr().unwrap(),
        server.local_addr().unwrap()
    );
    let config = Config::parse(&text, None).unwrap();
    let cfg = CallConfig::from_config(&config, None).await.unwrap();
    let bus = Bus::new();
    let mut events = bus.subscribe_as("test");
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let _keep = tx;
        run(cfg, bus, rx).await
    });
    let (req, phone) = recv(&server, Duration::from_secs(5))
        .await
        .expect("a Binding request");
    assert!(crate::sip::stun::looks_like_stun(&req));
    let genuine: SocketAddr = "203.0.113.5:40000".parse().unwrap();
    // The right answer, from a stranger.
    let from_stranger = answer(Some(&req), "198.51.100.66:1111".parse().unwrap());
    stranger.send_to(&from_stranger, phone).await.unwrap();
    // Another transaction's answer, from the server.
    let other = answer(None, "198.51.100.77:2222".parse().unwrap());
    server.send_to(&other, phone).await.unwrap();
    // The right ID with its FINGERPRINT broken.
    let mut forged = answer(Some(&req), "198.51.100.88:3333".parse().unwrap());
    let last = forged.len() - 1;
    forged[last] ^= 0xFF;
    server.send_to(&forged, phone).await.unwrap();
    // Truncated.
    let right = answer(Some(&req), genuine);
    server.send_to(&right[..right.len() - 6], phone).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.send_to(&right, phone).await.unwrap();
    let (reg, from) = recv(&registrar, Duration::from_secs(5))
        .await
        .expect("a REGISTER");
    let reg = Sip::parse(&reg).expect("SIP");
    assert_eq!(reg.method(), Some("REGISTER"));
    let contact = reg.get("Contact").unwrap_or_default().to_owned();
    assert!(contact.contains("@203.0.113.5:40000"), "{contact}");
    // Nothing of the noise was taken for SIP: nothing was answered to its senders.
    assert!(recv(&stranger, Duration::from_millis(200)).await.is_none());
    let mut ok = Sip::response(&reg, 200, "OK");
    ok.push("Expires", "60".to_string());
    registrar.send_to(&ok.to_bytes(), from).await.unwrap();
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    let (stun, contact) = loop {
        match tokio::time::timeout_at(end, events.recv()).await {
            Ok(Some(Event::Phone(PhoneEvent::Registered { stun, contact, .. }))) => break (stun, contact),
            Ok(Some(_)) => {}
            other => panic!("no registered event: {other:?}"),
        }
    };
    assert_eq!(
        (stun.as_str(), contact.as_str()),
        ("203.0.113.5:40000", "203.0.113.5:40000")
    );
    // No request out now: a Binding success from the server or a stranger is stray.
    server
        .send_to(&answer(None, "198.51.100.99:4444".parse().unwrap()), phone)
        .await
        .unwrap();
    stranger
        .send_to(&answer(Some(&req), "198.51.100.99:4444".parse().unwrap()), phone)
        .await
        .unwrap();
    assert!(
        recv(&registrar, Duration::from_millis(1500)).await.is_none(),
        "no new REGISTER: the mapping did not move"
    );
}
