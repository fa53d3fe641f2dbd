//! The RFC 4475 torture messages (49) and the RFC 5118 IPv6 messages (12, the `wire/` copies)
//! sent byte for byte to a running `ctiphone headless` on 127.0.0.1, over UDP and over TCP.
//!
//! Nothing in the messages is substituted: the phone answers a request where it came from
//! (the source address, RFC 3581), so no message needs our address in it, and their Request-URIs
//! (`example.com`…) are what a phone reached directly receives from a misconfigured peer anyway.
//!
//! Each message has the verdict of `index.tsv` (`expected`, `softphone_should`) written out as
//! what the phone must answer (below, [`want`]): a valid INVITE rings (100, 180, an `incoming`
//! event; we then CANCEL it: 200, 487, and ACK), other valid requests get the final response a
//! user agent owes them (200, 405, 416, 420, 481, 501…), invalid requests get 400 (505 for the
//! version), responses are dropped (no transaction of ours), and over TCP a message that cannot
//! be framed closes the connection, while one that never ends (Content-Length past the bytes,
//! no empty line) is waited for and then closed by the phone after its stream timeout.
//! Every answer's latency is measured (median asserted at most 100 ms, max reported), the phone
//! must answer an OPTIONS after every message (no hang), never panic, and take a normal call
//! (SIPp `uac_call_bye.xml`) at the end.
//!
//! The messages reuse branch values (`z9hG4bKkdjuw` in several REGISTERs, `z9hG4bKas3-111`
//! throughout RFC 5118): to a user agent, a request with the branch, sent-by and method of a
//! request answered less than 32 s ago IS a retransmission of it (RFC 3261 §17.2.3), answered
//! from the transaction, so each message goes to a phone that has not seen its transaction yet
//! (a small pool of phones), the same message over UDP and then TCP included.

mod common;

use std::collections::HashSet;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::json;

use common::peers::{Phone, Sipp, account_toml, ms, secs};
use common::wire::{Conn, Proto, Recv, first_line, header, status};
use ctiphone::sip::addr::{NameAddr, Via};
use ctiphone::sip::message::{self, Message};

/// How long an incomplete message may take on a stream before the phone closes the connection,
/// plus slack for a loaded machine.
const STREAM_CLOSE_WITHIN: Duration =
    Duration::from_secs(ctiphone::sip::transport::STREAM_MESSAGE_TIMEOUT.as_secs() + 5);

struct Msg {
    corpus: &'static str,
    name: String,
    expected: String,
    should: String,
    bytes: Vec<u8>,
}

fn corpus(corpus: &'static str, dir: &str) -> Vec<Msg> {
    let base = format!("{}/tests/fixtures/{corpus}", env!("CARGO_MANIFEST_DIR"));
    let index = std::fs::read_to_string(format!("{base}/index.tsv")).expect("index.tsv");
    index
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let path = format!("{base}/{dir}{}.dat", cols[0]);
            Msg {
                corpus,
                name: cols[0].to_owned(),
                expected: cols[2].to_owned(),
                should: cols[4].to_owned(),
                bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
            }
        })
        .collect()
}

