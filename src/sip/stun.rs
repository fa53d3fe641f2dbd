//! STUN (RFC 8489) Binding requests to learn the address a NAT maps one of our UDP sockets to
//! (`[account] stun_server`). The messages are encoded and decoded by webrtc-rs's `stun`
//! crate (docs/decisions.md D9); what is ours is the client transaction: its transaction ID,
//! the retransmissions of §6.2.1 (RTO 500 ms doubling, Rc = 7 requests, a last wait of
//! Rm = 16 × RTO; capped for media so that a call is not held up), and the checks on what
//! comes back: only a Binding success response with our transaction ID, from the server's
//! address, is taken (its FINGERPRINT checked when it has one); XOR-MAPPED-ADDRESS is read
//! (MAPPED-ADDRESS as the fallback). Anything else (a stranger's datagram, another
//! transaction, an error response, a bad FINGERPRINT, malformed or truncated bytes) is counted
//! and ignored, never a panic.
//!
//! STUN shares the SIP socket and the media sockets: [`looks_like_stun`] tells its datagrams
//! apart (RFC 7983 §7: the first byte 0–3; RFC 5626 §4.4.1's demultiplexing by the magic
//! cookie), before SIP parsing or RTP/RTCP handling.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun::attributes::ATTR_FINGERPRINT;
use stun::fingerprint::FINGERPRINT;
use stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Getter, Message};
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;

/// STUN's default port (RFC 8489 §18.6).
pub const DEFAULT_PORT: u16 = 3478;
/// The initial retransmission timeout (RFC 8489 §6.2.1).
pub const RTO: Duration = Duration::from_millis(500);
/// How many requests at most (Rc).
pub const RC: u32 = 7;
/// The last wait, in RTOs (Rm).
pub const RM: u32 = 16;
/// The longest a call's media waits for its mapping before its SDP is written without it.
pub const MEDIA_WAIT: Duration = Duration::from_millis(1000);
/// The longest the first REGISTER waits for the SIP socket's mapping.
pub const REGISTER_WAIT: Duration = Duration::from_millis(1000);
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// `[account] stun_server`: `host[:port]` or `stun:host[:port]` (RFC 7064), `[v6]:port` for
/// an IPv6 literal with a port. `Ok(None)`: empty, STUN off.
pub fn parse_server(value: &str) -> Result<Option<(String, u16)>, String> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let rest = v.strip_prefix("stun:").unwrap_or(v);
    let bad = || format!("`{value}`: expected `host[:port]` or `stun:host[:port]`");
    if rest.is_empty() || rest.contains(['/', '@', '?', ';', ' ']) || rest.starts_with("//") {
        return Err(bad());
    }
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner.split_once(']').ok_or_else(bad)?;
        h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => (h.to_owned(), DEFAULT_PORT),
            p => (
                h.to_owned(),
                port_of(p.strip_prefix(':').ok_or_else(bad)?).ok_or_else(bad)?,
            ),
        }
    } else if rest.parse::<std::net::Ipv6Addr>().is_ok() {
        (rest.to_owned(), DEFAULT_PORT)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_owned(), port_of(p).ok_or_else(bad)?),
            None => (rest.to_owned(), DEFAULT_PORT),
        }
    };
    let name_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !name_ok {
        return Err(bad());
    }
    Ok(Some((host, port)))
}

fn port_of(p: &str) -> Option<u16> {
    p.parse::<u16>().ok().filter(|p| *p > 0)
}

/// The server's address: an IP at once, a name looked up (the first address of `family`'s
/// kind when there is one: a mapping is learned for the socket's own family).
pub async fn resolve(host: &str, port: u16, v6: bool) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let found = tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("looking up the STUN server `{host}` timed out"))?
        .map_err(|e| format!("cannot look up the STUN server `{host}`: {e}"))?;
    let all: Vec<SocketAddr> = found.collect();
    all.iter()
        .find(|a| a.is_ipv6() == v6)
        .or_else(|| all.first())
        .copied()
        .ok_or_else(|| format!("the STUN server `{host}` has no address"))
}

