//! STUN behind NAT (issue 20, RFC 8489, `[account] stun_server`) against a real STUN server:
//! coturn's `turnserver` (STUN only) and Kamailio in "pbx", `ctiphone headless` in "agent",
//! the router between them (tests/common/netns.rs). The router maps ports, not only the
//! address: the agent's SIP port 5060 leaves as 10.77.2.1:15060 and its RTP ports (the
//! agent's ephemeral range narrowed to 30000–30063) as port + 10000, to every destination
//! alike (an endpoint-independent mapping, RFC 4787, the case STUN is for). The Kamailio
//! config does not rewrite Contacts (no fix_nated_contact): what the phone registers is
//! what Kamailio calls.
//!
//! Three variants, in parallel, in namespaces of their own:
//! - `stun_server` = coturn: the `registered` event reports the STUN-learned 10.77.2.1:15060
//!   as the mapping and the Contact; every REGISTER Kamailio received carries it (none the
//!   agent's inside address); a call from SIPp through Kamailio reaches the agent, whose SDP
//!   names 10.77.2.1 and its RTP port as mapped (40000–40063), and the agent's 440 Hz tone
//!   arrives from exactly that address at the pbx side (decoded, checked by frequency), while
//!   a stranger beside the agent sprays forged Binding successes at its SIP and RTP ports
//!   (ignored: no new REGISTER, nothing sent back, no latch).
//! - `stun_server` = a port where nothing listens: registered all the same within a few
//!   seconds with the address the registrar saw (received/rport), a warning about STUN; a
//!   call still reaches the agent and its media arrives.
//! - `public_address` and `stun_server` both set: `public_address` names the address of the
//!   Contact (the port is the mapped one), the STUN mapping is still reported.
//!
//! Needs root, `ip`, `nft`, kamailio, sipp and turnserver (Debian `coturn`): fails loudly
//! without them.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::netns::{AGENT_IP, Net, PBX_IP, ROUTER_OUT, run};
use common::peers::{Coturn, Kamailio, Phone, secs, udp_socket_in_netns};
use serde_json::Value;

/// Where the router maps the agent's SIP port 5060.
const SIP_MAPPED: u16 = 15060;
/// The agent's ephemeral ports (its RTP/RTCP), mapped to port + [`RTP_SHIFT`].
const RTP_FIRST: u16 = 30000;
const RTP_LAST: u16 = 30063;
const RTP_SHIFT: u16 = 10000;
/// coturn's port, and one where nothing listens.
const STUN_PORT: u16 = 3478;
const DEAD_STUN_PORT: u16 = 3490;
/// The pbx-side media port of the SIPp scenario `uac_auth_call_media.xml`.
const PEER_RTP: u16 = 17000;
const TONE: f64 = 440.0;

/// The router's fixed port mapping of the agent's UDP ports (the rest masqueraded as usual).
fn nat_rules() -> String {
    let mut map = vec![format!("5060 : {ROUTER_OUT} . {SIP_MAPPED}")];
    for p in RTP_FIRST..=RTP_LAST {
        map.push(format!("{p} : {ROUTER_OUT} . {}", p + RTP_SHIFT));
    }
    format!(
        "oifname \"rp\" ip saddr {AGENT_IP} udp sport {{ 5060, {RTP_FIRST}-{RTP_LAST} }} \
         snat ip to udp sport map {{ {} }}",
        map.join(", ")
    )
}

/// The namespaces, the router's port mapping, the agent's narrowed ephemeral range.
fn build(tag: &str) -> Net {
    let net = Net::build_with(tag, &nat_rules());
    run(
        Some(&net.agent),
        &[
            "sysctl",
            "-w",
            &format!("net.ipv4.ip_local_port_range={RTP_FIRST} {RTP_LAST}"),
        ],
    );
    net
}

