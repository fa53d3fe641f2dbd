//! Transactions (RFC 3261 §17): the client transactions of the requests we send, retransmitted
//! over UDP until answered and timed out when never answered (timers A, B, E, F, and the ACK
//! of a failed INVITE, §17.1.1.3), and the server transaction table: the answer given to each
//! request, kept to answer the request's retransmissions (§17.2) and to retransmit a failure of
//! an INVITE until its ACK (Timer G).
//!
//! The server table's memory is bounded whatever peers send: an answer over [`MAX_ANSWER`]
//! bytes (a request that carried huge headers, echoed in its answer) is sent but not kept, and
//! when the table holds more than its entry or byte bounds the oldest transactions are
//! forgotten first. A forgotten transaction only means that a late retransmission of its
//! request is handled as the request again.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::addr::{NameAddr, Via};
use super::message::Message;
use super::transport::Proto;

/// RFC 3261 timer values.
pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
/// How long an ACKed failure of an INVITE stays, to absorb retransmitted ACKs (Timer I).
pub const T4: Duration = Duration::from_secs(5);
/// 64·T1: transaction timeout (timers B, F, H) and the wait for the ACK of a 2xx.
pub const TX_TIMEOUT: Duration = Duration::from_secs(32);

/// The largest answer kept for retransmissions.
pub const MAX_ANSWER: usize = 8 * 1024;
/// At most this many transactions (a flood of 500 requests a second never ACKed: 16,000 in
/// the 32 s a transaction lives).
pub const MAX_ENTRIES: usize = 16_384;
/// At most this many bytes of answers and keys.
pub const MAX_BYTES: usize = 2 * 1024 * 1024;

/// A request we answered: its last response, sent again for each retransmission.
#[derive(Debug)]
pub struct ServerTx {
    pub last: Vec<u8>,
    /// The status of `last`.
    pub code: u16,
    pub to: SocketAddr,
    pub proto: Proto,
    pub expires: Instant,
    /// Timer G for a non-2xx final response to an INVITE, until its ACK.
    pub retransmit: Option<(Instant, Duration)>,
}

/// Server transactions by key (see the user agent's `server_key`), within bounds.
#[derive(Debug)]
pub struct ServerTable {
    map: HashMap<String, (u64, ServerTx)>,
    /// Keys in the order their answers were kept (stale entries are skipped).
    order: VecDeque<(u64, String)>,
    seq: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Default for ServerTable {
    fn default() -> Self {
        Self::new(MAX_ENTRIES, MAX_BYTES)
    }
}

/// What an entry counts against the byte bound: its key, its answer and its bookkeeping.
fn cost(key: &str, tx: &ServerTx) -> usize {
    key.len() * 2 + tx.last.len() + std::mem::size_of::<(u64, ServerTx)>() + 32
}

impl ServerTable {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    pub fn get(&self, key: &str) -> Option<&ServerTx> {
        self.map.get(key).map(|(_, tx)| tx)
    }

    /// The transaction to update its timers (`last` must not change: use [`Self::insert`]).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut ServerTx> {
        self.map.get_mut(key).map(|(_, tx)| tx)
    }

