//! The signalling stack: the transport, the transaction tables, the dialog table and the
//! registration, driven by one owner (the call layer's loop) that feeds it what arrives
//! ([`Stack::on_inbound`], [`Stack::on_timers`], [`Stack::on_connection_lost`]) and drains the
//! [`SipEvent`]s it produced. Commands are methods (`ring`, `accept`, `reject`, `invite`,
//! `bye`, `cancel`, `answer_offer`, `reoffer`, …). It knows SIP only: offers and answers are
//! SDP text it carries without reading, and it never waits on anything but its sockets (a
//! stream connection that must be opened first is opened beside it, its failure reported back
//! through [`Stack::failures`]).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::addr::{NameAddr, Uri, Via};
use super::auth::{self, Challenge};
use super::dialog::{
    self, AwaitingAck, Dialog, DialogEnd, DialogId, DialogState, PendingOffer, Role, SessionTimer, Unacked,
};
use super::message::{Message, StartLine};
use super::registration::Registration;
use super::transaction::{
    ClientTable, ClientTx, ServerTable, ServerTx, T1, T2, TX_TIMEOUT, acked_lifetime, failure_ack,
    server_key, server_tx_lifetime,
};
use super::transport::{Inbound, Proto, TlsSettings, Transport};

/// The methods this agent answers (the Allow header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, UPDATE, PRACK";
/// The extensions this agent supports (the Supported header).
pub const SUPPORTED: &str = "100rel, timer";
pub const USER_AGENT: &str = concat!("ctiphone/", env!("CARGO_PKG_VERSION"));
/// The smallest session interval we accept (RFC 4028 §5: at least 90 s).
pub const MIN_SE: u32 = 90;
/// The session interval we ask for on our INVITEs (RFC 4028 recommends 1800 s).
pub const SESSION_EXPIRES: u32 = 1800;

/// What the stack needs to know.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub listen: SocketAddr,
    pub proto: Proto,
    /// Where REGISTER and out-of-dialog requests go; `None`: no registration.
    pub registrar: Option<SocketAddr>,
    /// The domain of our address of record.
    pub domain: String,
    pub user: String,
    pub auth_user: String,
    pub password: String,
    pub display_name: String,
    pub expires: u32,
    pub tls: TlsSettings,
}

/// What happened, for the call layer.
#[derive(Debug)]
pub enum SipEvent {
    /// The SIP sockets are bound at this address.
    Ready {
        listen: SocketAddr,
    },
    Registered {
        aor: String,
        expires: u32,
    },
    RegistrationFailed {
        code: Option<u16>,
        reason: String,
    },
    Unregistered,
    Warning(String),
    Error(String),
    /// A new INVITE: its dialog exists (early, our tag chosen) and 100 Trying went out. The
    /// call layer rings it ([`Stack::ring`]), answers or refuses it.
    Incoming {
        dialog: DialogId,
        call_id: String,
        request: Box<Message>,
        offer: Option<String>,
    },
    /// A provisional answer (180/183) to our INVITE, with its SDP (early media) if any.
    Early {
        dialog: DialogId,
        code: u16,
        sdp: Option<String>,
    },
    /// Our INVITE was answered 2xx and ACKed; its SDP.
    Confirmed {
        dialog: DialogId,
        sdp: Option<String>,
    },
    /// The ACK of our 2xx arrived; its SDP (the answer to an offer we made in the 2xx).
    Acked {
        dialog: DialogId,
        sdp: Option<String>,
    },
    /// The peer offers in a re-INVITE or UPDATE (`sdp: None`: a re-INVITE without SDP, asking
    /// us to offer). Answer with [`Stack::answer_offer`] or [`Stack::refuse_offer`].
    Offer {
        dialog: DialogId,
        sdp: Option<String>,
    },
    /// Our re-offer was answered 2xx (and ACKed).
    OfferAnswered {
        dialog: DialogId,
        sdp: Option<String>,
    },
    /// Our re-offer was refused: the session stays as it was.
    OfferRefused {
        dialog: DialogId,
        code: u16,
        reason: String,
    },
    /// A request inside the dialog carried a new asserted identity (a connected-line update).
    IdentityChanged {
        dialog: DialogId,
        request: Box<Message>,
    },
    /// SIP INFO inside the dialog.
    Info {
        dialog: DialogId,
        content_type: String,
        body: String,
    },
    /// NOTIFY inside the dialog (transfer progress: a sipfrag).
    Notify {
        dialog: DialogId,
        event: String,
        body: String,
    },
    /// Our REFER was refused.
    ReferRefused {
        dialog: DialogId,
        code: u16,
        reason: String,
    },
    /// The session timer wants a refresh and the peer takes no UPDATE: re-offer the current
    /// session ([`Stack::reoffer`]).
    RefreshNeeded {
        dialog: DialogId,
    },
    /// The dialog is over.
    Ended {
        dialog: DialogId,
        end: DialogEnd,
    },
}

/// Who a client transaction works for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Register,
    /// The dialog-creating INVITE.
    Invite(DialogId),
    /// A re-INVITE or UPDATE carrying our offer (or a session refresh).
    Reoffer(DialogId),
    Prack(DialogId),
    Refer(DialogId),
    /// A request whose answer nobody waits for (BYE after a local hangup, INFO…).
    None,
}

/// Tokens for tags, branches and Call-IDs.
pub fn random_token(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| CHARS[rand::random_range(0..CHARS.len())] as char)
        .collect()
}

fn branch() -> String {
    format!("z9hG4bK{}", random_token(16))
}

/// The signalling stack.
pub struct Stack {
    pub(super) cfg: StackConfig,
    pub(super) transport: Transport,
    pub(super) local: SocketAddr,
    pub(super) clients: ClientTable<Owner>,
    servers: ServerTable,
    dialogs: HashMap<DialogId, Dialog>,
    /// Dialogs by Call-ID and our tag (the peer's tag is checked on each request).
    by_key: HashMap<(String, String), DialogId>,
    next_id: u64,
    pub(super) reg: Registration,
    pub(super) events: VecDeque<SipEvent>,
    fail_tx: mpsc::UnboundedSender<(String, String)>,
}

/// The receivers the owner of the stack selects on beside it.
pub struct StackInputs {
    pub inbound: mpsc::Receiver<Inbound>,
    pub closed: mpsc::UnboundedReceiver<(Proto, SocketAddr)>,
    /// Requests that could not be sent (their branch, why), from connects done beside the loop.
    pub failures: mpsc::UnboundedReceiver<(String, String)>,
}