/// A 440 Hz tone, 2 s at 8 kHz (the phone loops its input file).
fn tone_wav(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("tone.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..16000 {
        let t = f64::from(i) / 8000.0;
        w.write_sample((8000.0 * (2.0 * std::f64::consts::PI * TONE * t).sin()) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    path
}

fn phone_config(extra: &str, mic: &std::path::Path) -> String {
    format!(
        "[account]\nuri = \"sip:1002@{PBX_IP}\"\nusername = \"1002\"\npassword = \"pw1002\"\n\
         registrar = \"{PBX_IP}:5060\"\ntransport = \"udp\"\nlisten = \"{AGENT_IP}:5060\"\n\
         expires = 3600\n{extra}\n\
         [audio]\ninput = \"file:{}\"\noutput = \"null\"\n",
        mic.display()
    )
}

/// Datagrams as received: (from, RTP payload).
type Received = Vec<(SocketAddr, Vec<u8>)>;

/// What the pbx side's media socket received.
struct MediaSink {
    got: Arc<Mutex<Received>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MediaSink {
    fn bind(ns: &str) -> MediaSink {
        let sock: UdpSocket = udp_socket_in_netns(ns, format!("{PBX_IP}:{PEER_RTP}").parse().unwrap());
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf)
                    && n > 12
                {
                    g.lock().unwrap().push((from, buf[12..n].to_vec()));
                }
            }
        });
        MediaSink {
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn packets(&self) -> Received {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for MediaSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A socket in the agent's namespace (outside its RTP range) sending, every 20 ms, a forged
/// Binding success (random transaction ID, XOR-MAPPED-ADDRESS 10.77.1.99:9) to the agent's
/// SIP port and each port of its RTP range, until stopped; it counts what comes back.
struct Stranger {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, usize)>>,
}

impl Stranger {
    fn spray(ns: &str) -> Stranger {
        let sock = udp_socket_in_netns(ns, format!("{AGENT_IP}:20000").parse().unwrap());
        sock.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut sent, mut answered) = (0, 0);
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                for port in std::iter::once(5060).chain(RTP_FIRST..=RTP_LAST) {
                    let mut m = vec![0x01, 0x01, 0x00, 0x0C, 0x21, 0x12, 0xA4, 0x42];
                    m.extend((0..12).map(|_| rand::random::<u8>()));
                    // XOR-MAPPED-ADDRESS, IPv4, port 9 ^ 0x2112, 10.77.1.99 ^ the cookie.
                    let ip = u32::from(std::net::Ipv4Addr::new(10, 77, 1, 99)) ^ 0x2112_A442;
                    m.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
                    m.extend_from_slice(&(9u16 ^ 0x2112).to_be_bytes());
                    m.extend_from_slice(&ip.to_be_bytes());
                    if sock.send_to(&m, (AGENT_IP, port)).is_ok() {
                        sent += 1;
                    }
                }
                while sock.recv_from(&mut buf).is_ok() {
                    answered += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (sent, answered)
        });
        Stranger {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it: (datagrams sent, datagrams that came back).
    fn stop(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("stranger thread"))
            .unwrap_or_default()
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// SIPp in "pbx" calls 1002 through Kamailio (as 1001), its media at [`PEER_RTP`]; the phone
/// answers by itself. The agent's SDP (from its 200 OK) and the events of the call.
fn call_agent(net: &Net, p: &mut Phone) -> (SocketAddr, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let mut sipp = net.sipp_call("uac_auth_call_media.xml", 17100, dir.path());
    let mut child = sipp.spawn().expect("spawning sipp");
    let events = p.drain(secs(12));
    let status = child.wait().expect("sipp");
    let log = std::fs::read_to_string(dir.path().join("messages.log")).unwrap_or_default();
    assert!(
        events.iter().any(|e| e["event"] == "incoming"),
        "the call reaches the agent: {events:?}\n{log}"
    );
    assert!(status.success(), "the call completes (sipp {status}):\n{log}");
    assert!(
        events.iter().any(|e| e["event"] == "ended"),
        "the call ended: {events:?}"
    );
    // The agent's answer: the 200 OK to the INVITE, with its SDP.
    let answer = log
        .split("\n----")
        .filter_map(|m| m.find("\nSIP/2.0 200").map(|i| &m[i + 1..]))
        .find(|m| m.contains("m=audio"))
        .unwrap_or_else(|| panic!("no 200 OK with SDP in SIPp's trace:\n{log}"));
    let sdp = common::rtp::sdp_audio(answer).unwrap_or_else(|| panic!("no audio in:\n{answer}"));
    (sdp, events)
}

/// The `registered` event, and how long after the start it came.
fn registered(p: &mut Phone, start: Instant) -> (Value, Duration) {
    let ev = p.expect("registered", secs(10));
    (ev, start.elapsed())
}

fn with_stun() {
    let net = build("stun");
    let k = Kamailio::start_in_netns(&net.pbx, PBX_IP.parse().unwrap());
    let stun = Coturn::start_in_netns(&net.pbx, format!("{PBX_IP}:{STUN_PORT}").parse().unwrap());
    let media = MediaSink::bind(&net.pbx);
    let dir = tempfile::tempdir().unwrap();
    let cfg = phone_config(
        &format!("stun_server = \"stun:{PBX_IP}:{STUN_PORT}\""),
        &tone_wav(dir.path()),
    );
    let wrapper = ["ip", "netns", "exec", net.agent.as_str()];
    let start = Instant::now();
    let mut p = Phone::start_wrapped(&cfg, &["--auto-answer"], &wrapper);
    let (ev, took) = registered(&mut p, start);
    eprintln!("[stun] registered after {took:?}: {ev}");
    let mapped = format!("{ROUTER_OUT}:{SIP_MAPPED}");
    assert_eq!(ev["stun"], mapped.as_str(), "the STUN-learned mapping: {ev}");
    assert_eq!(ev["contact"], mapped.as_str(), "the Contact registered: {ev}");
    // Every REGISTER carried the mapped address from the first one on: none the agent's own
    // (no received/rport round needed), and Kamailio saved it as it was.
    let regs = k.request_lines("REGISTER");
    assert!(!regs.is_empty(), "Kamailio saw REGISTERs:\n{}", k.log());
    for r in &regs {
        assert!(
            r.contains(&format!("contact=<sip:1002@{mapped}")) && !r.contains(AGENT_IP),
            "REGISTER with the mapped Contact: {r}"
        );
    }
    // Kamailio logs the binding after its 200 went out: wait for the line.
    k.wait_saved("1002", 1, secs(5));
    let saved = k.log();
    assert!(
        saved.contains(&format!(
            "CTIPHONE-SAVED 1002 expires=3600 contact=<sip:1002@{mapped}"
        )),
        "Kamailio saved the mapped Contact:\n{saved}"
    );
    assert!(
        !p.seen().iter().any(|e| e["event"] == "warning"),
        "no warning with a working STUN server: {:?}",
        p.seen()
    );
    // A stranger next to the agent sprays forged Binding successes (claiming another mapping)
    // at its SIP port and every port of its RTP range while the call is set up and runs:
    // they must not move the Contact, be taken as media, or be latched onto.
    let registers = k.requests("REGISTER");
    let stranger = Stranger::spray(&net.agent);
    let (sdp, events) = call_agent(&net, &mut p);
    let (sent, answered) = stranger.stop();
    eprintln!("[stun] the agent's SDP: {sdp}; the stranger sent {sent} STUN datagrams");
    assert!(sent > 1000, "the stranger sprayed: {sent}");
    assert_eq!(
        answered, 0,
        "nothing came back to the stranger (no latch, no SIP answer)"
    );
    assert_eq!(
        k.requests("REGISTER"),
        registers,
        "no new REGISTER: the forged mappings were ignored"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "registered"),
        "no new registration: {events:?}"
    );
    assert_eq!(sdp.ip().to_string(), ROUTER_OUT, "c= is the mapped address");
    let port = sdp.port();
    assert!(
        (RTP_FIRST + RTP_SHIFT..=RTP_LAST + RTP_SHIFT).contains(&port) && port % 2 == 0,
        "m= is the RTP port as mapped by the router (STUN-learned), not the agent's own: {port}"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "warning"),
        "no STUN warning for the call: {events:?}"
    );
    // The media came through the NAT from exactly the address the SDP announced, and it is
    // the agent's tone.
    let got = media.packets();
    let from_sdp: Vec<&Vec<u8>> = got.iter().filter(|(f, _)| *f == sdp).map(|(_, b)| b).collect();
    assert!(
        from_sdp.len() >= 50,
        "RTP from the mapped address {sdp}: {} of {} packets (sources {:?})",
        from_sdp.len(),
        got.len(),
        got.iter()
            .map(|(f, _)| *f)
            .collect::<std::collections::BTreeSet<_>>()
    );
    let samples: Vec<i16> = from_sdp
        .iter()
        .flat_map(|b| b.iter().map(|&c| ctiphone::media::g711::ulaw_decode(c)))
        .collect();
    let snr = common::rtp::snr_between(&samples, 8000, 0.5, 2.0, TONE);
    eprintln!(
        "[stun] {} RTP packets from {sdp}, 440 Hz SNR {snr:.1} dB",
        from_sdp.len()
    );
    assert!(snr >= 15.0, "the agent's 440 Hz tone arrived (SNR {snr:.1} dB)");
    drop(p);
    drop(stun);
    drop(k);
}

fn with_dead_stun() {
    let net = build("dead");
    let k = Kamailio::start_in_netns(&net.pbx, PBX_IP.parse().unwrap());
    let media = MediaSink::bind(&net.pbx);
    let dir = tempfile::tempdir().unwrap();
    let cfg = phone_config(
        &format!("stun_server = \"{PBX_IP}:{DEAD_STUN_PORT}\""),
        &tone_wav(dir.path()),
    );
    let wrapper = ["ip", "netns", "exec", net.agent.as_str()];
    let start = Instant::now();
    let mut p = Phone::start_wrapped(&cfg, &["--auto-answer"], &wrapper);
    let (ev, took) = registered(&mut p, start);
    eprintln!("[dead] registered after {took:?}: {ev}");
    assert!(
        took < secs(6),
        "registered within a few seconds all the same: {took:?}"
    );
    assert_eq!(ev["stun"], "", "no mapping learned: {ev}");
    assert_eq!(
        ev["contact"],
        format!("{ROUTER_OUT}:{SIP_MAPPED}").as_str(),
        "the Contact falls back to what the registrar saw (received/rport): {ev}"
    );
    let warned = |e: &Value| {
        e["event"] == "warning"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("STUN") && m.contains(&format!(":{DEAD_STUN_PORT}")))
    };
    assert!(
        p.seen().iter().any(warned),
        "a warning says the STUN server did not answer: {:?}",
        p.seen()
    );
    let (sdp, events) = call_agent(&net, &mut p);
    eprintln!("[dead] the agent's SDP: {sdp}");
    assert!(
        events.iter().any(warned),
        "the call warns that STUN gave no mapping: {events:?}"
    );
    assert_eq!(
        sdp.ip().to_string(),
        ROUTER_OUT,
        "c= is the address the registrar saw"
    );
    assert!(
        (RTP_FIRST..=RTP_LAST).contains(&sdp.port()),
        "m= is the agent's own RTP port (nothing mapped it): {sdp}"
    );
    // The agent's media still reaches the pbx side (through the router's mapping).
    let got = media.packets();
    assert!(
        got.iter()
            .filter(|(f, _)| f.ip().to_string() == ROUTER_OUT)
            .count()
            >= 50,
        "RTP from the agent through the NAT: {} packets",
        got.len()
    );
    drop(p);
    drop(k);
}

