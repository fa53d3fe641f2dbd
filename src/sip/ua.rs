//! The user agent: one task that owns registration, transactions and calls, and turns SIP
//! traffic and front-end commands into phone events (and call events for the CTI engine).
//!
//! Layers, in pjsip's order: [`super::transport`] delivers parsed messages; this module's
//! transaction tables absorb retransmissions and retransmit on UDP (RFC 3261 §17, timers
//! A, B, E, F, G, H and the 2xx retransmission of §13.3.1.4); dialogs and calls sit on top.
//! Everything runs in one `tokio::select!` loop, so no state is shared between tasks.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::app::{Bus, CallEvent, CallParams, CallerId, Command, EndReason, Event, PhoneEvent};
use crate::config::{Config, Transport as TransportKind};

use super::addr::{NameAddr, Uri, Via};
use super::auth::{self, Challenge};
use super::message::{Message, StartLine};
use crate::call::sdp::{self, Codec, Direction, Sdp};
use super::transaction::{ServerTable, ServerTx};
use super::transport::{Inbound, Proto, TlsSettings, Transport};
use crate::cti::template::Template;
use crate::cti::vars::{Identity, Vars};
use crate::media::device::{self, DeviceSpec};
use crate::media::session::{self as media, MediaCommand, MediaEvent, MediaHandle, MediaSetup};

/// RFC 3261 timer values.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// How long an ACKed failure of an INVITE stays, to absorb retransmitted ACKs (Timer I).
const T4: Duration = Duration::from_secs(5);
const TX_TIMEOUT: Duration = Duration::from_secs(32);
/// The methods this agent answers (the Allow header).
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, UPDATE";
const USER_AGENT: &str = concat!("ctiphone/", env!("CARGO_PKG_VERSION"));

/// What the user agent needs from the configuration.
#[derive(Clone, Debug)]
pub struct UaConfig {
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
    pub call_waiting: bool,
    pub auto_answer: Option<Duration>,
    pub codecs: Vec<Codec>,
    pub tls: TlsSettings,
    /// Microphone and speaker.
    pub input: DeviceSpec,
    pub output: DeviceSpec,
    /// Ring tone on the output device while a call rings.
    pub ring: bool,
    /// Record every call from its answer.
    pub record_auto: bool,
    pub record_dir: std::path::PathBuf,
    pub record_name: Template,
    /// The agent's identity, for recording names ({EXT}, {AID}…).
    pub identity: Identity,
    /// Names for numbers ({TELNAME}, {CALLEDNAME}); the SIP display name when it has none.
    pub phonebook: Option<std::sync::Arc<crate::phonebook::Phonebook>>,
}

impl UaConfig {
    /// Reads the account settings; resolves the registrar and runs `password_command`.
    pub async fn from_config(config: &Config, auto_answer: Option<Duration>) -> Result<Self, String> {
        let a = &config.account;
        let listen: SocketAddr = a
            .listen
            .parse()
            .map_err(|_| format!("[account] listen `{}` is not an IP:port address", a.listen))?;
        let proto = match a.transport {
            TransportKind::Udp => Proto::Udp,
            TransportKind::Tcp => Proto::Tcp,
            TransportKind::Tls => Proto::Tls,
        };
        let path = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
        let mut tls = TlsSettings {
            ca: path(&a.tls_ca),
            cert: path(&a.tls_cert),
            key: path(&a.tls_key),
            server_name: None,
            enabled: proto == Proto::Tls || !a.tls_cert.is_empty(),
        };
        let aor = if a.uri.is_empty() {
            None
        } else {
            Some(Uri::parse(&a.uri).map_err(|e| format!("[account] uri: {e}"))?)
        };
        let registrar = if a.registrar.trim().is_empty() {
            None
        } else {
            let r = a.registrar.trim();
            let r = r
                .strip_prefix("sips:")
                .or_else(|| r.strip_prefix("sip:"))
                .unwrap_or(r);
            let hostport = r.split(';').next().unwrap_or(r);
            let (host, port) =
                super::addr::split_host_port(hostport).map_err(|e| format!("[account] registrar: {e}"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            if host.parse::<IpAddr>().is_err() {
                tls.server_name = Some(host.clone());
            }
            let default_port = if proto == Proto::Tls { 5061 } else { 5060 };
            let addr = tokio::net::lookup_host((host.as_str(), port.unwrap_or(default_port)))
                .await
                .map_err(|e| format!("[account] registrar `{}`: {e}", a.registrar))?
                .next()
                .ok_or_else(|| format!("[account] registrar `{}` has no address", a.registrar))?;
            Some(addr)
        };
        let user = aor
            .as_ref()
            .and_then(|u| u.user.clone())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                if a.username.is_empty() {
                    "ctiphone".into()
                } else {
                    a.username.clone()
                }
            });
        let domain = match (&aor, registrar) {
            (Some(u), _) if !u.host.is_empty() => match u.port {
                Some(p) => format!("{}:{p}", u.host),
                None => u.host.clone(),
            },
            (_, Some(r)) => r.to_string(),
            _ => listen.ip().to_string(),
        };
        let password = match (&a.password, &a.password_command) {
            (Some(p), _) => p.clone(),
            (None, Some(cmd)) => run_password_command(cmd.get_ref()).await?,
            (None, None) => String::new(),
        };
        Ok(Self {
            listen,
            proto,
            registrar,
            domain,
            auth_user: if a.username.is_empty() {
                user.clone()
            } else {
                a.username.clone()
            },
            user,
            password,
            display_name: a.display_name.clone(),
            expires: a.expires.max(10),
            call_waiting: a.call_waiting,
            auto_answer,
            codecs: sdp_codecs(&config.audio.codecs),
            tls,
            input: DeviceSpec::parse(&config.audio.input),
            output: DeviceSpec::parse(&config.audio.output),
            ring: config.audio.ring,
            record_auto: config.recording.auto,
            record_dir: config.recording.dir(),
            record_name: Template::parse(&config.recording.name, &|n| {
                crate::cti::plan::BUILTIN_PARAMS.contains(&n)
            })
            .map_err(|e| {
                format!(
                    "[recording] name: {}",
                    e.first().map_or_else(String::new, |e| e.message.clone())
                )
            })?,
            identity: Identity::from_config(config),
            phonebook: None,
        })
    }
}

/// The SDP codec list for the configured codec names, telephone-event last.
pub fn sdp_codecs(names: &[String]) -> Vec<Codec> {
    let mut out: Vec<Codec> = names
        .iter()
        .filter_map(|n| match n.to_ascii_lowercase().as_str() {
            "pcmu" => Some(Codec::pcmu()),
            "pcma" => Some(Codec::pcma()),
            "g722" => Some(Codec {
                pt: 9,
                name: "G722".into(),
                rate: 8000,
                channels: 1,
                fmtp: None,
            }),
            "opus" => Some(Codec {
                pt: 111,
                name: "opus".into(),
                rate: 48000,
                channels: 2,
                fmtp: Some("useinbandfec=1".into()),
            }),
            _ => None,
        })
        .collect();
    out.push(Codec::telephone_event(101));
    out
}

/// Runs `password_command` (split into words, no shell); its first output line is the password.
async fn run_password_command(cmd: &str) -> Result<String, String> {
    let words = shell_words::split(cmd).map_err(|e| format!("[account] password_command: {e}"))?;
    let (prog, args) = words.split_first().ok_or("[account] password_command is empty")?;
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(prog).args(args).output(),
    )
    .await
    .map_err(|_| "[account] password_command took more than 10 s".to_owned())?
    .map_err(|e| format!("[account] password_command `{prog}`: {e}"))?;
    if !out.status.success() {
        return Err(format!("[account] password_command failed ({})", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned())
}

fn random_token(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| CHARS[rand::random_range(0..CHARS.len())] as char)
        .collect()
}

fn branch() -> String {
    format!("z9hG4bK{}", random_token(16))
}

/// Who a client transaction works for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Owner {
    Register,
    Call(String),
    /// A request whose answer nobody waits for (BYE after a local hangup, INFO, NOTIFY…).
    None,
}

/// A request we sent, retransmitted on UDP until answered.
struct ClientTx {
    method: String,
    bytes: Vec<u8>,
    to: SocketAddr,
    proto: Proto,
    interval: Duration,
    next: Option<Instant>,
    deadline: Instant,
    owner: Owner,
    /// For a failed INVITE: the ACK sent, repeated for each retransmitted final response.
    ack: Option<Vec<u8>>,
    done: bool,
    /// The request could not be sent (no connection, TLS refused): why.
    error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    /// Incoming, ringing here.
    Ringing,
    /// Outgoing, INVITE sent.
    Calling,
    /// Outgoing, the far end rings.
    Early,
    /// Answered.
    Confirmed,
}

struct Call {
    id: String,
    incoming: bool,
    state: CallState,
    /// Our and their addresses with tags, as written in From/To of our requests.
    local: NameAddr,
    remote: NameAddr,
    /// Where in-dialog requests go (their Contact).
    remote_target: String,
    route: Vec<String>,
    peer: SocketAddr,
    proto: Proto,
    local_cseq: u32,
    /// The INVITE that created an incoming call, and its transaction key.
    invite: Option<Message>,
    invite_key: Option<String>,
    /// Our INVITE for an outgoing call (to build CANCEL and authenticate).
    our_invite: Option<Message>,
    our_branch: Option<String>,
    auth_tries: u8,
    cancel_pending: bool,
    remote_sdp: Option<Sdp>,
    local_sdp_version: u64,
    session_id: u64,
    rtp: Option<UdpSocket>,
    rtcp: Option<UdpSocket>,
    /// Our last SDP (offer or answer) and the media session once the call is answered.
    local_sdp: Option<Sdp>,
    media: Option<MediaHandle>,
    /// The far end takes RFC 4733 telephone-events on this payload type.
    dtmf_pt: Option<u8>,
    /// 200 OK being retransmitted until ACK: bytes, next time, interval, give-up time.
    ok_retransmit: Option<(Vec<u8>, Instant, Duration, Instant)>,
    /// The ACK for our 2xx, repeated if the 2xx is retransmitted.
    ack: Option<Vec<u8>>,
    answered_at: Option<Instant>,
    auto_answer_at: Option<Instant>,
    held: bool,
    /// A hold (true) or resume (false) re-INVITE waiting for its answer.
    pending_hold: Option<bool>,
    muted: bool,
    params: CallParams,
    transfer_to: Option<String>,
}

