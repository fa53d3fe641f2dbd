//! Registration (RFC 3261 §10): REGISTER with digest authentication, refresh before expiry,
//! 423 Interval Too Brief, backoff after a failure (2 s doubling to 5 minutes), the address the
//! registrar saw us at (rport/received) taken into the Contact, recovery from a lost TCP/TLS
//! connection (closed, or dead by its keep-alives: [`super::keepalive`]), and unregistering on
//! quit.
//!
//! Failover (RFC 3263 §4.3): with several registrar addresses (DNS SRV), a REGISTER that
//! times out (after [`FAILOVER_TIMEOUT`]), is answered 503, cannot be sent or loses its
//! connection moves on to the next address at once; only when all failed does the backoff
//! apply, after which the name is looked up again and the first address tried. Failback: on a
//! backup, each refresh (at least every [`FAILBACK_INTERVAL`]) goes to the first address; if
//! it answers 200 the phone is registered there (the backup's binding is left to expire),
//! else the refresh goes to the backup it came from.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::addr::{NameAddr, Uri, Via};
use super::auth::{self, Challenge};
use super::message::Message;
use super::stack::{ALLOW, Owner, SipEvent, Stack, challenges, random_token, reason_phrase};
use super::transport::Proto;

/// With another registrar address to try, a REGISTER without an answer gives up after this
/// long (not Timer F's 32 s): the phone is soon registered on the backup.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(5);
/// Registered on a backup, the first address is tried again at least this often.
pub const FAILBACK_INTERVAL: Duration = Duration::from_secs(30);

/// Where the registration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegState {
    Idle,
    Registering,
    Registered,
    Failed,
    Unregistering,
}

/// The registration's state.
#[derive(Debug)]
pub struct Registration {
    pub state: RegState,
    pub call_id: String,
    pub tag: String,
    pub cseq: u32,
    pub expires: u32,
    pub challenge: Option<(Challenge, bool)>,
    pub nc: u32,
    pub auth_tries: u8,
    pub next: Option<Instant>,
    pub backoff: Duration,
    /// The address the registrar saw us at (rport/received), for Contact.
    pub public: Option<SocketAddr>,
    /// The registrar's Service-Route (RFC 3608) from its last 200: the Route of our initial
    /// requests after the outbound proxy's.
    pub service_route: Vec<String>,
    /// The CRLF keep-alives to the registrar while registered (RFC 5626).
    pub keepalive: super::keepalive::Keepalive,
    /// The index in `registrar_targets` of the address in use.
    pub target: usize,
    /// Registered on the backup at this index, the first address is being tried (failback).
    pub probing: Option<usize>,
    /// The addresses of a new lookup (after all failed), taken at the next attempt.
    pub fresh: Arc<Mutex<Option<Vec<SocketAddr>>>>,
}

impl Registration {
    pub fn new(expires: u32) -> Self {
        Self {
            state: RegState::Idle,
            call_id: format!("{}@ctiphone", random_token(20)),
            tag: random_token(10),
            cseq: 0,
            expires,
            challenge: None,
            nc: 0,
            auth_tries: 0,
            next: None,
            backoff: Duration::from_secs(2),
            public: None,
            service_route: Vec::new(),
            keepalive: super::keepalive::Keepalive::new(None),
            target: 0,
            probing: None,
            fresh: Arc::new(Mutex::new(None)),
        }
    }
}

impl Stack {
    /// The registration's state.
    pub fn registration_state(&self) -> RegState {
        self.reg.state
    }

    /// The first registration: sent now, or, while STUN is asking for the SIP socket's
    /// mapping, when it comes (at most [`super::stun::REGISTER_WAIT`] later).
    pub async fn start_registration(&mut self, expires: u32) {
        if self.stun.probe.is_some() {
            self.stun.hold_register = Some(Instant::now() + super::stun::REGISTER_WAIT);
            return;
        }
        self.register(expires).await;
    }

    /// Asks the STUN server (if any) for the SIP socket's mapping, unless already asking.
    pub(super) async fn stun_probe(&mut self) {
        let Some(server) = self.stun.server else { return };
        if self.stun.probe.is_some() {
            return;
        }
        let now = Instant::now();
        let mut b = super::stun::Binding::new(server, now, None);
        if b.due(now) {
            let bytes = b.request().to_vec();
            self.stun.probe = Some(b);
            self.send(Proto::Udp, server, bytes).await;
        }
    }