impl Stack {
    /// Binds the transports.
    pub async fn bind(cfg: StackConfig) -> Result<(Stack, StackInputs), String> {
        let (in_tx, inbound) = mpsc::channel::<Inbound>(1024);
        let transport = Transport::bind(cfg.listen, in_tx, &cfg.tls).await?;
        let closed = transport.closed_connections();
        let (fail_tx, failures) = mpsc::unbounded_channel();
        let mut local = transport.local;
        if local.ip().is_unspecified() {
            // The address others reach us at: the one the kernel routes to the registrar from.
            if let Some(r) = cfg.registrar
                && let Ok(s) = std::net::UdpSocket::bind((local.ip(), 0))
                && s.connect(r).is_ok()
                && let Ok(a) = s.local_addr()
            {
                local = SocketAddr::new(a.ip(), local.port());
            }
        }
        let reg = Registration::new(cfg.expires);
        let mut stack = Stack {
            cfg,
            transport,
            local,
            clients: HashMap::new(),
            servers: ServerTable::default(),
            dialogs: HashMap::new(),
            by_key: HashMap::new(),
            next_id: 1,
            reg,
            events: VecDeque::new(),
            fail_tx,
        };
        stack.events.push_back(SipEvent::Ready { listen: local });
        Ok((
            stack,
            StackInputs {
                inbound,
                closed,
                failures,
            },
        ))
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<SipEvent> {
        self.events.pop_front()
    }

    /// The transport's protocol for requests we start.
    pub fn proto(&self) -> Proto {
        self.cfg.proto
    }

    /// Our SIP address (the one we listen at).
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn registrar(&self) -> Option<SocketAddr> {
        self.cfg.registrar
    }

    pub fn domain(&self) -> &str {
        &self.cfg.domain
    }

    pub fn user(&self) -> &str {
        &self.cfg.user
    }

    /// Sets where REGISTER goes and the password (known once resolved beside the loop).
    pub fn set_registrar(&mut self, registrar: Option<SocketAddr>, password: Option<String>) {
        self.cfg.registrar = registrar;
        if let Some(p) = password {
            self.cfg.password = p;
        }
    }

    pub(super) fn emit(&mut self, e: SipEvent) {
        self.events.push_back(e);
    }

    pub(super) fn contact_addr(&self) -> SocketAddr {
        self.reg.public.unwrap_or(self.local)
    }

    pub fn contact(&self) -> String {
        let a = self.contact_addr();
        let t = if self.cfg.proto == Proto::Tcp {
            ";transport=tcp"
        } else {
            ""
        };
        format!("<sip:{}@{}{t}>", self.cfg.user, fmt_addr(a))
    }

    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.cfg.user, self.cfg.domain)
    }

    fn via(&self, proto: Proto, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            proto.name(),
            fmt_addr(self.local)
        )
    }

    fn new_dialog_id(&mut self) -> DialogId {
        let id = DialogId(self.next_id);
        self.next_id += 1;
        id
    }

    fn insert_dialog(&mut self, d: Dialog) {
        self.by_key
            .insert((d.call_id.clone(), d.local_tag().to_owned()), d.id);
        self.dialogs.insert(d.id, d);
    }

    fn remove_dialog(&mut self, id: DialogId) -> Option<Dialog> {
        let d = self.dialogs.remove(&id)?;
        self.by_key.remove(&(d.call_id.clone(), d.local_tag().to_owned()));
        Some(d)
    }

    /// Ends dialog `id` with `end` (removed, reported).
    fn end(&mut self, id: DialogId, end: DialogEnd) {
        if self.remove_dialog(id).is_some() {
            self.emit(SipEvent::Ended { dialog: id, end });
        }
    }

    pub fn dialog(&self, id: DialogId) -> Option<&Dialog> {
        self.dialogs.get(&id)
    }

    /// How many dialogs exist.
    pub fn dialog_count(&self) -> usize {
        self.dialogs.len()
    }

    /// The earliest time [`Stack::on_timers`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for tx in self.clients.values() {
            consider(tx.next);
            consider(Some(tx.deadline));
        }
        for tx in self.servers.values() {
            consider(tx.retransmit.map(|(t, _)| t));
            consider(Some(tx.expires));
        }
        for d in self.dialogs.values() {
            consider(d.ok_wait.as_ref().map(|w| w.next.min(w.give_up)));
            consider(d.unacked.as_ref().map(|u| u.next.min(u.give_up)));
            consider(d.timer.map(|t| t.due));
        }
        consider(self.reg.next);
        next
    }

    // ------------------------------------------------------------------------ sending

    /// Sends bytes; a stream connection that must be opened first (up to seconds, or never for
    /// a peer that is gone) is opened beside the loop.
    pub(super) async fn send(&self, proto: Proto, to: SocketAddr, bytes: Vec<u8>) {
        if self.transport.ready_for(proto, to) {
            if let Err(e) = self.transport.send(proto, to, bytes).await {
                tracing::debug!(%to, error = %e, "SIP send failed");
            }
            return;
        }
        let transport = self.transport.clone();
        tokio::spawn(async move {
            if let Err(e) = transport.send(proto, to, bytes).await {
                tracing::debug!(%to, error = %e, "SIP send failed");
            }
        });
    }

    /// Sends a new request in a client transaction; returns its branch.
    pub(super) async fn send_request(
        &mut self,
        mut req: Message,
        to: SocketAddr,
        proto: Proto,
        owner: Owner,
    ) -> String {
        let br = branch();
        req.headers.retain(|(n, _)| n != "Via");
        req.headers.insert(0, ("Via".into(), self.via(proto, &br)));
        if req.get("Max-Forwards").is_none() {
            req.push("Max-Forwards", "70");
        }
        if req.get("User-Agent").is_none() {
            req.push("User-Agent", USER_AGENT);
        }
        let bytes = req.to_bytes();
        let method = req.method().unwrap_or("").to_owned();
        let now = Instant::now();
        self.clients.insert(
            br.clone(),
            ClientTx::new(&method, bytes.clone(), to, proto, owner, now),
        );
        if self.transport.ready_for(proto, to) {
            if let Err(e) = self.transport.send(proto, to, bytes).await {
                let why = format!("cannot send to {to} over {}: {}", proto.name(), error_chain(&e));
                self.on_send_failed(&br, why);
            }
        } else {
            // A stream connection to open: beside the loop; a failure comes back through
            // `failures` and fails the transaction (RFC 3261 §8.1.3.1: as a 503).
            let transport = self.transport.clone();
            let fail = self.fail_tx.clone();
            let b = br.clone();
            tokio::spawn(async move {
                if let Err(e) = transport.send(proto, to, bytes).await {
                    let why = format!("cannot send to {to} over {}: {}", proto.name(), error_chain(&e));
                    let _ = fail.send((b, why));
                }
            });
        }
        br
    }

    /// A request of ours could not be sent: over a stream its transaction fails now (over UDP
    /// the retransmissions go on).
    pub fn on_send_failed(&mut self, branch: &str, why: String) {
        if let Some(tx) = self.clients.get_mut(branch)
            && tx.proto.is_stream()
            && !tx.done
        {
            tx.deadline = Instant::now();
            tx.next = None;
            tx.error = Some(why);
        }
    }

    /// Answers a request and remembers the answer for retransmissions.
    async fn respond(&mut self, inb_from: SocketAddr, proto: Proto, req: &Message, mut resp: Message) {
        // Symmetric response: to the source address, with received/rport set (RFC 3581).
        if let Some(first) = resp.headers.iter_mut().find(|(n, _)| n == "Via") {
            let v = first.1.clone();
            let mut top = super::message::split_commas(&v)
                .first()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let rest = v[v.find(top.as_str()).map_or(v.len(), |i| i + top.len())..].to_string();
            if let Ok(via) = Via::parse(&top) {
                if via.param("rport").is_some() {
                    top = top.replacen(";rport", &format!(";rport={}", inb_from.port()), 1);
                }
                if via.host != inb_from.ip().to_string() && via.param("received").is_none() {
                    top.push_str(&format!(";received={}", inb_from.ip()));
                }
            }
            first.1 = format!("{top}{rest}");
        }
        if resp.get("User-Agent").is_none() {
            resp.push("Server", USER_AGENT);
        }
        let bytes = resp.to_bytes();
        if let Some(key) = server_key(req) {
            let code = resp.code().unwrap_or(0);
            let invite = req.method() == Some("INVITE");
            let invite_failure = invite && code >= 300;
            let now = Instant::now();
            self.servers.insert(
                key,
                ServerTx {
                    last: bytes.clone(),
                    code,
                    to: inb_from,
                    proto,
                    expires: now + server_tx_lifetime(invite, proto),
                    retransmit: (invite_failure && !proto.is_stream()).then(|| (now + T1, T1)),
                },
            );
        }
        self.send(proto, inb_from, bytes).await;
    }

    /// Answers a request outside any dialog (a To tag added when it has none).
    async fn refuse(
        &mut self,
        from: SocketAddr,
        proto: Proto,
        req: &Message,
        code: u16,
        reason: &str,
        headers: &[(&str, String)],
    ) {
        let mut r = Message::response(req, code, reason);
        add_tag(&mut r);
        for (n, v) in headers {
            r.push(n, v.clone());
        }
        self.respond(from, proto, req, r).await;
    }

    // ------------------------------------------------------------------------ inbound

    /// Handles a message from the transport.
    pub async fn on_inbound(&mut self, inb: Inbound) {
        if inb.msg.is_request() {
            self.on_request(inb).await;
        } else {
            self.on_response(inb).await;
        }
    }

    async fn on_request(&mut self, inb: Inbound) {
        let Inbound { msg, from, proto } = inb;
        let method = msg.method().unwrap_or("").to_owned();
        // A retransmission of a request we answered: the same answer again.
        if let Some(key) = server_key(&msg) {
            if method == "ACK" {
                // ACK for a non-2xx final response ends Timer G; the transaction stays only to
                // absorb retransmitted ACKs (Timer I). An ACK for a 2xx that matches the
                // INVITE's transaction (an RFC 2543 peer: no branch) is the dialog's.
                let invite_key = key.replacen("|ACK", "|INVITE", 1);
                if let Some(tx) = self.servers.get_mut(&invite_key)
                    && tx.code >= 300
                {
                    tx.retransmit = None;
                    tx.expires = Instant::now() + acked_lifetime(tx.proto);
                    return;
                }
            } else if let Some(tx) = self.servers.get(&key) {
                let (bytes, to, p) = (tx.last.clone(), tx.to, tx.proto);
                self.send(p, to, bytes).await;
                return;
            }
        }
        if let Some((code, reason, headers)) = precheck(&msg) {
            let headers: Vec<(&str, String)> = headers;
            self.refuse(from, proto, &msg, code, reason, &headers).await;
            return;
        }
        let to_tag = msg
            .get("To")
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|t| t.tag().map(str::to_owned));
        match method.as_str() {
            "INVITE" if to_tag.is_none() => self.on_invite(msg, from, proto).await,
            "ACK" => self.on_ack(&msg),
            "CANCEL" => self.on_cancel(msg, from, proto).await,
            "OPTIONS" => {
                let mut r = Message::response(&msg, 200, "OK");
                add_tag(&mut r);
                r.push("Allow", ALLOW)
                    .push("Accept", "application/sdp")
                    .push("Supported", SUPPORTED)
                    .push("Contact", self.contact());
                self.respond(from, proto, &msg, r).await;
            }
            _ if to_tag.is_none() => {
                // A request that belongs in a dialog, outside any (§12.2.2).
                self.refuse(from, proto, &msg, 481, "Call/Transaction Does Not Exist", &[])
                    .await;
            }
            _ => {
                self.on_in_dialog(msg, from, proto, to_tag.unwrap_or_default())
                    .await
            }
        }
    }

    async fn on_invite(&mut self, msg: Message, from: SocketAddr, proto: Proto) {
        let call_id = msg.call_id().unwrap_or("").to_owned();
        let from_tag = msg
            .get("From")
            .and_then(|f| NameAddr::parse(f).ok())
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default();
        // A request that already reached us by another path (§8.2.2.2): same From tag, Call-ID
        // and CSeq, another transaction.
        if self
            .dialogs
            .values()
            .any(|d| d.role == Role::Uas && d.call_id == call_id && d.remote_tag() == from_tag)
        {
            self.refuse(from, proto, &msg, 482, "Loop Detected", &[]).await;
            return;
        }
        let offer = if msg.body.is_empty() {
            None
        } else {
            let ct = msg
                .get("Content-Type")
                .unwrap_or("application/sdp")
                .to_ascii_lowercase();
            if !ct.starts_with("application/sdp") {
                self.refuse(
                    from,
                    proto,
                    &msg,
                    415,
                    "Unsupported Media Type",
                    &[("Accept", "application/sdp".into())],
                )
                .await;
                return;
            }
            // Our answer is SDP too: a caller that accepts no SDP cannot have one (RFC 4475
            // §3.3.15).
            if !accepts_sdp(&msg) {
                self.refuse(from, proto, &msg, 406, "Not Acceptable", &[]).await;
                return;
            }
            Some(String::from_utf8_lossy(&msg.body).into_owned())
        };
        // RFC 4028 §8: a session interval below our minimum is refused with ours.
        if let Some((se, _)) = dialog::session_expires(&msg)
            && se < MIN_SE
        {
            self.refuse(
                from,
                proto,
                &msg,
                422,
                "Session Interval Too Small",
                &[("Min-SE", MIN_SE.to_string())],
            )
            .await;
            return;
        }
        let Ok(remote) = msg.get("From").map(NameAddr::parse).unwrap_or(Err(String::new())) else {
            self.refuse(from, proto, &msg, 400, "Bad From", &[]).await;
            return;
        };
        let Ok(mut local) = msg.get("To").map(NameAddr::parse).unwrap_or(Err(String::new())) else {
            self.refuse(from, proto, &msg, 400, "Bad To", &[]).await;
            return;
        };
        local.set_param("tag", &random_token(10));
        let id = self.new_dialog_id();
        let mut d = Dialog::new(id, call_id.clone(), Role::Uas, local, remote, from, proto);
        d.remote_target = msg
            .get_all("Contact")
            .first()
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|c| c.uri)
            .unwrap_or_else(|| msg.uri().unwrap_or("").to_owned());
        d.route = msg
            .get_all("Record-Route")
            .iter()
            .map(|s| s.to_string())
            .collect();
        d.local_cseq = rand::random_range(1..10_000);
        d.remote_cseq = msg.cseq().map(|(n, _)| n);
        d.invite_key = server_key(&msg);
        d.peer_100rel = dialog::has_option_tag(&msg, "Supported", "100rel")
            || dialog::has_option_tag(&msg, "Require", "100rel");
        d.peer_timer = dialog::has_option_tag(&msg, "Supported", "timer")
            || dialog::has_option_tag(&msg, "Require", "timer");
        d.peer_update = dialog::allows(&msg, "UPDATE");
        d.identity = dialog::asserted_identity(&msg);
        d.invite = Some(msg.clone());
        let mut trying = Message::response(&msg, 100, "Trying");
        trying.remove("Record-Route");
        self.send(proto, from, trying.to_bytes()).await;
        self.insert_dialog(d);
        self.emit(SipEvent::Incoming {
            dialog: id,
            call_id,
            request: Box::new(msg),
            offer,
        });
    }

    /// A UAS dialog's INVITE response with our tag and Contact.
    fn invite_response(&self, d: &Dialog, code: u16, reason: &str) -> Option<Message> {
        let invite = d.invite.as_ref()?;
        let mut r = Message::response(invite, code, reason);
        r.set("To", d.local.to_string());
        if code < 300 {
            r.push("Contact", self.contact());
        }
        Some(r)
    }

    /// Rings an incoming call: 180, reliable (RFC 3262) when the caller takes it.
    pub async fn ring(&mut self, id: DialogId) {
        let Some(d) = self.dialogs.get(&id) else { return };
        if d.invite_answered {
            return;
        }
        let Some(mut r) = self.invite_response(d, 180, "Ringing") else {
            return;
        };
        let (peer, proto, reliable) = (d.peer, d.proto, d.peer_100rel);
        let Some(invite) = d.invite.clone() else { return };
        if reliable {
            let Some(d) = self.dialogs.get_mut(&id) else {
                return;
            };
            d.rseq = if d.rseq == 0 {
                rand::random_range(1..100_000)
            } else {
                d.rseq + 1
            };
            r.push("Require", "100rel").push("RSeq", d.rseq.to_string());
            r.push("Allow", ALLOW);
            let now = Instant::now();
            let rseq = d.rseq;
            d.unacked = Some(Unacked {
                rseq,
                bytes: Vec::new(),
                next: now + T1,
                interval: T1,
                give_up: now + TX_TIMEOUT,
            });
        }
        self.respond(peer, proto, &invite, r).await;
        // The reliable 180's bytes (with the Via rport filled in) as the transaction kept them.
        if reliable {
            let key = self.dialogs.get(&id).and_then(|d| d.invite_key.clone());
            let bytes = key.and_then(|k| self.servers.get(&k).map(|t| t.last.clone()));
            if let (Some(b), Some(d)) = (bytes, self.dialogs.get_mut(&id))
                && let Some(u) = &mut d.unacked
            {
                u.bytes = b;
            }
        }
    }

    /// Answers an incoming call 200 with `sdp` (an answer to its offer, or our offer when the
    /// INVITE had none: the answer then comes in the ACK).
    pub async fn accept(&mut self, id: DialogId, sdp: String, offered: bool) {
        let Some(d) = self.dialogs.get(&id) else { return };
        if d.invite_answered {
            return;
        }
        let Some(mut ok) = self.invite_response(d, 200, "OK") else {
            return;
        };
        ok.push("Allow", ALLOW).push("Supported", SUPPORTED);
        let timer = d
            .invite
            .as_ref()
            .and_then(|inv| self.timer_for_answer(d, inv, &mut ok));
        ok.with_body("application/sdp", sdp.into_bytes());
        let (peer, proto) = (d.peer, d.proto);
        let Some(invite) = d.invite.clone() else { return };
        self.respond(peer, proto, &invite, ok).await;
        let bytes = self
            .dialogs
            .get(&id)
            .and_then(|d| d.invite_key.as_deref())
            .and_then(|k| self.servers.get(k))
            .map(|t| t.last.clone());
        let now = Instant::now();
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        d.state = DialogState::Confirmed;
        d.invite_answered = true;
        d.unacked = None;
        d.timer = timer.map(|(interval, we)| SessionTimer::start(interval, we, now));
        let cseq = invite.cseq().map_or(0, |(n, _)| n);
        d.ok_wait = bytes.map(|b| AwaitingAck {
            cseq,
            bytes: b,
            next: now + T1,
            interval: T1,
            give_up: now + TX_TIMEOUT,
            offered,
        });
        if proto.is_stream()
            && let Some(w) = &mut d.ok_wait
        {
            // Nothing to retransmit over a stream; only the wait for the ACK.
            w.next = w.give_up;
        }
    }

    /// The session timer of a 2xx to `req` (RFC 4028 §9): the headers added to `resp`, and the
    /// interval with whether we refresh. `None`: no session timer.
    fn timer_for_answer(&self, d: &Dialog, req: &Message, resp: &mut Message) -> Option<(u32, bool)> {
        let (se, refresher) = dialog::session_expires(req)?;
        let se = se.max(MIN_SE);
        let peer_timer = d.peer_timer || dialog::has_option_tag(req, "Supported", "timer");
        // Who refreshes, from this transaction's view: its UAC (the peer) or UAS (us).
        let uac_refreshes = match refresher.as_deref() {
            Some("uac") => true,
            Some("uas") => false,
            _ => peer_timer,
        };
        resp.push(
            "Session-Expires",
            format!("{se};refresher={}", if uac_refreshes { "uac" } else { "uas" }),
        );
        if peer_timer {
            resp.push("Require", "timer");
        }
        Some((se, !uac_refreshes))
    }

    /// Refuses an incoming call with a final response; its dialog ends (no event: the call
    /// layer chose it).
    pub async fn reject(&mut self, id: DialogId, code: u16, reason: &str) {
        let Some(d) = self.dialogs.get(&id) else { return };
        if d.invite_answered {
            return;
        }
        let Some(r) = self.invite_response(d, code, reason) else {
            return;
        };
        let (peer, proto) = (d.peer, d.proto);
        let Some(invite) = d.invite.clone() else { return };
        self.respond(peer, proto, &invite, r).await;
        self.remove_dialog(id);
    }

    fn on_ack(&mut self, msg: &Message) {
        let Some(id) = self.match_dialog(msg) else {
            return;
        };
        let cseq = msg.cseq().map_or(0, |(n, _)| n);
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        let Some(w) = d.ok_wait.take_if(|w| w.cseq == cseq) else {
            return;
        };
        let sdp = (!msg.body.is_empty()).then(|| String::from_utf8_lossy(&msg.body).into_owned());
        self.emit(SipEvent::Acked { dialog: id, sdp });
    }

    async fn on_cancel(&mut self, msg: Message, from: SocketAddr, proto: Proto) {
        let key = server_key(&msg).map(|k| k.replacen("|CANCEL", "|INVITE", 1));
        let found = key.as_deref().and_then(|k| {
            self.dialogs
                .values()
                .find(|d| d.role == Role::Uas && d.invite_key.as_deref() == Some(k))
                .map(|d| (d.id, d.invite_answered))
        });
        match found {
            Some((id, false)) => {
                let mut ok = Message::response(&msg, 200, "OK");
                add_tag(&mut ok);
                self.respond(from, proto, &msg, ok).await;
                self.terminate_invite(id, 487, "Request Terminated").await;
                self.end(id, DialogEnd::Cancelled);
            }
            found => {
                // An INVITE already answered (its transaction still known, or its dialog up):
                // the CANCEL matched and has no effect, 200 (RFC 3261 §9.2); else 481.
                let known = found.is_some() || key.as_deref().is_some_and(|k| self.servers.get(k).is_some());
                let (code, reason) = if known {
                    (200, "OK")
                } else {
                    (481, "Call/Transaction Does Not Exist")
                };
                self.refuse(from, proto, &msg, code, reason, &[]).await;
            }
        }
    }

    /// Answers a UAS dialog's INVITE with a final failure (after CANCEL, BYE or a missing PRACK).
    async fn terminate_invite(&mut self, id: DialogId, code: u16, reason: &str) {
        let Some(d) = self.dialogs.get(&id) else { return };
        if d.invite_answered {
            return;
        }
        let Some(r) = self.invite_response(d, code, reason) else {
            return;
        };
        let (peer, proto) = (d.peer, d.proto);
        let Some(invite) = d.invite.clone() else { return };
        self.respond(peer, proto, &invite, r).await;
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.invite_answered = true;
            d.unacked = None;
        }
    }

    /// The dialog a request inside one belongs to: Call-ID, our tag (its To tag) and the
    /// peer's tag (its From tag) all match (RFC 3261 §12.2.2).
    fn match_dialog(&self, msg: &Message) -> Option<DialogId> {
        let call_id = msg.call_id()?;
        let to_tag = msg
            .get("To")
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|t| t.tag().map(str::to_owned))?;
        let from_tag = msg
            .get("From")
            .and_then(|f| NameAddr::parse(f).ok())
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default();
        let id = *self.by_key.get(&(call_id.to_owned(), to_tag))?;
        let d = self.dialogs.get(&id)?;
        // A UAC dialog whose peer has not answered with a tag yet has none to compare.
        let theirs = d.remote_tag();
        (theirs == from_tag || (d.role == Role::Uac && theirs.is_empty())).then_some(id)
    }

    async fn on_in_dialog(&mut self, msg: Message, from: SocketAddr, proto: Proto, _to_tag: String) {
        let method = msg.method().unwrap_or("").to_owned();
        let Some(id) = self.match_dialog(&msg) else {
            self.refuse(from, proto, &msg, 481, "Call/Transaction Does Not Exist", &[])
                .await;
            return;
        };
        let cseq = msg.cseq().map_or(0, |(n, _)| n);
        let in_order = self
            .dialogs
            .get_mut(&id)
            .is_some_and(|d| d.accept_remote_cseq(cseq));
        if !in_order {
            self.refuse(from, proto, &msg, 500, "CSeq Out of Order", &[])
                .await;
            return;
        }
        // A new asserted identity (a PBX's connected-line update after a transfer).
        if matches!(method.as_str(), "INVITE" | "UPDATE")
            && let Some(pai) = dialog::asserted_identity(&msg)
            && let Some(d) = self.dialogs.get_mut(&id)
            && d.identity.as_deref() != Some(pai.as_str())
        {
            d.identity = Some(pai);
            self.emit(SipEvent::IdentityChanged {
                dialog: id,
                request: Box::new(msg.clone()),
            });
        }
        match method.as_str() {
            "BYE" => {
                let ok = Message::response(&msg, 200, "OK");
                self.respond(from, proto, &msg, ok).await;
                let early = self
                    .dialogs
                    .get(&id)
                    .is_some_and(|d| d.state == DialogState::Early);
                if early {
                    self.terminate_invite(id, 487, "Request Terminated").await;
                    self.end(id, DialogEnd::Cancelled);
                } else {
                    self.end(id, DialogEnd::RemoteBye);
                }
            }
            "INVITE" | "UPDATE" => self.on_offer(id, msg, from, proto).await,
            "PRACK" => self.on_prack(id, msg, from, proto).await,
            "INFO" => {
                let ok = Message::response(&msg, 200, "OK");
                self.respond(from, proto, &msg, ok).await;
                self.emit(SipEvent::Info {
                    dialog: id,
                    content_type: msg.get("Content-Type").unwrap_or("").to_ascii_lowercase(),
                    body: String::from_utf8_lossy(&msg.body).into_owned(),
                });
            }
            "NOTIFY" => {
                let ok = Message::response(&msg, 200, "OK");
                self.respond(from, proto, &msg, ok).await;
                self.emit(SipEvent::Notify {
                    dialog: id,
                    event: msg.get("Event").unwrap_or("").to_owned(),
                    body: String::from_utf8_lossy(&msg.body).into_owned(),
                });
            }
            "OPTIONS" => {
                let mut r = Message::response(&msg, 200, "OK");
                r.push("Allow", ALLOW).push("Supported", SUPPORTED);
                self.respond(from, proto, &msg, r).await;
            }
            _ => {
                let mut r = Message::response(&msg, 501, "Not Implemented");
                r.push("Allow", ALLOW);
                self.respond(from, proto, &msg, r).await;
            }
        }
    }

    /// A re-INVITE or UPDATE: a session refresh answered here, an offer handed to the call
    /// layer.
    async fn on_offer(&mut self, id: DialogId, msg: Message, from: SocketAddr, proto: Proto) {
        let Some(d) = self.dialogs.get(&id) else { return };
        let method = msg.method().unwrap_or("").to_owned();
        let reinvite = method == "INVITE";
        if reinvite && d.state == DialogState::Early {
            // A re-INVITE before the dialog is confirmed (RFC 3261 §14.2 allows it only then).
            self.refuse(from, proto, &msg, 491, "Request Pending", &[]).await;
            return;
        }
        if d.pending_out.is_some() {
            // Glare: both sides offered at once (RFC 3261 §14.2).
            self.refuse(from, proto, &msg, 491, "Request Pending", &[]).await;
            return;
        }
        if d.pending_in.is_some() || (reinvite && d.ok_wait.is_some()) {
            self.refuse(
                from,
                proto,
                &msg,
                500,
                "Server Internal Error",
                &[("Retry-After", "1".into())],
            )
            .await;
            return;
        }
        if let Some((se, _)) = dialog::session_expires(&msg)
            && se < MIN_SE
        {
            self.refuse(
                from,
                proto,
                &msg,
                422,
                "Session Interval Too Small",
                &[("Min-SE", MIN_SE.to_string())],
            )
            .await;
            return;
        }
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.refresh_target(&msg);
        }
        let sdp = (!msg.body.is_empty()).then(|| String::from_utf8_lossy(&msg.body).into_owned());
        if !reinvite && sdp.is_none() {
            // An UPDATE without SDP: a session refresh (RFC 4028), answered here.
            let mut ok = Message::response(&msg, 200, "OK");
            ok.push("Contact", self.contact());
            self.restart_timer_for(id, &msg, &mut ok);
            self.respond(from, proto, &msg, ok).await;
            return;
        }
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.pending_in = Some(PendingOffer {
                request: msg,
                from,
                proto,
            });
        }
        self.emit(SipEvent::Offer { dialog: id, sdp });
    }

    /// Restarts the session timer from a refresh request `req` and writes its headers into
    /// `resp`.
    fn restart_timer_for(&mut self, id: DialogId, req: &Message, resp: &mut Message) {
        let Some(d) = self.dialogs.get(&id) else { return };
        let t = self.timer_for_answer(d, req, resp);
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.timer = t.map(|(interval, we)| SessionTimer::start(interval, we, Instant::now()));
        }
    }

    /// Answers the peer's pending offer: 200 with `sdp` (an answer, or our offer for a
    /// re-INVITE without SDP: the answer comes in the ACK).
    pub async fn answer_offer(&mut self, id: DialogId, sdp: String, offered: bool) {
        let Some(p) = self.dialogs.get_mut(&id).and_then(|d| d.pending_in.take()) else {
            return;
        };
        let mut ok = Message::response(&p.request, 200, "OK");
        ok.push("Contact", self.contact())
            .push("Allow", ALLOW)
            .push("Supported", SUPPORTED);
        self.restart_timer_for(id, &p.request, &mut ok);
        ok.with_body("application/sdp", sdp.into_bytes());
        let reinvite = p.request.method() == Some("INVITE");
        self.respond(p.from, p.proto, &p.request, ok).await;
        if reinvite {
            let bytes = server_key(&p.request).and_then(|k| self.servers.get(&k).map(|t| t.last.clone()));
            let now = Instant::now();
            let cseq = p.request.cseq().map_or(0, |(n, _)| n);
            if let (Some(d), Some(b)) = (self.dialogs.get_mut(&id), bytes) {
                let stream = p.proto.is_stream();
                d.ok_wait = Some(AwaitingAck {
                    cseq,
                    bytes: b,
                    next: if stream { now + TX_TIMEOUT } else { now + T1 },
                    interval: T1,
                    give_up: now + TX_TIMEOUT,
                    offered,
                });
            }
        }
    }

    /// Refuses the peer's pending offer (488, 491…): the session stays as it was.
    pub async fn refuse_offer(&mut self, id: DialogId, code: u16, reason: &str, warning: Option<&str>) {
        let Some(p) = self.dialogs.get_mut(&id).and_then(|d| d.pending_in.take()) else {
            return;
        };
        let mut r = Message::response(&p.request, code, reason);
        if let Some(w) = warning {
            r.push("Warning", format!("399 ctiphone \"{}\"", warning_text(w)));
        }
        self.respond(p.from, p.proto, &p.request, r).await;
    }

    async fn on_prack(&mut self, id: DialogId, msg: Message, from: SocketAddr, proto: Proto) {
        // RAck: response-num CSeq-num method (RFC 3262 §7.2).
        let rack: Vec<String> = msg
            .get("RAck")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let invite_cseq = self
            .dialogs
            .get(&id)
            .and_then(|d| d.invite.as_ref())
            .and_then(|i| i.cseq().map(|(n, _)| n));
        let matches = self.dialogs.get(&id).is_some_and(|d| {
            rack.len() == 3
                && rack[0].parse::<u32>().ok() == Some(d.rseq)
                && d.rseq != 0
                && rack[1].parse::<u32>().ok() == invite_cseq
                && rack[2].eq_ignore_ascii_case("INVITE")
        });
        if !matches {
            self.refuse(from, proto, &msg, 481, "Call/Transaction Does Not Exist", &[])
                .await;
            return;
        }
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.unacked = None;
        }
        let ok = Message::response(&msg, 200, "OK");
        self.respond(from, proto, &msg, ok).await;
    }

    // ------------------------------------------------------------------------ UAC

    /// Calls `target` (a request URI) at `dest`: a new dialog with Call-ID `call_id`, From
    /// `from` (tag added here), our offer `sdp`, `headers` added. Its progress comes as
    /// `Early`, `Confirmed` or `Ended` events.
    pub async fn invite(
        &mut self,
        call_id: &str,
        target: &str,
        dest: SocketAddr,
        mut from: NameAddr,
        headers: &[(String, String)],
        sdp: String,
    ) -> DialogId {
        from.set_param("tag", &random_token(10));
        let id = self.new_dialog_id();
        let proto = self.cfg.proto;
        let mut d = Dialog::new(
            id,
            call_id.to_owned(),
            Role::Uac,
            from,
            NameAddr::new(target),
            dest,
            proto,
        );
        d.remote_target = target.to_owned();
        let mut inv = Message::request("INVITE", target);
        inv.push("From", d.local.to_string())
            .push("To", d.remote.to_string())
            .push("Call-ID", call_id.to_owned())
            .push("CSeq", "1 INVITE")
            .push("Contact", self.contact())
            .push("Allow", ALLOW)
            .push("Supported", SUPPORTED)
            .push("Session-Expires", SESSION_EXPIRES.to_string())
            .push("Min-SE", MIN_SE.to_string());
        for (name, value) in headers {
            inv.push(name, value.clone());
        }
        inv.with_body("application/sdp", sdp.into_bytes());
        self.insert_dialog(d);
        self.send_invite(id, inv, dest, proto).await;
        id
    }

    async fn send_invite(&mut self, id: DialogId, inv: Message, dest: SocketAddr, proto: Proto) {
        let br = self.send_request(inv, dest, proto, Owner::Invite(id)).await;
        let sent = self.clients.get(&br).and_then(|t| Message::parse(&t.bytes).ok());
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.our_invite = sent;
            d.our_branch = Some(br);
        }
    }

    /// Ends a dialog from our side: BYE when confirmed, CANCEL for our early INVITE, a final
    /// response (`code`) for an incoming INVITE not answered yet.
    pub async fn hangup(&mut self, id: DialogId, code: u16, reason: &str) {
        let Some(d) = self.dialogs.get(&id) else { return };
        match (d.role, d.state) {
            (_, DialogState::Confirmed) => {
                let Some(d) = self.dialogs.get_mut(&id) else {
                    return;
                };
                let bye = d.request("BYE", None);
                let (to, proto) = d.destination();
                self.send_request(bye, to, proto, Owner::None).await;
                self.remove_dialog(id);
            }
            (Role::Uac, DialogState::Early) => self.cancel(id).await,
            (Role::Uas, DialogState::Early) => self.reject(id, code, reason).await,
        }
    }

    async fn cancel(&mut self, id: DialogId) {
        let Some(d) = self.dialogs.get(&id) else { return };
        let Some(inv) = d.our_invite.clone() else {
            self.remove_dialog(id);
            return;
        };
        let mut cancel = Message::request("CANCEL", inv.uri().unwrap_or(""));
        if let Some(v) = inv.get_all("Via").first() {
            cancel.push("Via", v.to_string());
        }
        cancel
            .push("Max-Forwards", "70")
            .push("From", inv.get("From").unwrap_or("").to_owned())
            .push("To", inv.get("To").unwrap_or("").to_owned())
            .push("Call-ID", d.call_id.clone())
            .push("CSeq", format!("{} CANCEL", inv.cseq().map_or(1, |(n, _)| n)));
        for r in inv.get_all("Route") {
            cancel.push("Route", r.to_string());
        }
        let (to, proto) = (d.peer, d.proto);
        // CANCEL keeps the INVITE's branch: a transaction of its own keyed by method.
        let bytes = cancel.to_bytes();
        let key = format!("{}#CANCEL", d.our_branch.clone().unwrap_or_default());
        let now = Instant::now();
        self.clients.insert(
            key,
            ClientTx::new("CANCEL", bytes.clone(), to, proto, Owner::None, now),
        );
        self.send(proto, to, bytes).await;
        // The INVITE transaction goes on: a 2xx that crosses the CANCEL is ACKed and BYEd.
        self.remove_dialog(id);
    }

    /// Offers `sdp` inside a confirmed dialog: a re-INVITE, or an UPDATE when `update` and the
    /// peer takes it. The answer comes as `OfferAnswered` or `OfferRefused`.
    pub async fn reoffer(&mut self, id: DialogId, sdp: String, update: bool) -> bool {
        let contact = self.contact();
        let Some(d) = self.dialogs.get_mut(&id) else {
            return false;
        };
        if d.pending_out.is_some() || d.pending_in.is_some() || d.state != DialogState::Confirmed {
            return false;
        }
        let method = if update && d.peer_update {
            "UPDATE"
        } else {
            "INVITE"
        };
        let mut req = d.request(method, None);
        req.push("Contact", contact)
            .push("Allow", ALLOW)
            .push("Supported", SUPPORTED);
        if let Some(t) = d.timer {
            req.push(
                "Session-Expires",
                format!(
                    "{};refresher={}",
                    t.interval,
                    if t.we_refresh { "uac" } else { "uas" }
                ),
            );
        }
        req.with_body("application/sdp", sdp.into_bytes());
        let (to, proto) = d.destination();
        let br = self.send_request(req, to, proto, Owner::Reoffer(id)).await;
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.pending_out = Some(br);
        }
        true
    }

    /// Sends a request inside a dialog whose answer nobody waits for (INFO).
    pub async fn send_in_dialog(&mut self, id: DialogId, method: &str, content_type: &str, body: Vec<u8>) {
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        let mut req = d.request(method, None);
        req.with_body(content_type, body);
        let (to, proto) = d.destination();
        self.send_request(req, to, proto, Owner::None).await;
    }

    /// Asks the peer to call `target` (blind transfer, RFC 3515).
    pub async fn refer(&mut self, id: DialogId, target: &str) {
        let (aor, contact) = (self.aor(), self.contact());
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        let mut refer = d.request("REFER", None);
        refer
            .push("Refer-To", format!("<{target}>"))
            .push("Referred-By", format!("<{aor}>"))
            .push("Contact", contact);
        let (to, proto) = d.destination();
        self.send_request(refer, to, proto, Owner::Refer(id)).await;
    }

    // ------------------------------------------------------------------------ responses

    async fn on_response(&mut self, inb: Inbound) {
        let msg = &inb.msg;
        let Some(code) = msg.code() else { return };
        let Some(br) = msg
            .get_all("Via")
            .first()
            .and_then(|v| Via::parse(v).ok())
            .and_then(|v| v.branch().map(str::to_owned))
        else {
            return;
        };
        let cseq_method = msg.cseq().map(|(_, m)| m.to_owned()).unwrap_or_default();
        let key = if cseq_method == "CANCEL" {
            format!("{br}#CANCEL")
        } else {
            br.clone()
        };
        let now = Instant::now();
        let Some(tx) = self.clients.get_mut(&key) else {
            // A 2xx retransmitted after its transaction ended: ACK it again.
            if (200..300).contains(&code) && cseq_method == "INVITE" {
                let found = self.dialogs.values().find(|d| {
                    d.role == Role::Uac && msg.call_id() == Some(d.call_id.as_str()) && d.ack.is_some()
                });
                if let Some((ack, to, proto)) = found.and_then(|d| {
                    let (to, proto) = d.destination();
                    d.ack.clone().map(|a| (a, to, proto))
                }) {
                    self.send(proto, to, ack).await;
                }
            }
            return;
        };
        if tx.method != cseq_method {
            return;
        }
        if tx.done {
            if let Some(ack) = tx.ack.clone() {
                let (to, p) = (tx.to, tx.proto);
                self.send(p, to, ack).await;
            }
            return;
        }
        if code < 200 {
            tx.provisional(now);
        } else {
            tx.finished(now);
        }
        let owner = tx.owner.clone();
        let method = tx.method.clone();
        // A failed INVITE is ACKed by its transaction (same branch), whatever became of the call.
        if method == "INVITE"
            && code >= 300
            && let Some(ack) = Message::parse(&tx.bytes).ok().map(|inv| failure_ack(&inv, msg))
        {
            tx.ack = Some(ack.clone());
            let (to, p) = (tx.to, tx.proto);
            self.send(p, to, ack).await;
        }
        match owner {
            Owner::Register => self.on_register_response(msg, code).await,
            Owner::Invite(id) => {
                if self.dialogs.contains_key(&id) {
                    self.on_invite_response(id, msg, code).await;
                } else if (200..300).contains(&code) {
                    // Answered after we gave up on it (a CANCEL that lost the race): ACK, BYE.
                    self.ack_and_bye(msg, inb.from, inb.proto).await;
                }
            }
            Owner::Reoffer(id) => self.on_reoffer_response(id, msg, code).await,
            Owner::Refer(id) if code >= 300 => {
                let reason = reason_phrase(msg);
                self.emit(SipEvent::ReferRefused {
                    dialog: id,
                    code,
                    reason,
                });
            }
            Owner::Refer(_) | Owner::Prack(_) | Owner::None => {}
        }
    }

    async fn on_invite_response(&mut self, id: DialogId, msg: &Message, code: u16) {
        if code == 100 {
            return;
        }
        let tag = msg
            .get("To")
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|t| t.tag().map(str::to_owned));
        if code < 300 {
            let Some(d) = self.dialogs.get_mut(&id) else {
                return;
            };
            if let Some(tag) = &tag {
                d.remote.set_param("tag", tag);
            }
            d.refresh_target(msg);
            // The route set comes from the response that creates the dialog, and is computed
            // again from the 2xx (RFC 3261 §12.1.2, §13.2.2.4).
            d.route = msg
                .get_all("Record-Route")
                .iter()
                .rev()
                .map(|s| s.to_string())
                .collect();
            d.peer_update = dialog::allows(msg, "UPDATE") || d.peer_update;
        }
        let sdp = (!msg.body.is_empty()).then(|| String::from_utf8_lossy(&msg.body).into_owned());
        if code < 200 {
            let reliable = dialog::has_option_tag(msg, "Require", "100rel");
            let rseq: Option<u32> = msg.get("RSeq").and_then(|r| r.trim().parse().ok());
            if reliable && let Some(rseq) = rseq {
                let Some(d) = self.dialogs.get_mut(&id) else {
                    return;
                };
                // In order, once each (RFC 3262 §4): a retransmission is not PRACKed again.
                if d.remote_rseq.is_some_and(|last| rseq <= last) {
                    return;
                }
                d.remote_rseq = Some(rseq);
                let invite_cseq = msg.cseq().map_or(1, |(n, _)| n);
                let mut prack = d.request("PRACK", None);
                prack.push("RAck", format!("{rseq} {invite_cseq} INVITE"));
                let (to, proto) = d.destination();
                self.send_request(prack, to, proto, Owner::Prack(id)).await;
            }
            self.emit(SipEvent::Early {
                dialog: id,
                code,
                sdp,
            });
            return;
        }
        if code < 300 {
            let cseq = msg.cseq().map_or(1, |(n, _)| n);
            let timer = dialog::session_expires(msg).map(|(se, r)| {
                // From our INVITE's view we are the UAC.
                (se.max(MIN_SE), r.as_deref() != Some("uas"))
            });
            let Some(d) = self.dialogs.get_mut(&id) else {
                return;
            };
            let mut ack = d.request("ACK", Some(cseq));
            let (to, proto) = d.destination();
            ack.headers.insert(0, ("Via".into(), self.via(proto, &branch())));
            ack.push("Max-Forwards", "70");
            let bytes = ack.to_bytes();
            let Some(d) = self.dialogs.get_mut(&id) else {
                return;
            };
            d.ack = Some(bytes.clone());
            d.state = DialogState::Confirmed;
            d.timer = timer.map(|(se, we)| SessionTimer::start(se, we, Instant::now()));
            self.send(proto, to, bytes).await;
            self.emit(SipEvent::Confirmed { dialog: id, sdp });
            return;
        }
        if (code == 401 || code == 407)
            && self.dialogs.get(&id).is_some_and(|d| d.auth_tries == 0)
            && !self.cfg.password.is_empty()
            && let Some(ch) = auth::pick(&challenges(msg, code)).cloned()
            && let Some(inv) = self.dialogs.get(&id).and_then(|d| d.our_invite.clone())
        {
            let value = |inv: &Message, cfg: &StackConfig| {
                let uri = inv.uri().unwrap_or("").to_owned();
                auth::authorization(
                    &ch,
                    &cfg.auth_user,
                    &cfg.password,
                    "INVITE",
                    &uri,
                    1,
                    &random_token(12),
                    &inv.body,
                )
            };
            let header = if code == 401 {
                "Authorization"
            } else {
                "Proxy-Authorization"
            };
            let v = value(&inv, &self.cfg);
            self.retry_invite(id, inv, |d, m| {
                d.auth_tries += 1;
                m.set(header, v);
            })
            .await;
            return;
        }
        if code == 422
            && self.dialogs.get(&id).is_some_and(|d| !d.min_se_retried)
            && let Some(min) = dialog::min_se(msg)
            && let Some(inv) = self.dialogs.get(&id).and_then(|d| d.our_invite.clone())
        {
            // RFC 4028 §7.4: again with the interval the peer asks for.
            let min = min.max(MIN_SE);
            self.retry_invite(id, inv, |d, m| {
                d.min_se_retried = true;
                m.set("Session-Expires", min.to_string());
                m.set("Min-SE", min.to_string());
            })
            .await;
            return;
        }
        let reason = reason_phrase(msg);
        self.end(id, DialogEnd::Refused { code, reason });
    }

    /// Sends our INVITE again with the next CSeq and `change` applied (authentication, Min-SE).
    async fn retry_invite(
        &mut self,
        id: DialogId,
        mut inv: Message,
        change: impl FnOnce(&mut Dialog, &mut Message),
    ) {
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        let cseq = inv.cseq().map_or(1, |(n, _)| n) + 1;
        inv.set("CSeq", format!("{cseq} INVITE"));
        change(d, &mut inv);
        d.local_cseq = cseq;
        let (to, proto) = (d.peer, d.proto);
        self.send_invite(id, inv, to, proto).await;
    }

    async fn on_reoffer_response(&mut self, id: DialogId, msg: &Message, code: u16) {
        if code < 200 {
            return;
        }
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        d.pending_out = None;
        let method = msg.cseq().map(|(_, m)| m.to_owned()).unwrap_or_default();
        let sdp = (!msg.body.is_empty()).then(|| String::from_utf8_lossy(&msg.body).into_owned());
        if code < 300 {
            d.refresh_target(msg);
            if let Some((se, r)) = dialog::session_expires(msg) {
                d.timer = Some(SessionTimer::start(
                    se.max(MIN_SE),
                    r.as_deref() != Some("uas"),
                    Instant::now(),
                ));
            } else if d.timer.is_some() {
                // A refresh answered without the header: the interval we asked for.
                let t = d
                    .timer
                    .take()
                    .map(|t| SessionTimer::start(t.interval, t.we_refresh, Instant::now()));
                d.timer = t;
            }
            if method == "INVITE" {
                let cseq = msg.cseq().map_or(1, |(n, _)| n);
                let mut ack = d.request("ACK", Some(cseq));
                let (to, proto) = d.destination();
                ack.headers.insert(0, ("Via".into(), self.via(proto, &branch())));
                ack.push("Max-Forwards", "70");
                let bytes = ack.to_bytes();
                if let Some(d) = self.dialogs.get_mut(&id) {
                    d.ack = Some(bytes.clone());
                }
                self.send(proto, to, bytes).await;
            }
            if sdp.is_some() || method == "INVITE" {
                self.emit(SipEvent::OfferAnswered { dialog: id, sdp });
            }
            return;
        }
        // A 481 or 408 to a request inside the dialog ends it (RFC 3261 §12.2.1.2).
        if code == 481 || code == 408 {
            self.emit(SipEvent::OfferRefused {
                dialog: id,
                code,
                reason: reason_phrase(msg),
            });
            if let Some(d) = self.dialogs.get_mut(&id) {
                let bye = d.request("BYE", None);
                let (to, proto) = d.destination();
                self.send_request(bye, to, proto, Owner::None).await;
            }
            self.end(
                id,
                if code == 481 {
                    DialogEnd::Gone
                } else {
                    DialogEnd::Timeout
                },
            );
            return;
        }
        // Refused: the session stays as it was (RFC 3261 §14.1).
        self.emit(SipEvent::OfferRefused {
            dialog: id,
            code,
            reason: reason_phrase(msg),
        });
    }

    /// ACKs then ends a dialog we no longer want (a 2xx that arrived after we hung up).
    async fn ack_and_bye(&mut self, resp: &Message, from: SocketAddr, proto: Proto) {
        let target = resp
            .get_all("Contact")
            .first()
            .and_then(|c| NameAddr::parse(c).ok())
            .map_or_else(
                || {
                    resp.get("To")
                        .and_then(|t| NameAddr::parse(t).ok())
                        .map(|t| t.uri)
                        .unwrap_or_default()
                },
                |c| c.uri,
            );
        let n = resp.cseq().map_or(1, |(n, _)| n);
        let mut base = Message::request("ACK", &target);
        base.push("From", resp.get("From").unwrap_or("").to_owned())
            .push("To", resp.get("To").unwrap_or("").to_owned())
            .push("Call-ID", resp.call_id().unwrap_or("").to_owned());
        for r in resp.get_all("Record-Route").iter().rev() {
            base.push("Route", r.to_string());
        }
        let mut ack = base.clone();
        ack.push("CSeq", format!("{n} ACK"));
        ack.headers.insert(0, ("Via".into(), self.via(proto, &branch())));
        self.send(proto, from, ack.to_bytes()).await;
        let mut bye = base;
        bye.start = StartLine::Request {
            method: "BYE".into(),
            uri: target,
        };
        bye.push("CSeq", format!("{} BYE", n + 1));
        self.send_request(bye, from, proto, Owner::None).await;
    }

    // ------------------------------------------------------------------------ timers

    /// Retransmits, times out and refreshes what is due.
    pub async fn on_timers(&mut self) {
        let now = Instant::now();
        let mut resend = Vec::new();
        let mut timed_out = Vec::new();
        self.clients.retain(|br, tx| {
            if tx.deadline <= now {
                if !tx.done {
                    timed_out.push((br.clone(), tx.owner.clone(), tx.method.clone(), tx.error.take()));
                }
                return false;
            }
            if let Some(bytes) = tx.due(now) {
                resend.push((tx.proto, tx.to, bytes));
            }
            true
        });
        for tx in self.servers.values_mut() {
            if let Some((t, iv)) = tx.retransmit
                && t <= now
            {
                resend.push((tx.proto, tx.to, tx.last.clone()));
                let iv = (iv * 2).min(T2);
                tx.retransmit = Some((now + iv, iv));
            }
        }
        self.servers.remove_expired(now);
        // Dialog timers: 2xx until ACK (RFC 3261 §13.3.1.4), reliable provisionals until
        // PRACK (RFC 3262 §3), session timers (RFC 4028 §10).
        let mut no_ack = Vec::new();
        let mut no_prack = Vec::new();
        let mut refresh = Vec::new();
        let mut expired = Vec::new();
        for d in self.dialogs.values_mut() {
            if let Some(w) = &mut d.ok_wait {
                if w.give_up <= now {
                    no_ack.push(d.id);
                    d.ok_wait = None;
                } else if w.next <= now {
                    if !d.proto.is_stream() {
                        resend.push((d.proto, d.peer, w.bytes.clone()));
                    }
                    w.interval = (w.interval * 2).min(T2);
                    w.next = (now + w.interval).min(w.give_up);
                }
            }
            if let Some(u) = &mut d.unacked {
                if u.give_up <= now {
                    no_prack.push(d.id);
                    d.unacked = None;
                } else if u.next <= now {
                    if !d.proto.is_stream() && !u.bytes.is_empty() {
                        resend.push((d.proto, d.peer, u.bytes.clone()));
                    }
                    u.interval = (u.interval * 2).min(T2);
                    u.next = (now + u.interval).min(u.give_up);
                }
            }
            if let Some(t) = d.timer
                && t.due <= now
            {
                if t.we_refresh {
                    refresh.push(d.id);
                    // Until the refresh is answered, the session lasts what is left of it.
                    d.timer = Some(SessionTimer {
                        due: now + Duration::from_secs(u64::from(t.interval) / 2),
                        we_refresh: false,
                        interval: t.interval,
                    });
                } else {
                    expired.push(d.id);
                    d.timer = None;
                }
            }
        }
        for (p, to, bytes) in resend {
            self.send(p, to, bytes).await;
        }
        for id in no_ack {
            tracing::info!(dialog = %id, "no ACK for our 2xx: hanging up");
            self.bye_and_end(id, DialogEnd::NoAck).await;
        }
        for id in no_prack {
            tracing::info!(dialog = %id, "no PRACK for our reliable 180: refusing the call");
            self.terminate_invite(id, 504, "No PRACK").await;
            self.end(id, DialogEnd::NoPrack);
        }
        for id in expired {
            tracing::info!(dialog = %id, "session timer expired without a refresh: hanging up");
            self.bye_and_end(id, DialogEnd::SessionExpired).await;
        }
        for id in refresh {
            self.refresh(id).await;
        }
        for (br, owner, method, error) in timed_out {
            self.on_client_timeout(&br, owner, &method, error).await;
        }
        if self.reg.next.is_some_and(|t| t <= now) {
            self.reg.next = None;
            let e = self.reg.expires;
            self.register(e).await;
        }
    }

    /// Sends BYE in a confirmed dialog and ends it with `end`.
    async fn bye_and_end(&mut self, id: DialogId, end: DialogEnd) {
        if let Some(d) = self.dialogs.get_mut(&id)
            && d.state == DialogState::Confirmed
        {
            let bye = d.request("BYE", None);
            let (to, proto) = d.destination();
            self.send_request(bye, to, proto, Owner::None).await;
        }
        self.end(id, end);
    }

    /// A session refresh we owe: UPDATE without SDP when the peer takes UPDATE, else the call
    /// layer re-offers its session in a re-INVITE.
    async fn refresh(&mut self, id: DialogId) {
        let contact = self.contact();
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        if d.pending_out.is_some() || d.pending_in.is_some() {
            return;
        }
        if !d.peer_update {
            self.emit(SipEvent::RefreshNeeded { dialog: id });
            return;
        }
        let interval = d.timer.map_or(SESSION_EXPIRES, |t| t.interval);
        let mut up = d.request("UPDATE", None);
        up.push("Contact", contact)
            .push("Supported", SUPPORTED)
            .push("Session-Expires", format!("{interval};refresher=uac"));
        let (to, proto) = d.destination();
        let br = self.send_request(up, to, proto, Owner::Reoffer(id)).await;
        if let Some(d) = self.dialogs.get_mut(&id) {
            d.pending_out = Some(br);
            d.timer = Some(SessionTimer {
                interval,
                we_refresh: true,
                due: Instant::now() + Duration::from_secs(u64::from(interval) / 2),
            });
        }
    }

    async fn on_client_timeout(&mut self, _br: &str, owner: Owner, method: &str, error: Option<String>) {
        if let Some(e) = &error {
            self.emit(SipEvent::Error(e.clone()));
        }
        match owner {
            Owner::Register => self.on_register_timeout(error),
            Owner::Invite(id) if method == "INVITE" => {
                if self
                    .dialogs
                    .get(&id)
                    .is_some_and(|d| d.state != DialogState::Confirmed)
                {
                    let end = match error {
                        Some(e) => DialogEnd::Unreachable(e),
                        None => DialogEnd::Timeout,
                    };
                    self.end(id, end);
                }
            }
            Owner::Reoffer(id) => {
                if let Some(d) = self.dialogs.get_mut(&id) {
                    d.pending_out = None;
                }
                self.emit(SipEvent::OfferRefused {
                    dialog: id,
                    code: 408,
                    reason: "no answer".into(),
                });
                self.bye_and_end(id, DialogEnd::Timeout).await;
            }
            _ => {}
        }
    }

    /// A TCP or TLS connection ended. The registrar's: see the registration. A dialog whose
    /// peer was reached over it and that has no proxy in its route: if its peer cannot be
    /// reached again (a CRLF keep-alive, RFC 5626 §3.5.1, opens a new connection) it ends.
    pub async fn on_connection_lost(&mut self, proto: Proto, peer: SocketAddr, quitting: bool) {
        if quitting {
            return;
        }
        self.registration_connection_lost(proto, peer).await;
        let hit: Vec<DialogId> = self
            .dialogs
            .values()
            .filter(|d| d.proto == proto && (d.peer == peer || d.destination().0 == peer))
            .map(|d| d.id)
            .collect();
        for id in hit {
            let Some(d) = self.dialogs.get(&id) else { continue };
            let direct = d.route.is_empty();
            let (dest, _) = d.destination();
            let call = d.call_id.clone();
            let gone = direct
                && self
                    .transport
                    .send(proto, dest, b"\r\n\r\n".to_vec())
                    .await
                    .is_err();
            if gone {
                self.emit(SipEvent::Warning(format!(
                    "call {call}: the {} connection to {peer} was lost and {dest} cannot be reached: \
                     the call ends",
                    proto.name()
                )));
                self.end(id, DialogEnd::Unreachable(format!("{dest} cannot be reached")));
            } else {
                self.emit(SipEvent::Warning(format!(
                    "call {call}: the {} connection to {peer} was lost; its next request connects again",
                    proto.name()
                )));
            }
        }
    }

    /// For tests and benchmarks: the number of client and server transactions held.
    pub fn transaction_counts(&self) -> (usize, usize) {
        (self.clients.len(), self.servers.len())
    }
}

