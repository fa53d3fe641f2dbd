//! The user agent recovering from a lost TCP connection to its registrar, against a scripted
//! registrar on 127.0.0.1: lost while registered, it says so and registers again at once over a
//! new connection; lost before the answer, a failed registration retried after the backoff.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use std::net::SocketAddr;

use tokio::sync::mpsc;

use crate::app::{Bus, Event, PhoneEvent};
use crate::config::Config;
use crate::sip::addr::{NameAddr, Uri};
use crate::sip::message::Message;

use super::{CallConfig, run};

/// A user agent registering over TCP with `registrar`; its bus.
async fn agent(registrar: SocketAddr) -> crate::app::Subscription {
    let text = format!(
        "[account]\nuri = \"sip:1001@127.0.0.1\"\nregistrar = \"{registrar}\"\ntransport = \"tcp\"\n\
         listen = \"127.0.0.1:0\"\nexpires = 60\n[audio]\ninput = \"null\"\noutput = \"null\"\n"
    );
    let config = Config::parse(&text, None).unwrap();
    let cfg = CallConfig::from_config(&config, None).await.unwrap();
    let bus = Bus::new();
    let events = bus.subscribe_as("test");
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let _keep = tx;
        run(cfg, bus, rx).await
    });
    events
}

/// The next REGISTER on `s` (whole: these have no body).
async fn read_register(s: &mut TcpStream) -> Message {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let m = Message::parse(&buf[..end + 4]).unwrap();
            assert_eq!(m.method(), Some("REGISTER"));
            return m;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("a REGISTER within 5 s")
            .unwrap();
        assert!(n > 0, "the phone closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn ok(s: &mut TcpStream, req: &Message) {
    let mut r = Message::response(req, 200, "OK");
    r.push("Expires", "60");
    s.write_all(&r.to_bytes()).await.unwrap();
}

/// The port of a REGISTER's Contact.
fn contact_port(req: &Message) -> Option<u16> {
    let c = NameAddr::parse(req.get("Contact")?).ok()?;
    Uri::parse(&c.uri).ok()?.port
}

/// Registers the phone as Kamailio does over TCP: the 200's Via says where the REGISTER came
/// from (`rport`: the connection's port), so the phone registers that address next. Returns
/// the first REGISTER's Contact port.
async fn register_like_kamailio(s: &mut TcpStream) -> u16 {
    let seen = s.peer_addr().unwrap();
    let req = read_register(s).await;
    let first = contact_port(&req).expect("a Contact with a port");
    let mut r = Message::response(&req, 200, "OK");
    if let Some(via) = r.headers.iter_mut().find(|(n, _)| n == "Via") {
        via.1 = via.1.replace(
            ";rport",
            &format!(";received={};rport={}", seen.ip(), seen.port()),
        );
    }
    r.push("Expires", "60");
    s.write_all(&r.to_bytes()).await.unwrap();
    let again = read_register(s).await;
    assert_eq!(
        contact_port(&again),
        Some(seen.port()),
        "the address the registrar saw"
    );
    ok(s, &again).await;
    first
}

/// The next phone event that `pick` selects, within `within`.
async fn next<T>(
    events: &mut crate::app::Subscription,
    within: Duration,
    pick: impl Fn(&PhoneEvent) -> Option<T>,
) -> T {
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, events.recv()).await {
            Ok(Some(Event::Phone(p))) => {
                if let Some(t) = pick(&p) {
                    return t;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the bus closed"),
            Err(_) => panic!("no such event within {within:?}"),
        }
    }
}

async fn accept(l: &TcpListener) -> TcpStream {
    tokio::time::timeout(Duration::from_secs(5), l.accept())
        .await
        .expect("a connection within 5 s")
        .unwrap()
        .0
}

/// The registrar closes the connection (as one that stops does).
fn reset(s: TcpStream) {
    drop(s);
}

#[tokio::test]
async fn after_a_lost_connection_the_phone_registers_the_new_connections_address() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut events = agent(l.local_addr().unwrap()).await;
    let listen = next(&mut events, Duration::from_secs(5), |p| match p {
        PhoneEvent::Ready { listen, .. } => listen.parse::<SocketAddr>().ok(),
        _ => None,
    })
    .await;
    let mut s = accept(&l).await;
    assert_eq!(register_like_kamailio(&mut s).await, listen.port());
    next(&mut events, Duration::from_secs(5), |p| {
        matches!(p, PhoneEvent::Registered { .. }).then_some(())
    })
    .await;
    reset(s);
    // The old connection's port is gone with it: the phone starts again from its own address
    // (registering the old one, the registrar could not reach it).
    let mut s = accept(&l).await;
    assert_eq!(register_like_kamailio(&mut s).await, listen.port());
    next(&mut events, Duration::from_secs(5), |p| {
        matches!(p, PhoneEvent::Registered { .. }).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_lost_registrar_connection_is_said_and_registered_again_at_once() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut events = agent(l.local_addr().unwrap()).await;
    let mut s = accept(&l).await;
    let req = read_register(&mut s).await;
    ok(&mut s, &req).await;
    next(&mut events, Duration::from_secs(5), |p| {
        matches!(p, PhoneEvent::Registered { .. }).then_some(())
    })
    .await;

    // The registrar restarts: the connection closes.
    let lost = Instant::now();
    reset(s);
    let warning = next(&mut events, Duration::from_secs(5), |p| match p {
        PhoneEvent::Warning { message } => Some(message.clone()),
        _ => None,
    })
    .await;
    assert!(
        warning.contains("connection to the registrar") && warning.contains("registering again"),
        "{warning}"
    );
    let mut s = accept(&l).await;
    let again = read_register(&mut s).await;
    assert!(
        lost.elapsed() < Duration::from_secs(1),
        "registered again after {:?}",
        lost.elapsed()
    );
    assert_eq!(again.call_id(), req.call_id(), "the same registration, refreshed");
    ok(&mut s, &again).await;
    next(&mut events, Duration::from_secs(5), |p| {
        matches!(p, PhoneEvent::Registered { .. }).then_some(())
    })
    .await;

    // Lost again before the registrar answered: a failure, retried after the backoff only.
    reset(s);
    let mut s = accept(&l).await;
    let _unanswered = read_register(&mut s).await;
    let failed_at = Instant::now();
    reset(s);
    let reason = next(&mut events, Duration::from_secs(5), |p| match p {
        PhoneEvent::RegistrationFailed { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("was lost"), "{reason}");
    let mut s = accept(&l).await;
    let retry = read_register(&mut s).await;
    let waited = failed_at.elapsed();
    assert!(
        waited >= Duration::from_millis(1800),
        "retried after {waited:?}: no backoff"
    );
    ok(&mut s, &retry).await;
    next(&mut events, Duration::from_secs(5), |p| {
        matches!(p, PhoneEvent::Registered { .. }).then_some(())
    })
    .await;
}
