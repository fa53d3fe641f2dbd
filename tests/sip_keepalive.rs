//! NAT keep-alives (RFC 5626 §3.5.1, §4.4.1; issue 20), `[account] keepalive_seconds = 1`:
//!
//! - over UDP, a registrar that is a socket of the test sees a double-CRLF datagram every
//!   interval (80–100 % of it) while the phone is registered, none with keep-alives off, and
//!   with an outbound proxy the proxy gets them;
//! - over UDP against Kamailio (which ignores them) nothing breaks: still registered, a call
//!   through Kamailio is answered;
//! - over TCP through a relay of the test in front of Kamailio: Kamailio's pongs keep the flow
//!   (never declared dead while it answers); then the relay goes silent on that connection
//!   without closing it (a NAT box or a firewall that forgot the flow): the phone says the flow
//!   is dead within one interval of its first unanswered ping and registers again on a new
//!   connection. The figures are printed;
//! - over TLS to Kamailio, its pongs keep the flow too (pinged every second, never declared
//!   dead).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::TestCa;
use common::peers::{Kamailio, Phone, account_toml, secs, sipp};

fn audio() -> &'static str {
    "\n[audio]\ninput = \"null\"\noutput = \"null\"\n"
}

/// A phone config for `user` at `registrar` over `transport`, with `keepalive_seconds`.
fn config(user: &str, registrar: &str, transport: &str, keepalive: u32) -> String {
    format!(
        "{}keepalive_seconds = {keepalive}\n{}",
        account_toml(user, &format!("pw{user}"), registrar, transport, 3600),
        audio()
    )
}

/// A registrar that is a UDP socket of the test: answers every REGISTER 200 (expires 3600)
/// and hands everything else it receives to the test, stamped.
fn udp_registrar() -> (String, std::sync::mpsc::Receiver<(Instant, Vec<u8>)>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let data = buf[..n].to_vec();
            if data.starts_with(b"REGISTER ") {
                let text = String::from_utf8_lossy(&data);
                let mut resp = String::from("SIP/2.0 200 OK\r\n");
                for line in text.split("\r\n") {
                    let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
                    match name.as_str() {
                        "via" | "from" | "call-id" | "cseq" => resp.push_str(&format!("{line}\r\n")),
                        "to" => resp.push_str(&format!("{line};tag=reg\r\n")),
                        "contact" => resp.push_str(&format!("{line};expires=3600\r\n")),
                        _ => {}
                    }
                }
                resp.push_str("Content-Length: 0\r\n\r\n");
                let _ = sock.send_to(resp.as_bytes(), from);
            } else if tx.send((Instant::now(), data)).is_err() {
                break;
            }
        }
    });
    (addr, rx)
}

/// Everything `rx` gets within `window`.
fn collect(rx: &std::sync::mpsc::Receiver<(Instant, Vec<u8>)>, window: Duration) -> Vec<(Instant, Vec<u8>)> {
    let end = Instant::now() + window;
    let mut out = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(x) => out.push(x),
            Err(_) => break,
        }
    }
    out
}

#[test]
fn udp_pings_reach_the_registrar_or_proxy_every_interval_and_none_when_off() {
    let (reg, rx) = udp_registrar();
    let mut p = Phone::start(&config("1001", &reg, "udp", 1), &[]);
    p.expect("registered", secs(5));
    let got = collect(&rx, Duration::from_millis(4500));
    assert!(
        got.iter().all(|(_, d)| d == b"\r\n\r\n"),
        "only double-CRLF pings: {:?}",
        got.iter()
            .map(|(_, d)| String::from_utf8_lossy(d))
            .collect::<Vec<_>>()
    );
    let gaps: Vec<f64> = got.windows(2).map(|w| (w[1].0 - w[0].0).as_secs_f64()).collect();
    eprintln!("UDP keep-alives in 4.5 s: {}, gaps {gaps:.2?} s", got.len());
    assert!(got.len() >= 4, "a ping every 0.8-1 s: {} in 4.5 s", got.len());
    assert!(
        gaps.iter().all(|g| (0.7..=1.3).contains(g)),
        "80-100 % of the interval apart: {gaps:?}"
    );
    drop(p);

    let (reg, rx) = udp_registrar();
    let mut p = Phone::start(&config("1001", &reg, "udp", 0), &[]);
    p.expect("registered", secs(5));
    let got = collect(&rx, secs(3));
    assert!(
        got.is_empty(),
        "keepalive_seconds = 0: no pings, got {} datagrams",
        got.len()
    );
    drop(p);

    // With an outbound proxy, the pings go to the proxy (the next hop), not the registrar.
    let (proxy, rx) = udp_registrar();
    let cfg = config("1001", "127.0.0.1:9", "udp", 1).replace(
        "keepalive_seconds",
        &format!("outbound_proxy = \"sip:{proxy}\"\nkeepalive_seconds"),
    );
    let mut p = Phone::start(&cfg, &[]);
    p.expect("registered", secs(5));
    let got = collect(&rx, Duration::from_millis(2500));
    assert!(
        got.len() >= 2 && got.iter().all(|(_, d)| d == b"\r\n\r\n"),
        "pings at the outbound proxy: {} datagrams",
        got.len()
    );
}

