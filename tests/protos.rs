//! The PROTOS c07-sip test suite (OUSPG, University of Oulu, 2003) against a running
//! `ctiphone headless` on 127.0.0.1: all 4,527 cases, each an INVITE with one mutated element
//! followed by its teardown (CANCEL), sent over UDP (over TCP when the INVITE is too big for a
//! datagram: the phone refuses a message over 64 KiB and closes the connection).
//!
//! The cases come from `tests/fixtures/protos-c07-sip.tar.gz` (the corpus' `cases/`,
//! `groups.tsv` and `SHA256SUMS`, 36 MB as files, 0.6 MB packed; GPL v2 test material, test data
//! only), unpacked with `tar` and checked against SHA256SUMS. The placeholders are substituted
//! as the corpus README says: `<To>` the phone, `<From>`/`<From-Address>`/`<From-IP>`/
//! `<Local-Port>` our socket, `<Branch-ID>`, `<Call-ID>` and `<CSeq>` unique per case,
//! `<Content-Length>` the body's length after substitution, `<Teardown-Method>` CANCEL.
//!
//! Sending is paced by the phone: each case waits for the INVITE's answer (a ringing INVITE:
//! its 180) before the CANCEL, then for the CANCEL's answer (and the INVITE's 487, which is
//! ACKed). A call the CANCEL does not reach (the mutation changed the INVITE's transaction) is
//! hung up through the control interface, so every case finds the phone free. Checked: the
//! process never exits or panics, after each of the 54 groups a valid INVITE still rings (180 and
//! the `incoming` event), and resident memory grows by less than 10 MiB over the run.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use common::peers::{Phone, account_toml, ms, secs};
use common::wire::{Conn, Proto, Recv, first_line, header, status};

/// The largest datagram payload on IPv4.
const MAX_DATAGRAM: usize = 65_507;

struct Group {
    name: String,
    first: usize,
    last: usize,
}

/// Unpacks the corpus into a temporary directory and checks every case against SHA256SUMS.
fn unpack() -> tempfile::TempDir {
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/protos-c07-sip.tar.gz");
    let dir = tempfile::Builder::new().prefix("protos").tempdir().unwrap();
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("running tar to unpack {}: {e}", archive.display()));
    assert!(
        out.status.success(),
        "tar -xzf {}: {}",
        archive.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let base = dir.path().join("protos-c07-sip");
    let sums = std::fs::read_to_string(base.join("SHA256SUMS")).unwrap();
    let mut n = 0;
    for line in sums.lines() {
        let (want, name) = line.split_once("  ").expect("SHA256SUMS line");
        let bytes = std::fs::read(base.join("cases").join(name)).unwrap();
        let got: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, want, "case {name} does not match SHA256SUMS");
        n += 1;
    }
    assert_eq!(n, 4527, "SHA256SUMS lists every case");
    dir
}

fn groups(base: &Path) -> Vec<Group> {
    let text = std::fs::read_to_string(base.join("groups.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            Group {
                name: c[0].to_owned(),
                first: c[1].parse().unwrap(),
                last: c[2].parse().unwrap(),
            }
        })
        .collect()
}

/// A case file: `<len> <INVITE><len> <teardown>`.
fn split_case(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn one(b: &[u8]) -> (&[u8], &[u8]) {
        let sp = b.iter().position(|c| *c == b' ').expect("length prefix");
        let n: usize = std::str::from_utf8(&b[..sp]).unwrap().parse().expect("length");
        (&b[sp + 1..sp + 1 + n], &b[sp + 1 + n..])
    }
    let (invite, rest) = one(bytes);
    let (teardown, rest) = one(rest);
    assert!(rest.is_empty(), "trailing bytes after the teardown");
    (invite.to_vec(), teardown.to_vec())
}

fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// The placeholders' values for one send.
struct Vars {
    to: String,
    local: SocketAddr,
    id: String,
    cseq: u32,
}

/// Substitutes the placeholders (README: `<Content-Length>` is the body's length after
/// substitution, the body being what follows the first empty line).
fn substitute(template: &[u8], v: &Vars) -> Vec<u8> {
    let ip = v.local.ip().to_string();
    let mut b = template.to_vec();
    for (k, val) in [
        ("<To>", v.to.clone()),
        ("<From>", format!("protos@{}", v.local)),
        ("<From-Address>", ip.clone()),
        ("<From-IP>", ip),
        ("<Local-Port>", v.local.port().to_string()),
        ("<Branch-ID>", v.id.clone()),
        ("<Call-ID>", v.id.clone()),
        ("<CSeq>", v.cseq.to_string()),
        ("<Teardown-Method>", "CANCEL".to_owned()),
    ] {
        b = replace(&b, k.as_bytes(), val.as_bytes());
    }
    let body = b
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| b.len() - i - 4);
    replace(&b, b"<Content-Length>", body.to_string().as_bytes())
}