/// The digest challenges of a 401 (WWW-Authenticate) or 407 (Proxy-Authenticate); those that
/// cannot be answered (another scheme, an unknown algorithm) are left out.
pub(super) fn challenges(msg: &Message, code: u16) -> Vec<Challenge> {
    let header = if code == 401 {
        "WWW-Authenticate"
    } else {
        "Proxy-Authenticate"
    };
    msg.get_all(header)
        .iter()
        .filter_map(|h| Challenge::parse(h).ok())
        .collect()
}

/// An I/O error with its causes (a TLS alert says why the certificate was refused).
pub fn error_chain(e: &std::io::Error) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

pub fn fmt_addr(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

pub(super) fn reason_phrase(msg: &Message) -> String {
    match &msg.start {
        StartLine::Response { code, reason } => format!("{code} {reason}"),
        StartLine::Request { .. } => String::new(),
    }
}

/// A Warning's text (RFC 3261 §20.43): at most 120 characters of `why`, no control characters
/// or quotes. An error may quote what the peer sent, 60 KB of it: the answer would not fit a
/// datagram and never be sent.
pub fn warning_text(why: &str) -> String {
    why.chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(120)
        .collect()
}

/// A response's code, reason phrase and extra headers.
type Refusal = (u16, &'static str, Vec<(&'static str, String)>);