    /// Keeps `tx` as the answer of transaction `key`, in place of an earlier one. An answer
    /// over [`MAX_ANSWER`] is not kept (nor is the earlier one): `false`. Forgets the oldest
    /// transactions while the table is over its bounds.
    pub fn insert(&mut self, key: String, tx: ServerTx) -> bool {
        self.remove(&key);
        if tx.last.len() > MAX_ANSWER {
            return false;
        }
        self.seq += 1;
        self.bytes += cost(&key, &tx);
        self.order.push_back((self.seq, key.clone()));
        self.map.insert(key, (self.seq, tx));
        while self.map.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some((seq, oldest)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&oldest).is_some_and(|(s, _)| *s == seq) {
                self.remove(&oldest);
            }
        }
        true
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, tx)) = self.map.remove(key) {
            self.bytes -= cost(key, &tx);
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &ServerTx> {
        self.map.values().map(|(_, tx)| tx)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut ServerTx> {
        self.map.values_mut().map(|(_, tx)| tx)
    }

    /// Forgets the transactions whose time is over.
    pub fn remove_expired(&mut self, now: Instant) {
        let mut freed = 0;
        self.map.retain(|key, (_, tx)| {
            let keep = tx.expires > now;
            if !keep {
                freed += cost(key, tx);
            }
            keep
        });
        self.bytes -= freed;
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(seq, key)| map.get(key).is_some_and(|(s, _)| s == seq));
        }
        if self.map.capacity() > 4 * self.map.len() + 64 {
            self.map.shrink_to_fit();
            self.order.shrink_to_fit();
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// What the table's entries count against its byte bound.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// A request we sent, retransmitted on UDP until answered. `O` names who waits for it.
#[derive(Debug)]
pub struct ClientTx<O> {
    pub method: String,
    pub bytes: Vec<u8>,
    pub to: SocketAddr,
    pub proto: Proto,
    pub interval: Duration,
    pub next: Option<Instant>,
    pub deadline: Instant,
    pub owner: O,
    /// For a failed INVITE: the ACK sent, repeated for each retransmitted final response.
    pub ack: Option<Vec<u8>>,
    pub done: bool,
    /// The request could not be sent (no connection, TLS refused): why.
    pub error: Option<String>,
}

impl<O> ClientTx<O> {
    /// A transaction for `bytes` just sent at `now`.
    pub fn new(method: &str, bytes: Vec<u8>, to: SocketAddr, proto: Proto, owner: O, now: Instant) -> Self {
        Self {
            method: method.to_owned(),
            bytes,
            to,
            proto,
            interval: T1,
            next: (!proto.is_stream()).then(|| now + T1),
            deadline: now + TX_TIMEOUT,
            owner,
            ack: None,
            done: false,
            error: None,
        }
    }

    /// A provisional answer: an INVITE stops retransmitting (Timer A) and waits up to 3
    /// minutes for its final answer; other requests retransmit every T2 (§17.1.2.2).
    pub fn provisional(&mut self, now: Instant) {
        if self.method == "INVITE" {
            self.next = None;
            self.deadline = now + Duration::from_secs(180);
        } else {
            self.interval = T2;
        }
    }

    /// The final answer: no more retransmissions; over UDP the transaction stays to absorb
    /// the answer's retransmissions (Timer D/K), over a stream it ends now.
    pub fn finished(&mut self, now: Instant) {
        self.done = true;
        self.next = None;
        self.deadline = now
            + if self.proto.is_stream() {
                Duration::ZERO
            } else {
                TX_TIMEOUT
            };
    }

    /// When due at `now`: the bytes to send again, and the next interval set (doubling; capped
    /// at T2 except for INVITE, §17.1.1.2).
    pub fn due(&mut self, now: Instant) -> Option<Vec<u8>> {
        let next = self.next?;
        if next > now {
            return None;
        }
        self.interval = if self.method == "INVITE" {
            self.interval * 2
        } else {
            (self.interval * 2).min(T2)
        };
        self.next = Some(now + self.interval);
        Some(self.bytes.clone())
    }
}

/// The key of a server transaction: top Via branch (with its sent-by) and the method (ACK
/// keyed like INVITE's, so it can end INVITE's Timer G).
pub fn server_key(msg: &Message) -> Option<String> {
    let via = Via::parse(msg.get_all("Via").first()?).ok()?;
    let method = msg.method()?;
    Some(match via.branch() {
        Some(b) if b.starts_with("z9hG4bK") => format!("{b}|{}:{:?}|{method}", via.host, via.port),
        // RFC 2543 peers: match on Call-ID, CSeq number and From tag.
        _ => format!(
            "{}|{}|{}|{method}",
            msg.call_id()?,
            msg.cseq()?.0,
            msg.get("From")
                .and_then(|f| NameAddr::parse(f).ok())
                .and_then(|f| f.tag().map(str::to_owned))
                .unwrap_or_default()
        ),
    })
}

/// How long a server transaction keeps its answer for retransmitted requests: an INVITE's
/// until its ACK (Timer H, then [`acked_lifetime`]) or for its 2xx's retransmissions; other
/// requests 64×T1 over UDP (Timer J), nothing over a stream, where nothing is retransmitted
/// (RFC 3261 §17.2).
pub fn server_tx_lifetime(invite: bool, proto: Proto) -> Duration {
    if invite || !proto.is_stream() {
        TX_TIMEOUT
    } else {
        Duration::ZERO
    }
}

/// How long an INVITE's failure stays once ACKed (Timer I: T4 over UDP, nothing over a stream).
pub fn acked_lifetime(proto: Proto) -> Duration {
    if proto.is_stream() { Duration::ZERO } else { T4 }
}

/// The ACK for a non-2xx final response to `inv` (RFC 3261 §17.1.1.3).
pub fn failure_ack(inv: &Message, resp: &Message) -> Vec<u8> {
    let mut a = Message::request("ACK", inv.uri().unwrap_or(""));
    if let Some(v) = inv.get_all("Via").first() {
        a.push("Via", v.to_string());
    }
    a.push("Max-Forwards", "70")
        .push("From", inv.get("From").unwrap_or("").to_owned())
        .push("To", resp.get("To").unwrap_or("").to_owned())
        .push("Call-ID", inv.call_id().unwrap_or("").to_owned())
        .push("CSeq", format!("{} ACK", inv.cseq().map_or(1, |(n, _)| n)));
    for r in inv.get_all("Route") {
        a.push("Route", r.to_string());
    }
    a.to_bytes()
}

/// A client transaction table keyed by branch (a CANCEL by its INVITE's branch and `#CANCEL`).
pub type ClientTable<O> = HashMap<String, ClientTx<O>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(len: usize, code: u16) -> ServerTx {
        ServerTx {
            last: vec![b'x'; len],
            code,
            to: "127.0.0.1:5060".parse().unwrap(),
            proto: Proto::Udp,
            expires: Instant::now() + Duration::from_secs(32),
            retransmit: None,
        }
    }

    #[test]
    fn an_answer_replaces_the_earlier_one_of_its_transaction() {
        let mut t = ServerTable::default();
        assert!(t.insert("a|INVITE".into(), tx(300, 180)));
        assert!(t.insert("a|INVITE".into(), tx(400, 487)));
        assert_eq!((t.len(), t.get("a|INVITE").unwrap().code), (1, 487));
        assert_eq!(t.bytes(), cost("a|INVITE", &tx(400, 487)));
    }

    #[test]
    fn huge_answers_are_not_kept() {
        let mut t = ServerTable::default();
        assert!(t.insert("a|INVITE".into(), tx(300, 180)));
        // A request with a 60 KB header: its answer echoes it. Neither answer is kept (the
        // 180 would be the wrong answer to a retransmission now).
        assert!(!t.insert("a|INVITE".into(), tx(MAX_ANSWER + 1, 400)));
        assert!(t.is_empty());
        assert_eq!(t.bytes(), 0);
    }

    #[test]
    fn the_oldest_transactions_go_first_when_the_table_is_full() {
        let mut t = ServerTable::new(3, usize::MAX);
        for k in ["a", "b", "c"] {
            t.insert(k.into(), tx(100, 200));
        }
        // `a` answered again: now the newest.
        t.insert("a".into(), tx(100, 487));
        t.insert("d".into(), tx(100, 200));
        assert!(t.get("b").is_none(), "the oldest answer is forgotten");
        assert!(t.get("a").is_some() && t.get("c").is_some() && t.get("d").is_some());
        // By bytes: three entries fit, a fourth pushes the oldest out.
        let one = cost("k0", &tx(1000, 200));
        let mut t = ServerTable::new(usize::MAX, 3 * one);
        for i in 0..10 {
            t.insert(format!("k{i}"), tx(1000, 200));
            assert!(t.bytes() <= 3 * one);
        }
        assert_eq!(t.len(), 3);
        assert!(t.get("k9").is_some() && t.get("k6").is_none());
    }

    #[test]
    fn a_flood_stays_within_the_bounds() {
        let mut t = ServerTable::default();
        for i in 0..100_000 {
            t.insert(format!("z9hG4bK{i:032}|127.0.0.1:5060|INVITE"), tx(600, 486));
        }
        assert!(t.len() <= MAX_ENTRIES);
        assert!(t.bytes() <= MAX_BYTES);
        assert!(t.order.len() <= MAX_ENTRIES + 1);
    }

    #[test]
    fn expired_transactions_are_forgotten() {
        let mut t = ServerTable::default();
        let mut old = tx(100, 200);
        old.expires = Instant::now();
        t.insert("old".into(), old);
        t.insert("new".into(), tx(100, 200));
        for i in 0..200 {
            // Replaced answers leave stale order entries behind.
            t.insert("new".into(), tx(100 + i, 200));
        }
        t.remove_expired(Instant::now());
        assert!(t.get("old").is_none() && t.get("new").is_some());
        assert_eq!(t.bytes(), cost("new", t.get("new").unwrap()));
        assert!(t.order.len() <= 2);
    }
}