    /// The probe's retransmissions, and giving it up (RFC 8489 §6.2.1): the Contact then
    /// keeps what it had (the registrar's received/rport, else our own address).
    pub(super) async fn stun_due(&mut self, now: Instant) {
        let Some(b) = self.stun.probe.as_mut() else {
            if self.stun.hold_register.is_some_and(|t| t <= now) {
                self.stun.hold_register = None;
                self.registration_continue().await;
            }
            return;
        };
        if b.expired(now) {
            let (server, sent, ignored) = (b.server, b.sent(), b.ignored);
            self.stun.probe = None;
            self.emit(SipEvent::Warning(format!(
                "STUN server {server} did not answer ({sent} requests, {ignored} other datagrams): the Contact uses the address the registrar sees"
            )));
        } else if b.due(now) {
            let (server, bytes) = (b.server, b.request().to_vec());
            self.send(Proto::Udp, server, bytes).await;
        }
        if self.stun.hold_register.is_some_and(|t| t <= now) {
            self.stun.hold_register = None;
            // Still asking (the full RFC 8489 schedule goes on): register without the mapping
            // now, and say so; a late answer registers the new Contact.
            if let Some(b) = &self.stun.probe {
                let server = b.server;
                self.emit(SipEvent::Warning(format!(
                    "no answer from the STUN server {server} within {} ms: registering with the address the registrar sees, still asking",
                    super::stun::REGISTER_WAIT.as_millis()
                )));
            }
            self.registration_continue().await;
        }
    }

    /// A STUN datagram on the SIP socket: the probe's answer, or ignored (counted).
    pub(super) async fn on_stun(&mut self, data: &[u8], from: SocketAddr) {
        let Some(b) = self.stun.probe.as_mut() else {
            self.stun.stray += 1;
            tracing::debug!(%from, "STUN datagram with no request out: ignored");
            return;
        };
        let super::stun::Answer::Mapped(mapped) = b.check(data, from) else {
            return;
        };
        self.stun.probe = None;
        let before = self.contact_addr();
        if self.stun.mapped != Some(mapped) {
            tracing::info!(%mapped, server = %from, "STUN: the SIP socket is seen at this address");
        }
        self.stun.mapped = Some(mapped);
        if self.stun.hold_register.take().is_some() {
            self.registration_continue().await;
        } else if self.reg.state == RegState::Registered && self.contact_addr() != before {
            // The mapping moved (a new NAT binding, another network): register the new Contact.
            self.register(self.reg.expires).await;
        }
    }

    /// Registers (or unregisters with `expires` 0) with the registrar, if there is one.
    pub async fn register(&mut self, expires: u32) {
        let Some(mut registrar) = self.cfg.registrar else {
            return;
        };
        // Trying the first address from a backup: the backup stays the one in use (calls go
        // there) until the first answers 200.
        if self.reg.probing.is_some()
            && let Some(first) = self.cfg.registrar_targets.first()
        {
            registrar = *first;
        }
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
            .push("Allow", ALLOW)
            // Proxies on the way may record themselves for calls to us (RFC 3327).
            .push("Supported", "path");
        if let Some((ch, proxy)) = &self.reg.challenge {
            self.reg.nc += 1;
            let (name, value) = auth::credentials(
                ch,
                *proxy,
                &self.cfg.auth_user,
                &self.cfg.password,
                "REGISTER",
                &uri,
                self.reg.nc,
            );
            req.push(name, value);
        }
        self.reg.next = None;
        let proto = self.cfg.proto;
        let br = self.send_request(req, registrar, proto, Owner::Register).await;
        if self.cfg.registrar_targets.len() > 1
            && let Some(tx) = self.clients.get_mut(&br)
            && !tx.done
        {
            tx.deadline = tx.deadline.min(Instant::now() + FAILOVER_TIMEOUT);
        }
    }

    /// The registrar address in use moves to `targets[i]`: what was learnt from the other
    /// (its nonce, the address it saw us at, its Service-Route) is forgotten.
    fn use_target(&mut self, i: usize) {
        let Some(addr) = self.cfg.registrar_targets.get(i).copied() else {
            return;
        };
        self.reg.target = i;
        self.cfg.registrar = Some(addr);
        self.reg.challenge = None;
        self.reg.nc = 0;
        self.reg.auth_tries = 0;
        self.reg.public = None;
    }

