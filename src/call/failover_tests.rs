//! Registrar failover (RFC 3263 §4.3) against two scripted UDP registrars on 127.0.0.1: a 503
//! from the first moves the REGISTER to the second at once (no backoff), with a warning, and
//! `registered` names the second; when both refuse, the backoff applies and the first is tried
//! again after it. On the backup, each refresh goes to the first: refused, back to the backup
//! at once; answered 200, registered there.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::app::{Bus, Event, PhoneEvent};
use crate::config::Config;
use crate::sip::message::Message;

use super::{CallConfig, run};

/// A user agent registering over UDP with the addresses `targets`, in that order.
async fn agent(targets: &[SocketAddr]) -> crate::app::Subscription {
    let text = format!(
        "[account]\nuri = \"sip:1001@127.0.0.1\"\nregistrar = \"{}\"\ntransport = \"udp\"\n\
         listen = \"127.0.0.1:0\"\nexpires = 60\n[audio]\ninput = \"null\"\noutput = \"null\"\n",
        targets[0]
    );
    let config = Config::parse(&text, None).unwrap();
    let mut cfg = CallConfig::from_config(&config, None).await.unwrap();
    // As a DNS SRV lookup would have found them.
    cfg.stack.registrar_targets = targets.to_vec();
    let bus = Bus::new();
    let events = bus.subscribe_as("test");
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let _keep = tx;
        run(cfg, bus, rx).await
    });
    events
}

/// The next REGISTER at `s`, and where it came from.
async fn register_at(s: &UdpSocket, within: Duration) -> (Message, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = tokio::time::timeout(within, s.recv_from(&mut buf))
        .await
        .expect("a REGISTER in time")
        .unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(m.method(), Some("REGISTER"));
    (m, from)
}

async fn answer(s: &UdpSocket, req: &Message, to: SocketAddr, code: u16, reason: &str) {
    answer_for(s, req, to, code, reason, 60).await;
}

/// Answers with `Expires: expires` (the phone refreshes after half of it).
async fn answer_for(s: &UdpSocket, req: &Message, to: SocketAddr, code: u16, reason: &str, expires: u32) {
    let mut r = Message::response(req, code, reason);
    r.push("Expires", expires.to_string());
    s.send_to(&r.to_bytes(), to).await.unwrap();
}

/// The events until `pick` selects one, within `within`.
async fn until<T>(
    events: &mut crate::app::Subscription,
    within: Duration,
    pick: impl Fn(&PhoneEvent) -> Option<T>,
) -> (T, Vec<PhoneEvent>) {
    let end = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(end, events.recv()).await {
            Ok(Some(Event::Phone(p))) => {
                if let Some(t) = pick(&p) {
                    return (t, seen);
                }
                seen.push(p);
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the bus closed"),
            Err(_) => panic!("no such event within {within:?}: {seen:?}"),
        }
    }
}

#[tokio::test]
async fn a_503_moves_on_to_the_next_registrar_at_once() {
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let mut events = agent(&[aa, ba]).await;
    let (req, from) = register_at(&a, Duration::from_secs(5)).await;
    let refused = Instant::now();
    answer(&a, &req, from, 503, "Service Unavailable").await;
    let (req, from) = register_at(&b, Duration::from_secs(5)).await;
    assert!(
        refused.elapsed() < Duration::from_secs(1),
        "the next registrar at once, not after the backoff: {:?}",
        refused.elapsed()
    );
    answer(&b, &req, from, 200, "OK").await;
    let (server, seen) = until(&mut events, Duration::from_secs(5), |p| match p {
        PhoneEvent::Registered { server, .. } => Some(server.clone()),
        _ => None,
    })
    .await;
    assert_eq!(server, ba.to_string());
    let warned = seen
        .iter()
        .any(|p| matches!(p, PhoneEvent::Warning { message } if message.contains("failing over to")));
    assert!(warned, "{seen:?}");
}

#[tokio::test]
async fn when_every_registrar_refuses_the_backoff_applies_then_the_first_again() {
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut events = agent(&[a.local_addr().unwrap(), b.local_addr().unwrap()]).await;
    let (req, from) = register_at(&a, Duration::from_secs(5)).await;
    answer(&a, &req, from, 503, "Service Unavailable").await;
    let (req, from) = register_at(&b, Duration::from_secs(2)).await;
    let refused = Instant::now();
    answer(&b, &req, from, 503, "Service Unavailable").await;
    until(&mut events, Duration::from_secs(2), |p| {
        matches!(p, PhoneEvent::RegistrationFailed { .. }).then_some(())
    })
    .await;
    let (req, from) = register_at(&a, Duration::from_secs(5)).await;
    let waited = refused.elapsed();
    assert!(
        waited >= Duration::from_millis(1900),
        "all failed: the backoff (2 s) before the first again, not {waited:?}"
    );
    answer(&a, &req, from, 200, "OK").await;
}

#[tokio::test]
async fn on_the_backup_each_refresh_tries_the_first_and_goes_back_when_it_answers() {
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let mut events = agent(&[aa, ba]).await;
    let (req, from) = register_at(&a, Duration::from_secs(5)).await;
    answer(&a, &req, from, 503, "Service Unavailable").await;
    let (req, from) = register_at(&b, Duration::from_secs(2)).await;
    // Granted 4 s: refreshed after 2 s.
    answer_for(&b, &req, from, 200, "OK", 4).await;
    // The refresh goes to the first, which still refuses: back to the backup at once.
    let (req, from) = register_at(&a, Duration::from_secs(4)).await;
    let refused = Instant::now();
    answer(&a, &req, from, 503, "Service Unavailable").await;
    let (req, from) = register_at(&b, Duration::from_secs(2)).await;
    assert!(
        refused.elapsed() < Duration::from_secs(1),
        "{:?}",
        refused.elapsed()
    );
    answer_for(&b, &req, from, 200, "OK", 4).await;
    // The next refresh: the first answers, the phone is registered there.
    let (req, from) = register_at(&a, Duration::from_secs(4)).await;
    answer(&a, &req, from, 200, "OK").await;
    let mut servers = Vec::new();
    while servers.last() != Some(&aa.to_string()) {
        let (server, _) = until(&mut events, Duration::from_secs(3), |p| match p {
            PhoneEvent::Registered { server, .. } => Some(server.clone()),
            _ => None,
        })
        .await;
        servers.push(server);
    }
    assert!(servers.contains(&ba.to_string()), "{servers:?}");
    // Registered on the first, the refresh stays there (60 s): nothing more at the backup.
    let mut buf = [0u8; 2048];
    let quiet = tokio::time::timeout(Duration::from_secs(3), b.recv_from(&mut buf)).await;
    assert!(quiet.is_err(), "nothing more at the backup");
}
