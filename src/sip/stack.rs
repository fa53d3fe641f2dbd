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
use super::auth::Challenge;
use super::dialog::{Dialog, DialogEnd, DialogId, DialogState, SessionTimer};
use super::message::{Message, StartLine};
use super::registration::Registration;
use super::transaction::{
    ClientTable, ClientTx, ServerTable, ServerTx, T1, T2, acked_lifetime, server_key, server_tx_lifetime,
};
use super::transport::{Inbound, Proto, TlsSettings, Transport};

/// The methods this agent answers (the Allow header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, UPDATE, PRACK";
/// The extensions this agent supports (the Supported header).
pub const SUPPORTED: &str = "100rel, timer, replaces";
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
    /// Where REGISTER and out-of-dialog requests go; `None`: no registration. With several
    /// targets (DNS SRV), the one in use: it moves on failover and failback.
    pub registrar: Option<SocketAddr>,
    /// Every address the registrar (or outbound proxy) was located at (RFC 3263), the most
    /// preferred first; tried in turn on a timeout, a 503 or a lost connection.
    pub registrar_targets: Vec<SocketAddr>,
    /// How to locate them again once all failed (the name, explicit port, resolver).
    pub relocate: Option<Relocate>,
    /// The domain of our address of record.
    pub domain: String,
    pub user: String,
    pub auth_user: String,
    pub password: String,
    pub display_name: String,
    pub expires: u32,
    pub tls: TlsSettings,
    /// `[account] public_address`: the address behind NAT others reach us at, for Contact and
    /// SDP (else the one the registrar saw).
    pub public_address: Option<std::net::IpAddr>,
    /// `[account] stun_server` (host, port): asked the address the NAT maps our UDP socket to
    /// ([`super::stun`]); `None`: off.
    pub stun_server: Option<(String, u16)>,
    /// The outbound proxy's Route (`<sip:sbc.example;transport=tls;lr>`), put on every request
    /// outside a dialog; `registrar` is then the proxy's address.
    pub route: Option<String>,
    /// `[account] keepalive_seconds`: a CRLF ping to the registrar this often while
    /// registered (RFC 5626; [`super::keepalive`]); `None`: off.
    pub keepalive: Option<Duration>,
}

/// The registrar's (or outbound proxy's) name, looked up again when every address failed.
#[derive(Clone, Debug)]
pub struct Relocate {
    pub resolver: super::resolve::Resolver,
    pub host: String,
    pub port: Option<u16>,
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
        /// The registrar (or outbound proxy) address that answered.
        server: SocketAddr,
        /// The address in the Contact registered.
        contact: SocketAddr,
        /// What STUN learned for the SIP socket, if it did.
        stun: Option<SocketAddr>,
    },
    RegistrationFailed {
        code: Option<u16>,
        reason: String,
    },
    Unregistered,
    Warning(String),
    Error(String),
    /// A new INVITE: its dialog exists (early, our tag chosen); 100 Trying goes out only if the
    /// call layer sends nothing for it while handling this event. The call layer rings it ([`Stack::ring`]), answers or refuses it.
    Incoming {
        dialog: DialogId,
        call_id: String,
        request: std::sync::Arc<Message>,
        offer: Option<String>,
        /// The address the INVITE came from (not what its headers claim).
        source: SocketAddr,
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
        /// The address it came from.
        source: SocketAddr,
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
    /// Our INVITE was redirected (3xx): its Contacts, the most preferred first (`q`). The
    /// dialog's `Ended` follows.
    Redirected {
        dialog: DialogId,
        code: u16,
        targets: Vec<String>,
    },
    /// A NOTIFY of one of our subscriptions (`sub`), or an unsolicited one from the registrar
    /// (`None`); answered 200 already.
    Notified {
        sub: Option<super::subscription::SubId>,
        event: String,
        body: String,
    },
    /// A subscription was refused or got no answer (retried with backoff unless permanent).
    SubscriptionFailed {
        sub: super::subscription::SubId,
        event: String,
        target: String,
        why: String,
    },
}

/// What identifies a dialog to others (for `Replaces`, RFC 3891).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialogInfo {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// The peer's address of record (the To of our INVITE, the From of theirs).
    pub remote_uri: String,
    /// The peer's Contact.
    pub remote_target: String,
    /// We sent the INVITE.
    pub uac: bool,
    pub confirmed: bool,
    /// Its signalling goes over TLS (so SDP, SRTP keys included, is not in clear).
    pub tls: bool,
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
    Subscribe(super::subscription::SubId),
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