/// What happened to one case.
#[derive(Default)]
struct Outcome {
    /// Status codes answered to the INVITE and to the CANCEL.
    invite: Vec<u16>,
    cancel: Vec<u16>,
    /// The INVITE went over TCP (too big for UDP) and the phone closed the connection.
    closed: bool,
    /// The call rang and the CANCEL did not end it: hung up through the control interface.
    hung_up: bool,
    /// How long the first answer to the INVITE took.
    latency: Option<Duration>,
    /// The INVITE's size.
    size: usize,
}

/// A response to the CANCEL (else to the INVITE), by its CSeq method.
fn is_cancel_response(raw: &[u8]) -> bool {
    header(raw, "CSeq").is_some_and(|c| c.ends_with("CANCEL"))
}

/// ACK for a failed INVITE, from the final response's own Via, From, To, Call-ID and CSeq
/// (the phone's transaction retransmits its answer until then). Only responses of a
/// transaction (a To tag) are ACKed.
fn ack_for(resp: &[u8], to: &str) -> Option<Vec<u8>> {
    let to_hdr = header(resp, "To")?;
    if !to_hdr.contains("tag=") {
        return None;
    }
    let cseq = header(resp, "CSeq")?;
    let n = cseq.split_whitespace().next()?;
    Some(
        format!(
            "ACK sip:{to} SIP/2.0\r\nVia: {}\r\nFrom: {}\r\nTo: {to_hdr}\r\nCall-ID: {}\r\nCSeq: {n} ACK\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            header(resp, "Via")?,
            header(resp, "From")?,
            header(resp, "Call-ID")?,
        )
        .into_bytes(),
    )
}

/// Sends one case (INVITE, then the CANCEL) and cleans up after it.
fn run_case(
    p: &mut Phone,
    target: SocketAddr,
    invite_t: &[u8],
    teardown_t: &[u8],
    id: String,
    cseq: u32,
) -> Outcome {
    let to = format!("1001@{target}");
    // UDP, unless the INVITE is too big for a datagram.
    let mut conn = Conn::open(Proto::Udp, target);
    let mut vars = Vars {
        to: to.clone(),
        local: conn.local(),
        id: id.clone(),
        cseq,
    };
    let mut proto = Proto::Udp;
    if substitute(invite_t, &vars).len() > MAX_DATAGRAM {
        proto = Proto::Tcp;
        conn = Conn::open(Proto::Tcp, target);
        vars.local = conn.local();
    }
    let mut out = Outcome::default();
    let t0 = Instant::now();
    let invite = substitute(invite_t, &vars);
    out.size = invite.len();
    conn.send(&invite);
    let mut invite_final: Option<Vec<u8>> = None;
    let mut rang = false;
    // The INVITE's answer: its 180 or final, or nothing (given up after a while).
    let until = t0 + ms(300);
    loop {
        match conn.recv(until) {
            Recv::Msg(raw) => {
                out.latency.get_or_insert_with(|| t0.elapsed());
                let code = status(&raw).unwrap_or(0);
                out.invite.push(code);
                rang |= code == 180;
                if code >= 200 {
                    invite_final = Some(raw);
                }
                if code >= 180 {
                    break;
                }
            }
            Recv::Timeout => break,
            Recv::Closed => {
                out.closed = true;
                break;
            }
        }
    }
    // The teardown: on the same socket, else (the INVITE went by TCP, or the teardown is too big
    // for a datagram) on a new socket or connection.
    let mut cancel_conn = (proto == Proto::Tcp).then(|| Conn::open(Proto::Udp, target));
    let mut v = Vars {
        local: cancel_conn.as_ref().unwrap_or(&conn).local(),
        to: to.clone(),
        id: id.clone(),
        cseq,
    };
    if substitute(teardown_t, &v).len() > MAX_DATAGRAM {
        let c = Conn::open(Proto::Tcp, target);
        v.local = c.local();
        cancel_conn = Some(c);
    }
    cancel_conn
        .as_mut()
        .unwrap_or(&mut conn)
        .send(&substitute(teardown_t, &v));
    let until = Instant::now() + secs(2);
    let done = |o: &Outcome, fin: &Option<Vec<u8>>| !o.cancel.is_empty() && (!rang || fin.is_some());
    while !done(&out, &invite_final) {
        let got = match cancel_conn.as_mut() {
            Some(c) => c.recv(until),
            None => conn.recv(until),
        };
        match got {
            Recv::Msg(raw) => {
                let code = status(&raw).unwrap_or(0);
                if is_cancel_response(&raw) {
                    out.cancel.push(code);
                } else {
                    out.invite.push(code);
                    if code >= 200 {
                        invite_final = Some(raw);
                    }
                }
            }
            Recv::Timeout | Recv::Closed => break,
        }
    }
    if rang && invite_final.is_none() {
        // The CANCEL did not reach the call: hang it up (486), so the next case finds the
        // phone free.
        out.hung_up = true;
        p.send(json!({"cmd": "hangup"}));
        let until = Instant::now() + secs(5);
        loop {
            match conn.recv(until) {
                Recv::Msg(raw) => {
                    let code = status(&raw).unwrap_or(0);
                    if is_cancel_response(&raw) {
                        out.cancel.push(code);
                        continue;
                    }
                    out.invite.push(code);
                    if code >= 200 {
                        invite_final = Some(raw);
                        break;
                    }
                }
                _ => panic!(
                    "case {id}: the ringing call did not end on hangup: {:?}\n{}",
                    out.invite,
                    p.diagnostics()
                ),
            }
        }
    }
    if let Some(fin) = &invite_final
        && status(fin).is_some_and(|c| c >= 300)
        && proto == Proto::Udp
        && let Some(ack) = ack_for(fin, &to)
    {
        conn.send(&ack);
    }
    out
}