fn with_public_address() {
    let net = build("pub");
    let k = Kamailio::start_in_netns(&net.pbx, PBX_IP.parse().unwrap());
    let stun = Coturn::start_in_netns(&net.pbx, format!("{PBX_IP}:{STUN_PORT}").parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let public = "10.77.2.9";
    let cfg = phone_config(
        &format!("stun_server = \"{PBX_IP}\"\npublic_address = \"{public}\""),
        &tone_wav(dir.path()),
    );
    let wrapper = ["ip", "netns", "exec", net.agent.as_str()];
    let start = Instant::now();
    let mut p = Phone::start_wrapped(&cfg, &[], &wrapper);
    let (ev, took) = registered(&mut p, start);
    eprintln!("[pub] registered after {took:?}: {ev}");
    assert_eq!(
        ev["stun"],
        format!("{ROUTER_OUT}:{SIP_MAPPED}").as_str(),
        "STUN still asked: {ev}"
    );
    let contact = format!("{public}:{SIP_MAPPED}");
    assert_eq!(ev["contact"], contact.as_str(), "public_address wins: {ev}");
    k.wait_saved("1002", 1, secs(5));
    assert!(
        k.log().contains(&format!(
            "CTIPHONE-SAVED 1002 expires=3600 contact=<sip:1002@{contact}"
        )),
        "Kamailio saved public_address:\n{}",
        k.log()
    );
    drop(p);
    drop(stun);
    drop(k);
}

#[test]
fn behind_nat_stun_learns_the_mapping_for_contact_and_sdp_and_falls_back_without_it() {
    let variants: Vec<(&str, std::thread::JoinHandle<()>)> = vec![
        ("stun", std::thread::spawn(with_stun)),
        ("dead", std::thread::spawn(with_dead_stun)),
        ("public", std::thread::spawn(with_public_address)),
    ];
    let mut failed = Vec::new();
    for (name, t) in variants {
        if let Err(e) = t.join() {
            failed.push((name, e));
        }
    }
    if let Some((name, e)) = failed.into_iter().next() {
        eprintln!("variant {name} failed");
        std::panic::resume_unwind(e);
    }
}