pub(super) fn branch() -> String {
    format!("z9hG4bK{}", random_token(16))
}

/// The signalling stack.
pub struct Stack {
    pub(super) cfg: StackConfig,
    pub(super) transport: Transport,
    pub(super) local: SocketAddr,
    pub(super) clients: ClientTable<Owner>,
    pub(super) servers: ServerTable,
    pub(super) dialogs: HashMap<DialogId, Dialog>,
    /// Dialogs by Call-ID and our tag (the peer's tag is checked on each request).
    pub(super) by_key: HashMap<(String, String), DialogId>,
    pub(super) next_id: u64,
    pub(super) reg: Registration,
    pub(super) events: VecDeque<SipEvent>,
    pub(super) fail_tx: mpsc::UnboundedSender<(String, String)>,
    /// New incoming INVITEs that get a 100 Trying if nothing else was sent for them.
    pub(super) trying: Vec<DialogId>,
    /// The event subscriptions we hold (voicemail light).
    pub(super) subs: Vec<super::subscription::Subscription>,
    /// STUN on the SIP socket.
    pub(super) stun: StunState,
}

/// STUN on the SIP socket: the server, the transaction in flight, what it learned.
#[derive(Debug, Default)]
pub struct StunState {
    pub server: Option<SocketAddr>,
    pub probe: Option<super::stun::Binding>,
    /// The address the NAT shows our SIP socket at.
    pub mapped: Option<SocketAddr>,
    /// The first REGISTER waits for the mapping until then.
    pub hold_register: Option<Instant>,
    /// STUN datagrams that came with no transaction in flight.
    pub stray: u32,
}