/// The checks of a request before its method's own handling (RFC 3261 §8.2.1, §8.2.2): a
/// method this agent does not take (405 for REGISTER, which only a registrar takes, with Allow;
/// 501 for others), a Request-URI scheme it cannot serve (416), an extension the request
/// requires that we do not support (420, with those tags in Unsupported). The response's code,
/// reason and extra headers; `None` when the request passes. ACK is never answered and CANCEL's
/// Require is ignored (§8.2.2.3).
pub(super) fn precheck(msg: &Message) -> Option<Refusal> {
    let method = msg.method()?;
    if method == "ACK" {
        return None;
    }
    if !ALLOW.split(", ").any(|m| m == method) {
        return Some(if method == "REGISTER" {
            (405, "Method Not Allowed", vec![("Allow", ALLOW.to_owned())])
        } else {
            (501, "Not Implemented", vec![("Allow", ALLOW.to_owned())])
        });
    }
    let scheme = msg
        .uri()
        .and_then(|u| u.split_once(':'))
        .map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("sip" | "sips" | "tel")) {
        return Some((416, "Unsupported URI Scheme", Vec::new()));
    }
    if method != "CANCEL" {
        let unsupported: Vec<&str> = msg
            .get_all("Require")
            .into_iter()
            .flat_map(super::message::split_commas)
            .map(str::trim)
            .filter(|t| !SUPPORTED.split(", ").any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            return Some((
                420,
                "Bad Extension",
                vec![("Unsupported", unsupported.join(", "))],
            ));
        }
    }
    None
}