#[test]
fn udp_keepalives_to_kamailio_break_nothing() {
    let k = Kamailio::start();
    let mut p = Phone::start(&config("1002", &k.addr(), "udp", 1), &["--auto-answer"]);
    p.expect("registered", secs(10));
    let events = p.drain(secs(3));
    assert!(
        events.iter().all(|e| !matches!(
            e["event"].as_str(),
            Some("registration_failed" | "warning" | "error")
        )),
        "nothing went wrong while pinging: {events:?}"
    );
    let r = sipp("uac_auth_call_bye.xml", &[&k.addr(), "-s", "1002"]);
    r.assert_ok();
    p.expect("answered", secs(5));
    let log = k.log();
    assert!(
        !log.lines().any(|l| l.contains("ERROR")),
        "Kamailio complained about something:\n{log}"
    );
}

/// A TCP relay of the test in front of `to`: each connection accepted is relayed to a new one
/// to `to`, until [`Relay::silence_existing`] makes the connections open so far swallow
/// everything both ways (open, silent: a dead flow the phone cannot see closed).
struct Relay {
    addr: String,
    flows: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    accepted: Arc<Mutex<usize>>,
}

impl Relay {
    fn start(to: String) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let flows: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let accepted: Arc<Mutex<usize>> = Arc::default();
        let (f, a) = (flows.clone(), accepted.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { break };
                let Ok(up) = TcpStream::connect(&to) else { continue };
                let silent = Arc::new(AtomicBool::new(false));
                f.lock().unwrap().push(silent.clone());
                *a.lock().unwrap() += 1;
                for (mut from, mut into) in [(c.try_clone().unwrap(), up.try_clone().unwrap()), (up, c)] {
                    let silent = silent.clone();
                    std::thread::spawn(move || {
                        let mut b = [0u8; 16384];
                        while let Ok(n) = from.read(&mut b) {
                            if n == 0 {
                                break;
                            }
                            if !silent.load(Ordering::SeqCst) && into.write_all(&b[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        });
        Relay {
            addr,
            flows,
            accepted,
        }
    }

    fn silence_existing(&self) {
        for f in self.flows.lock().unwrap().iter() {
            f.store(true, Ordering::SeqCst);
        }
    }

    fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap()
    }
}

#[test]
fn a_silent_tcp_flow_is_noticed_within_one_interval_and_the_phone_registers_again() {
    let k = Kamailio::start();
    let relay = Relay::start(k.addr());
    let mut p = Phone::start(&config("1002", &relay.addr, "tcp", 1), &["--auto-answer"]);
    p.expect("registered", secs(10));
    // Kamailio answers the pings (CRLF pongs): the flow lives, the phone stays registered.
    let quiet = p.drain(secs(4));
    assert!(
        quiet.iter().all(|e| !matches!(
            e["event"].as_str(),
            Some("registration_failed" | "warning" | "registered")
        )),
        "a live flow is left alone: {quiet:?}"
    );
    assert_eq!(relay.accepted(), 1, "one connection so far");
    let saved = k.saved("1002");
    let silenced = Instant::now();
    relay.silence_existing();
    let warning = p.expect_where("warning", secs(5), |e| {
        e["message"].as_str().is_some_and(|m| m.contains("is dead"))
    });
    let noticed = silenced.elapsed();
    p.expect("registered", secs(5));
    let registered = silenced.elapsed();
    eprintln!(
        "TCP flow silenced: dead after {:.2} s ({}), registered again after {:.2} s",
        noticed.as_secs_f64(),
        warning["message"],
        registered.as_secs_f64()
    );
    // The first ping after the silence goes within one interval (1 s), its pong is awaited at
    // most one interval: dead within 2 s of the silence, i.e. one interval after that ping.
    assert!(
        noticed <= Duration::from_millis(2300),
        "noticed after {noticed:?}"
    );
    assert!(
        registered <= noticed + secs(2),
        "registered again after {registered:?}"
    );
    assert_eq!(relay.accepted(), 2, "registered again on a new connection");
    k.wait_saved("1002", saved + 1, secs(5));
    // The new flow is live: calls reach the phone over it.
    let r = sipp("uac_auth_call_bye.xml", &[&k.addr(), "-s", "1002"]);
    r.assert_ok();
    let after: Vec<Value> = p.drain(Duration::from_millis(1500));
    assert!(
        !after.iter().any(|e| e["event"] == "registration_failed"),
        "{after:?}"
    );
}

#[test]
fn kamailio_answers_pings_over_tls_and_the_flow_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("ctiphone keepalive CA");
    let (cert, key) = ca.issue(&["kamailio.test"], false);
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (cert, key, ca_path) = (
        write("cert.pem", &cert),
        write("key.pem", &key),
        write("ca.pem", &ca.pem),
    );
    let k = Kamailio::start_tls(&cert, &key, "TLSv1.2+");
    let cfg = format!(
        "[account]\nuri = \"sip:1002@kamailio.test\"\nusername = \"1002\"\npassword = \"pw1002\"\n\
         registrar = \"127.0.0.1:{}\"\ntransport = \"tls\"\nlisten = \"127.0.0.1:0\"\nexpires = 60\n\
         tls_ca = \"{}\"\nkeepalive_seconds = 1\n{}",
        k.tls_port,
        ca_path.display(),
        audio()
    );
    let mut p = Phone::start(&cfg, &[]);
    p.expect("registered", secs(10));
    let saved = k.saved("1002");
    let events = p.drain(secs(5));
    assert!(
        events.iter().all(|e| !matches!(
            e["event"].as_str(),
            Some("registration_failed" | "warning" | "registered")
        )),
        "five pings answered over TLS, the flow kept: {events:?}"
    );
    assert_eq!(k.saved("1002"), saved, "no new registration");
}
