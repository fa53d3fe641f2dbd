//! Dialogs (RFC 3261 §12): one per INVITE session, identified by Call-ID, local tag and remote
//! tag, holding what requests inside it need (the route set, the remote target, both CSeq
//! counters) and the dialog usages' own state: the INVITE transaction's 2xx awaiting its ACK,
//! reliable provisional responses awaiting PRACK (RFC 3262), and the session timer (RFC 4028).
//! A dialog knows no media: offers and answers pass through it as opaque SDP text.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::addr::{NameAddr, Uri};
use super::message::Message;
use super::transport::Proto;

/// A dialog's handle, unique for the life of the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId(pub u64);

impl fmt::Display for DialogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "d{}", self.0)
    }
}

/// Which side created the dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We sent the INVITE.
    Uac,
    /// We received it.
    Uas,
}

/// A dialog's state (a terminated dialog is removed from the table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogState {
    /// No final answer to the INVITE yet (for a UAS dialog: its tag is ours, chosen at once).
    Early,
    /// The INVITE was answered 2xx.
    Confirmed,
}

/// Why a dialog ended, as the signalling layer saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialogEnd {
    /// The peer sent BYE.
    RemoteBye,
    /// The caller cancelled its INVITE (CANCEL, or BYE in the early dialog).
    Cancelled,
    /// Our INVITE got a final failure (after any authentication retry).
    Refused { code: u16, reason: String },
    /// Our INVITE, or a request inside the dialog, got no answer in time (Timer B, 408, 481).
    Timeout,
    /// A request could not be sent at all (no connection, TLS refused).
    Unreachable(String),
    /// Our 2xx was never ACKed (RFC 3261 §13.3.1.4): BYE sent.
    NoAck,
    /// Our reliable provisional response was never PRACKed (RFC 3262 §3): 5xx sent.
    NoPrack,
    /// The session timer ran out without a refresh (RFC 4028 §10): BYE sent.
    SessionExpired,
    /// The dialog's peer does not know it any more (481 to a request inside it).
    Gone,
}

/// A 2xx to an INVITE (initial or re-INVITE) retransmitted until its ACK.
#[derive(Debug)]
pub struct AwaitingAck {
    pub cseq: u32,
    pub bytes: Vec<u8>,
    pub next: Instant,
    pub interval: Duration,
    pub give_up: Instant,
    /// The 2xx carried our offer (late offer): the ACK carries the answer.
    pub offered: bool,
}

/// A reliable provisional response (RFC 3262) retransmitted until its PRACK.
#[derive(Debug)]
pub struct Unacked {
    pub rseq: u32,
    pub bytes: Vec<u8>,
    pub next: Instant,
    pub interval: Duration,
    pub give_up: Instant,
}

/// An offer (or a request for one) from the peer in a re-INVITE or UPDATE, awaiting the call
/// layer's answer.
#[derive(Debug)]
pub struct PendingOffer {
    pub request: Message,
    pub from: SocketAddr,
    pub proto: Proto,
}

/// RFC 4028 session timer of a confirmed dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimer {
    /// Session-Expires in seconds.
    pub interval: u32,
    /// We send the refreshes (else we only watch for them).
    pub we_refresh: bool,
    /// When we refresh (we_refresh) or when the session expires (else).
    pub due: Instant,
}

impl SessionTimer {
    /// A timer of `interval` seconds started at `now` (§10: the refresher refreshes at half
    /// the interval; the other side ends the session `min(32, interval/3)` seconds before
    /// the interval runs out).
    pub fn start(interval: u32, we_refresh: bool, now: Instant) -> Self {
        let secs = u64::from(interval.max(1));
        let due = if we_refresh {
            now + Duration::from_secs(secs) / 2
        } else {
            now + Duration::from_secs(secs - (secs / 3).min(32))
        };
        Self {
            interval,
            we_refresh,
            due,
        }
    }
}