/// Whether a request's Accept (if any) takes `application/sdp` (or `application/*`, `*/*`).
/// No Accept, or one that lists nothing: SDP, the default (RFC 3261 §20.1).
pub(super) fn accepts_sdp(msg: &Message) -> bool {
    let ranges: Vec<String> = msg
        .headers
        .iter()
        .filter(|(n, _)| n == "Accept")
        .flat_map(|(_, v)| super::message::split_commas(v))
        .map(|r| r.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .filter(|r| !r.is_empty())
        .collect();
    ranges.is_empty()
        || ranges
            .iter()
            .any(|r| matches!(r.as_str(), "application/sdp" | "application/*" | "*/*"))
}

/// Adds a To tag to a final response made outside any dialog.
fn add_tag(r: &mut Message) {
    if let Some(to) = r.get("To").map(str::to_owned)
        && let Ok(mut n) = NameAddr::parse(&to)
        && n.tag().is_none()
    {
        n.set_param("tag", &random_token(10));
        r.set("To", n.to_string());
    }
}

/// The request URI for a number or URI the agent typed, in `domain`.
pub fn target_uri(to: &str, domain: &str) -> Result<String, String> {
    let to = to.trim();
    if to.is_empty() {
        return Err("nothing to dial".into());
    }
    if to.contains(':') {
        Uri::parse(to).map_err(|e| format!("cannot dial `{to}`: {e}"))?;
        return Ok(to.to_owned());
    }
    let ok = to
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+*#-._".contains(c));
    if !ok {
        return Err(format!("cannot dial `{to}`: use digits or a SIP URI"));
    }
    Ok(format!("sip:{to}@{domain}"))
}

/// The host and port of a URI, to resolve (default port by transport).
pub fn uri_host_port(uri: &str) -> Option<(String, u16)> {
    let u = Uri::parse(uri).ok()?;
    let host = u.host.trim_start_matches('[').trim_end_matches(']').to_owned();
    Some((host, u.port.unwrap_or(5060)))
}

/// An IP address literal, if `host` is one.
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

#[cfg(test)]
mod tests;