impl Call {
    /// A call in `state` between `local` and `remote`, reached at `peer`; the rest starts empty.
    fn new(
        id: String,
        state: CallState,
        local: NameAddr,
        remote: NameAddr,
        peer: SocketAddr,
        proto: Proto,
        params: CallParams,
    ) -> Call {
        Call {
            incoming: state == CallState::Ringing,
            remote_target: remote.uri.clone(),
            id,
            state,
            local,
            remote,
            route: Vec::new(),
            peer,
            proto,
            local_cseq: 1,
            invite: None,
            invite_key: None,
            our_invite: None,
            our_branch: None,
            auth_tries: 0,
            cancel_pending: false,
            remote_sdp: None,
            local_sdp_version: 0,
            session_id: rand::random_range(1..u64::from(u32::MAX)),
            rtp: None,
            rtcp: None,
            local_sdp: None,
            media: None,
            dtmf_pt: None,
            ok_retransmit: None,
            ack: None,
            answered_at: None,
            auto_answer_at: None,
            held: false,
            pending_hold: None,
            muted: false,
            params,
            transfer_to: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegState {
    Idle,
    Registering,
    Registered,
    Failed,
    Unregistering,
}

struct Registration {
    state: RegState,
    call_id: String,
    tag: String,
    cseq: u32,
    expires: u32,
    challenge: Option<(Challenge, bool)>,
    nc: u32,
    auth_tries: u8,
    next: Option<Instant>,
    backoff: Duration,
    /// The address the registrar saw us at (rport/received), for Contact.
    public: Option<SocketAddr>,
}

/// The user agent's state.
struct Ua {
    cfg: UaConfig,
    transport: Transport,
    local: SocketAddr,
    bus: Bus,
    clients: HashMap<String, ClientTx>,
    servers: ServerTable,
    calls: Vec<Call>,
    reg: Registration,
    quitting: Option<Instant>,
    media_tx: mpsc::Sender<(String, MediaEvent)>,
    /// Ended calls whose media is still closing (recording being finished).
    finishing: HashMap<String, (CallParams, JoinHandle<()>)>,
    /// The ring tone player while a call rings.
    ringer: Option<JoinHandle<()>>,
}

/// Starts the user agent: binds the transports, then handles commands until `Quit`.
/// Phone events and call events are published on `bus`.
pub async fn run(cfg: UaConfig, bus: Bus, mut commands: mpsc::Receiver<Command>) -> Result<(), String> {
    let (in_tx, mut inbound) = mpsc::channel::<Inbound>(1024);
    let (media_tx, mut media_rx) = mpsc::channel::<(String, MediaEvent)>(256);
    let transport = Transport::bind(cfg.listen, in_tx, &cfg.tls).await?;
    let mut closed = transport.closed_connections();
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
    bus.publish(Event::Phone(PhoneEvent::Ready {
        listen: local.to_string(),
        transport: cfg.proto.name().to_ascii_lowercase(),
    }));
    let mut ua = Ua {
        reg: Registration {
            state: RegState::Idle,
            call_id: format!("{}@ctiphone", random_token(20)),
            tag: random_token(10),
            cseq: 0,
            expires: cfg.expires,
            challenge: None,
            nc: 0,
            auth_tries: 0,
            next: None,
            backoff: Duration::from_secs(2),
            public: None,
        },
        cfg,
        transport,
        local,
        bus,
        clients: HashMap::new(),
        servers: ServerTable::default(),
        calls: Vec::new(),
        quitting: None,
        media_tx,
        finishing: HashMap::new(),
        ringer: None,
    };
    if ua.cfg.registrar.is_some() {
        ua.register(ua.cfg.expires).await;
    }
    loop {
        let next = ua.next_deadline();
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(inb) = inbound.recv() => ua.on_message(inb).await,
            Some((proto, peer)) = closed.recv() => ua.on_connection_lost(proto, peer).await,
            Some((id, ev)) = media_rx.recv() => ua.on_media_event(id, ev),
            cmd = commands.recv(), if ua.quitting.is_none() => match cmd {
                Some(Command::Quit) | None => ua.quit().await,
                Some(c) => ua.on_command(c).await,
            },
            () = sleep => ua.on_timers().await,
        }
        ua.finishing.retain(|_, (_, task)| !task.is_finished());
        ua.update_ringer();
        if let Some(deadline) = ua.quitting {
            let unregistered = ua.reg.state != RegState::Unregistering;
            let idle = ua.calls.is_empty() && ua.finishing.is_empty();
            if (unregistered && idle) || Instant::now() >= deadline {
                if ua.reg.state == RegState::Unregistering {
                    ua.emit(PhoneEvent::Unregistered);
                }
                return Ok(());
            }
        }
    }
}

impl Ua {
    fn emit(&self, e: PhoneEvent) {
        self.bus.publish(Event::Phone(e));
    }

    fn warn(&self, message: impl Into<String>) {
        self.emit(PhoneEvent::Warning {
            message: message.into(),
        });
    }

    fn error(&self, message: impl Into<String>) {
        self.emit(PhoneEvent::Error {
            message: message.into(),
        });
    }

    fn contact_addr(&self) -> SocketAddr {
        self.reg.public.unwrap_or(self.local)
    }

    fn contact(&self) -> String {
        let a = self.contact_addr();
        let t = if self.cfg.proto == Proto::Tcp {
            ";transport=tcp"
        } else {
            ""
        };
        format!("<sip:{}@{}{t}>", self.cfg.user, fmt_addr(a))
    }

    /// {TELNAME} and {CALLEDNAME} from the phonebook (the local entry over the shared one);
    /// {TELNAME} stays the SIP display name when the phonebook has no entry, and a withheld
    /// number is never looked up.
    fn name_parties(&self, params: &mut CallParams) {
        let Some(pb) = &self.cfg.phonebook else { return };
        if !params.anonymous
            && let Some(name) = pb.name_for(&params.tel)
        {
            params.telname = name;
        }
        if let Some(name) = pb.name_for(&params.called) {
            params.calledname = name;
        }
    }

    fn aor(&self) -> String {
        format!("sip:{}@{}", self.cfg.user, self.cfg.domain)
    }

    fn via(&self, proto: Proto, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            proto.name(),
            fmt_addr(self.local)
        )
    }

    fn next_deadline(&self) -> Option<Instant> {
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
        for c in &self.calls {
            consider(c.ok_retransmit.as_ref().map(|(_, t, _, _)| *t));
            consider(c.auto_answer_at);
        }
        consider(self.reg.next);
        consider(self.quitting);
        next
    }

    async fn send(&self, proto: Proto, to: SocketAddr, bytes: Vec<u8>) {
        if self.transport.ready_for(proto, to) {
            let _ = self.try_send(proto, to, bytes).await;
            return;
        }
        // A stream connection must be opened first (up to 5 s, or never for a peer that is
        // gone): off the agent's loop, so no peer can stall every other call meanwhile.
        let transport = self.transport.clone();
        tokio::spawn(async move {
            if let Err(e) = transport.send(proto, to, bytes).await {
                tracing::debug!(%to, error = %e, "SIP send failed");
            }
        });
    }

    async fn try_send(&self, proto: Proto, to: SocketAddr, bytes: Vec<u8>) -> Result<(), String> {
        self.transport.send(proto, to, bytes).await.map_err(|e| {
            tracing::debug!(%to, error = %e, "SIP send failed");
            format!("cannot send to {to} over {}: {}", proto.name(), error_chain(&e))
        })
    }

    /// Sends a new request in a client transaction.
    async fn send_request(&mut self, mut req: Message, to: SocketAddr, proto: Proto, owner: Owner) -> String {
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
        let now = Instant::now();
        let udp = !proto.is_stream();
        self.clients.insert(
            br.clone(),
            ClientTx {
                method: req.method().unwrap_or("").to_owned(),
                bytes: bytes.clone(),
                to,
                proto,
                interval: T1,
                next: udp.then(|| now + T1),
                deadline: now + TX_TIMEOUT,
                owner,
                ack: None,
                done: false,
                error: None,
            },
        );
        if let Err(e) = self.try_send(proto, to, bytes).await {
            // A stream transport that cannot connect fails the transaction now (RFC 3261
            // §8.1.3.1: as a 503); over UDP the retransmissions go on.
            if proto.is_stream()
                && let Some(tx) = self.clients.get_mut(&br)
            {
                tx.deadline = now;
                tx.next = None;
                tx.error = Some(e);
            }
        }
        br
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

    async fn on_message(&mut self, inb: Inbound) {
        if inb.msg.is_request() {
            self.on_request(inb).await;
        } else {
            self.on_response(inb).await;
        }
    }

    // ---------------------------------------------------------------- requests

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
            let mut r = Message::response(&msg, code, reason);
            add_tag(&mut r);
            for (name, value) in headers {
                r.push(name, value);
            }
            self.respond(from, proto, &msg, r).await;
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
                    .push("Contact", self.contact());
                self.respond(from, proto, &msg, r).await;
            }
            "INVITE" | "BYE" | "INFO" | "NOTIFY" | "UPDATE" => self.on_in_dialog(msg, from, proto).await,
            _ => {
                let mut r = Message::response(&msg, 501, "Not Implemented");
                add_tag(&mut r);
                r.push("Allow", ALLOW);
                self.respond(from, proto, &msg, r).await;
            }
        }
    }

    fn find_call(&self, call_id: &str) -> Option<usize> {
        self.calls.iter().position(|c| c.id == call_id)
    }

    async fn on_invite(&mut self, msg: Message, from: SocketAddr, proto: Proto) {
        let call_id = msg.call_id().unwrap_or("").to_owned();
        if self.find_call(&call_id).is_some() {
            return; // a retransmission answered by the transaction table
        }
        let offer = if msg.body.is_empty() {
            None
        } else {
            let ct = msg
                .get("Content-Type")
                .unwrap_or("application/sdp")
                .to_ascii_lowercase();
            if !ct.starts_with("application/sdp") {
                let mut r = Message::response(&msg, 415, "Unsupported Media Type");
                add_tag(&mut r);
                r.push("Accept", "application/sdp");
                self.respond(from, proto, &msg, r).await;
                return;
            }
            // Our answer is SDP too: a caller that accepts no SDP cannot have one (RFC 4475
            // §3.3.15).
            if !accepts_sdp(&msg) {
                let mut r = Message::response(&msg, 406, "Not Acceptable");
                add_tag(&mut r);
                self.respond(from, proto, &msg, r).await;
                return;
            }
            match Sdp::parse(&String::from_utf8_lossy(&msg.body)) {
                Ok(s) => Some(s),
                Err(e) => {
                    let mut r = Message::response(&msg, 400, "Bad Request");
                    add_tag(&mut r);
                    r.push(
                        "Warning",
                        format!("399 ctiphone \"bad SDP: {}\"", warning_text(&e)),
                    );
                    self.respond(from, proto, &msg, r).await;
                    return;
                }
            }
        };
        if let Some(o) = &offer
            && sdp::answer(
                o,
                "-",
                0,
                0,
                self.local.ip(),
                1,
                &self.cfg.codecs,
                Direction::SendRecv,
            )
            .is_err()
        {
            let mut r = Message::response(&msg, 488, "Not Acceptable Here");
            add_tag(&mut r);
            self.respond(from, proto, &msg, r).await;
            return;
        }
        let busy = self
            .calls
            .iter()
            .any(|c| c.incoming || c.state != CallState::Calling)
            && !self.calls.is_empty();
        if busy && !self.cfg.call_waiting {
            let mut r = Message::response(&msg, 486, "Busy Here");
            add_tag(&mut r);
            self.respond(from, proto, &msg, r).await;
            return;
        }
        let Ok(remote) = msg.get("From").map(NameAddr::parse).unwrap_or(Err(String::new())) else {
            return;
        };
        let Ok(mut local) = msg.get("To").map(NameAddr::parse).unwrap_or(Err(String::new())) else {
            return;
        };
        local.set_param("tag", &random_token(10));
        let contact = msg
            .get_all("Contact")
            .first()
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|c| c.uri);
        let route: Vec<String> = msg
            .get_all("Record-Route")
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut params = caller_identity(&msg);
        self.name_parties(&mut params);
        let (rtp, rtcp) = bind_rtp(self.local.ip()).await;
        let mut call = Call::new(
            call_id.clone(),
            CallState::Ringing,
            local,
            remote,
            from,
            proto,
            params.clone(),
        );
        call.remote_target = contact.unwrap_or_else(|| msg.uri().unwrap_or("").to_owned());
        call.route = route;
        call.local_cseq = rand::random_range(1..10_000);
        call.invite_key = server_key(&msg);
        call.invite = Some(msg.clone());
        call.remote_sdp = offer;
        call.local_sdp_version = 1;
        (call.rtp, call.rtcp) = (rtp, rtcp);
        call.auto_answer_at = self.cfg.auto_answer.map(|d| Instant::now() + d);
        let mut trying = Message::response(&msg, 100, "Trying");
        trying.remove("Record-Route");
        self.send_response_only(from, proto, &trying).await;
        let mut ringing = Message::response(&msg, 180, "Ringing");
        ringing.set("To", call.local.to_string());
        ringing.push("Contact", self.contact());
        self.respond(from, proto, &msg, ringing).await;
        call.params = params.clone();
        self.calls.push(call);
        self.emit(PhoneEvent::Incoming {
            call: call_id.clone(),
            tel: params.tel.clone(),
            telname: params.telname.clone(),
            called: params.called.clone(),
            calledname: params.calledname.clone(),
            anonymous: params.anonymous,
        });
        self.bus.call(CallEvent::ring(params));
        if self.cfg.auto_answer == Some(Duration::ZERO) {
            // Answer now rather than on the next timer tick (tokio's timers count in ms).
            if let Some(i) = self.find_call(&call_id) {
                self.calls[i].auto_answer_at = None;
                self.answer(i).await;
            }
        }
    }

    /// Sends a provisional response without recording it as the transaction's answer.
    async fn send_response_only(&self, to: SocketAddr, proto: Proto, resp: &Message) {
        self.send(proto, to, resp.to_bytes()).await;
    }

    fn on_ack(&mut self, msg: &Message) {
        let Some(i) = msg.call_id().and_then(|id| self.find_call(id)) else {
            return;
        };
        let c = &mut self.calls[i];
        c.ok_retransmit = None;
        if let (None, false) = (&c.remote_sdp, msg.body.is_empty()) {
            c.remote_sdp = Sdp::parse(&String::from_utf8_lossy(&msg.body)).ok();
        }
    }

    async fn on_cancel(&mut self, msg: Message, from: SocketAddr, proto: Proto) {
        let key = server_key(&msg).map(|k| k.replacen("|CANCEL", "|INVITE", 1));
        let idx = self.calls.iter().position(|c| {
            c.incoming && c.state == CallState::Ringing && c.invite_key == key && key.is_some()
        });
        let Some(i) = idx else {
            // An INVITE already answered (its transaction still known, or its call up): the
            // CANCEL matched and has no effect, 200 (RFC 3261 §9.2); else 481.
            let known = key.as_deref().is_some_and(|k| {
                self.servers.get(k).is_some() || self.calls.iter().any(|c| c.invite_key.as_deref() == Some(k))
            });
            let mut r = if known {
                Message::response(&msg, 200, "OK")
            } else {
                Message::response(&msg, 481, "Call/Transaction Does Not Exist")
            };
            add_tag(&mut r);
            self.respond(from, proto, &msg, r).await;
            return;
        };
        let mut ok = Message::response(&msg, 200, "OK");
        add_tag(&mut ok);
        self.respond(from, proto, &msg, ok).await;
        if let Some(invite) = self.calls[i].invite.clone() {
            let mut r = Message::response(&invite, 487, "Request Terminated");
            r.set("To", self.calls[i].local.to_string());
            let (p, pr) = (self.calls[i].peer, self.calls[i].proto);
            self.respond(p, pr, &invite, r).await;
        }
        self.end_call(i, EndReason::Cancelled, Some(487));
    }

    async fn on_in_dialog(&mut self, msg: Message, from: SocketAddr, proto: Proto) {
        let method = msg.method().unwrap_or("").to_owned();
        let Some(i) = msg.call_id().and_then(|id| self.find_call(id)) else {
            let mut r = Message::response(&msg, 481, "Call/Transaction Does Not Exist");
            add_tag(&mut r);
            self.respond(from, proto, &msg, r).await;
            return;
        };
        match method.as_str() {
            "BYE" => {
                let r = Message::response(&msg, 200, "OK");
                self.respond(from, proto, &msg, r).await;
                self.end_call(i, EndReason::RemoteHangup, None);
            }
            "INVITE" | "UPDATE" => {
                // A re-INVITE: hold from the far end, or a session refresh.
                let offer = if msg.body.is_empty() {
                    None
                } else {
                    Sdp::parse(&String::from_utf8_lossy(&msg.body)).ok()
                };
                if let Some(o) = &offer {
                    self.calls[i].remote_sdp = Some(o.clone());
                }
                let want = if self.calls[i].held {
                    Direction::SendOnly
                } else {
                    Direction::SendRecv
                };
                let body = self.local_sdp(i, offer.as_ref(), want);
                let mut r = Message::response(&msg, 200, "OK");
                r.push("Contact", self.contact());
                if let Some(b) = body {
                    r.with_body("application/sdp", b.into_bytes());
                }
                self.respond(from, proto, &msg, r).await;
                if offer.is_some() {
                    self.start_media(i, true).await;
                }
            }
            "INFO" => {
                let r = Message::response(&msg, 200, "OK");
                self.respond(from, proto, &msg, r).await;
                let body = String::from_utf8_lossy(&msg.body);
                if let Some(digit) = dtmf_from_info(&body) {
                    let id = self.calls[i].id.clone();
                    self.emit(PhoneEvent::Dtmf { call: id, digit });
                }
            }
            "NOTIFY" => {
                let r = Message::response(&msg, 200, "OK");
                self.respond(from, proto, &msg, r).await;
                // Transfer progress (RFC 3515): a final 2xx ends our side of the call.
                let frag = String::from_utf8_lossy(&msg.body);
                let code: Option<u16> = frag.split_whitespace().nth(1).and_then(|c| c.parse().ok());
                if self.calls[i].transfer_to.is_some()
                    && let Some(c) = code.filter(|c| *c >= 200)
                {
                    if c < 300 {
                        self.hangup(i).await;
                    } else {
                        self.calls[i].transfer_to = None;
                        self.error(format!("transfer failed: {}", frag.trim()));
                    }
                }
            }
            _ => {}
        }
    }

    /// Our SDP for a call: an answer to `offer`, or an offer.
    fn local_sdp(&mut self, i: usize, offer: Option<&Sdp>, want: Direction) -> Option<String> {
        let ip = self.local.ip();
        let c = &mut self.calls[i];
        let port = c
            .rtp
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map_or(0, |a| a.port());
        c.local_sdp_version += 1;
        let user = "ctiphone";
        match offer {
            Some(o) => sdp::answer(
                o,
                user,
                c.session_id,
                c.local_sdp_version,
                ip,
                port,
                &self.cfg.codecs,
                want,
            )
            .ok()
            .map(|s| {
                let text = s.to_text();
                c.local_sdp = Some(s);
                text
            }),
            None => {
                let s = sdp::offer(
                    user,
                    c.session_id,
                    c.local_sdp_version,
                    ip,
                    port,
                    &self.cfg.codecs,
                    want,
                );
                let text = s.to_text();
                c.local_sdp = Some(s);
                Some(text)
            }
        }
    }

    /// Starts (or updates) the media of call `i` from the negotiated SDP: the answerer's codec
    /// list decides (ours when we answered, theirs when we offered).
    async fn start_media(&mut self, i: usize, we_answered: bool) {
        let c = &self.calls[i];
        let (Some(local), Some(remote)) = (c.local_sdp.clone(), c.remote_sdp.clone()) else {
            return;
        };
        let (Some(la), Some(ra)) = (local.audio(), remote.audio()) else {
            return;
        };
        let chosen = if we_answered { la } else { ra };
        let Some(codec) = chosen
            .codecs
            .iter()
            .find(|k| !k.name.eq_ignore_ascii_case("telephone-event"))
            .cloned()
        else {
            return;
        };
        let dtmf_pt = chosen
            .codecs
            .iter()
            .find(|k| k.name.eq_ignore_ascii_case("telephone-event"))
            .map(|k| k.pt);
        let remote_addr = SocketAddr::new(ra.addr, ra.port);
        let sends = |d: Direction| matches!(d, Direction::SendRecv | Direction::SendOnly);
        let recvs = |d: Direction| matches!(d, Direction::SendRecv | Direction::RecvOnly);
        let held_remote = ra.addr.is_unspecified();
        // On hold (ours) nothing is sent.
        let send = sends(la.direction) && recvs(ra.direction) && ra.port != 0 && !held_remote && !c.held;
        let recv = recvs(la.direction) && sends(ra.direction);
        let id = c.id.clone();
        if let Some(m) = &c.media {
            let _ = m.commands.try_send(MediaCommand::Update {
                remote: remote_addr,
                send,
                recv,
            });
            return;
        }
        let Some(codec_impl) = crate::media::codec::by_name(&codec.name, codec.rate) else {
            self.error(format!("codec {} is not available", codec.name));
            return;
        };
        let rate = codec_impl.sample_rate();
        // Devices can take a while to open (a sound server, a file to read and resample): off
        // the user agent's thread.
        let (input, output) = (self.cfg.input.clone(), self.cfg.output.clone());
        let opened = tokio::task::spawn_blocking(move || {
            (
                device::open_source(&input, rate),
                device::open_sink(&output, rate),
            )
        })
        .await;
        let (source, sink) = match opened {
            Ok(pair) => pair,
            Err(e) => (Err(e.to_string()), Err(e.to_string())),
        };
        let source = match source {
            Ok(s) => s,
            Err(e) => {
                self.warn(format!("microphone: {e}; using silence"));
                Box::new(device::NullSource) as Box<dyn device::Source>
            }
        };
        let sink = match sink {
            Ok(s) => s,
            Err(e) => {
                self.warn(format!("speaker: {e}; audio is discarded"));
                Box::new(device::NullSink) as Box<dyn device::Sink>
            }
        };
        // The call may have ended while the devices opened.
        let Some(i) = self.find_call(&id) else { return };
        let record = self.cfg.record_auto.then(|| self.recording_target(i));
        let c = &mut self.calls[i];
        c.dtmf_pt = dtmf_pt;
        let (Some(rtp), rtcp) = (c.rtp.take(), c.rtcp.take()) else {
            return;
        };
        let setup = MediaSetup {
            codec: codec_impl,
            pt: codec.pt,
            dtmf_pt,
            remote: remote_addr,
            send,
            recv,
            source,
            sink,
            record,
        };
        c.media = Some(media::spawn(id, rtp, rtcp, setup, self.media_tx.clone()));
    }

    /// Plays the ring tone while a call rings here and no call is in progress; stops it
    /// otherwise. Files and the null device get no ring tone (they are for tests and scripts).
    fn update_ringer(&mut self) {
        let ringing = self
            .calls
            .iter()
            .any(|c| c.incoming && c.state == CallState::Ringing);
        let busy = self.calls.iter().any(|c| c.media.is_some());
        let want = ringing
            && !busy
            && self.cfg.ring
            && matches!(self.cfg.output, DeviceSpec::Default | DeviceSpec::Named(_));
        match (&self.ringer, want) {
            (None, true) => {
                let spec = self.cfg.output.clone();
                self.ringer = Some(tokio::spawn(async move {
                    let rate = 8000;
                    let Ok(Ok(mut sink)) =
                        tokio::task::spawn_blocking(move || device::open_sink(&spec, rate)).await
                    else {
                        return;
                    };
                    let mut tone = crate::media::tone::RingTone::new(rate);
                    let mut frame = vec![0i16; (rate / 50) as usize];
                    let mut tick = tokio::time::interval(Duration::from_millis(20));
                    loop {
                        tick.tick().await;
                        tone.next_frame(&mut frame);
                        sink.push(&frame);
                    }
                }));
            }
            (Some(_), false) => {
                if let Some(r) = self.ringer.take() {
                    r.abort();
                }
            }
            _ => {}
        }
    }

    /// Where call `i`'s recording goes: the directory and the file name from the template.
    fn recording_target(&self, i: usize) -> (std::path::PathBuf, String) {
        let vars = Vars::new(
            &self.cfg.identity,
            &self.calls[i].params,
            chrono::Local::now().naive_local(),
        );
        (
            self.cfg.record_dir.clone(),
            crate::media::record::file_name(&self.cfg.record_name, &vars),
        )
    }

    fn on_media_event(&mut self, id: String, ev: MediaEvent) {
        match ev {
            MediaEvent::Dtmf(d) => self.emit(PhoneEvent::Dtmf {
                call: id,
                digit: d.to_string(),
            }),
            MediaEvent::Stats(s) => self.emit(PhoneEvent::Quality {
                call: id,
                loss_percent: s.loss_percent,
                jitter_ms: s.jitter_ms,
                remote_loss_percent: s.remote_loss_percent,
                rtt_ms: s.rtt_ms,
            }),
            MediaEvent::Warning(w) => self.warn(w),
            MediaEvent::Recorded(path) => {
                let params = self
                    .find_call(&id)
                    .map(|i| self.calls[i].params.clone())
                    .or_else(|| self.finishing.get(&id).map(|(p, _)| p.clone()));
                self.emit(PhoneEvent::Recorded {
                    call: id,
                    path: path.display().to_string(),
                });
                if let Some(p) = params {
                    self.bus.call(CallEvent::recorded(p, path));
                }
            }
        }
    }

    // ---------------------------------------------------------------- responses

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
        let Some(tx) = self.clients.get_mut(&key) else {
            // A 2xx retransmitted after its transaction ended: ACK it again.
            if (200..300).contains(&code)
                && cseq_method == "INVITE"
                && let Some(i) = msg.call_id().and_then(|id| self.find_call(id))
                && let Some(ack) = self.calls[i].ack.clone()
            {
                let (p, pr) = (self.calls[i].peer, self.calls[i].proto);
                self.send(pr, p, ack).await;
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
            if tx.method == "INVITE" {
                tx.next = None; // Timer A stops; Timer B still runs.
                tx.deadline = Instant::now() + Duration::from_secs(180);
            } else {
                tx.interval = T2;
            }
        } else {
            tx.done = true;
            tx.next = None;
            tx.deadline = Instant::now()
                + if !tx.proto.is_stream() {
                    TX_TIMEOUT
                } else {
                    Duration::ZERO
                };
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
        if method == "INVITE"
            && (200..300).contains(&code)
            && let Owner::Call(id) = &owner
            && self.find_call(id).is_none()
        {
            // Answered after we gave up on it: ACK, then BYE.
            self.ack_and_bye(msg, inb.from, inb.proto).await;
            return;
        }
        match owner {
            Owner::Register => self.on_register_response(msg, code).await,
            Owner::Call(id) => {
                if let Some(i) = self.find_call(&id) {
                    if method == "INVITE" {
                        self.on_invite_response(i, msg, code).await;
                    } else if method == "BYE" || method == "CANCEL" {
                        // Nothing more to do: the call ended when we sent it.
                    } else if method == "REFER" && code >= 300 {
                        self.calls[i].transfer_to = None;
                        self.error(format!("transfer refused: {code}"));
                    }
                }
            }
            Owner::None => {}
        }
    }

    async fn on_invite_response(&mut self, i: usize, msg: &Message, code: u16) {
        let id = self.calls[i].id.clone();
        if let Some(tag) = msg
            .get("To")
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|t| t.tag().map(str::to_owned))
            && code > 100
            && code < 300
        {
            self.calls[i].remote.set_param("tag", &tag);
        }
        if code < 200 {
            if (code == 180 || code == 183) && self.calls[i].state == CallState::Calling {
                self.calls[i].state = CallState::Early;
                self.emit(PhoneEvent::Ringing { call: id });
            }
            if self.calls[i].cancel_pending {
                self.send_cancel(i).await;
            }
            return;
        }
        let reinvite = self.calls[i].state == CallState::Confirmed;
        if code < 300 {
            let c = &mut self.calls[i];
            if let Some(contact) = msg
                .get_all("Contact")
                .first()
                .and_then(|c| NameAddr::parse(c).ok())
            {
                c.remote_target = contact.uri;
            }
            // The route set is fixed when the dialog is made (RFC 3261 §12.1.2).
            if !reinvite {
                c.route = msg
                    .get_all("Record-Route")
                    .iter()
                    .rev()
                    .map(|s| s.to_string())
                    .collect();
            }
            if !msg.body.is_empty() {
                c.remote_sdp = Sdp::parse(&String::from_utf8_lossy(&msg.body)).ok();
            }
            let (cseq, _) = msg.cseq().unwrap_or((1, "INVITE"));
            let ack = self.in_dialog_request(i, "ACK", Some(cseq));
            let (to, proto) = self.dialog_destination(i);
            let mut ack = ack;
            ack.headers.insert(0, ("Via".into(), self.via(proto, &branch())));
            ack.push("Max-Forwards", "70");
            let bytes = ack.to_bytes();
            self.calls[i].ack = Some(bytes.clone());
            self.send(proto, to, bytes).await;
            let c = &mut self.calls[i];
            if c.state != CallState::Confirmed {
                c.state = CallState::Confirmed;
                c.answered_at = Some(Instant::now());
                let cancelled = c.cancel_pending;
                self.emit(PhoneEvent::Answered { call: id.clone() });
                let params = self.calls[i].params.clone();
                self.bus.call(CallEvent::answer(params));
                if cancelled {
                    self.hangup(i).await;
                }
            } else if let Some(hold) = c.pending_hold.take() {
                self.emit(if hold {
                    PhoneEvent::Held { call: id.clone() }
                } else {
                    PhoneEvent::Resumed { call: id.clone() }
                });
            }
            // The call may have been hung up meanwhile (a CANCEL that lost the race).
            if let Some(i) = self.find_call(&id) {
                self.start_media(i, false).await;
            }
            return;
        }
        if reinvite {
            // A refused re-INVITE (491, 488…) leaves the call as it was (RFC 3261 §14.1).
            let c = &mut self.calls[i];
            if let Some(hold) = c.pending_hold.take() {
                c.held = !hold;
            }
            self.error(format!("the far end refused the change: {}", reason_phrase(msg)));
            return;
        }
        if (code == 401 || code == 407) && self.calls[i].auth_tries == 0 && !self.cfg.password.is_empty() {
            let challenges = challenges(msg, code);
            if let Some(ch) = auth::pick(&challenges).cloned() {
                self.calls[i].auth_tries += 1;
                let Some(mut inv) = self.calls[i].our_invite.clone() else {
                    return;
                };
                let uri = inv.uri().unwrap_or("").to_owned();
                let cseq = inv.cseq().map_or(1, |(n, _)| n) + 1;
                inv.set("CSeq", format!("{cseq} INVITE"));
                let value = auth::authorization(
                    &ch,
                    &self.cfg.auth_user,
                    &self.cfg.password,
                    "INVITE",
                    &uri,
                    1,
                    &random_token(12),
                    &inv.body,
                );
                inv.set(
                    if code == 401 {
                        "Authorization"
                    } else {
                        "Proxy-Authorization"
                    },
                    value,
                );
                self.calls[i].local_cseq = cseq;
                self.calls[i].our_invite = Some(inv.clone());
                let (to, proto) = (self.calls[i].peer, self.calls[i].proto);
                let br = self.send_request(inv, to, proto, Owner::Call(id)).await;
                if let Some(inv) = self.clients.get(&br).map(|t| t.bytes.clone()) {
                    self.calls[i].our_invite = Message::parse(&inv).ok();
                }
                self.calls[i].our_branch = Some(br);
                return;
            }
        }
        let (reason, end) = match code {
            401 | 407 => ("authentication failed".to_owned(), EndReason::Failed),
            486 | 600 => ("busy".to_owned(), EndReason::Busy),
            603 => ("declined".to_owned(), EndReason::Rejected),
            404 | 604 => ("not found".to_owned(), EndReason::Failed),
            480 | 503 => ("unavailable".to_owned(), EndReason::Failed),
            408 => ("timeout".to_owned(), EndReason::Timeout),
            487 => ("cancelled".to_owned(), EndReason::Cancelled),
            _ => (format!("{code} {}", reason_phrase(msg)), EndReason::Failed),
        };
        tracing::info!(call = %id, code, %reason, "outgoing call failed");
        self.end_call(i, end, Some(code));
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

    // ---------------------------------------------------------------- registration

    async fn register(&mut self, expires: u32) {
        let Some(registrar) = self.cfg.registrar else {
            return;
        };
        self.reg.cseq += 1;
        self.reg.state = if expires == 0 {
            RegState::Unregistering
        } else {
            RegState::Registering
        };
        let uri = format!("sip:{}", self.cfg.domain);
        let mut req = Message::request("REGISTER", &uri);
        let aor = self.aor();
        req.push("From", format!("<{aor}>;tag={}", self.reg.tag))
            .push("To", format!("<{aor}>"))
            .push("Call-ID", self.reg.call_id.clone())
            .push("CSeq", format!("{} REGISTER", self.reg.cseq))
            .push("Contact", self.contact())
            .push("Expires", expires.to_string())
            .push("Allow", ALLOW);
        if let Some((ch, proxy)) = &self.reg.challenge {
            self.reg.nc += 1;
            let value = auth::authorization(
                ch,
                &self.cfg.auth_user,
                &self.cfg.password,
                "REGISTER",
                &uri,
                self.reg.nc,
                &random_token(12),
                &[],
            );
            req.push(
                if *proxy {
                    "Proxy-Authorization"
                } else {
                    "Authorization"
                },
                value,
            );
        }
        self.reg.next = None;
        self.send_request(req, registrar, self.cfg.proto, Owner::Register)
            .await;
    }

    async fn on_register_response(&mut self, msg: &Message, code: u16) {
        if code < 200 {
            return;
        }
        let unregistering = self.reg.state == RegState::Unregistering;
        if code < 300 {
            self.reg.auth_tries = 0;
            if unregistering {
                self.reg.state = RegState::Idle;
                self.emit(PhoneEvent::Unregistered);
                return;
            }
            // NAT: if the registrar saw us elsewhere, register that address instead.
            if let Some(v) = msg.get_all("Via").first().and_then(|v| Via::parse(v).ok()) {
                let ip: Option<IpAddr> = v.param("received").and_then(|r| r.parse().ok());
                let port: Option<u16> = v.param("rport").and_then(|p| p.parse().ok());
                if ip.is_some() || port.is_some() {
                    let seen =
                        SocketAddr::new(ip.unwrap_or(self.local.ip()), port.unwrap_or(self.local.port()));
                    if seen != self.contact_addr() && self.reg.public.is_none() {
                        self.reg.public = Some(seen);
                        self.register(self.reg.expires).await;
                        return;
                    }
                }
            }
            let ours = self.contact_addr();
            let granted = msg
                .get_all("Contact")
                .iter()
                .filter_map(|c| NameAddr::parse(c).ok())
                .find(|c| Uri::parse(&c.uri).is_ok_and(|u| u.port == Some(ours.port())))
                .and_then(|c| c.param("expires").and_then(|e| e.parse().ok()))
                .or_else(|| msg.get("Expires").and_then(|e| e.parse().ok()))
                .unwrap_or(self.reg.expires);
            self.reg.state = RegState::Registered;
            self.reg.backoff = Duration::from_secs(2);
            // Refresh well before expiry.
            let refresh = Duration::from_secs(u64::from(granted.max(2))) / 2;
            self.reg.next = Some(Instant::now() + refresh);
            self.emit(PhoneEvent::Registered {
                aor: self.aor(),
                expires: granted,
            });
            return;
        }
        if (code == 401 || code == 407) && self.reg.auth_tries < 2 {
            let challenges = challenges(msg, code);
            let stale = challenges.iter().any(|c| c.stale);
            // A second challenge right after our credentials means they were wrong (unless stale).
            if let Some(ch) = auth::pick(&challenges).cloned()
                && (self.reg.auth_tries == 0 || stale)
            {
                self.reg.auth_tries += 1;
                self.reg.challenge = Some((ch, code == 407));
                self.reg.nc = 0;
                let e = if unregistering { 0 } else { self.reg.expires };
                self.register(e).await;
                return;
            }
        }
        if code == 423
            && !unregistering
            && let Some(min) = msg.get("Min-Expires").and_then(|m| m.trim().parse::<u32>().ok())
            && min > self.reg.expires
        {
            self.reg.expires = min;
            self.register(min).await;
            return;
        }
        if unregistering {
            self.reg.state = RegState::Idle;
            self.emit(PhoneEvent::Unregistered);
            return;
        }
        self.registration_failed(Some(code), reason_phrase(msg));
    }

    /// A TCP or TLS connection ended (the peer restarted, closed or reset it). The phone
    /// recovers by itself and says so: the registrar's connection lost while registered means
    /// registering again now over a new one (a restarted registrar has forgotten us, and it
    /// reached us over that connection); lost while registering, a failed registration, retried
    /// with backoff (a registrar that keeps dropping connections gets no storm). A call's
    /// connection lost: its next request connects again; a direct call (no proxy in its route)
    /// whose peer cannot be reached any more ends.
    async fn on_connection_lost(&mut self, proto: Proto, peer: SocketAddr) {
        if self.quitting.is_some() {
            return;
        }
        if self.cfg.registrar == Some(peer) && self.cfg.proto == proto {
            // Its transaction waits for an answer that cannot come over the closed connection.
            self.clients
                .retain(|_, tx| !(matches!(tx.owner, Owner::Register) && tx.to == peer && tx.proto == proto));
            // The address the registrar saw us at was that connection's: learn the new one.
            self.reg.public = None;
            let what = format!("the {} connection to the registrar {peer} was lost", proto.name());
            match self.reg.state {
                RegState::Registered => {
                    self.warn(format!("{what}; registering again"));
                    self.register(self.reg.expires).await;
                }
                RegState::Registering => self.registration_failed(None, what),
                RegState::Idle | RegState::Failed | RegState::Unregistering => {}
            }
        }
        let hit: Vec<String> = (0..self.calls.len())
            .filter(|&i| {
                let c = &self.calls[i];
                c.proto == proto && (c.peer == peer || self.dialog_destination(i).0 == peer)
            })
            .map(|i| self.calls[i].id.clone())
            .collect();
        for id in hit {
            let Some(i) = self.find_call(&id) else { continue };
            let direct = self.calls[i].route.is_empty();
            let (dest, _) = self.dialog_destination(i);
            // A direct call's peer is the only way to the other party: is it still there? (A
            // CRLF keep-alive, RFC 5626 §3.5.1, opens a new connection to it.)
            let gone = direct && self.try_send(proto, dest, b"\r\n\r\n".to_vec()).await.is_err();
            if gone {
                self.warn(format!(
                    "call {id}: the {} connection to {peer} was lost and {dest} cannot be reached: \
                     the call ends",
                    proto.name()
                ));
                self.end_call(i, EndReason::Failed, None);
            } else {
                self.warn(format!(
                    "call {id}: the {} connection to {peer} was lost; its next request connects again",
                    proto.name()
                ));
            }
        }
    }

    fn registration_failed(&mut self, code: Option<u16>, reason: String) {
        self.reg.state = RegState::Failed;
        self.reg.auth_tries = 0;
        self.reg.challenge = None;
        self.emit(PhoneEvent::RegistrationFailed { code, reason });
        // Retry with backoff (2 s doubling to 5 minutes): never a storm.
        self.reg.next = Some(Instant::now() + self.reg.backoff);
        self.reg.backoff = (self.reg.backoff * 2).min(Duration::from_secs(300));
    }

    // ---------------------------------------------------------------- timers

    async fn on_timers(&mut self) {
        let now = Instant::now();
        // Client transactions: retransmit, or time out.
        let mut resend = Vec::new();
        let mut timed_out = Vec::new();
        self.clients.retain(|br, tx| {
            if tx.deadline <= now {
                if !tx.done {
                    timed_out.push((br.clone(), tx.owner.clone(), tx.method.clone(), tx.error.take()));
                }
                return false;
            }
            if let Some(next) = tx.next
                && next <= now
            {
                resend.push((tx.proto, tx.to, tx.bytes.clone()));
                tx.interval = if tx.method == "INVITE" {
                    tx.interval * 2
                } else {
                    (tx.interval * 2).min(T2)
                };
                tx.next = Some(now + tx.interval);
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
        // 2xx retransmission until ACK (RFC 3261 §13.3.1.4).
        let mut no_ack = Vec::new();
        for c in &mut self.calls {
            if let Some((bytes, t, iv, give_up)) = &mut c.ok_retransmit {
                if *give_up <= now {
                    no_ack.push(c.id.clone());
                    c.ok_retransmit = None;
                } else if *t <= now {
                    resend.push((c.proto, c.peer, bytes.clone()));
                    *iv = (*iv * 2).min(T2);
                    *t = now + *iv;
                }
            }
        }
        for (p, to, bytes) in resend {
            self.send(p, to, bytes).await;
        }
        for id in no_ack {
            if let Some(i) = self.find_call(&id) {
                tracing::info!(call = %id, "no ACK for our 200 OK: hanging up");
                self.hangup(i).await;
            }
        }
        for (_, owner, method, error) in timed_out {
            if let Some(e) = &error {
                self.error(e.clone());
            }
            match owner {
                Owner::Register => {
                    if self.reg.state == RegState::Unregistering {
                        self.reg.state = RegState::Idle;
                    } else {
                        match error {
                            Some(e) => self.registration_failed(Some(503), e),
                            None => {
                                self.registration_failed(Some(408), "no answer from the registrar".into())
                            }
                        }
                    }
                }
                Owner::Call(id) if method == "INVITE" => {
                    if let Some(i) = self.find_call(&id)
                        && self.calls[i].state != CallState::Confirmed
                    {
                        match error {
                            Some(_) => self.end_call(i, EndReason::Failed, Some(503)),
                            None => self.end_call(i, EndReason::Timeout, Some(408)),
                        }
                    }
                }
                _ => {}
            }
        }
        // Auto-answer.
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|c| c.auto_answer_at.is_some_and(|t| t <= now))
            .map(|c| c.id.clone())
            .collect();
        for id in due {
            if let Some(i) = self.find_call(&id) {
                self.calls[i].auto_answer_at = None;
                self.answer(i).await;
            }
        }
        if self.reg.next.is_some_and(|t| t <= now) {
            self.reg.next = None;
            let e = self.reg.expires;
            self.register(e).await;
        }
    }

    // ---------------------------------------------------------------- commands

    /// The call a command means: the named one, else the most recent.
    fn pick(&self, call: Option<&str>) -> Option<usize> {
        match call {
            Some(id) => self.find_call(id),
            None => self.calls.len().checked_sub(1),
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        let no_call = |s: &Ua, c: &Option<String>| {
            s.error(match c {
                Some(id) => format!("no call `{id}`"),
                None => "no call".to_owned(),
            })
        };
        match cmd {
            Command::Dial { to } => self.dial(&to, None).await,
            Command::DialAs { to, caller } => self.dial(&to, Some(&caller)).await,
            Command::Answer { call } => match self.pick(call.as_deref()) {
                Some(i) if self.calls[i].incoming && self.calls[i].state == CallState::Ringing => {
                    self.answer(i).await
                }
                Some(_) => self.error("the call is not ringing here"),
                None => no_call(self, &call),
            },
            Command::Hangup { call } => match self.pick(call.as_deref()) {
                Some(i) => self.hangup(i).await,
                None => no_call(self, &call),
            },
            Command::Reject { call } => match self.pick(call.as_deref()) {
                Some(i) if self.calls[i].incoming && self.calls[i].state == CallState::Ringing => {
                    self.reject(i, 603, "Decline").await;
                }
                Some(_) => self.error("the call is not ringing here"),
                None => no_call(self, &call),
            },
            Command::Hold { call } => self.hold(call.as_deref(), true).await,
            Command::Unhold { call } => self.hold(call.as_deref(), false).await,
            Command::Mute { call } | Command::Unmute { call } if self.pick(call.as_deref()).is_none() => {
                no_call(self, &call)
            }
            Command::Mute { call } => self.mute(call.as_deref(), true),
            Command::Unmute { call } => self.mute(call.as_deref(), false),
            Command::Dtmf { digits, call } => match self.pick(call.as_deref()) {
                Some(i) if self.calls[i].state == CallState::Confirmed => self.send_dtmf(i, &digits).await,
                Some(_) => self.error("DTMF needs an answered call"),
                None => no_call(self, &call),
            },
            Command::Transfer { to, call } => match self.pick(call.as_deref()) {
                Some(i) if self.calls[i].state == CallState::Confirmed => self.transfer(i, &to).await,
                Some(_) => self.error("transfer needs an answered call"),
                None => no_call(self, &call),
            },
            Command::Record { on, call } => match self.pick(call.as_deref()) {
                Some(i) if self.calls[i].media.is_some() => {
                    let target = on.then(|| self.recording_target(i));
                    if let Some(m) = &self.calls[i].media {
                        let _ = m.commands.try_send(MediaCommand::Record(target));
                    }
                }
                Some(_) => self.error("recording needs an answered call with audio"),
                None => no_call(self, &call),
            },
            Command::Click { call } => match self.pick(call.as_deref()) {
                Some(i) => {
                    let params = self.calls[i].params.clone();
                    self.bus.call(CallEvent::click(params));
                }
                None => no_call(self, &call),
            },
            Command::Quit => self.quit().await,
        }
    }

    /// The request URI for a number or URI the agent typed.
    fn target_uri(&self, to: &str) -> Result<String, String> {
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
        Ok(format!("sip:{to}@{}", self.cfg.domain))
    }

    /// Calls `to`; `caller` replaces our identity in From and adds its headers.
    async fn dial(&mut self, to: &str, caller: Option<&CallerId>) {
        let uri = match self.target_uri(to) {
            Ok(u) => u,
            Err(e) => return self.error(e),
        };
        let dest = match self.cfg.registrar {
            Some(r) => r,
            None => {
                let Ok(u) = Uri::parse(&uri) else {
                    return self.error(format!("cannot dial `{to}`"));
                };
                let host = u.host.trim_start_matches('[').trim_end_matches(']').to_owned();
                match tokio::net::lookup_host((host.as_str(), u.port.unwrap_or(5060)))
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                {
                    Some(a) => a,
                    None => return self.error(format!("cannot resolve `{}`", u.host)),
                }
            }
        };
        let id = format!("{}@ctiphone", random_token(20));
        let (rtp, rtcp) = bind_rtp(self.local.ip()).await;
        let local = {
            let who = caller.cloned().unwrap_or_default();
            let aor = format!(
                "sip:{}@{}",
                who.user.as_deref().unwrap_or(&self.cfg.user),
                who.host.as_deref().unwrap_or(&self.cfg.domain)
            );
            let mut n = NameAddr::new(&aor);
            let display = who.display.unwrap_or_else(|| self.cfg.display_name.clone());
            if !display.is_empty() {
                n.display = Some(display);
            }
            n.set_param("tag", &random_token(10));
            n
        };
        let remote = NameAddr::new(&uri);
        let tel = Uri::parse(&uri)
            .ok()
            .and_then(|u| u.user)
            .unwrap_or_else(|| to.to_owned());
        let mut params = CallParams::outgoing(&id, &tel);
        params.called = tel.clone();
        self.name_parties(&mut params);
        let mut call = Call::new(
            id.clone(),
            CallState::Calling,
            local,
            remote,
            dest,
            self.cfg.proto,
            params.clone(),
        );
        call.remote_target = uri.clone();
        (call.rtp, call.rtcp) = (rtp, rtcp);
        let mut inv = Message::request("INVITE", &uri);
        inv.push("From", call.local.to_string())
            .push("To", call.remote.to_string())
            .push("Call-ID", id.clone())
            .push("CSeq", "1 INVITE")
            .push("Contact", self.contact())
            .push("Allow", ALLOW);
        for (name, value) in caller.map_or(&[][..], |c| &c.headers) {
            inv.push(name, value.clone());
        }
        self.calls.push(call);
        let i = self.calls.len() - 1;
        if let Some(sdp) = self.local_sdp(i, None, Direction::SendRecv) {
            inv.with_body("application/sdp", sdp.into_bytes());
        }
        let br = self
            .send_request(inv, dest, self.cfg.proto, Owner::Call(id.clone()))
            .await;
        call = self.calls.remove(i);
        call.our_invite = self.clients.get(&br).and_then(|t| Message::parse(&t.bytes).ok());
        call.our_branch = Some(br);
        self.calls.push(call);
        self.emit(PhoneEvent::Outgoing {
            call: id,
            to: to.to_owned(),
        });
        self.bus.call(CallEvent::outgoing(params));
    }

    async fn answer(&mut self, i: usize) {
        let Some(invite) = self.calls[i].invite.clone() else {
            return;
        };
        let offer = self.calls[i].remote_sdp.clone();
        let Some(body) = self.local_sdp(i, offer.as_ref(), Direction::SendRecv) else {
            return self.reject(i, 488, "Not Acceptable Here").await;
        };
        let mut ok = Message::response(&invite, 200, "OK");
        ok.set("To", self.calls[i].local.to_string());
        ok.push("Contact", self.contact()).push("Allow", ALLOW);
        ok.with_body("application/sdp", body.into_bytes());
        let (peer, proto) = (self.calls[i].peer, self.calls[i].proto);
        self.respond(peer, proto, &invite, ok.clone()).await;
        let bytes = self
            .servers
            .get(self.calls[i].invite_key.as_deref().unwrap_or(""))
            .map(|t| t.last.clone());
        let now = Instant::now();
        let c = &mut self.calls[i];
        c.state = CallState::Confirmed;
        c.answered_at = Some(now);
        if !proto.is_stream()
            && let Some(b) = bytes
        {
            c.ok_retransmit = Some((b, now + T1, T1, now + TX_TIMEOUT));
        }
        let id = c.id.clone();
        let params = c.params.clone();
        self.emit(PhoneEvent::Answered { call: id });
        self.bus.call(CallEvent::answer(params));
        self.start_media(i, true).await;
    }

    async fn reject(&mut self, i: usize, code: u16, reason: &str) {
        let Some(invite) = self.calls[i].invite.clone() else {
            return;
        };
        let mut r = Message::response(&invite, code, reason);
        r.set("To", self.calls[i].local.to_string());
        let (peer, proto) = (self.calls[i].peer, self.calls[i].proto);
        self.respond(peer, proto, &invite, r).await;
        self.end_call(i, EndReason::Rejected, Some(code));
    }

    /// Ends a call from our side, whatever its state.
    async fn hangup(&mut self, i: usize) {
        match self.calls[i].state {
            CallState::Ringing => self.reject(i, 486, "Busy Here").await,
            CallState::Calling => self.send_cancel(i).await,
            CallState::Early => self.send_cancel(i).await,
            CallState::Confirmed => {
                let bye = self.in_dialog_request(i, "BYE", None);
                let (to, proto) = self.dialog_destination(i);
                let id = self.calls[i].id.clone();
                self.send_request(bye, to, proto, Owner::Call(id)).await;
                self.end_call(i, EndReason::LocalHangup, None);
            }
        }
    }

    async fn send_cancel(&mut self, i: usize) {
        let c = &self.calls[i];
        let Some(inv) = c.our_invite.clone() else { return };
        let mut cancel = Message::request("CANCEL", inv.uri().unwrap_or(""));
        if let Some(v) = inv.get_all("Via").first() {
            cancel.push("Via", v.to_string());
        }
        cancel
            .push("Max-Forwards", "70")
            .push("From", inv.get("From").unwrap_or("").to_owned())
            .push("To", inv.get("To").unwrap_or("").to_owned())
            .push("Call-ID", c.id.clone())
            .push("CSeq", format!("{} CANCEL", inv.cseq().map_or(1, |(n, _)| n)));
        for r in inv.get_all("Route") {
            cancel.push("Route", r.to_string());
        }
        let (to, proto) = (c.peer, c.proto);
        // CANCEL keeps the INVITE's branch: a transaction of its own keyed by method.
        let bytes = cancel.to_bytes();
        let key = format!(
            "{}#CANCEL",
            inv.get_all("Via")
                .first()
                .and_then(|v| Via::parse(v).ok())
                .and_then(|v| v.branch().map(str::to_owned))
                .unwrap_or_default()
        );
        let now = Instant::now();
        self.clients.insert(
            key,
            ClientTx {
                method: "CANCEL".into(),
                bytes: bytes.clone(),
                to,
                proto,
                interval: T1,
                next: (!proto.is_stream()).then(|| now + T1),
                deadline: now + TX_TIMEOUT,
                owner: Owner::None,
                ack: None,
                done: false,
                error: None,
            },
        );
        self.send(proto, to, bytes).await;
        self.end_call(i, EndReason::Cancelled, None);
    }

    /// A request inside the dialog of call `i` (RFC 3261 §12.2.1.1).
    fn in_dialog_request(&mut self, i: usize, method: &str, cseq: Option<u32>) -> Message {
        let c = &mut self.calls[i];
        let n = match cseq {
            Some(n) => n,
            None => {
                c.local_cseq += 1;
                c.local_cseq
            }
        };
        let mut m = Message::request(method, &c.remote_target);
        m.push("From", c.local.to_string())
            .push("To", c.remote.to_string())
            .push("Call-ID", c.id.clone())
            .push("CSeq", format!("{n} {method}"));
        for r in &c.route {
            m.push("Route", r.clone());
        }
        m
    }

    /// Where in-dialog requests of call `i` go: the first loose route, else the peer.
    fn dialog_destination(&self, i: usize) -> (SocketAddr, Proto) {
        let c = &self.calls[i];
        let target = c
            .route
            .first()
            .and_then(|r| NameAddr::parse(r).ok())
            .map(|r| r.uri)
            .unwrap_or_else(|| c.remote_target.clone());
        let addr = Uri::parse(&target).ok().and_then(|u| {
            let host = u.host.trim_start_matches('[').trim_end_matches(']');
            host.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, u.port.unwrap_or(5060)))
        });
        (addr.unwrap_or(c.peer), c.proto)
    }

    async fn hold(&mut self, call: Option<&str>, hold: bool) {
        let Some(i) = self.pick(call) else {
            return self.error("no call");
        };
        if self.calls[i].state != CallState::Confirmed {
            return self.error("hold needs an answered call");
        }
        self.calls[i].held = hold;
        let want = if hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        let Some(body) = self.local_sdp(i, None, want) else {
            return;
        };
        let mut inv = self.in_dialog_request(i, "INVITE", None);
        inv.push("Contact", self.contact());
        inv.with_body("application/sdp", body.into_bytes());
        let (to, proto) = self.dialog_destination(i);
        let id = self.calls[i].id.clone();
        self.calls[i].pending_hold = Some(hold);
        // `held` / `resumed` follow when the far end accepts (on its 2xx, which is ACKed).
        self.send_request(inv, to, proto, Owner::Call(id)).await;
    }

    fn mute(&mut self, call: Option<&str>, on: bool) {
        let Some(i) = self.pick(call) else { return };
        self.calls[i].muted = on;
        if let Some(m) = &self.calls[i].media {
            let _ = m.commands.try_send(MediaCommand::Mute(on));
        }
    }

    async fn send_dtmf(&mut self, i: usize, digits: &str) {
        for d in digits.chars() {
            if !(d.is_ascii_digit() || "*#ABCDabcd".contains(d)) {
                return self.error(format!("`{d}` is not a DTMF digit"));
            }
        }
        // RFC 4733 in the media when the far end takes telephone-events; SIP INFO otherwise.
        if let (Some(_), Some(m)) = (self.calls[i].dtmf_pt, &self.calls[i].media) {
            let _ = m
                .commands
                .try_send(MediaCommand::Dtmf(digits.to_ascii_uppercase()));
            return;
        }
        for d in digits.chars() {
            let mut info = self.in_dialog_request(i, "INFO", None);
            info.with_body(
                "application/dtmf-relay",
                format!("Signal={d}\r\nDuration=160\r\n").into_bytes(),
            );
            let (to, proto) = self.dialog_destination(i);
            self.send_request(info, to, proto, Owner::None).await;
        }
    }

    async fn transfer(&mut self, i: usize, to: &str) {
        let target = match self.target_uri(to) {
            Ok(u) => u,
            Err(e) => return self.error(e),
        };
        let mut refer = self.in_dialog_request(i, "REFER", None);
        refer
            .push("Refer-To", format!("<{target}>"))
            .push("Referred-By", format!("<{}>", self.aor()))
            .push("Contact", self.contact());
        let (dest, proto) = self.dialog_destination(i);
        let id = self.calls[i].id.clone();
        self.calls[i].transfer_to = Some(target);
        self.send_request(refer, dest, proto, Owner::Call(id)).await;
    }

    async fn quit(&mut self) {
        let ids: Vec<String> = self.calls.iter().map(|c| c.id.clone()).collect();
        for id in ids {
            if let Some(i) = self.find_call(&id) {
                self.hangup(i).await;
            }
        }
        self.quitting = Some(Instant::now() + Duration::from_millis(1500));
        if self.cfg.registrar.is_some() && self.reg.state == RegState::Registered {
            self.reg.auth_tries = 0;
            self.register(0).await;
        }
    }

    fn end_call(&mut self, i: usize, reason: EndReason, code: Option<u16>) {
        let mut c = self.calls.remove(i);
        let duration = c.answered_at.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let mut params = c.params.clone();
        params
            .extra
            .insert("DURATION".into(), format!("{}", duration.round() as u64));
        params.extra.insert(
            "RESULT".into(),
            result_name(c.incoming, c.answered_at.is_some(), reason).into(),
        );
        self.emit(PhoneEvent::Ended {
            call: c.id.clone(),
            reason,
            code,
            duration_s: (duration * 1000.0).round() / 1000.0,
        });
        if let Some(m) = c.media.take() {
            // The session closes the recording and reports it; keep the call's values for it.
            let _ = m.commands.try_send(MediaCommand::Stop);
            self.finishing.insert(c.id.clone(), (params.clone(), m.task));
        }
        self.bus.call(CallEvent::hangup(params, c.answered_at.is_some()));
    }
}

/// The digest challenges of a 401 (WWW-Authenticate) or 407 (Proxy-Authenticate); those that
/// cannot be answered (another scheme, an unknown algorithm) are left out.
fn challenges(msg: &Message, code: u16) -> Vec<Challenge> {
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
fn error_chain(e: &std::io::Error) -> String {
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

/// The ACK for a non-2xx final response to `inv` (RFC 3261 §17.1.1.3).
fn failure_ack(inv: &Message, resp: &Message) -> Vec<u8> {
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

/// The history result of a call (HIS-1).
fn result_name(incoming: bool, answered: bool, reason: EndReason) -> &'static str {
    match (answered, reason) {
        (true, _) => "answered",
        (false, EndReason::Rejected) => "rejected",
        (false, EndReason::Busy) => "busy",
        (false, EndReason::Cancelled) if incoming => "missed",
        (false, EndReason::Cancelled) => "cancelled",
        (false, _) => "failed",
    }
}

fn fmt_addr(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

fn reason_phrase(msg: &Message) -> String {
    match &msg.start {
        StartLine::Response { code, reason } => format!("{code} {reason}"),
        StartLine::Request { .. } => String::new(),
    }
}

/// How long a server transaction keeps its answer for retransmitted requests: an INVITE's
/// until its ACK (Timer H, then [`acked_lifetime`]) or for its 2xx's retransmissions; other
/// requests 64×T1 over UDP (Timer J), nothing over a stream, where nothing is retransmitted
/// (RFC 3261 §17.2).
fn server_tx_lifetime(invite: bool, proto: Proto) -> Duration {
    if invite || !proto.is_stream() {
        TX_TIMEOUT
    } else {
        Duration::ZERO
    }
}

/// How long an INVITE's failure stays once ACKed (Timer I: T4 over UDP, nothing over a stream).
fn acked_lifetime(proto: Proto) -> Duration {
    if proto.is_stream() { Duration::ZERO } else { T4 }
}

/// A Warning's text (RFC 3261 §20.43): at most 120 characters of `why`, no control characters
/// or quotes. An error may quote what the peer sent, 60 KB of it: the answer would not fit a
/// datagram and never be sent.
fn warning_text(why: &str) -> String {
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
/// requires (420, with the tags in Unsupported: this agent supports none). The response's code,
/// reason and extra headers; `None` when the request passes. ACK is never answered and CANCEL's
/// Require is ignored (§8.2.2.3).
fn precheck(msg: &Message) -> Option<Refusal> {
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
        let required: Vec<&str> = msg
            .get_all("Require")
            .into_iter()
            .flat_map(super::message::split_commas)
            .collect();
        if !required.is_empty() {
            return Some((420, "Bad Extension", vec![("Unsupported", required.join(", "))]));
        }
    }
    None
}

/// Whether a request's Accept (if any) takes `application/sdp` (or `application/*`, `*/*`).
/// No Accept, or one that lists nothing: SDP, the default (RFC 3261 §20.1).
fn accepts_sdp(msg: &Message) -> bool {
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

/// The key of a server transaction: top Via branch (with its sent-by) and the method (ACK
/// keyed like INVITE's, so it can end INVITE's Timer G).
fn server_key(msg: &Message) -> Option<String> {
    let via = Via::parse(msg.get_all("Via").first()?).ok()?;
    let method = msg.method()?;
    let id = match via.branch() {
        Some(b) if b.starts_with("z9hG4bK") => format!("{b}|{}:{:?}", via.host, via.port),
        // RFC 2543 peers: match on Call-ID, CSeq number and From tag.
        _ => format!(
            "{}|{}|{}",
            msg.call_id()?,
            msg.cseq()?.0,
            msg.get("From")
                .and_then(|f| NameAddr::parse(f).ok())
                .and_then(|f| f.tag().map(str::to_owned))
                .unwrap_or_default()
        ),
    };
    Some(format!("{id}|{method}"))
}

/// {TEL}, {TELNAME}, {CALLED} of an incoming INVITE (P-Asserted-Identity, else
/// Remote-Party-ID, else From; P-Called-Party-ID, else To, else the Request-URI).
pub fn caller_identity(msg: &Message) -> CallParams {
    let who = ["P-Asserted-Identity", "Remote-Party-ID", "From"]
        .iter()
        .find_map(|h| msg.get_all(h).first().and_then(|v| NameAddr::parse(v).ok()));
    let uri = who.as_ref().and_then(|w| Uri::parse(&w.uri).ok());
    let user = uri.as_ref().and_then(|u| u.user.clone()).unwrap_or_default();
    let privacy = msg
        .get("Privacy")
        .is_some_and(|p| p.split(';').any(|t| t.trim().eq_ignore_ascii_case("id")));
    let anonymous = privacy || user.is_empty() || user.eq_ignore_ascii_case("anonymous");
    let called = ["P-Called-Party-ID", "To"]
        .iter()
        .find_map(|h| msg.get(h).and_then(|v| NameAddr::parse(v).ok()))
        .and_then(|n| Uri::parse(&n.uri).ok())
        .and_then(|u| u.user)
        .or_else(|| msg.uri().and_then(|u| Uri::parse(u).ok()).and_then(|u| u.user))
        .unwrap_or_default();
    let mut p = CallParams::incoming(msg.call_id().unwrap_or(""), &user, &called);
    p.telname = who.and_then(|w| w.display).unwrap_or_default();
    p.anonymous = anonymous;
    p
}

/// The digit of a SIP INFO `application/dtmf-relay` (or `application/dtmf`) body.
fn dtmf_from_info(body: &str) -> Option<String> {
    let line = body
        .lines()
        .find(|l| l.trim_start().to_ascii_lowercase().starts_with("signal"));
    let d = match line {
        Some(l) => l.split_once('=')?.1.trim().to_owned(),
        None => body.trim().to_owned(),
    };
    (d.len() == 1 && d.chars().all(|c| c.is_ascii_digit() || "*#ABCDabcd".contains(c))).then_some(d)
}

/// A UDP socket that reserves the call's RTP port (the media layer sends and receives on it).
/// The call's RTP socket on an even port and its RTCP socket on the next one (RFC 3550
/// §11); the media session sends and receives on them.
async fn bind_rtp(ip: IpAddr) -> (Option<UdpSocket>, Option<UdpSocket>) {
    for _ in 0..50 {
        let Ok(rtp) = UdpSocket::bind(SocketAddr::new(ip, 0)).await else {
            break;
        };
        let Ok(port) = rtp.local_addr().map(|a| a.port()) else {
            break;
        };
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(ip, port + 1)).await {
            return (Some(rtp), Some(rtcp));
        }
    }
    // No pair free: RTP alone (RTCP then shares the port, as with rtcp-mux).
    (UdpSocket::bind(SocketAddr::new(ip, 0)).await.ok(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_identity_prefers_asserted_identity_and_detects_anonymous() {
        let raw = "INVITE sip:0312345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n\
                   From: \"Taro\" <sip:0311112222@127.0.0.1>;tag=1\r\nTo: <sip:0312345678@127.0.0.1>\r\n\
                   P-Asserted-Identity: \"Taro Yamada\" <sip:+81311112222@pbx>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\r\n";
        let m = Message::parse(raw.as_bytes()).unwrap();
        let p = caller_identity(&m);
        assert_eq!(
            (p.tel.as_str(), p.telname.as_str(), p.called.as_str()),
            ("+81311112222", "Taro Yamada", "0312345678")
        );
        assert!(!p.anonymous);
        let anon = raw.replace(
            "P-Asserted-Identity: \"Taro Yamada\" <sip:+81311112222@pbx>\r\n",
            "Privacy: id\r\n",
        );
        assert!(caller_identity(&Message::parse(anon.as_bytes()).unwrap()).anonymous);
        let anon = raw
            .replace(
                "P-Asserted-Identity: \"Taro Yamada\" <sip:+81311112222@pbx>\r\n",
                "",
            )
            .replace("0311112222@", "anonymous@");
        assert!(caller_identity(&Message::parse(anon.as_bytes()).unwrap()).anonymous);
    }

    fn request(first: &str, extra: &str) -> Message {
        let method = first.split(' ').next().unwrap();
        let raw = format!(
            "{first} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: c1\r\n\
             CSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(raw.as_bytes()).unwrap()
    }

    #[test]
    fn requests_refused_before_their_method_is_handled() {
        // RFC 4475 §3.3.7 and friends: REGISTER to a phone is a method it knows but does not
        // take (405); an unknown method is 501; both list what is allowed.
        let r = precheck(&request("REGISTER sip:example.com", "")).unwrap();
        assert_eq!((r.0, r.2[0].0, r.2[0].1.as_str()), (405, "Allow", ALLOW));
        assert_eq!(
            precheck(&request("NEWMETHOD sip:b@127.0.0.1", "")).unwrap().0,
            501
        );
        // §3.3.2, §3.3.3: a Request-URI scheme the phone cannot serve, whatever the method.
        let opaque = request("OPTIONS nobodyKnowsThisScheme:totallyopaquecontent", "");
        assert_eq!(precheck(&opaque).unwrap().0, 416);
        let beep = request("OPTIONS soap.beep://192.0.2.103:3002", "");
        assert_eq!(precheck(&beep).unwrap().0, 416);
        assert_eq!(
            precheck(&request("INVITE http://example.com/", "")).unwrap().0,
            416
        );
        // §3.3.5: Require of an unknown extension: 420 naming every required tag; Proxy-Require
        // is for proxies.
        let ext = request(
            "OPTIONS sip:b@127.0.0.1",
            "Require: nothingSupportsThis, nothingSupportsThisEither\r\nProxy-Require: x\r\n",
        );
        let r = precheck(&ext).unwrap();
        assert_eq!(r.0, 420);
        assert_eq!(
            r.2,
            vec![(
                "Unsupported",
                "nothingSupportsThis, nothingSupportsThisEither".to_owned()
            )]
        );
        assert_eq!(
            precheck(&request("OPTIONS sip:b@127.0.0.1", "Proxy-Require: x\r\n")),
            None
        );
        // CANCEL's Require is ignored; ACK is never answered.
        assert_eq!(
            precheck(&request("CANCEL sip:b@127.0.0.1", "Require: foo\r\n")),
            None
        );
        assert_eq!(
            precheck(&request("ACK nobodyKnowsThisScheme:x", "Require: foo\r\n")),
            None
        );
        // What the phone takes passes.
        for m in ["INVITE", "BYE", "OPTIONS", "INFO", "NOTIFY", "UPDATE", "CANCEL"] {
            assert_eq!(
                precheck(&request(&format!("{m} sip:b@127.0.0.1"), "")),
                None,
                "{m}"
            );
        }
        assert_eq!(precheck(&request("INVITE tel:+81312345678", "")), None);
    }

    /// A user agent running in this process on 127.0.0.1 (`auto_answer`: answering every call
    /// after that long), and a UDP socket to talk SIP to it.
    async fn agent(auto_answer: Option<Duration>) -> (SocketAddr, UdpSocket, mpsc::Sender<Command>) {
        let text = "[account]\nuri = \"sip:1001@127.0.0.1\"\nregistrar = \"\"\n\
                    listen = \"127.0.0.1:0\"\ncall_waiting = false\n\
                    [audio]\ninput = \"null\"\noutput = \"null\"\n";
        let config = Config::parse(text, None).unwrap();
        let cfg = UaConfig::from_config(&config, auto_answer).await.unwrap();
        let bus = Bus::new();
        let mut events = bus.subscribe();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(run(cfg, bus, rx));
        let listen = loop {
            if let Event::Phone(PhoneEvent::Ready { listen, .. }) = events.recv().await.unwrap() {
                break listen.parse().unwrap();
            }
        };
        (listen, UdpSocket::bind("127.0.0.1:0").await.unwrap(), tx)
    }

    /// The next message on `sock` within `within`.
    async fn recv(sock: &UdpSocket, within: Duration) -> Option<Message> {
        let mut buf = vec![0u8; 65536];
        let (n, _) = tokio::time::timeout(within, sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(Message::parse(&buf[..n]).expect("the agent's message parses"))
    }

    /// Sends `invite` and returns the agent's 200 (after any provisional answers).
    async fn answered(sock: &UdpSocket, invite: &str, ua: SocketAddr) -> Message {
        sock.send_to(invite.as_bytes(), ua).await.unwrap();
        loop {
            let m = recv(sock, Duration::from_secs(5)).await.expect("an answer");
            if m.code() == Some(200) {
                return m;
            }
        }
    }

    /// An INVITE (RFC 2543 style: no branch, no From tag) with a PCMU offer, and its ACK for
    /// the final response `resp`.
    fn invite_2543(
        ua: SocketAddr,
        me: SocketAddr,
        content_type: &str,
    ) -> (String, impl Fn(&Message) -> String) {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let common = format!(
            "Via: SIP/2.0/UDP {me}\r\nFrom: <sip:a@{me}>\r\nCall-ID: rfc2543-{}\r\n",
            me.port()
        );
        let invite = format!(
            "INVITE sip:1001@{ua} SIP/2.0\r\n{common}To: <sip:1001@{ua}>\r\nCSeq: 1 INVITE\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        let ack = move |resp: &Message| {
            format!(
                "ACK sip:1001@{ua} SIP/2.0\r\n{common}To: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                resp.get("To").unwrap()
            )
        };
        (invite, ack)
    }

    #[tokio::test]
    async fn an_ack_matching_the_invite_transaction_reaches_the_call_after_a_2xx() {
        // An RFC 2543 peer's ACK for our 200 has the INVITE's transaction id (Call-ID, CSeq,
        // From tag): it is the dialog's ACK, and the 200 stops being retransmitted (it was
        // swallowed by the transaction: the 200 went on for 32 s and the call was hung up).
        let (ua, sock, _commands) = agent(Some(Duration::ZERO)).await;
        let (invite, ack) = invite_2543(ua, sock.local_addr().unwrap(), "application/sdp");
        let ok = answered(&sock, &invite, ua).await;
        sock.send_to(ack(&ok).as_bytes(), ua).await.unwrap();
        // T1 is 500 ms: a retransmission would come within 1.2 s.
        if let Some(m) = recv(&sock, Duration::from_millis(1200)).await {
            panic!("after the ACK: {:?}", m.start);
        }
    }

    #[tokio::test]
    async fn a_cancel_after_the_answer_gets_200_and_an_unknown_one_481() {
        // RFC 3261 §9.2: a CANCEL that matches a transaction is answered 200 even when the
        // INVITE was already answered (and then has no effect); one matching nothing, 481.
        let (ua, sock, _commands) = agent(Some(Duration::ZERO)).await;
        let (invite, ack) = invite_2543(ua, sock.local_addr().unwrap(), "application/sdp");
        let ok = answered(&sock, &invite, ua).await;
        sock.send_to(ack(&ok).as_bytes(), ua).await.unwrap();
        let cancel =
            invite
                .replacen("INVITE sip:", "CANCEL sip:", 1)
                .replacen("CSeq: 1 INVITE", "CSeq: 1 CANCEL", 1);
        let cancel = format!(
            "{}\r\n\r\n",
            &cancel[..cancel.find("Content-Type").unwrap()].trim_end()
        );
        let cancel = cancel.replacen("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n", 1);
        sock.send_to(cancel.as_bytes(), ua).await.unwrap();
        let answer = recv(&sock, Duration::from_secs(5))
            .await
            .expect("an answer to the CANCEL");
        assert_eq!(
            (answer.code(), answer.cseq().map(|c| c.1.to_owned())),
            (Some(200), Some("CANCEL".to_owned()))
        );
        let unknown = cancel.replace("Call-ID: rfc2543-", "Call-ID: nothing-");
        sock.send_to(unknown.as_bytes(), ua).await.unwrap();
        let answer = recv(&sock, Duration::from_secs(5))
            .await
            .expect("an answer to the CANCEL");
        assert_eq!(answer.code(), Some(481));
    }

    #[tokio::test]
    async fn an_acked_failure_is_not_retransmitted() {
        let (ua, sock, _commands) = agent(None).await;
        let (invite, ack) = invite_2543(ua, sock.local_addr().unwrap(), "text/plain");
        sock.send_to(invite.as_bytes(), ua).await.unwrap();
        let refused = recv(&sock, Duration::from_secs(5)).await.expect("an answer");
        assert_eq!(refused.code(), Some(415));
        sock.send_to(ack(&refused).as_bytes(), ua).await.unwrap();
        // The ACK's retransmission is absorbed too.
        sock.send_to(ack(&refused).as_bytes(), ua).await.unwrap();
        if let Some(m) = recv(&sock, Duration::from_millis(1200)).await {
            panic!("after the ACK: {:?}", m.start);
        }
    }

    #[test]
    fn a_warning_quotes_little_of_what_the_peer_sent() {
        let huge = format!(
            "line 4: unsupported network type \"{}\"\r\n",
            "\u{fffd}".repeat(60_000)
        );
        let w = warning_text(&huge);
        assert_eq!(w.chars().count(), 120);
        assert!(!w.contains(['"', '\r', '\n']));
        assert_eq!(warning_text("m= needs media"), "m= needs media");
    }

    #[test]
    fn server_transactions_live_as_rfc_3261_says() {
        // Timer J: a non-INVITE's answer absorbs retransmissions for 64×T1 over UDP, and is
        // not kept over a stream; an INVITE's stays until its ACK (Timer H), then T4 (Timer I).
        assert_eq!(server_tx_lifetime(false, Proto::Udp), Duration::from_secs(32));
        assert_eq!(server_tx_lifetime(false, Proto::Tcp), Duration::ZERO);
        assert_eq!(server_tx_lifetime(true, Proto::Tcp), Duration::from_secs(32));
        assert_eq!(acked_lifetime(Proto::Udp), Duration::from_secs(5));
        assert_eq!(acked_lifetime(Proto::Tls), Duration::ZERO);
    }

    #[test]
    fn an_offer_needs_a_caller_that_accepts_sdp() {
        let inv = |accept: &str| request("INVITE sip:b@127.0.0.1", accept);
        assert!(accepts_sdp(&inv("")));
        assert!(accepts_sdp(&inv("Accept: application/sdp\r\n")));
        assert!(accepts_sdp(&inv(
            "Accept: text/plain, Application/SDP;level=1\r\n"
        )));
        assert!(accepts_sdp(&inv(
            "Accept: text/plain\r\nAccept: application/*\r\n"
        )));
        assert!(accepts_sdp(&inv("Accept: */*\r\n")));
        assert!(accepts_sdp(&inv("Accept: \r\n")));
        // RFC 4475 §3.3.15 (sdp01): 406.
        assert!(!accepts_sdp(&inv("Accept: text/nobodyKnowsThis\r\n")));
        assert!(!accepts_sdp(&inv("Accept: application/sdpx, text/*\r\n")));
    }

    #[test]
    fn dtmf_info_bodies() {
        assert_eq!(
            dtmf_from_info("Signal=5\r\nDuration=160\r\n").as_deref(),
            Some("5")
        );
        assert_eq!(dtmf_from_info("signal = #\n").as_deref(), Some("#"));
        assert_eq!(dtmf_from_info("Signal=55"), None);
    }
}

#[cfg(test)]
#[path = "ua_reconnect_tests.rs"]
mod reconnect_tests;