/// A STUN message by its first bytes: top two bits of the first byte zero (RFC 7983), the
/// magic cookie in bytes 4–7, a length that is a multiple of 4. SIP starts with a letter or
/// CR/LF, RTP and RTCP with version 2 (128–191): none of them passes.
pub fn looks_like_stun(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] < 4 && data[4..8] == MAGIC_COOKIE && data[3].is_multiple_of(4)
}

/// Why a datagram was not the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Not from the server's address.
    Stranger,
    /// Not STUN, or not decodable (a length that lies, a truncated attribute).
    Malformed,
    /// A FINGERPRINT attribute (RFC 8489 §14.7) that does not match the message, or that is
    /// not its last attribute.
    BadFingerprint,
    /// Another transaction's ID.
    OtherTransaction,
    /// Not a Binding success response (an error response, a request, an indication).
    NotSuccess,
    /// A success response without a usable (XOR-)MAPPED-ADDRESS.
    NoAddress,
}

/// What a datagram meant to the transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The server says it saw us at this address.
    Mapped(SocketAddr),
    Ignored(Ignored),
}

/// One Binding transaction (RFC 8489 §6.2.1), driven by its owner's clock: [`Binding::due`]
/// says when to (re)send, [`Binding::expired`] when to give up, [`Binding::check`] reads
/// what arrives.
#[derive(Debug)]
pub struct Binding {
    pub server: SocketAddr,
    id: [u8; 12],
    request: Vec<u8>,
    /// Requests sent so far.
    sent: u32,
    next: Instant,
    interval: Duration,
    give_up: Instant,
    /// Datagrams that were not the answer.
    pub ignored: u32,
}

impl Binding {
    /// A new transaction (random 96-bit ID) to `server`, given up at the end of RFC 8489's
    /// schedule (39.5 s with the defaults) or after `cap`, whichever comes first.
    pub fn new(server: SocketAddr, now: Instant, cap: Option<Duration>) -> Self {
        let mut m = Message::new();
        m.set_type(BINDING_REQUEST);
        // The crate's generator (rand's thread RNG, a CSPRNG); infallible in this version.
        let _ = m.new_transaction_id();
        m.encode();
        // Full schedule: requests at 0, RTO, 3 RTO, … (Rc of them), then Rm × RTO.
        let mut total = Duration::ZERO;
        let mut iv = RTO;
        for _ in 1..RC {
            total += iv;
            iv *= 2;
        }
        total += RTO * RM;
        let total = cap.map_or(total, |c| c.min(total));
        Self {
            server,
            id: m.transaction_id.0,
            request: m.raw,
            sent: 0,
            next: now,
            interval: RTO,
            give_up: now + total,
            ignored: 0,
        }
    }

    /// The request's bytes.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Whether a request is due at `now` (the schedule then moves on).
    pub fn due(&mut self, now: Instant) -> bool {
        if self.sent >= RC || now < self.next || now >= self.give_up {
            return false;
        }
        self.sent += 1;
        if self.sent > 1 {
            self.interval *= 2;
        }
        self.next = now + self.interval;
        true
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u32 {
        self.sent
    }

    /// The next time something is to be done: a retransmission or giving up.
    pub fn deadline(&self) -> Instant {
        if self.sent < RC {
            self.next.min(self.give_up)
        } else {
            self.give_up
        }
    }

    /// No answer came in time.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.give_up
    }

    /// What `data`, from `from`, means to this transaction. An ignored datagram is counted.
    pub fn check(&mut self, data: &[u8], from: SocketAddr) -> Answer {
        let a = self.read(data, from);
        if let Answer::Ignored(why) = a {
            self.ignored += 1;
            tracing::debug!(%from, ?why, "STUN: datagram ignored");
        }
        a
    }