    /// A REGISTER failed at the address in use (`why`): a failback attempt goes back to its
    /// backup, else the next address is tried now. Whether something was tried.
    async fn fail_over(&mut self, why: &str) -> bool {
        if self.reg.state == RegState::Unregistering {
            return false;
        }
        let from = self.cfg.registrar.map(super::stack::fmt_addr).unwrap_or_default();
        if self.reg.probing.take().is_some() {
            // The credentials were the first's; the backup's binding is refreshed now.
            self.reg.challenge = None;
            self.reg.nc = 0;
            self.reg.auth_tries = 0;
            tracing::info!(to = %from, why, "the first registrar still fails: staying on the backup");
            self.register(self.reg.expires).await;
            return true;
        }
        let next = self.reg.target + 1;
        if next >= self.cfg.registrar_targets.len() {
            return false;
        }
        self.use_target(next);
        let to = self.cfg.registrar.map(super::stack::fmt_addr).unwrap_or_default();
        self.emit(SipEvent::Warning(format!(
            "registrar {from}: {why}; failing over to {to}"
        )));
        self.register(self.reg.expires).await;
        true
    }

    /// The registration is due: a refresh on a backup tries the first address first; after
    /// all addresses failed, the first address of a new lookup (if it came) is tried.
    pub(super) async fn registration_due(&mut self) {
        if let Some(list) = self.reg.fresh.lock().ok().and_then(|mut f| f.take())
            && !list.is_empty()
            && self.reg.state != RegState::Registered
        {
            self.cfg.registrar_targets = list;
            self.use_target(0);
        }
        // Each refresh asks STUN again (the NAT may have changed the mapping meanwhile); the
        // REGISTER waits for the answer, at most REGISTER_WAIT.
        if self.reg.state == RegState::Registered && self.stun.server.is_some() && self.stun.probe.is_none() {
            self.stun_probe().await;
            if self.stun.probe.is_some() {
                self.stun.hold_register = Some(Instant::now() + super::stun::REGISTER_WAIT);
                return;
            }
        }
        self.registration_continue().await;
    }

    /// The registration due, STUN asked: a refresh on a backup tries the first address.
    async fn registration_continue(&mut self) {
        if self.reg.state == RegState::Registered && self.reg.target > 0 {
            self.reg.probing = Some(self.reg.target);
            self.reg.challenge = None;
            self.reg.nc = 0;
            self.reg.auth_tries = 0;
        }
        self.register(self.reg.expires).await;
    }

    /// Unregisters when registered (on quit); whether an unregistration is under way.
    pub async fn unregister(&mut self) -> bool {
        if self.cfg.registrar.is_some() && self.reg.state == RegState::Registered {
            self.reg.auth_tries = 0;
            self.register(0).await;
            return true;
        }
        false
    }