/// What the phone must do with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// A new call: 100 and 180, an `incoming` event.
    Ring,
    /// One final response, one of these codes (and no ringing).
    Final(&'static [u16]),
    /// Final responses with exactly these codes, in order (several messages on one stream).
    Finals(&'static [u16]),
    /// No answer at all (a response that matches none of our transactions).
    Drop,
    /// TCP: no answer, the connection closed (the stream cannot be framed).
    Close,
    /// TCP: the message has not ended; no answer yet, the phone waits for the rest and closes
    /// the connection after its stream timeout.
    Wait,
}

/// The verdict for each message, from index.tsv (`expected` / `softphone_should`).
fn want(name: &str, proto: Proto) -> Want {
    use Want::*;
    let tcp = proto == Proto::Tcp;
    match name {
        // RFC 4475 §3.1.1, valid messages.
        // "answer normally": its To has a tag, so it is a request inside a dialog the phone
        // does not have: 481.
        "wsinv" => Final(&[481]),
        // Unknown methods: 501 (with Allow).
        "intmeth" | "esc02" => Final(&[501]),
        "esc01" | "longreq" => Ring,
        // REGISTER to a phone that is no registrar: 405 Method Not Allowed (with Allow).
        "escnull" | "cparam01" | "cparam02" | "regescrt" | "unksm2" | "regaut01" => Final(&[405]),
        // Over UDP the trailing INVITE-like octets are discarded; over TCP they are the next
        // message on the stream, an INVITE whose SDP has a broken line (`m =video`): 400.
        "dblreq" if tcp => Finals(&[405, 400]),
        "dblreq" => Final(&[405]),
        "lwsdisp" | "semiuri" | "transports" | "zeromf" | "badbranch" => Final(&[200]),
        // MESSAGE is not a method of this phone.
        "mpart01" => Final(&[501]),
        "unreason" | "noreason" => Drop,
        // §3.1.2, invalid messages.
        "clerr" | "baddn" if tcp => Wait,
        "ncl" | "mcl01" if tcp => Close,
        "badinv01" | "clerr" | "ncl" | "scalar02" | "quotbal" | "ltgtruri" | "lwsruri" | "lwsstart"
        | "trws" | "escruri" | "regbadct" | "badaspec" | "baddn" | "mismatch01" | "mismatch02" | "insuf"
        | "multi01" | "mcl01" => Final(&[400]),
        "badvers" => Final(&[505]),
        "scalarlg" | "bigcode" => Drop,
        // "ignore the Date or 400; the call is not harmed by it": the phone ignores it.
        "baddate" => Ring,
        // §3.3, application layer.
        "unkscm" | "novelsc" => Final(&[416]),
        "bext01" => Final(&[420]),
        "invut" => Final(&[415]),
        "sdp01" => Final(&[406]),
        // A 200 OK that is no answer to anything of ours (and must never go to 255.255.255.255).
        "bcast" => Drop,
        // §3.4: an RFC 2543 INVITE (over TCP without Content-Length: no body, it rings all
        // the same; its SDP lines are left on the stream as an unfinished message).
        "inv2543" => Ring,
        // RFC 5118.
        "ipv6-good" | "port-ambiguous" | "port-unambiguous" => Final(&[405]),
        "ipv6-bad" => Final(&[400]),
        "via-received-param-no-delim" | "ipv6-bug-abnf-3-colons" | "ipv6-correct-abnf-2-colons" => {
            Final(&[200])
        }
        // BYE for no dialog of ours.
        "via-received-param-with-delim" | "mult-ip-in-header" => Final(&[481]),
        // The SDP parses (IPv6 addresses), but G.726 is no codec of ours: 488.
        "ipv6-in-sdp" | "ipv4-mapped-ipv6" => Final(&[488]),
        "mult-ip-in-sdp" => Ring,
        other => panic!("no verdict written for `{other}`: add it to want()"),
    }
}

/// What else the answer to a message must show (`softphone_should`): the headers a refusal
/// owes (Allow, Unsupported, Accept) and the caller of a ringing call, escapes decoded once and
/// nothing truncated. `None`: nothing more to check.
fn details(name: &str) -> Option<(&'static str, String)> {
    let long = "amazinglylongcallername".repeat(5);
    Some(match name {
        "intmeth" | "esc02" | "mpart01" | "escnull" | "regaut01" | "unksm2" | "cparam01" | "cparam02"
        | "regescrt" | "ipv6-good" | "port-ambiguous" | "port-unambiguous" => (
            "Allow",
            "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, UPDATE, PRACK".into(),
        ),
        "bext01" => (
            "Unsupported",
            "nothingSupportsThis, nothingSupportsThisEither".into(),
        ),
        "invut" => ("Accept", "application/sdp".into()),
        // The `incoming` event's tel / called.
        "esc01" => ("tel", "I have spaces".into()),
        "longreq" => ("tel", long),
        "inv2543" => ("called", "+16505552222".into()),
        "baddate" => ("tel", "caller".into()),
        "mult-ip-in-sdp" => ("called", "user".into()),
        _ => return None,
    })
}

/// The table above agrees with index.tsv: a valid request is never refused with 400, an
/// invalid one is never accepted (except `baddate`, whose verdict allows ignoring the Date).
#[test]
fn verdicts_follow_the_index() {
    let mut wrong = Vec::new();
    for m in corpus("rfc4475", "")
        .into_iter()
        .chain(corpus("rfc5118", "wire/"))
    {
        for proto in [Proto::Udp, Proto::Tcp] {
            let w = want(&m.name, proto);
            let ok = match (m.expected.as_str(), w) {
                ("valid", Want::Final(codes)) => !codes.contains(&400),
                ("valid", Want::Ring) => true,
                ("valid", Want::Finals(codes)) => codes[0] != 400 && proto == Proto::Tcp,
                ("valid", Want::Drop) => m.bytes.starts_with(b"SIP/2.0 "),
                ("invalid", Want::Final(codes)) => codes.iter().all(|c| *c >= 400),
                ("invalid", Want::Drop) => m.bytes.starts_with(b"SIP/2.0 "),
                ("invalid", Want::Close | Want::Wait) => proto == Proto::Tcp,
                ("invalid", Want::Ring) => m.name == "baddate" && m.should.contains("ignore the Date"),
                _ => false,
            };
            if !ok {
                wrong.push(format!(
                    "{} over {proto:?}: {w:?} vs {} ({})",
                    m.name, m.expected, m.should
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Talking to the phone

/// The phone's transaction key of a request (its `server_key`): the top Via's branch and
/// sent-by and the method (ACK as INVITE); without an RFC 3261 branch, Call-ID, CSeq number and
/// From tag. `None`: the phone's parser refuses the message (answered without a transaction).
fn tx_key(bytes: &[u8], proto: Proto) -> Option<String> {
    let (m, _) = message::parse(bytes, proto == Proto::Tcp).ok()?;
    if !m.is_request() {
        return None;
    }
    let via = Via::parse(m.get_all("Via").first()?).ok()?;
    let method = match m.method()? {
        "ACK" => "INVITE",
        other => other,
    };
    let id = match via.branch() {
        Some(b) if b.starts_with("z9hG4bK") => format!("{b}|{}:{:?}", via.host, via.port),
        _ => format!(
            "{}|{}|{}",
            m.call_id()?,
            m.cseq()?.0,
            m.get("From")
                .and_then(|f| NameAddr::parse(f).ok())
                .and_then(|f| f.tag().map(str::to_owned))
                .unwrap_or_default()
        ),
    };
    Some(format!("{id}|{method}"))
}

/// CANCEL or ACK for `invite` (RFC 3261 §9.1, §17.1.1.3): its Request-URI, top Via, From,
/// Call-ID and CSeq number; To from `to` (the final response's, for an ACK).
fn follow_up(invite: &Message, method: &str, to: &str) -> Vec<u8> {
    let mut m = Message::request(method, invite.uri().unwrap_or(""));
    m.push("Via", invite.get_all("Via")[0].to_owned())
        .push("Max-Forwards", "70")
        .push("From", invite.get("From").unwrap_or("").to_owned())
        .push("To", to.to_owned())
        .push("Call-ID", invite.call_id().unwrap_or("").to_owned())
        .push("CSeq", format!("{} {method}", invite.cseq().map_or(1, |c| c.0)));
    m.to_bytes()
}

/// An OPTIONS from a fresh socket must get its 200: the phone is alive and not stuck.
fn probe(p: &mut Phone, n: usize, after: &str) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    let msg = format!(
        "OPTIONS sip:1001@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-probe-{n}\r\n\
         From: <sip:probe@{me}>;tag=p{n}\r\nTo: <sip:1001@{t}>\r\nCall-ID: probe-{n}-{me}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        t = p.target()
    );
    sock.send_to(msg.as_bytes(), p.target()).unwrap();
    sock.set_read_timeout(Some(secs(5))).unwrap();
    let mut buf = vec![0u8; 65536];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) if status(&buf[..n]) == Some(200) => {}
        other => panic!(
            "the phone did not answer an OPTIONS within 5 s after {after}: {:?}\n{}",
            other.map(|(n, _)| first_line(&buf[..n])),
            p.diagnostics()
        ),
    }
    assert!(p.alive(), "the phone exited after {after}\n{}", p.diagnostics());
}

// ---------------------------------------------------------------------------------------------
// The run

/// One phone of the pool, and the transactions it has seen.
struct Pooled {
    phone: Phone,
    keys: HashSet<String>,
    rings: usize,
}

fn start_phone() -> Phone {
    Phone::start(&account_toml("1001", "pw1001", "", "udp", 60), &[])
}

/// A phone that has not seen transaction `key` (a new one when every phone has).
fn pick(pool: &mut Vec<Pooled>, key: Option<&str>) -> usize {
    let i = match key {
        None => 0,
        Some(k) => pool
            .iter()
            .position(|p| !p.keys.contains(k))
            .unwrap_or(pool.len()),
    };
    if i == pool.len() {
        pool.push(Pooled {
            phone: start_phone(),
            keys: HashSet::new(),
            rings: 0,
        });
    }
    if let Some(k) = key {
        pool[i].keys.insert(k.to_owned());
    }
    i
}

struct Row {
    what: String,
    codes: Vec<u16>,
    latency: Option<Duration>,
    problem: Option<String>,
}

/// Cancels the ringing call of `inv` (sent on `conn`): the `incoming` event was seen, the CANCEL
/// (from a new socket or connection) gets 200, the INVITE 487 where it came from, which is ACKed
/// over UDP, and the call ends as `cancelled`. Returns what went wrong.
fn cancel(
    p: &mut Phone,
    name: &str,
    conn: &mut Conn,
    inv: &Message,
    proto: Proto,
    target: SocketAddr,
) -> Option<String> {
    let id = inv.call_id().unwrap_or("").to_owned();
    let inc = p.expect_where("incoming", secs(5), |v| v["call"] == id.as_str());
    let mut problem = None;
    if let Some((field, value)) = details(name)
        && inc[field] != value.as_str()
    {
        problem = Some(format!("incoming {field} is {}, expected {value:?}", inc[field]));
    }
    let mut other = Conn::open(proto, target);
    other.send(&follow_up(inv, "CANCEL", inv.get("To").unwrap_or("")));
    match other.recv(Instant::now() + secs(5)) {
        Recv::Msg(raw) if status(&raw) == Some(200) => {}
        Recv::Msg(raw) => problem = Some(format!("CANCEL answered {}", first_line(&raw))),
        _ => problem = Some("CANCEL not answered".into()),
    }
    let until = Instant::now() + secs(5);
    let last = loop {
        match conn.recv(until) {
            Recv::Msg(raw) if status(&raw).is_some_and(|c| c < 200) => continue,
            Recv::Msg(raw) => break Some(raw),
            _ => break None,
        }
    };
    match last {
        Some(raw) if status(&raw) == Some(487) => {
            if proto == Proto::Udp {
                let to = header(&raw, "To").unwrap_or_default();
                conn.send(&follow_up(inv, "ACK", &to));
            }
        }
        other => {
            problem.get_or_insert(format!(
                "the cancelled INVITE got {:?}, not 487",
                other.map(|r| first_line(&r))
            ));
        }
    }
    p.expect_where("ended", secs(5), |v| {
        v["call"] == id.as_str() && v["reason"] == "cancelled"
    });
    problem
}

/// Sends one message, checks the phone's answer against `want`, and cleans up (CANCEL of a
/// ringing call, ACK of a failed INVITE). A TCP connection left waiting for the rest of an
/// unfinished message is returned, to check later that the phone closes it.
fn run_one(pooled: &mut Pooled, m: &Msg, proto: Proto, n: usize) -> (Row, Option<TcpStream>) {
    let w = want(&m.name, proto);
    let what = format!("{:<7} {:<30} {:?}", m.corpus, m.name, proto);
    let target: SocketAddr = pooled.phone.target().parse().unwrap();
    let mut conn = Conn::open(proto, target);
    let t0 = Instant::now();
    conn.send(&m.bytes);
    let silent = matches!(w, Want::Drop | Want::Close | Want::Wait);
    let end = t0 + if silent { ms(300) } else { secs(5) };
    let mut answers: Vec<Vec<u8>> = Vec::new();
    let mut latency = None;
    let mut closed = false;
    loop {
        match conn.recv(end) {
            Recv::Msg(raw) => {
                latency.get_or_insert_with(|| t0.elapsed());
                let code = status(&raw).unwrap_or(0);
                answers.push(raw);
                if code >= 180 {
                    break;
                }
            }
            Recv::Timeout => break,
            Recv::Closed => {
                closed = true;
                break;
            }
        }
    }
    if m.name == "dblreq" && !closed {
        // Only the REGISTER is answered: nothing else may follow.
        let linger = Instant::now() + ms(300);
        while let Recv::Msg(raw) = conn.recv(linger) {
            answers.push(raw);
        }
    }
    if w == Want::Close && !closed {
        // The phone closes the connection: give it a moment.
        let until = Instant::now() + secs(3);
        loop {
            match conn.recv(until) {
                Recv::Msg(raw) => answers.push(raw),
                Recv::Closed => {
                    closed = true;
                    break;
                }
                Recv::Timeout => break,
            }
        }
    }
    let codes: Vec<u16> = answers.iter().map(|a| status(a).unwrap_or(0)).collect();
    let finals: Vec<u16> = codes.iter().copied().filter(|c| *c >= 200).collect();
    let mut problem = None;
    let parsed = message::parse(&m.bytes, proto == Proto::Tcp).ok().map(|(m, _)| m);
    match w {
        Want::Ring => {
            if !(codes.contains(&180) && finals.is_empty()) {
                problem = Some(format!("expected 100/180 (ringing), got {codes:?}"));
            }
        }
        Want::Final(want_codes) => {
            let ok = finals.len() == 1 && want_codes.contains(&finals[0]) && !codes.contains(&180);
            if !ok {
                problem = Some(format!("expected one final of {want_codes:?}, got {codes:?}"));
            } else if let Some((name, value)) = details(&m.name) {
                let got = answers.last().and_then(|a| header(a, name));
                if got.as_deref() != Some(value.as_str()) {
                    problem = Some(format!("{name}: {got:?}, expected {value:?}"));
                }
            }
            // ACK a failed INVITE the phone made a transaction of (it retransmits until then).
            if let (Some(inv), Some(raw)) = (&parsed, answers.last())
                && inv.method() == Some("INVITE")
                && status(raw).is_some_and(|c| c >= 300)
                && !closed
            {
                let to = header(raw, "To").unwrap_or_default();
                conn.send(&follow_up(inv, "ACK", &to));
            }
        }
        Want::Finals(want_codes) => {
            if finals != want_codes || codes.contains(&180) {
                problem = Some(format!("expected the finals {want_codes:?}, got {codes:?}"));
            }
        }
        Want::Drop => {
            if !codes.is_empty() {
                problem = Some(format!("expected no answer, got {codes:?}"));
            }
        }
        Want::Close => {
            if !codes.is_empty() || !closed {
                problem = Some(format!(
                    "expected the connection closed without an answer, got {codes:?} (closed: {closed})"
                ));
            }
        }
        Want::Wait => {
            if !codes.is_empty() || closed {
                problem = Some(format!(
                    "expected no answer on an open connection, got {codes:?} (closed: {closed})"
                ));
            }
        }
    }
    // A call that rings (as it should or not) is cancelled, so the phone is free again.
    if codes.contains(&180) && finals.is_empty() {
        let inv = parsed.expect("a message the phone rang for parses");
        pooled.rings += 1;
        if let Some(e) = cancel(&mut pooled.phone, &m.name, &mut conn, &inv, proto, target) {
            problem.get_or_insert(e);
        }
    }
    if problem.is_none()
        && !answers.is_empty()
        && let Some(bad) = answers.iter().find(|a| status(a).is_none())
    {
        problem = Some(format!("not a response: {}", first_line(bad)));
    }
    probe(&mut pooled.phone, n, &what);
    let waiting = match (w, conn) {
        (Want::Wait, Conn::Tcp(s, _)) => Some(s),
        _ => None,
    };
    (
        Row {
            what,
            codes,
            latency,
            problem,
        },
        waiting,
    )
}

#[test]
fn torture_messages_over_udp_and_tcp() {
    let started = Instant::now();
    let messages: Vec<Msg> = corpus("rfc4475", "")
        .into_iter()
        .chain(corpus("rfc5118", "wire/"))
        .collect();
    assert_eq!(messages.len(), 49 + 12, "49 RFC 4475 and 12 RFC 5118 messages");
    let mut pool: Vec<Pooled> = Vec::new();
    pick(&mut pool, None);
    let mut rows = Vec::new();
    let mut waiting = Vec::new();
    let mut n = 0;
    for proto in [Proto::Udp, Proto::Tcp] {
        for m in &messages {
            n += 1;
            let key = tx_key(&m.bytes, proto);
            let i = pick(&mut pool, key.as_deref());
            let (row, wait) = run_one(&mut pool[i], m, proto, n);
            rows.push(row);
            if let Some(s) = wait {
                waiting.push((m.name.clone(), s, Instant::now()));
            }
        }
    }

    // The report.
    let mut lat: Vec<Duration> = rows.iter().filter_map(|r| r.latency).collect();
    lat.sort();
    let median = lat[lat.len() / 2];
    let max = *lat.last().unwrap();
    let over = lat.iter().filter(|l| **l > ms(100)).count();
    for r in &rows {
        println!(
            "{} {:<16} {:>8} {}",
            r.what,
            format!("{:?}", r.codes),
            r.latency
                .map_or("-".to_owned(), |l| format!("{:.2}ms", l.as_secs_f64() * 1000.0)),
            r.problem.as_deref().unwrap_or("ok")
        );
    }
    println!(
        "{} sends to {} phone(s), {} answered: latency median {:.2} ms, max {:.2} ms, {} over 100 ms; {:.1} s",
        rows.len(),
        pool.len(),
        lat.len(),
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0,
        over,
        started.elapsed().as_secs_f64()
    );
    // A normal call on every phone of the pool: SIPp calls, the phone answers, SIPp hangs up.
    let calls: Vec<Sipp> = pool
        .iter()
        .map(|p| {
            let t = p.phone.target();
            Sipp::spawn("uac_call_bye.xml", &[t.as_str(), "-s", "0312345678"])
        })
        .collect();
    for (p, uac) in pool.iter_mut().zip(calls) {
        let inc = p
            .phone
            .expect_where("incoming", secs(10), |v| v["tel"] == "0311112222");
        p.phone.send(json!({"cmd": "answer", "call": inc["call"]}));
        p.phone.expect("answered", secs(10));
        let end = p
            .phone
            .expect_where("ended", secs(15), |v| v["call"] == inc["call"]);
        assert_eq!(end["reason"], "remote_hangup", "{end}");
        uac.wait(secs(15)).assert_ok();
        p.rings += 1;
    }

    // Unfinished messages on TCP: the phone closes those connections after its timeout.
    let mut unclosed = Vec::new();
    for (name, mut s, since) in waiting {
        s.set_read_timeout(Some(
            (since + STREAM_CLOSE_WITHIN).saturating_duration_since(Instant::now()) + ms(1),
        ))
        .unwrap();
        let mut b = [0u8; 4096];
        let closed = match s.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        };
        if closed {
            println!(
                "tcp {name}: closed by the phone {:.1} s after the message",
                since.elapsed().as_secs_f64()
            );
        } else {
            unclosed.push(name);
        }
    }

    // No panics, no stray calls: exactly one `incoming` per ringing message and call.
    for (i, p) in pool.iter_mut().enumerate() {
        assert!(p.phone.alive(), "phone {i} exited\n{}", p.phone.diagnostics());
        let err = p.phone.stderr();
        assert!(!err.contains("panicked"), "phone {i} panicked:\n{err}");
        p.phone.drain(ms(200));
        assert_eq!(
            p.phone.count("incoming"),
            p.rings,
            "phone {i}: `incoming` events other than the ringing messages\n{}",
            p.phone.diagnostics()
        );
    }

    let problems: Vec<String> = rows
        .iter()
        .filter_map(|r| r.problem.as_ref().map(|p| format!("{}: {p}", r.what)))
        .collect();
    assert!(problems.is_empty(), "wrong verdicts:\n{}", problems.join("\n"));
    assert!(
        unclosed.is_empty(),
        "TCP connections with an unfinished message still open after {STREAM_CLOSE_WITHIN:?}: {unclosed:?}"
    );
    assert!(
        median <= ms(100),
        "median answer latency {median:?} is over 100 ms (max {max:?})"
    );
}