    fn read(&self, data: &[u8], from: SocketAddr) -> Answer {
        if !same_address(from, self.server) {
            return Answer::Ignored(Ignored::Stranger);
        }
        if !looks_like_stun(data) {
            return Answer::Ignored(Ignored::Malformed);
        }
        let mut m = Message::new();
        if m.unmarshal_binary(data).is_err() {
            return Answer::Ignored(Ignored::Malformed);
        }
        if m.contains(ATTR_FINGERPRINT) && FINGERPRINT.check(&m).is_err() {
            return Answer::Ignored(Ignored::BadFingerprint);
        }
        if m.transaction_id.0 != self.id {
            return Answer::Ignored(Ignored::OtherTransaction);
        }
        if m.typ != BINDING_SUCCESS {
            return Answer::Ignored(Ignored::NotSuccess);
        }
        let mut x = XorMappedAddress::default();
        if x.get_from(&m).is_ok() && x.port != 0 {
            return Answer::Mapped(SocketAddr::new(x.ip, x.port));
        }
        let mut plain = stun::addr::MappedAddress::default();
        if plain.get_from(&m).is_ok() && plain.port != 0 {
            return Answer::Mapped(SocketAddr::new(plain.ip, plain.port));
        }
        Answer::Ignored(Ignored::NoAddress)
    }
}

/// The same transport address, an IPv4 address and its IPv4-mapped IPv6 form being one.
fn same_address(a: SocketAddr, b: SocketAddr) -> bool {
    let canon = |s: SocketAddr| (s.ip().to_canonical(), s.port());
    canon(a) == canon(b)
}