    pub(super) async fn on_register_response(&mut self, msg: &Message, code: u16) {
        if code < 200 {
            return;
        }
        let unregistering = self.reg.state == RegState::Unregistering;
        if code < 300 {
            self.reg.auth_tries = 0;
            // The first address answered a failback attempt: it is the one in use now.
            let back_from = self.reg.probing.take();
            if back_from.is_some() {
                self.reg.target = 0;
                self.cfg.registrar = self.cfg.registrar_targets.first().copied();
            }
            if unregistering {
                self.reg.state = RegState::Idle;
                self.emit(SipEvent::Unregistered);
                return;
            }
            // NAT: if the registrar saw us elsewhere, register that address instead.
            if let Some(v) = msg.get_all("Via").first().and_then(|v| Via::parse(v).ok()) {
                let ip: Option<IpAddr> = v.param("received").and_then(|r| r.parse().ok());
                let port: Option<u16> = v.param("rport").and_then(|p| p.parse().ok());
                if ip.is_some() || port.is_some() {
                    let seen =
                        SocketAddr::new(ip.unwrap_or(self.local.ip()), port.unwrap_or(self.local.port()));
                    // Seen elsewhere than STUN said: the mapping may have changed, ask again.
                    if self.stun.mapped.is_some_and(|m| m != seen) {
                        self.stun_probe().await;
                    }
                    if seen != self.contact_addr() && self.reg.public.is_none() {
                        let before = self.contact_addr();
                        self.reg.public = Some(seen);
                        if self.contact_addr() != before {
                            self.register(self.reg.expires).await;
                            return;
                        }
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
            self.reg.service_route = msg
                .get_all("Service-Route")
                .into_iter()
                .flat_map(super::message::split_commas)
                .map(|r| r.trim().to_owned())
                .filter(|r| NameAddr::parse(r).is_ok())
                .take(10)
                .collect();
            // Refresh well before expiry; on a backup, try the first address soon.
            let mut refresh = Duration::from_secs(u64::from(granted.max(2))) / 2;
            if self.reg.target > 0 {
                refresh = refresh.min(FAILBACK_INTERVAL);
            }
            self.reg.next = Some(Instant::now() + refresh);
            self.reg.keepalive.start(Instant::now());
            if let Some(backup) = back_from
                && let Some(b) = self.cfg.registrar_targets.get(backup)
            {
                // The backup's binding is left to expire (its calls still reach us until then).
                let b = super::stack::fmt_addr(*b);
                self.emit(SipEvent::Warning(format!(
                    "the first registrar answers again: registered there (the binding at {b} expires)"
                )));
            }
            let aor = self.aor();
            let server = self.cfg.registrar.unwrap_or(self.local);
            let (contact, stun) = (self.contact_addr(), self.stun.mapped);
            self.emit(SipEvent::Registered {
                aor,
                expires: granted,
                server,
                contact,
                stun,
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
            self.emit(SipEvent::Unregistered);
            return;
        }
        // A 503 moves on to the next address; a failback attempt goes back on any refusal.
        if (code == 503 || self.reg.probing.is_some()) && self.fail_over(&reason_phrase(msg)).await {
            return;
        }
        self.registration_failed(Some(code), reason_phrase(msg));
    }

    /// A REGISTER got no answer (or could not be sent: `error`).
    pub(super) async fn on_register_timeout(&mut self, error: Option<String>) {
        if self.reg.state == RegState::Unregistering {
            self.reg.state = RegState::Idle;
            return;
        }
        let why = error.clone().unwrap_or_else(|| "no answer".into());
        if self.fail_over(&why).await {
            return;
        }
        match error {
            Some(e) => self.registration_failed(Some(503), e),
            None => self.registration_failed(Some(408), "no answer from the registrar".into()),
        }
    }

    /// The registrar's connection lost while registered means registering again now over a
    /// new one (a restarted registrar has forgotten us, and it reached us over that
    /// connection); lost while registering, a failed registration, retried with backoff (a
    /// registrar that keeps dropping connections gets no storm).
    pub(super) async fn registration_connection_lost(&mut self, proto: Proto, peer: SocketAddr) {
        if self.cfg.registrar != Some(peer) || self.cfg.proto != proto {
            return;
        }
        // Its transaction waits for an answer that cannot come over the closed connection.
        self.clients
            .retain(|_, tx| !(matches!(tx.owner, Owner::Register) && tx.to == peer && tx.proto == proto));
        // The address the registrar saw us at was that connection's: learn the new one.
        self.reg.public = None;
        self.stun_probe().await;
        let what = format!("the {} connection to the registrar {peer} was lost", proto.name());
        match self.reg.state {
            RegState::Registered => {
                self.emit(SipEvent::Warning(format!("{what}; registering again")));
                self.register(self.reg.expires).await;
            }
            RegState::Registering => {
                if !self.fail_over(&what).await {
                    self.registration_failed(None, what);
                }
            }
            RegState::Idle | RegState::Failed | RegState::Unregistering => {}
        }
    }

    pub(super) fn registration_failed(&mut self, code: Option<u16>, reason: String) {
        self.reg.state = RegState::Failed;
        self.reg.auth_tries = 0;
        self.reg.challenge = None;
        self.emit(SipEvent::RegistrationFailed { code, reason });
        // Retry with backoff (2 s doubling to 5 minutes): never a storm.
        self.reg.next = Some(Instant::now() + self.reg.backoff);
        self.reg.backoff = (self.reg.backoff * 2).min(Duration::from_secs(300));
        // Every address failed: from the first again, looked up anew meanwhile.
        self.reg.probing = None;
        if self.cfg.registrar_targets.len() > 1 {
            self.use_target(0);
        }
        if let Some(r) = self.cfg.relocate.clone() {
            let fresh = self.reg.fresh.clone();
            let proto = self.cfg.proto;
            tokio::spawn(async move {
                match r.resolver.locate(&r.host, r.port, proto).await {
                    Ok(list) => {
                        if let Ok(mut f) = fresh.lock() {
                            *f = Some(list);
                        }
                    }
                    Err(e) => tracing::info!(host = %r.host, error = %e, "registrar lookup failed"),
                }
            });
        }
    }
}