/// The valid call (case 0) with a fresh Call-ID: it rings (180, `incoming`), and is
/// cancelled (487, `ended`). Returns how long the 180 took.
fn still_rings(p: &mut Phone, target: SocketAddr, invite_t: &[u8], teardown_t: &[u8], id: &str) -> Duration {
    let mut conn = Conn::open(Proto::Udp, target);
    let to = format!("1001@{target}");
    let vars = Vars {
        to: to.clone(),
        local: conn.local(),
        id: id.to_owned(),
        cseq: 1,
    };
    let t0 = Instant::now();
    conn.send(&substitute(invite_t, &vars));
    let until = t0 + secs(10);
    let took = loop {
        match conn.recv(until) {
            Recv::Msg(raw) if status(&raw) == Some(180) => break t0.elapsed(),
            Recv::Msg(raw) if status(&raw) == Some(100) => continue,
            Recv::Msg(raw) => panic!(
                "the valid INVITE {id} was answered {}\n{}",
                first_line(&raw),
                p.diagnostics()
            ),
            _ => panic!(
                "the valid INVITE {id} did not ring within 10 s\n{}",
                p.diagnostics()
            ),
        }
    };
    p.expect_where("incoming", secs(10), |v| {
        v["call"] == format!("{id}@127.0.0.1").as_str()
    });
    conn.send(&substitute(teardown_t, &vars));
    let until = Instant::now() + secs(10);
    let (mut ok, mut terminated) = (false, false);
    while !(ok && terminated) {
        match conn.recv(until) {
            Recv::Msg(raw) if is_cancel_response(&raw) => ok = status(&raw) == Some(200),
            Recv::Msg(raw) if status(&raw) == Some(487) => {
                terminated = true;
                conn.send(&ack_for(&raw, &to).expect("487 with a To tag"));
            }
            Recv::Msg(_) => {}
            _ => panic!(
                "the valid call {id} was not cancelled (200: {ok}, 487: {terminated})\n{}",
                p.diagnostics()
            ),
        }
    }
    p.expect_where("ended", secs(10), |v| {
        v["call"] == format!("{id}@127.0.0.1").as_str() && v["reason"] == "cancelled"
    });
    took
}

fn assert_sound(p: &mut Phone, after: &str) {
    assert!(p.alive(), "the phone exited after {after}\n{}", p.diagnostics());
    let err = p.stderr();
    assert!(
        !err.contains("panicked"),
        "the phone panicked after {after}:\n{err}"
    );
}