/// One dialog.
#[derive(Debug)]
pub struct Dialog {
    pub id: DialogId,
    pub call_id: String,
    pub role: Role,
    pub state: DialogState,
    /// Our and their addresses with tags, as written in From/To of our requests.
    pub local: NameAddr,
    pub remote: NameAddr,
    /// Where in-dialog requests go (their Contact).
    pub remote_target: String,
    pub route: Vec<String>,
    /// The address the dialog's INVITE came from or went to.
    pub peer: SocketAddr,
    pub proto: Proto,
    pub local_cseq: u32,
    /// The highest CSeq of the peer's requests in this dialog (§12.2.2).
    pub remote_cseq: Option<u32>,
    /// UAS: the INVITE and its transaction key, until its final response.
    pub invite: Option<std::sync::Arc<Message>>,
    pub invite_key: Option<String>,
    /// UAS: a final response to the INVITE was sent.
    pub invite_answered: bool,
    /// UAC: our INVITE (to build CANCEL and authenticate) and its branch.
    pub our_invite: Option<Message>,
    pub our_branch: Option<String>,
    pub auth_tries: u8,
    pub min_se_retried: bool,
    pub ok_wait: Option<AwaitingAck>,
    /// UAC: the ACK for the peer's 2xx, repeated if the 2xx is retransmitted.
    pub ack: Option<Vec<u8>>,
    /// The peer's offer in a re-INVITE or UPDATE that we have not answered yet.
    pub pending_in: Option<PendingOffer>,
    /// Our re-INVITE or UPDATE that the peer has not answered yet (its branch).
    pub pending_out: Option<String>,
    /// RFC 3262: the peer takes (or requires) reliable provisional responses.
    pub peer_100rel: bool,
    pub rseq: u32,
    pub unacked: Option<Unacked>,
    /// UAC: the RSeq of the last reliable provisional response we PRACKed.
    pub remote_rseq: Option<u32>,
    /// RFC 4028: the peer supports session timers; the running timer.
    pub peer_timer: bool,
    pub timer: Option<SessionTimer>,
    /// The peer takes UPDATE (its Allow), for session refreshes.
    pub peer_update: bool,
    /// The last P-Asserted-Identity (or Remote-Party-ID) seen from the peer.
    pub identity: Option<String>,
}

impl Dialog {
    /// A dialog with the given parties; the rest starts empty.
    pub fn new(
        id: DialogId,
        call_id: String,
        role: Role,
        local: NameAddr,
        remote: NameAddr,
        peer: SocketAddr,
        proto: Proto,
    ) -> Self {
        Self {
            id,
            remote_target: remote.uri.clone(),
            call_id,
            role,
            state: DialogState::Early,
            local,
            remote,
            route: Vec::new(),
            peer,
            proto,
            local_cseq: 1,
            remote_cseq: None,
            invite: None,
            invite_key: None,
            invite_answered: false,
            our_invite: None,
            our_branch: None,
            auth_tries: 0,
            min_se_retried: false,
            ok_wait: None,
            ack: None,
            pending_in: None,
            pending_out: None,
            peer_100rel: false,
            rseq: 0,
            unacked: None,
            remote_rseq: None,
            peer_timer: false,
            timer: None,
            peer_update: false,
            identity: None,
        }
    }

    /// Our tag.
    pub fn local_tag(&self) -> &str {
        self.local.tag().unwrap_or("")
    }

    /// Their tag ("" for an RFC 2543 peer that sends none).
    pub fn remote_tag(&self) -> &str {
        self.remote.tag().unwrap_or("")
    }

    /// A request inside the dialog (RFC 3261 §12.2.1.1); `cseq` reuses a number (ACK), else
    /// the next one is taken.
    pub fn request(&mut self, method: &str, cseq: Option<u32>) -> Message {
        let n = match cseq {
            Some(n) => n,
            None => {
                self.local_cseq = self.local_cseq.saturating_add(1);
                self.local_cseq
            }
        };
        let mut m = Message::request(method, &self.remote_target);
        m.push("From", self.local.to_string())
            .push("To", self.remote.to_string())
            .push("Call-ID", self.call_id.clone())
            .push("CSeq", format!("{n} {method}"));
        for r in &self.route {
            m.push("Route", r.clone());
        }
        m
    }

    /// Where requests inside the dialog go: the first loose route, else the remote target,
    /// else the peer.
    pub fn destination(&self) -> (SocketAddr, Proto) {
        let target = self
            .route
            .first()
            .and_then(|r| NameAddr::parse(r).ok())
            .map(|r| r.uri)
            .unwrap_or_else(|| self.remote_target.clone());
        let addr = Uri::parse(&target).ok().and_then(|u| {
            let host = u.host.trim_start_matches('[').trim_end_matches(']');
            host.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, u.port.unwrap_or(5060)))
        });
        (addr.unwrap_or(self.peer), self.proto)
    }

    /// Takes the remote target from a target-refresh message's Contact (§12.2).
    pub fn refresh_target(&mut self, msg: &Message) {
        if let Some(c) = msg
            .get_all("Contact")
            .first()
            .and_then(|c| NameAddr::parse(c).ok())
        {
            self.remote_target = c.uri;
        }
    }

    /// Checks a request's CSeq against the peer's last one (§12.2.2): lower or equal (a new
    /// request that is not a retransmission) is out of order.
    pub fn accept_remote_cseq(&mut self, cseq: u32) -> bool {
        match self.remote_cseq {
            Some(last) if cseq <= last => false,
            _ => {
                self.remote_cseq = Some(cseq);
                true
            }
        }
    }
}