/// Asks `server` what address `socket` is seen at, reading `socket` meanwhile (its other
/// datagrams are dropped: nobody else reads it before the SDP is written), for at most `cap`.
/// `Err`: why there is no mapping (no answer in time, the socket cannot send).
pub async fn query(socket: &UdpSocket, server: SocketAddr, cap: Duration) -> Result<SocketAddr, String> {
    let mut b = Binding::new(server, Instant::now(), Some(cap));
    let mut buf = vec![0u8; 1500];
    loop {
        let now = Instant::now();
        if b.expired(now) {
            return Err(format!(
                "no answer from the STUN server {server} within {} ms ({} requests, {} other datagrams)",
                cap.as_millis(),
                b.sent(),
                b.ignored
            ));
        }
        if b.due(now)
            && let Err(e) = socket.send_to(b.request(), server).await
        {
            return Err(format!("cannot send to the STUN server {server}: {e}"));
        }
        let until = tokio::time::Instant::from_std(b.deadline());
        match tokio::time::timeout_at(until, socket.recv_from(&mut buf)).await {
            Err(_) => {}
            // An ICMP error reported on some systems: wait a little, the schedule goes on.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Ok(Ok((n, from))) => {
                if let Answer::Mapped(a) = b.check(&buf[..n], from) {
                    return Ok(a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun::message::{BINDING_ERROR, Setter};

    fn server_addr() -> SocketAddr {
        "127.0.0.1:3478".parse().unwrap()
    }

    /// A response to `req` of type `typ` carrying `mapped` (XOR) and/or `plain`, encoded by the
    /// crate the way a server does.
    fn response(
        req: &[u8],
        typ: stun::message::MessageType,
        mapped: Option<SocketAddr>,
        plain: Option<SocketAddr>,
    ) -> Vec<u8> {
        let mut r = Message::new();
        r.unmarshal_binary(req).unwrap();
        let id = r.transaction_id;
        let mut m = Message::new();
        m.set_type(typ);
        m.transaction_id = id;
        m.write_transaction_id();
        if let Some(a) = mapped {
            XorMappedAddress {
                ip: a.ip(),
                port: a.port(),
            }
            .add_to(&mut m)
            .unwrap();
        }
        if let Some(a) = plain {
            stun::addr::MappedAddress {
                ip: a.ip(),
                port: a.port(),
            }
            .add_to(&mut m)
            .unwrap();
        }
        m.encode();
        m.raw
    }

    #[test]
    fn server_values_parse_and_bad_ones_say_what_is_expected() {
        let ok = |s: &str| parse_server(s).unwrap();
        assert_eq!(ok(""), None);
        assert_eq!(ok("  "), None);
        assert_eq!(ok("stun.example"), Some(("stun.example".into(), 3478)));
        assert_eq!(
            ok("stun:stun.example:19302"),
            Some(("stun.example".into(), 19302))
        );
        assert_eq!(ok("192.0.2.1:3479"), Some(("192.0.2.1".into(), 3479)));
        assert_eq!(ok("[2001:db8::1]:3479"), Some(("2001:db8::1".into(), 3479)));
        assert_eq!(ok("2001:db8::1"), Some(("2001:db8::1".into(), 3478)));
        for bad in [
            "stun:",
            "host:0",
            "host:99999",
            "host:x",
            "a b",
            "stun://h",
            "turn:h/x",
            "[::1",
            "[x]:1",
        ] {
            let e = parse_server(bad).unwrap_err();
            assert!(e.contains("expected `host[:port]`"), "{bad}: {e}");
        }
    }

    #[test]
    fn stun_is_told_apart_from_sip_rtp_and_keepalives() {
        let b = Binding::new(server_addr(), Instant::now(), None);
        assert!(looks_like_stun(b.request()));
        assert_eq!(b.request().len(), 20, "a bare Binding request: the header only");
        assert_eq!(&b.request()[..2], &[0, 1], "Binding request type");
        assert!(!looks_like_stun(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n\r\n\r\n"));
        assert!(!looks_like_stun(b"\r\n\r\n"));
        let mut rtp = vec![0x80u8, 0, 0, 1, 0x21, 0x12, 0xA4, 0x42];
        rtp.resize(172, 0);
        assert!(
            !looks_like_stun(&rtp),
            "RTP version 2 with the cookie's bytes by chance"
        );
        assert!(!looks_like_stun(&b.request()[..19]));
    }

    #[test]
    fn the_answer_is_read_from_xor_mapped_address_then_mapped_address() {
        let now = Instant::now();
        let mut b = Binding::new(server_addr(), now, None);
        let seen: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let r = response(
            b.request(),
            BINDING_SUCCESS,
            Some(seen),
            Some("198.51.100.1:1".parse().unwrap()),
        );
        assert_eq!(
            b.check(&r, server_addr()),
            Answer::Mapped(seen),
            "XOR-MAPPED-ADDRESS first"
        );
        let r = response(b.request(), BINDING_SUCCESS, None, Some(seen));
        assert_eq!(
            b.check(&r, server_addr()),
            Answer::Mapped(seen),
            "MAPPED-ADDRESS as fallback"
        );
        let v6: SocketAddr = "[2001:db8::7]:5062".parse().unwrap();
        let r = response(b.request(), BINDING_SUCCESS, Some(v6), None);
        assert_eq!(b.check(&r, server_addr()), Answer::Mapped(v6));
        assert_eq!(b.ignored, 0);
    }

    #[test]
    fn wrong_transaction_source_class_and_garbage_are_ignored_and_counted() {
        let now = Instant::now();
        let mut b = Binding::new(server_addr(), now, None);
        let other = Binding::new(server_addr(), now, None);
        let seen: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let wrong_id = response(other.request(), BINDING_SUCCESS, Some(seen), None);
        assert_eq!(
            b.check(&wrong_id, server_addr()),
            Answer::Ignored(Ignored::OtherTransaction)
        );
        let good = response(b.request(), BINDING_SUCCESS, Some(seen), None);
        let stranger: SocketAddr = "127.0.0.1:3479".parse().unwrap();
        assert_eq!(b.check(&good, stranger), Answer::Ignored(Ignored::Stranger));
        let error = response(b.request(), BINDING_ERROR, Some(seen), None);
        assert_eq!(
            b.check(&error, server_addr()),
            Answer::Ignored(Ignored::NotSuccess)
        );
        let empty = response(b.request(), BINDING_SUCCESS, None, None);
        assert_eq!(
            b.check(&empty, server_addr()),
            Answer::Ignored(Ignored::NoAddress)
        );
        // Truncated, lengths that lie, random bytes behind a STUN header: never a panic.
        let mut truncated = good.clone();
        truncated.truncate(good.len() - 3);
        assert_eq!(
            b.check(&truncated, server_addr()),
            Answer::Ignored(Ignored::Malformed)
        );
        let mut lying = good.clone();
        lying[2] = 0xFF;
        lying[3] = 0xFC;
        assert_eq!(
            b.check(&lying, server_addr()),
            Answer::Ignored(Ignored::Malformed)
        );
        assert_eq!(
            b.check(b"SIP/2.0 200 OK\r\n\r\n", server_addr()),
            Answer::Ignored(Ignored::Malformed)
        );
        let mut rng = rand::rng();
        for _ in 0..5000 {
            let len = rand::Rng::random_range(&mut rng, 20..120usize);
            let mut junk: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
            junk[0] = 1;
            junk[1] = 1;
            junk[2] = 0;
            junk[3] = rand::Rng::random_range(&mut rng, 0..30u8) * 4;
            junk[4..8].copy_from_slice(&MAGIC_COOKIE);
            junk[8..20].copy_from_slice(&b.id);
            let _ = b.check(&junk, server_addr());
        }
        assert!(b.ignored >= 7);
        // The genuine answer still counts after all that.
        assert_eq!(b.check(&good, server_addr()), Answer::Mapped(seen));
    }

    /// `response` with a FINGERPRINT attribute added last, as a server may send it.
    fn with_fingerprint(req: &[u8], mapped: SocketAddr) -> Vec<u8> {
        let mut r = Message::new();
        r.unmarshal_binary(req).unwrap();
        let mut m = Message::new();
        m.set_type(BINDING_SUCCESS);
        m.transaction_id = r.transaction_id;
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

    #[test]
    fn a_bad_fingerprint_a_lying_attribute_length_and_every_truncation_are_ignored() {
        let now = Instant::now();
        let mut b = Binding::new(server_addr(), now, None);
        let seen: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let good = with_fingerprint(b.request(), seen);
        assert_eq!(
            b.check(&good, server_addr()),
            Answer::Mapped(seen),
            "a good FINGERPRINT"
        );
        // The CRC's last byte flipped; a byte of the address flipped under a CRC that was right.
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0x01;
        assert_eq!(
            b.check(&bad_crc, server_addr()),
            Answer::Ignored(Ignored::BadFingerprint)
        );
        let mut tampered = good.clone();
        tampered[27] ^= 0x40; // inside XOR-MAPPED-ADDRESS's port
        assert_eq!(
            b.check(&tampered, server_addr()),
            Answer::Ignored(Ignored::BadFingerprint)
        );
        // FINGERPRINT not last: an attribute after it (the header's length grown to match).
        let mut not_last = good.clone();
        not_last.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]); // SOFTWARE, empty
        not_last[3] += 4;
        assert_ne!(b.check(&not_last, server_addr()), Answer::Mapped(seen));
        // An attribute whose length runs past the message.
        let mut lying_attr = good.clone();
        lying_attr[22] = 0x00;
        lying_attr[23] = 0xF0; // XOR-MAPPED-ADDRESS's length: 240 bytes
        assert!(matches!(
            b.check(&lying_attr, server_addr()),
            Answer::Ignored(Ignored::Malformed | Ignored::BadFingerprint)
        ));
        // Every truncation with the header's length left as it was: ignored. With the length
        // fixed to match: ignored, or, cut just before FINGERPRINT (a valid response without
        // one), the genuine address; never another.
        for cut in 0..good.len() {
            let mut t = good[..cut].to_vec();
            assert!(
                matches!(b.check(&t, server_addr()), Answer::Ignored(_)),
                "cut at {cut}"
            );
            if t.len() >= 20 {
                let body = u16::try_from(t.len() - 20).unwrap();
                t[2..4].copy_from_slice(&body.to_be_bytes());
                match b.check(&t, server_addr()) {
                    Answer::Ignored(_) => {}
                    Answer::Mapped(a) => assert!(a == seen && cut == 32, "cut at {cut}: {a}"),
                }
            }
        }
        // The same bytes from anyone but the server: ignored before being read.
        let stranger: SocketAddr = "203.0.113.7:3478".parse().unwrap();
        assert_eq!(b.check(&good, stranger), Answer::Ignored(Ignored::Stranger));
        // An IPv4-mapped IPv6 form of the server's address is the server.
        let mapped_v6: SocketAddr = "[::ffff:127.0.0.1]:3478".parse().unwrap();
        assert_eq!(b.check(&good, mapped_v6), Answer::Mapped(seen));
    }

    #[test]
    fn retransmissions_follow_rfc_8489_and_a_cap_shortens_them() {
        let t0 = Instant::now();
        let mut b = Binding::new(server_addr(), t0, None);
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut sends = Vec::new();
        let mut t = 0;
        while t < 45_000 {
            if b.due(ms(t)) {
                sends.push(t);
            }
            if b.expired(ms(t)) {
                break;
            }
            t += 50;
        }
        assert_eq!(
            sends,
            [0, 500, 1500, 3500, 7500, 15500, 31500],
            "Rc = 7, RTO doubling"
        );
        assert_eq!(t, 39_500, "given up Rm × RTO after the last request");
        let mut capped = Binding::new(server_addr(), t0, Some(MEDIA_WAIT));
        let mut sends = Vec::new();
        for t in (0..2000).step_by(50) {
            if capped.due(ms(t)) {
                sends.push(t);
            }
        }
        assert_eq!(sends, [0, 500]);
        assert!(capped.expired(ms(1000)) && !capped.expired(ms(950)));
        assert_eq!(capped.deadline(), ms(1000));
    }

    #[tokio::test]
    async fn a_query_gets_the_mapping_from_a_real_socket_and_ignores_the_rest() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (saddr, caddr) = (server.local_addr().unwrap(), client.local_addr().unwrap());
        let answering = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            // Noise first: the right answer from a stranger, a wrong ID from the server.
            let right = response(&buf[..n], BINDING_SUCCESS, Some(from), None);
            stranger.send_to(&right, from).await.unwrap();
            let other = Binding::new(saddr, Instant::now(), None);
            let wrong = response(
                other.request(),
                BINDING_SUCCESS,
                Some("192.0.2.9:9".parse().unwrap()),
                None,
            );
            server.send_to(&wrong, from).await.unwrap();
            server.send_to(b"\x80\x00junk", from).await.unwrap();
            server.send_to(&right, from).await.unwrap();
        });
        let got = query(&client, saddr, MEDIA_WAIT).await.unwrap();
        assert_eq!(got, caddr);
        answering.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_server_is_given_up_after_the_cap() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let t0 = Instant::now();
        let e = query(&client, server.local_addr().unwrap(), Duration::from_millis(700))
            .await
            .unwrap_err();
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_millis(1200),
            "{took:?}"
        );
        assert!(
            e.contains("no answer from the STUN server") && e.contains("2 requests"),
            "{e}"
        );
        // Both requests reached the server.
        let mut buf = [0u8; 100];
        for _ in 0..2 {
            let (n, _) = server.try_recv_from(&mut buf).unwrap();
            assert!(looks_like_stun(&buf[..n]));
        }
    }
}