#[test]
fn protos_c07_sip_all_cases() {
    let dir = unpack();
    let base = dir.path().join("protos-c07-sip");
    let groups = groups(&base);
    assert_eq!(groups.len(), 54, "54 groups");
    assert_eq!(groups.last().unwrap().last, 4526);
    let cases: Vec<(Vec<u8>, Vec<u8>)> = (0..4527)
        .map(|n| split_case(&std::fs::read(base.join("cases").join(format!("{n:07}"))).unwrap()))
        .collect();
    let config = format!(
        "{}\n[audio]\ninput = \"null\"\noutput = \"null\"\n",
        account_toml("1001", "pw1001", "", "udp", 60)
    );
    let mut p = Phone::start(&config, &[]);
    let target: SocketAddr = p.target().parse().unwrap();
    let run = std::process::id();
    let (valid_inv, valid_td) = cases[0].clone();
    // Warm up every path once (the first call opens the history and the CTI engine; the first
    // case of each group its own error path, the first TCP connection…), then measure.
    still_rings(&mut p, target, &valid_inv, &valid_td, &format!("warmup-{run}"));
    for g in &groups {
        let (inv, td) = &cases[g.first];
        run_case(&mut p, target, inv, td, format!("warmup-{}-{run}", g.first), 1);
    }
    std::thread::sleep(ms(300));
    let rss_before = p.rss_kib();
    let started = Instant::now();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(cases.len());
    let mut ring_checks = Vec::new();
    let mut rss_max = rss_before;
    let mut rss_by_group = Vec::new();
    for g in &groups {
        for (n, (inv, td)) in cases.iter().enumerate().take(g.last + 1).skip(g.first) {
            let id = format!("protos-{n:07}-{run}");
            let o = run_case(&mut p, target, inv, td, id, n as u32 + 1);
            outcomes.push(o);
        }
        assert_sound(&mut p, &format!("group {}", g.name));
        let check = format!("check-{}-{run}", g.name);
        let took = still_rings(&mut p, target, &valid_inv, &valid_td, &check);
        ring_checks.push((g.name.clone(), took));
        let rss = p.rss_kib();
        rss_max = rss_max.max(rss);
        rss_by_group.push(format!("{} {rss}", g.name));
    }
    let elapsed = started.elapsed();
    assert_sound(&mut p, "the run");
    let rss_after = p.rss_kib();

    // The report.
    let mut silent = Vec::new();
    let mut closed = 0;
    let mut hung_up = Vec::new();
    let mut by_code = std::collections::BTreeMap::<String, usize>::new();
    let mut lat: Vec<Duration> = Vec::new();
    for (n, o) in outcomes.iter().enumerate() {
        if o.closed {
            closed += 1;
        } else if o.invite.is_empty() {
            silent.push(n);
        }
        if o.hung_up {
            hung_up.push(n);
        }
        let key = match (o.invite.iter().rev().find(|c| **c >= 180), o.closed) {
            (_, true) => "tcp closed".to_owned(),
            (Some(c), _) => c.to_string(),
            (None, _) if o.invite.is_empty() => "no answer".to_owned(),
            (None, _) => "100 only".to_owned(),
        };
        *by_code.entry(key).or_default() += 1;
        lat.extend(o.latency);
    }
    lat.sort();
    let group_of = |n: usize| {
        groups
            .iter()
            .find(|g| (g.first..=g.last).contains(&n))
            .map_or("?", |g| g.name.as_str())
    };
    let mut silent_groups = std::collections::BTreeMap::<&str, Vec<usize>>::new();
    for n in &silent {
        silent_groups.entry(group_of(*n)).or_default().push(*n);
    }
    println!(
        "PROTOS c07-sip: {} cases in {:.1} s ({:.0} cases/s), {} by TCP (closed by the phone), \
         {} cancelled rings hung up by command",
        outcomes.len(),
        elapsed.as_secs_f64(),
        outcomes.len() as f64 / elapsed.as_secs_f64(),
        closed,
        hung_up.len()
    );
    println!("INVITE answers: {by_code:?}");
    if !lat.is_empty() {
        println!(
            "first answer latency: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            lat[lat.len() / 2].as_secs_f64() * 1000.0,
            lat[lat.len() * 99 / 100].as_secs_f64() * 1000.0,
            lat[lat.len() - 1].as_secs_f64() * 1000.0
        );
    }
    println!("non-answers ({}): {silent_groups:?}", silent.len());
    println!("hung up by command: {hung_up:?}");
    let slowest = ring_checks.iter().max_by_key(|(_, d)| *d).unwrap();
    println!(
        "valid call after each of {} groups: rang every time (slowest 180: {:.1} ms after {})",
        ring_checks.len(),
        slowest.1.as_secs_f64() * 1000.0,
        slowest.0
    );
    println!("RSS (KiB) after each group: {}", rss_by_group.join(", "));
    println!(
        "RSS: {} KiB before, {} KiB after (max {} KiB), growth {} KiB",
        rss_before,
        rss_after,
        rss_max,
        rss_after as i64 - rss_before as i64
    );

    assert_eq!(ring_checks.len(), 54);
    assert!(
        rss_after < rss_before + 10 * 1024,
        "resident memory grew by {} KiB (limit 10 MiB)",
        rss_after - rss_before
    );
    // A request the phone cannot answer is dropped, and only then: no Via, From, To, Call-ID or
    // CSeq left to copy (line ends mutated into bare LFs: the header section ends after the
    // request line), or an answer too big for a datagram (60 KB of Latin-1 in a header the
    // answer copies: every byte that is not UTF-8 becomes U+FFFD, three bytes). SDP is never
    // copied into an answer.
    let unexplained: Vec<usize> = silent
        .iter()
        .copied()
        .filter(|n| {
            let g = group_of(*n);
            !(g == "sip-request-crlf" || (outcomes[*n].size > 60_000 && g.starts_with("sip-")))
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "INVITEs without any answer: {unexplained:?}"
    );
}