/// Whether a header listing option tags (Supported, Require) names `tag`.
pub fn has_option_tag(msg: &Message, header: &str, tag: &str) -> bool {
    msg.get_all(header)
        .into_iter()
        .flat_map(super::message::split_commas)
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

/// The Session-Expires of a message: seconds and the refresher parameter (`uac`/`uas`).
pub fn session_expires(msg: &Message) -> Option<(u32, Option<String>)> {
    let v = msg.get("Session-Expires")?;
    let mut parts = v.split(';');
    let secs = parts.next()?.trim().parse().ok()?;
    let refresher = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("refresher")
            .then(|| v.trim().to_ascii_lowercase())
    });
    Some((secs, refresher))
}

/// The Min-SE of a message in seconds.
pub fn min_se(msg: &Message) -> Option<u32> {
    msg.get("Min-SE")?.split(';').next()?.trim().parse().ok()
}

/// Whether an Allow header names `method` (no Allow: unknown, taken as no).
pub fn allows(msg: &Message, method: &str) -> bool {
    msg.get_all("Allow")
        .into_iter()
        .flat_map(super::message::split_commas)
        .any(|m| m.trim().eq_ignore_ascii_case(method))
}

/// The asserted identity of a message (P-Asserted-Identity, else Remote-Party-ID), as sent.
pub fn asserted_identity(msg: &Message) -> Option<String> {
    ["P-Asserted-Identity", "Remote-Party-ID"]
        .iter()
        .find_map(|h| msg.get_all(h).first().map(|v| v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialog() -> Dialog {
        let mut local = NameAddr::new("sip:1001@127.0.0.1");
        local.set_param("tag", "ours");
        let mut remote = NameAddr::new("sip:caller@127.0.0.1:5070");
        remote.set_param("tag", "theirs");
        Dialog::new(
            DialogId(1),
            "c1".into(),
            Role::Uas,
            local,
            remote,
            "127.0.0.1:5070".parse().unwrap(),
            Proto::Udp,
        )
    }

    #[test]
    fn requests_carry_the_dialog_and_a_growing_cseq() {
        let mut d = dialog();
        d.route = vec!["<sip:proxy.example;lr>".into()];
        let bye = d.request("BYE", None);
        assert_eq!(bye.cseq(), Some((2, "BYE")));
        assert!(bye.get("From").unwrap().contains("tag=ours"));
        assert!(bye.get("To").unwrap().contains("tag=theirs"));
        assert_eq!(bye.get("Route"), Some("<sip:proxy.example;lr>"));
        assert_eq!(d.request("ACK", Some(7)).cseq(), Some((7, "ACK")));
        assert_eq!(d.request("INFO", None).cseq(), Some((3, "INFO")));
    }

    #[test]
    fn a_lower_or_repeated_remote_cseq_is_out_of_order() {
        let mut d = dialog();
        assert!(d.accept_remote_cseq(5));
        assert!(!d.accept_remote_cseq(4));
        assert!(!d.accept_remote_cseq(5));
        assert!(d.accept_remote_cseq(6));
    }

    #[test]
    fn session_timer_deadlines() {
        let now = Instant::now();
        let r = SessionTimer::start(90, true, now);
        assert_eq!(r.due - now, Duration::from_secs(45));
        let w = SessionTimer::start(90, false, now);
        assert_eq!(w.due - now, Duration::from_secs(60));
        let long = SessionTimer::start(1800, false, now);
        assert_eq!(long.due - now, Duration::from_secs(1768));
    }

    #[test]
    fn session_expires_and_option_tags_parse() {
        let m = Message::parse(
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:x@y>;tag=1\r\n\
              To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nSession-Expires: 90 ; refresher=UAS\r\n\
              Min-SE: 90\r\nSupported: timer, 100rel\r\nAllow: INVITE, UPDATE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(session_expires(&m), Some((90, Some("uas".into()))));
        assert_eq!(min_se(&m), Some(90));
        assert!(has_option_tag(&m, "Supported", "100rel"));
        assert!(!has_option_tag(&m, "Require", "100rel"));
        assert!(allows(&m, "update"));
    }
}