/// The receivers the owner of the stack selects on beside it.
pub struct StackInputs {
    /// UDP: read in the owner's loop.
    pub datagrams: super::transport::Datagrams,
    /// Messages from stream connections.
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
        let datagrams = transport.datagrams();
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
        let mut reg = Registration::new(cfg.expires);
        reg.keepalive = super::keepalive::Keepalive::new(cfg.keepalive);
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
            trying: Vec::new(),
            subs: Vec::new(),
            stun: StunState::default(),
        };
        stack.events.push_back(SipEvent::Ready { listen: local });
        if let Some((host, port)) = stack.cfg.stun_server.clone() {
            match super::stun::resolve(&host, port, local.is_ipv6()).await {
                Ok(server) => {
                    stack.stun.server = Some(server);
                    stack.stun_probe().await;
                }
                Err(e) => stack.emit(SipEvent::Warning(format!("STUN: {e}; going on without it"))),
            }
        }
        Ok((
            stack,
            StackInputs {
                datagrams,
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

    /// The address others reach our media at, for the SDP: `[account] public_address`, else the
    /// address the registrar saw us at (behind NAT, RFC 3581's received), else our own.
    pub fn media_ip(&self) -> std::net::IpAddr {
        self.cfg
            .public_address
            .or(self.stun.mapped.map(|m| m.ip()))
            .unwrap_or_else(|| self.contact_addr().ip())
    }

    /// The STUN server, when `[account] stun_server` is set and was found.
    pub fn stun_server(&self) -> Option<SocketAddr> {
        self.stun.server
    }

    /// The address STUN learned for the SIP socket.
    pub fn stun_mapped(&self) -> Option<SocketAddr> {
        self.stun.mapped
    }

    /// `[account] public_address`.
    pub fn public_address(&self) -> Option<IpAddr> {
        self.cfg.public_address
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

    pub(super) fn emit(&mut self, e: SipEvent) {
        self.events.push_back(e);
    }

    /// Our address for Contact: `[account] public_address` > what STUN learned (the UDP
    /// socket's mapping, for a UDP account) > what the registrar saw (received/rport) > ours.
    pub(super) fn contact_addr(&self) -> SocketAddr {
        let mapped = self.stun.mapped.filter(|_| self.cfg.proto == Proto::Udp);
        match (self.cfg.public_address, mapped, self.reg.public) {
            // Configured: that address, with the port STUN or the registrar saw (or ours).
            (Some(ip), m, seen) => SocketAddr::new(ip, m.or(seen).map_or(self.local.port(), |s| s.port())),
            (None, Some(m), _) => m,
            (None, None, seen) => seen.unwrap_or(self.local),
        }
    }

    pub fn contact(&self) -> String {
        self.contact_for(self.cfg.proto)
    }

    /// Our `sips:` Contact, for a dialog made by a `sips:` Request-URI (RFC 3261 §8.1.1.8 and
    /// §12.1.1: its Contacts are `sips:` too, so that every request in it comes over TLS).
    pub fn sips_contact(&self) -> String {
        format!("<sips:{}@{}>", self.cfg.user, fmt_addr(self.contact_addr()))
    }

    /// Our Contact inside dialog `d`: `sips:` when the INVITE that made it was for a `sips:`
    /// URI, else for the dialog's own transport (a `sips:` call from a UDP account is TLS).
    pub(super) fn dialog_contact(&self, d: &Dialog) -> String {
        let first = d.invite.as_deref().or(d.our_invite.as_ref());
        if first.and_then(Message::uri).is_some_and(is_sips) {
            self.sips_contact()
        } else {
            self.contact_for(d.proto)
        }
    }

    /// Our Contact for requests sent over `proto`: over a stream, the transport is named so
    /// that requests coming back use it (over TLS, `;transport=tls`: RFC 5630 §3.1.3 leaves
    /// `sips:` Contacts to `sips:` requests, which every registrar takes this way too).
    pub fn contact_for(&self, proto: Proto) -> String {
        let a = self.contact_addr();
        let t = match proto {
            Proto::Udp => "",
            Proto::Tcp => ";transport=tcp",
            Proto::Tls => ";transport=tls",
        };
        format!("<sip:{}@{}{t}>", self.cfg.user, fmt_addr(a))
    }

    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.cfg.user, self.cfg.domain)
    }

    pub(super) fn via(&self, proto: Proto, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            proto.name(),
            fmt_addr(self.local)
        )
    }

    pub(super) fn new_dialog_id(&mut self) -> DialogId {
        let id = DialogId(self.next_id);
        self.next_id += 1;
        id
    }

    pub(super) fn insert_dialog(&mut self, d: Dialog) {
        self.by_key
            .insert((d.call_id.clone(), d.local_tag().to_owned()), d.id);
        self.dialogs.insert(d.id, d);
    }

    pub(super) fn remove_dialog(&mut self, id: DialogId) -> Option<Dialog> {
        let d = self.dialogs.remove(&id)?;
        self.by_key.remove(&(d.call_id.clone(), d.local_tag().to_owned()));
        Some(d)
    }

    /// Ends dialog `id` with `end` (removed, reported).
    pub(super) fn end(&mut self, id: DialogId, end: DialogEnd) {
        if self.remove_dialog(id).is_some() {
            self.emit(SipEvent::Ended { dialog: id, end });
        }
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
        consider(self.stun.probe.as_ref().map(super::stun::Binding::deadline));
        consider(self.stun.hold_register);
        consider(self.reg.keepalive.deadline());
        consider(self.subscriptions_deadline());
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

    /// A request outside a dialog (its To has no tag) without a Route of its own gets the
    /// outbound proxy's Route, then (all but REGISTER) the registrar's Service-Route
    /// (RFC 3608): the path every initial request takes.
    fn add_initial_route(&self, req: &mut Message) {
        let method = req.method().unwrap_or("").to_owned();
        if method == "ACK" || req.get("Route").is_some() {
            return;
        }
        let tagged = req
            .get("To")
            .and_then(|t| NameAddr::parse(t).ok())
            .is_some_and(|t| t.tag().is_some());
        if tagged {
            return;
        }
        let mut routes: Vec<String> = self.cfg.route.iter().cloned().collect();
        if method != "REGISTER" {
            routes.extend(self.reg.service_route.iter().cloned());
        }
        for r in routes {
            req.push("Route", r);
        }
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
        self.add_initial_route(&mut req);
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
                self.on_send_failed(&br, send_failure(&e, to, proto));
            }
        } else {
            // A stream connection to open: beside the loop; a failure comes back through
            // `failures` and fails the transaction (RFC 3261 §8.1.3.1: as a 503).
            let transport = self.transport.clone();
            let fail = self.fail_tx.clone();
            let b = br.clone();
            tokio::spawn(async move {
                if let Err(e) = transport.send(proto, to, bytes).await {
                    let _ = fail.send((b, send_failure(&e, to, proto)));
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
    pub(super) async fn respond(&mut self, inb_from: SocketAddr, proto: Proto, req: &Message, resp: Message) {
        let key = server_key(req);
        self.respond_keyed(inb_from, proto, req, resp, key).await;
    }

    /// [`Stack::respond`] for a request whose transaction key is known (`key`, from
    /// [`server_key`]): an INVITE's, kept in its dialog, is not worked out again per response.
    pub(super) async fn respond_keyed(
        &mut self,
        inb_from: SocketAddr,
        proto: Proto,
        req: &Message,
        mut resp: Message,
        key: Option<String>,
    ) {
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
        if let Some(key) = key {
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
    pub(super) async fn refuse(
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

    /// RFC 4028 §8: a request asking for a session interval below our minimum is refused 422
    /// with ours; `true` when it was.
    pub(super) async fn refused_short_interval(
        &mut self,
        msg: &Message,
        from: SocketAddr,
        proto: Proto,
    ) -> bool {
        let short = super::dialog::session_expires(msg).is_some_and(|(se, _)| se < MIN_SE);
        if short {
            let min = [("Min-SE", MIN_SE.to_string())];
            self.refuse(from, proto, msg, 422, "Session Interval Too Small", &min)
                .await;
        }
        short
    }

    /// Sends 100 Trying for each new INVITE the call layer has not answered (180, 200 or a
    /// refusal) while handling its `Incoming` event: the owner calls this after draining the
    /// events. A phone that rings at once sends its 180 first and no 100 (as baresip does).
    pub async fn flush_trying(&mut self) {
        for id in std::mem::take(&mut self.trying) {
            let Some(d) = self.dialogs.get(&id) else { continue };
            let answered = d
                .invite_key
                .as_deref()
                .is_some_and(|k| self.servers.get(k).is_some());
            if answered {
                continue;
            }
            if let Some(inv) = &d.invite {
                let mut trying = Message::response(inv, 100, "Trying");
                trying.remove("Record-Route");
                let (peer, proto) = (d.peer, d.proto);
                self.send(proto, peer, trying.to_bytes()).await;
            }
        }
    }

    // ------------------------------------------------------------------------ inbound

    /// Handles a message from the transport.
    /// What the UDP socket brought: SIP, or STUN for the probe in flight.
    pub async fn on_datagram(&mut self, d: super::transport::Datagram) {
        match d {
            super::transport::Datagram::Sip(inb) => self.on_inbound(inb).await,
            super::transport::Datagram::Stun { data, from } => self.on_stun(&data, from).await,
        }
    }

    pub async fn on_inbound(&mut self, inb: Inbound) {
        if inb.msg.is_request() {
            self.on_request(inb).await;
        } else {
            self.on_response(inb).await;
        }
    }

    pub(super) async fn on_request(&mut self, inb: Inbound) {
        let Inbound { msg, from, proto } = inb;
        let method = msg.method().unwrap_or("").to_owned();
        // A retransmission of a request we answered: the same answer again.
        let key = server_key(&msg);
        if let Some(key) = &key {
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
            } else if let Some(tx) = self.servers.get(key) {
                let (bytes, to, p) = (tx.last.clone(), tx.to, tx.proto);
                self.send(p, to, bytes).await;
                return;
            }
        }
        // A sips: Request-URI promises TLS on every hop (RFC 3261 §19.1.1, RFC 5630 §3.1.3): one
        // that reached us over anything else is refused, not served in clear.
        let insecure_sips = method != "ACK" && proto != Proto::Tls && msg.uri().is_some_and(is_sips);
        let refused = if insecure_sips {
            Some((416, "Unsupported URI Scheme (sips: needs TLS)", Vec::new()))
        } else {
            precheck(&msg)
        };
        if let Some((code, reason, headers)) = refused {
            let headers: Vec<(&str, String)> = headers;
            self.refuse(from, proto, &msg, code, reason, &headers).await;
            return;
        }
        let to_tag = msg
            .get("To")
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|t| t.tag().map(str::to_owned));
        if method == "NOTIFY" && self.on_subscription_notify(&msg, from, proto).await {
            return;
        }
        match method.as_str() {
            "INVITE" if to_tag.is_none() => self.on_invite(msg, from, proto, key).await,
            "ACK" => self.on_ack(&msg),
            "CANCEL" => self.on_cancel(msg, from, proto).await,
            "OPTIONS" => {
                let mut r = Message::response(&msg, 200, "OK");
                add_tag(&mut r);
                r.push("Allow", ALLOW)
                    .push("Accept", "application/sdp")
                    .push("Supported", SUPPORTED)
                    .push(
                        "Contact",
                        if msg.uri().is_some_and(is_sips) {
                            self.sips_contact()
                        } else {
                            self.contact_for(proto)
                        },
                    );
                self.respond(from, proto, &msg, r).await;
            }
            _ if to_tag.is_none() => {
                // A request that belongs in a dialog, outside any (§12.2.2).
                self.refuse(from, proto, &msg, 481, "Call/Transaction Does Not Exist", &[])
                    .await;
            }
            _ => self.on_in_dialog(msg, from, proto).await,
        }
    }

    // ------------------------------------------------------------------------ timers

    /// Retransmits, times out and refreshes what is due.
    pub async fn on_timers(&mut self) {
        let now = Instant::now();
        let mut resend = Vec::new();
        let mut timed_out = Vec::new();
        self.clients.retain(|_, tx| {
            if tx.deadline <= now {
                if !tx.done {
                    timed_out.push((tx.owner.clone(), tx.method.clone(), tx.error.take()));
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
        for (owner, method, error) in timed_out {
            self.on_client_timeout(owner, &method, error).await;
        }
        self.keepalive_due(now).await;
        self.stun_due(now).await;
        if self.reg.next.is_some_and(|t| t <= now) {
            self.reg.next = None;
            self.registration_due().await;
        }
        self.subscriptions_due(now).await;
    }

    /// Sends BYE in a confirmed dialog and ends it with `end`.
    pub(super) async fn bye_and_end(&mut self, id: DialogId, end: DialogEnd) {
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
    pub(super) async fn refresh(&mut self, id: DialogId) {
        let Some(contact) = self.dialogs.get(&id).map(|d| self.dialog_contact(d)) else {
            return;
        };
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

    pub(super) async fn on_client_timeout(&mut self, owner: Owner, method: &str, error: Option<String>) {
        if let Some(e) = &error {
            self.emit(SipEvent::Error(e.clone()));
        }
        match owner {
            Owner::Register => self.on_register_timeout(error).await,
            Owner::Subscribe(id) => self.on_subscribe_timeout(id),
            Owner::Invite(id)
                if method == "INVITE"
                    && self
                        .dialogs
                        .get(&id)
                        .is_some_and(|d| d.state != DialogState::Confirmed) =>
            {
                let why = error.clone().unwrap_or_else(|| "does not answer".into());
                if self.invite_next_target(id, &why).await {
                    return;
                }
                let end = match error {
                    Some(e) => DialogEnd::Unreachable(e),
                    None => DialogEnd::Timeout,
                };
                self.end(id, end);
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
    crate::errors::chain(e)
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
pub(super) fn add_tag(r: &mut Message) {
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

/// The host and port of a URI, to resolve (default port by transport: 5061 for TLS).
pub fn uri_host_port(uri: &str) -> Option<(String, u16)> {
    let u = Uri::parse(uri).ok()?;
    let host = u.host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let default = if wants_tls(uri) { 5061 } else { 5060 };
    Some((host, u.port.unwrap_or(default)))
}

/// Why a request could not be sent to `to`: a TLS failure as it is (it names the server and
/// what to fix), with the address; anything else after where it was going.
fn send_failure(e: &std::io::Error, to: SocketAddr, proto: Proto) -> String {
    let why = error_chain(e);
    if why.starts_with("TLS") {
        format!("{why} (at {to})")
    } else {
        format!("cannot send to {to} over {}: {why}", proto.name())
    }
}

/// A `sips:` URI (the scheme in any case; a name-addr's `<…>` is not taken off).
pub fn is_sips(uri: &str) -> bool {
    uri.trim_start()
        .split_once(':')
        .is_some_and(|(s, _)| s.eq_ignore_ascii_case("sips"))
}

/// The URI must be reached over TLS: a `sips:` URI (RFC 3261 §19.1.1, every hop secured), or
/// `;transport=tls`.
pub fn wants_tls(uri: &str) -> bool {
    Uri::parse(uri).is_ok_and(|u| {
        u.scheme == "sips"
            || u.param("transport")
                .is_some_and(|t| t.eq_ignore_ascii_case("tls"))
    })
}

/// An IP address literal, if `host` is one.
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

#[cfg(test)]
mod tests;
