//! The call layer's loop: one task that owns the signalling stack and the calls, and turns
//! dialog events, front-end commands, media events and the results of work done beside it
//! (devices opened, names looked up, targets resolved) into call state, SIP commands, phone
//! events and call events. It waits only on channels and sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::app::{Bus, CallEvent, CallParams, CallResult, CallerId, Command, EndReason, Event, PhoneEvent};
use crate::media::session::MediaEvent;
use crate::sip::addr::{NameAddr, Uri};
use crate::sip::dialog::{DialogEnd, DialogId};
use crate::sip::message::Message;
use crate::sip::stack::{self, SipEvent, Stack};

use super::answer_mode;
use super::config::CallConfig;
use super::identity;
use super::media;
use super::offer_answer::{LocalParams, State as Neg};
use super::sdes::{self, SrtpMode};
use super::sdp::{self, Sdp};
use super::state::{Call, CallState};

/// Work done beside the loop, coming back.
pub enum Task {
    /// The phonebook named a call's parties.
    Named { call: String, params: CallParams },
    /// An outgoing call's target was resolved (or not).
    Resolved {
        call: String,
        dest: Result<SocketAddr, String>,
    },
    /// A call's devices are open.
    Devices { call: String, devices: media::Devices },
}

mod agent;
mod commands;
mod conference;
mod lamps;
mod session;
mod transfer;

struct Hub {
    cfg: CallConfig,
    stack: Stack,
    bus: Bus,
    calls: Vec<Call>,
    by_dialog: HashMap<DialogId, String>,
    quitting: Option<Instant>,
    tasks: mpsc::UnboundedSender<Task>,
    media_tx: mpsc::Sender<(String, MediaEvent)>,
    /// Ended calls whose media is still closing (recording being finished).
    finishing: HashMap<String, (CallParams, JoinHandle<()>)>,
    /// The ring tone player while a call rings (`true`: the call-waiting tone).
    ringer: Option<(JoinHandle<()>, bool)>,
    /// Outgoing calls waiting for their target: the INVITE to send once resolved.
    dialing: HashMap<String, (String, Option<CallerId>)>,
    /// The local conference's calls, as last reported.
    conference: Vec<String>,
    /// The agent's status.
    agent: agent::AgentStatus,
    /// The voicemail subscription was made.
    mwi_subscribed: bool,
    /// The watched colleagues' lamps.
    lamps: Vec<lamps::Watch>,
}

/// Starts the call layer: binds the transports, then handles commands until `Quit`. Phone
/// events and call events are published on `bus`.
pub async fn run(cfg: CallConfig, bus: Bus, mut commands: mpsc::Receiver<Command>) -> Result<(), String> {
    let (stack, mut inputs) = Stack::bind(cfg.stack.clone()).await?;
    let (tasks, mut task_rx) = mpsc::unbounded_channel::<Task>();
    let (media_tx, mut media_rx) = mpsc::channel::<(String, MediaEvent)>(256);
    let mut hub = Hub {
        cfg,
        stack,
        bus,
        calls: Vec::new(),
        by_dialog: HashMap::new(),
        quitting: None,
        tasks,
        media_tx,
        finishing: HashMap::new(),
        ringer: None,
        dialing: HashMap::new(),
        conference: Vec::new(),
        agent: agent::AgentStatus::default(),
        mwi_subscribed: false,
        lamps: Vec::new(),
    };
    hub.lamps = hub
        .cfg
        .blf_watch
        .iter()
        .map(|(number, name)| lamps::Watch {
            number: number.clone(),
            name: name.clone(),
            sub: None,
            lamp: super::blf::Lamp::Unknown,
            ringing: None,
        })
        .collect();
    hub.drain().await;
    hub.announce_status();
    if hub.stack.registrar().is_some() {
        let e = hub.cfg.stack.expires;
        hub.stack.start_registration(e).await;
    }
    // One timer for the loop's life, moved only when the earliest deadline moves: not a new
    // timer registered and dropped on every message.
    let timer = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        let next = [hub.stack.next_deadline(), hub.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        if next != armed {
            if let Some(t) = next {
                timer.as_mut().reset(t.into());
            }
            armed = next;
        }
        tokio::select! {
            // UDP is read here: the INVITE of a ring is parsed and answered in this task.
            d = inputs.datagrams.recv() => hub.stack.on_datagram(d).await,
            Some(inb) = inputs.inbound.recv() => hub.stack.on_inbound(inb).await,
            Some((proto, peer)) = inputs.closed.recv() => {
                let q = hub.quitting.is_some();
                hub.stack.on_connection_lost(proto, peer, q).await;
            }
            Some((br, why)) = inputs.failures.recv() => hub.stack.on_send_failed(&br, why),
            Some((id, ev)) = media_rx.recv() => hub.on_media_event(id, ev).await,
            Some(done) = task_rx.recv() => hub.on_task(done).await,
            cmd = commands.recv(), if hub.quitting.is_none() => match cmd {
                Some(Command::Quit) | None => hub.quit().await,
                Some(c) => hub.on_command(c).await,
            },
            () = &mut timer, if armed.is_some() => {
                // Set again on the next turn, even to the same deadline.
                armed = None;
                hub.stack.on_timers().await;
                hub.on_timers().await;
            }
        }
        hub.drain().await;
        hub.enter_after_call().await;
        hub.finishing.retain(|_, (_, task)| !task.is_finished());
        hub.update_ringer();
        if let Some(deadline) = hub.quitting {
            let unregistered =
                hub.stack.registration_state() != crate::sip::registration::RegState::Unregistering;
            let idle = hub.calls.is_empty() && hub.finishing.is_empty();
            if (unregistered && idle) || Instant::now() >= deadline {
                if hub.stack.registration_state() == crate::sip::registration::RegState::Unregistering {
                    hub.emit(PhoneEvent::Unregistered);
                }
                return Ok(());
            }
        }
    }
}

impl Hub {
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

    fn find(&self, id: &str) -> Option<usize> {
        self.calls.iter().position(|c| c.id == id)
    }

    fn find_dialog(&self, d: DialogId) -> Option<usize> {
        self.by_dialog.get(&d).and_then(|id| self.find(id))
    }

    /// Publishes an event of call `i`: now if the call was announced, else after its ring.
    fn publish(&mut self, i: usize, e: Event) {
        if self.calls[i].announced {
            self.bus.publish(e);
        } else {
            self.calls[i].held_events.push(e);
        }
    }

    /// Announces call `i` (its ring or dial, with its named parties), then what waited.
    fn announce(&mut self, i: usize) {
        if self.calls[i].announced {
            return;
        }
        // An outgoing call waits until its target is settled (see `settle`).
        self.calls[i].named = true;
        if !self.calls[i].settled {
            return;
        }
        let c = &mut self.calls[i];
        c.announced = true;
        let (p, incoming, id) = (c.params.clone(), c.incoming, c.id.clone());
        if incoming {
            self.emit(PhoneEvent::Incoming {
                call: id,
                tel: p.tel.clone(),
                telname: p.telname.clone(),
                called: p.called.clone(),
                calledname: p.calledname.clone(),
                anonymous: p.anonymous,
            });
            self.bus.call(CallEvent::ring(p));
        } else {
            self.bus.call(CallEvent::outgoing(p));
        }
        for e in std::mem::take(&mut self.calls[i].held_events) {
            self.bus.publish(e);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut next = [self.quitting, self.agent_deadline()].into_iter().flatten().min();
        for c in &self.calls {
            for t in [c.auto_answer_at, c.bye_at].into_iter().flatten() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        next
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|c| c.auto_answer_at.is_some_and(|t| t <= now))
            .map(|c| c.id.clone())
            .collect();
        for id in due {
            if let Some(i) = self.find(&id) {
                self.calls[i].auto_answer_at = None;
                self.answer(i).await;
            }
        }
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|c| c.bye_at.is_some_and(|t| t <= now))
            .map(|c| c.id.clone())
            .collect();
        for id in due {
            if let Some(i) = self.find(&id) {
                self.hangup(i).await;
            }
        }
        self.on_agent_timer().await;
    }

    /// Handles every event the stack produced.
    async fn drain(&mut self) {
        while let Some(ev) = self.stack.poll_event() {
            self.on_sip(ev).await;
        }
        self.stack.flush_trying().await;
    }

    async fn on_sip(&mut self, ev: SipEvent) {
        match ev {
            SipEvent::Ready { listen } => self.emit(PhoneEvent::Ready {
                listen: listen.to_string(),
                transport: self.stack.proto().name().to_ascii_lowercase(),
            }),
            SipEvent::Registered {
                aor,
                expires,
                server,
                contact,
                stun,
            } => {
                self.emit(PhoneEvent::Registered {
                    aor: aor.clone(),
                    expires,
                    server: stack::fmt_addr(server),
                    contact: stack::fmt_addr(contact),
                    stun: stun.map(stack::fmt_addr).unwrap_or_default(),
                });
                // The voicemail light, once registered (RFC 3842: the account's own AOR).
                if self.cfg.mwi && !self.mwi_subscribed {
                    self.mwi_subscribed = true;
                    self.stack.subscribe("message-summary", &aor, 3600).await;
                }
                self.watch_colleagues().await;
            }
            SipEvent::Notified { sub, event, body } => {
                if event == "dialog"
                    && let Some(sub) = sub
                {
                    self.on_lamp_notify(sub, &body);
                } else if event == "message-summary" {
                    match super::voicemail::parse(&body) {
                        Some(m) => self.emit(PhoneEvent::Voicemail {
                            waiting: m.waiting,
                            new: m.new,
                            old: m.old,
                        }),
                        None => self.warn("a voicemail notification without Messages-Waiting was ignored"),
                    }
                }
            }
            SipEvent::SubscriptionFailed { sub, event, why, .. } => {
                tracing::info!(%event, %why, "subscription failed");
                self.on_lamp_failed(sub);
            }
            SipEvent::RegistrationFailed { code, reason } => {
                self.emit(PhoneEvent::RegistrationFailed { code, reason })
            }
            SipEvent::Unregistered => self.emit(PhoneEvent::Unregistered),
            SipEvent::Warning(w) => self.warn(w),
            SipEvent::Error(e) => self.error(e),
            SipEvent::Incoming {
                dialog,
                call_id,
                request,
                offer,
                source,
            } => self.on_incoming(dialog, call_id, &request, offer, source).await,
            SipEvent::Early { dialog, code, sdp } => {
                self.settle(dialog);
                self.on_early(dialog, code, sdp).await
            }
            SipEvent::Confirmed { dialog, sdp } => {
                self.settle(dialog);
                self.on_confirmed(dialog, sdp).await
            }
            SipEvent::Redirected {
                dialog,
                code,
                targets,
            } => self.on_redirect(dialog, code, targets).await,
            SipEvent::Acked { dialog, sdp } => self.on_acked(dialog, sdp).await,
            SipEvent::Offer { dialog, sdp } => self.on_offer(dialog, sdp).await,
            SipEvent::OfferAnswered { dialog, sdp } => self.on_offer_answered(dialog, sdp).await,
            SipEvent::OfferRefused { dialog, code, reason } => self.on_offer_refused(dialog, code, &reason),
            SipEvent::IdentityChanged { dialog, request } => self.on_identity(dialog, &request),
            SipEvent::Info { dialog, body, .. } => {
                if let Some(i) = self.find_dialog(dialog)
                    && let Some(digit) = dtmf_from_info(&body)
                {
                    let id = self.calls[i].id.clone();
                    self.emit(PhoneEvent::Dtmf { call: id, digit });
                }
            }
            SipEvent::Notify {
                dialog,
                event,
                body,
                source,
            } => self.on_notify(dialog, &event, &body, source).await,
            SipEvent::ReferRefused { dialog, code, reason } => {
                if let Some(i) = self.find_dialog(dialog) {
                    self.transfer_failed(i, &format!("the far end refused it: {code} {reason}"));
                }
            }
            SipEvent::RefreshNeeded { dialog } => {
                // A session refresh by re-INVITE: the session in force, unchanged (same version).
                if let Some(i) = self.find_dialog(dialog)
                    && self.calls[i].neg.state() == Neg::Done
                    && let Some(offer) = self.local_offer(i)
                    && !self.stack.reoffer(dialog, offer, false).await
                {
                    self.calls[i].neg.rollback();
                }
            }
            SipEvent::Ended { dialog, end } => {
                if let Some(i) = self.find_dialog(dialog) {
                    let (reason, code, why) = end_reason(&end, self.calls[i].incoming);
                    if let Some(why) = &why {
                        self.warn(format!("call {}: {why}", self.calls[i].id));
                    }
                    self.end_call_why(i, reason, code, why);
                }
            }
        }
    }

    // ------------------------------------------------------------------------ incoming

    async fn on_incoming(
        &mut self,
        dialog: DialogId,
        call_id: String,
        request: &std::sync::Arc<Message>,
        offer: Option<String>,
        source: SocketAddr,
    ) {
        // The offer must be one we can answer (RFC 3264): else 488 with the reason (400 for
        // one that does not parse).
        let tls = self.stack.dialog_info(dialog).is_some_and(|d| d.tls);
        let Some(srtp) = self.srtp_for(tls) else {
            // Mandatory SRTP, and these keys would cross the network in clear.
            self.stack
                .reject(
                    dialog,
                    488,
                    "Not Acceptable Here (SRTP is required: call over TLS)",
                )
                .await;
            return;
        };
        let offer = match offer.as_deref().map(Sdp::parse) {
            None => None,
            Some(Ok(s)) => {
                if let Err(why) = sdp::select_audio(&s, self.stack.local().ip(), &self.cfg.codecs, srtp) {
                    let reason = format!("Not Acceptable Here ({})", stack::warning_text(&why.to_string()));
                    self.stack.reject(dialog, 488, &reason).await;
                    return;
                }
                Some(s)
            }
            Some(Err(e)) => {
                self.stack
                    .reject(dialog, 400, &format!("Bad SDP ({})", stack::warning_text(&e)))
                    .await;
                return;
            }
        };
        if request.get("Replaces").is_some() {
            // Not a new call: a new party for one we have (attended transfer, pickup).
            return self.on_replacing_invite(dialog, request, offer).await;
        }
        // A PBX asking for the call to be answered without the agent.
        let remote = answer_mode::requested(request);
        // Honoured when asked by an allowed host, and not over a call in progress (a PBX's
        // intercom call then rings as a waiting call).
        let in_call = self.calls.iter().any(|c| c.state == CallState::Confirmed);
        let allowed =
            self.cfg.remote_answer && self.cfg.remote_answer_from.contains(&source.ip()) && !in_call;
        if let Some(r) = &remote
            && r.require
            && !allowed
        {
            // RFC 5373 §7.2: an Auto;require we will not honour is refused.
            self.stack
                .reject(dialog, 403, "Forbidden (automatic answer not allowed)")
                .await;
            let params = identity::caller_identity(request);
            self.bus.call(CallEvent::refused(params, CallResult::Rejected));
            return;
        }
        let busy = self
            .calls
            .iter()
            .any(|c| !c.feature && (c.incoming || c.state != CallState::Dialing));
        if busy && !self.cfg.call_waiting {
            self.stack.reject(dialog, 486, "Busy Here").await;
            // The agent never saw it ring, but the customer called: the history keeps it.
            let params = identity::caller_identity(request);
            self.bus.call(CallEvent::refused(params, CallResult::Busy));
            return;
        }
        // The agent's status: not ready (or in after-call work) refuses, or rings silently.
        let silent = match self.agent_takes_calls() {
            Ok(rings) => !rings,
            Err(()) => {
                self.stack.reject(dialog, 486, "Busy Here").await;
                let params = identity::caller_identity(request);
                self.bus.call(CallEvent::refused(params, CallResult::Busy));
                return;
            }
        };
        if self.find(&call_id).is_some() {
            // The Call-ID names a call we have (another dialog of it): one call per Call-ID.
            self.stack.reject(dialog, 482, "Loop Detected").await;
            return;
        }
        self.stack.ring(dialog).await;
        let mut params = identity::caller_identity(request);
        // {SECURE} on ring: the answer will be SRTP (the offer has crypto we take).
        let secure = srtp != SrtpMode::Off
            && offer
                .as_ref()
                .and_then(|o| sdp::select_audio(o, self.stack.local().ip(), &self.cfg.codecs, srtp).ok())
                .and_then(|(i, _)| offer.as_ref().map(|o| !sdes::usable(&o.media[i]).is_empty()))
                .unwrap_or(false);
        params.extra.insert(SECURE.into(), secure_flag(secure));
        let mut call = Call::new(call_id.clone(), true, params.clone());
        call.dialog = Some(dialog);
        call.silent = silent;
        call.srtp = srtp;
        if let Some(o) = offer
            && let Err(e) = call.neg.receive_offer(o)
        {
            self.stack.reject(dialog, e.status(), "Not Acceptable Here").await;
            return;
        }
        let now = Instant::now();
        call.auto_answer_at = self.cfg.auto_answer.map(|d| now + d);
        if let Some(r) = remote.filter(|_| allowed) {
            let at = now + r.after;
            tracing::info!(header = r.header, after = ?r.after, "the PBX asks for an automatic answer");
            call.auto_answer_at = Some(call.auto_answer_at.map_or(at, |t| t.min(at)));
            call.remote_answer = true;
        }
        let at_once = call.auto_answer_at.is_some_and(|t| t <= now);
        self.by_dialog.insert(dialog, call_id.clone());
        self.calls.push(call);
        let ip = self.stack.local().ip();
        if at_once {
            // Answer now rather than on the next timer tick (tokio's timers count in ms); its
            // events wait for the ring's announcement below.
            if let Some(i) = self.find(&call_id) {
                let stun = self.stack.stun_server();
                if let Some(w) = self.calls[i].reserve_rtp(ip, stun).await {
                    self.warn(w);
                }
                self.calls[i].auto_answer_at = None;
                self.answer(i).await;
            }
            self.name_call(&call_id, params);
        } else {
            // The agent and the CTI engine hear of the ring first; its RTP ports, which
            // nothing needs before the answer, after.
            self.name_call(&call_id, params);
            if let Some(i) = self.find(&call_id) {
                let stun = self.stack.stun_server();
                if let Some(w) = self.calls[i].reserve_rtp(ip, stun).await {
                    self.warn(w);
                }
            }
        }
    }

    /// Names a call's parties and announces it: here when the phonebook is free (a lookup
    /// takes tens of microseconds; one beside the loop costs two thread wake-ups, ~250 µs
    /// measured before the popup and the CTI search: docs/decisions.md D6), else beside the
    /// loop (the phonebook is a database an import or an edit may hold), the call announced
    /// when the names come back. Without a phonebook: at once.
    fn name_call(&mut self, call_id: &str, mut params: CallParams) {
        let Some(pb) = self.cfg.phonebook.clone() else {
            if let Some(i) = self.find(call_id) {
                self.announce(i);
            }
            return;
        };
        if identity::try_name_parties(&pb, &mut params) {
            self.named(call_id, params);
            return;
        }
        let tx = self.tasks.clone();
        let call = call_id.to_owned();
        tokio::task::spawn_blocking(move || {
            identity::name_parties(&pb, &mut params);
            let _ = tx.send(Task::Named { call, params });
        });
    }

    /// The names of call `call_id`'s parties found: taken, and the call announced.
    fn named(&mut self, call_id: &str, params: CallParams) {
        if let Some(i) = self.find(call_id) {
            let c = &mut self.calls[i];
            // Keep what the call learned meanwhile ({DURATION}, …); take the names.
            c.params.telname = params.telname;
            c.params.calledname = params.calledname;
            self.announce(i);
        }
    }

    async fn on_task(&mut self, t: Task) {
        match t {
            Task::Named { call, params } => self.named(&call, params),
            Task::Resolved { call, dest } => match dest {
                Ok(dest) => self.send_invite(&call, dest).await,
                Err(e) => {
                    self.dialing.remove(&call);
                    if let Some(i) = self.find(&call) {
                        self.error(e);
                        self.end_call(i, EndReason::Failed, None);
                    }
                }
            },
            Task::Devices { call, devices } => self.on_devices(&call, devices).await,
        }
    }

    async fn answer(&mut self, i: usize) {
        let Some(offered) = self.send_answer(i).await else {
            return;
        };
        if self.calls[i].remote_answer {
            self.beep();
        }
        self.confirm(i);
        if !offered {
            self.start_media(i).await;
        }
    }

    /// Sends call `i`'s 200 OK: our answer to its offer, or our offer (`Some(true)`: the
    /// answer comes in the ACK). `None`: it could not be answered (the call ended).
    async fn send_answer(&mut self, i: usize) -> Option<bool> {
        let dialog = self.calls[i].dialog?;
        let params = self.local_params(i);
        let (body, offered) = match self.calls[i].neg.state() {
            Neg::RemoteOffer => match self.calls[i].neg.create_answer(&params) {
                Ok(a) => (a.to_text(), false),
                Err(e) => {
                    let id = self.calls[i].id.clone();
                    self.error(format!("call {id}: cannot answer its offer: {e}"));
                    self.stack.reject(dialog, e.status(), "Not Acceptable Here").await;
                    self.end_call(self.find(&id).unwrap_or(i), EndReason::Failed, Some(e.status()));
                    return None;
                }
            },
            // Late offer: the INVITE had no SDP; we offer in the 200, the answer comes in the ACK.
            _ => (self.local_offer(i)?, true),
        };
        self.stack.accept(dialog, body, offered).await;
        Some(offered)
    }

    /// Call `i` is answered (by us or the far end): its state, and the answer on the bus.
    fn confirm(&mut self, i: usize) {
        let srtp = self.calls[i].srtp_suite().map(|s| s.name().to_owned());
        let c = &mut self.calls[i];
        c.state = CallState::Confirmed;
        c.answered_at = Some(Instant::now());
        c.params.extra.insert(SECURE.into(), secure_flag(srtp.is_some()));
        let (id, params) = (c.id.clone(), c.params.clone());
        self.publish(i, Event::Phone(PhoneEvent::Answered { call: id, srtp }));
        self.publish(i, Event::Call(CallEvent::answer(params)));
    }

    /// SRTP for a call whose signalling is (`tls`) or is not TLS: `[media] srtp`, unless the
    /// keys would travel in clear (no TLS, and `srtp_over_udp` off): then optional SRTP is off
    /// and mandatory SRTP cannot be had (`None`).
    fn srtp_for(&self, tls: bool) -> Option<SrtpMode> {
        match self.cfg.srtp {
            _ if tls || self.cfg.srtp_over_udp => Some(self.cfg.srtp),
            SrtpMode::Mandatory => None,
            _ => Some(SrtpMode::Off),
        }
    }

    /// What our side puts in its SDP for call `i`.
    fn local_params(&self, i: usize) -> LocalParams {
        let c = &self.calls[i];
        // `[account] public_address` > the call's STUN mapping > the SIP socket's.
        let mapped = c
            .rtp_public
            .filter(|m| m.is_ipv4() == self.stack.media_ip().is_ipv4());
        let addr = match (self.stack.public_address(), mapped) {
            (Some(ip), _) => ip,
            (None, Some(m)) => m.ip(),
            (None, None) => self.stack.media_ip(),
        };
        let port = mapped.map_or(c.rtp_port, |m| m.port());
        // RTCP mapped elsewhere than RTP's port + 1: said with a=rtcp (RFC 3605).
        let rtcp = mapped
            .and(c.rtcp_public)
            .map(|r| r.port())
            .filter(|r| Some(*r) != port.checked_add(1));
        LocalParams {
            user: "ctiphone".into(),
            addr,
            port,
            rtcp,
            codecs: self.cfg.codecs.clone(),
            hold: self.calls[i].held,
            srtp: self.calls[i].srtp,
        }
    }

    /// Our offer for call `i` (outstanding until answered); `None` while another offer is.
    fn local_offer(&mut self, i: usize) -> Option<String> {
        let params = self.local_params(i);
        match self.calls[i].neg.create_offer(&params) {
            Ok(o) => Some(o.to_text()),
            Err(e) => {
                self.error(format!("call {}: {e}", self.calls[i].id));
                None
            }
        }
    }

    /// The answer to our outstanding offer: the session in force. `false`: not a usable
    /// answer (the offer is dropped; the session before it, if any, stays).
    fn take_answer(&mut self, i: usize, text: &str) -> bool {
        let c = &mut self.calls[i];
        match Sdp::parse(text) {
            Ok(a) => match c.neg.receive_answer(a) {
                Ok(()) => true,
                Err(e) => {
                    let id = c.id.clone();
                    self.error(format!("call {id}: the far end's answer is not usable: {e}"));
                    false
                }
            },
            Err(e) => {
                c.neg.rollback();
                let id = c.id.clone();
                self.error(format!("call {id}: the far end's answer does not parse: {e}"));
                false
            }
        }
    }

    // ------------------------------------------------------------------------ outgoing

    async fn on_early(&mut self, dialog: DialogId, code: u16, sdp: Option<String>) {
        let Some(i) = self.find_dialog(dialog) else { return };
        if self.calls[i].feature {
            return;
        }
        if (code == 180 || code == 183) && self.calls[i].state == CallState::Dialing {
            self.calls[i].state = CallState::Early;
            let id = self.calls[i].id.clone();
            self.publish(i, Event::Phone(PhoneEvent::Ringing { call: id }));
        }
        // Early media (a PBX's ringback or an IVR prompt): the answer in the 18x.
        if let Some(text) = sdp
            && self.calls[i].neg.state() == Neg::LocalOffer
            && self.take_answer(i, &text)
        {
            self.start_media(i).await;
        }
    }

    async fn on_confirmed(&mut self, dialog: DialogId, sdp: Option<String>) {
        let Some(i) = self.find_dialog(dialog) else { return };
        if self.calls[i].feature {
            // The PBX took the feature code: done.
            self.calls[i].state = CallState::Confirmed;
            return self.on_feature_answered(i).await;
        }
        let answered_sdp = sdp.is_some();
        if let Some(text) = sdp
            && self.calls[i].neg.state() == Neg::LocalOffer
        {
            self.take_answer(i, &text);
        }
        if self.calls[i].neg.active().is_none() {
            // No usable answer to our offer (none at all, or one we refused: no codec in
            // common, no SRTP when it is mandatory): there is no session to run, the call
            // fails (BYE) without ever being answered.
            if !answered_sdp {
                let id = self.calls[i].id.clone();
                self.error(format!("call {id}: the far end answered without SDP"));
            }
            self.end_with_bye(i, EndReason::Failed).await;
            return;
        }
        if self.calls[i].state != CallState::Confirmed {
            self.confirm(i);
        }
        self.start_media(i).await;
    }

    async fn on_acked(&mut self, dialog: DialogId, sdp: Option<String>) {
        let Some(i) = self.find_dialog(dialog) else { return };
        if self.calls[i].neg.state() != Neg::LocalOffer {
            return;
        }
        // We offered in our 2xx: the ACK carries the answer (RFC 3264 §2, late offer).
        match sdp {
            Some(text) if self.take_answer(i, &text) => self.start_media(i).await,
            _ => {
                let id = self.calls[i].id.clone();
                self.error(format!(
                    "call {id}: the ACK carried no usable answer to our offer"
                ));
                self.calls[i].neg.rollback();
                if self.calls[i].neg.active().is_none() {
                    self.end_with_bye(i, EndReason::Failed).await;
                }
            }
        }
    }

    /// Calls `to`; `caller` replaces our identity in From and adds its headers. The new
    /// call's id, unless `to` is not a target.
    async fn dial(&mut self, to: &str, caller: Option<CallerId>) -> Option<String> {
        self.dial_with(to, caller, false).await
    }

    /// [`Self::dial`]; `feature`: a PBX feature code, a call no one else hears of.
    async fn dial_with(&mut self, to: &str, caller: Option<CallerId>, feature: bool) -> Option<String> {
        let uri = match stack::target_uri(to, self.stack.domain()) {
            Ok(u) => u,
            Err(e) => {
                self.error(e);
                return None;
            }
        };
        let id = format!("{}@ctiphone", stack::random_token(20));
        let tel = Uri::parse(&uri)
            .ok()
            .and_then(|u| u.user)
            .unwrap_or_else(|| to.to_owned());
        let mut params = CallParams::outgoing(&id, &tel);
        params.called = tel.clone();
        params.extra.insert(SECURE.into(), secure_flag(false));
        let mut call = Call::new(id.clone(), false, params.clone());
        let tls = stack::wants_tls(&uri) || self.stack.proto() == crate::sip::transport::Proto::Tls;
        let Some(srtp) = self.srtp_for(tls) else {
            self.error(format!(
                "cannot dial `{to}`: [media] srtp is mandatory and the call's signalling is not TLS"
            ));
            return None;
        };
        call.srtp = srtp;
        if let Some(w) = call
            .reserve_rtp(self.stack.local().ip(), self.stack.stun_server())
            .await
        {
            self.warn(w);
        }
        call.feature = feature;
        call.announced = feature;
        self.calls.push(call);
        if !feature {
            self.emit(PhoneEvent::Outgoing {
                call: id.clone(),
                to: to.to_owned(),
            });
        }
        if let Some(i) = self.find(&id) {
            self.calls[i].targets.push(uri.clone());
            self.calls[i].caller = caller.clone();
        }
        self.dialing.insert(id.clone(), (uri.clone(), caller));
        if !feature {
            self.name_call(&id, params);
        }
        self.route_invite(&id, &uri, to).await;
        // The call may already have failed (an unroutable address).
        self.find(&id).map(|_| id)
    }

    /// Sends call `id`'s INVITE for `uri`: to the registrar (our proxy), else to the URI's
    /// host (resolved beside the loop). A URI that names no host ends the call.
    async fn route_invite(&mut self, id: &str, uri: &str, to: &str) {
        match self.stack.registrar() {
            Some(r) => self.send_invite(id, r).await,
            None => {
                let Some((host, port)) = stack::uri_host_port(uri) else {
                    self.dialing.remove(id);
                    self.error(format!("cannot dial `{to}`"));
                    if let Some(i) = self.find(id) {
                        self.end_call(i, EndReason::Failed, None);
                    }
                    return;
                };
                if let Some(ip) = stack::ip_literal(&host) {
                    self.send_invite(id, SocketAddr::new(ip, port)).await;
                } else {
                    // DNS beside the loop (RFC 3263: NAPTR/SRV unless the URI has a port).
                    let tx = self.tasks.clone();
                    let id = id.to_owned();
                    let resolver = self.cfg.resolver.clone();
                    let explicit = crate::sip::addr::Uri::parse(uri).ok().and_then(|u| u.port);
                    let proto = if stack::wants_tls(uri) {
                        crate::sip::transport::Proto::Tls
                    } else {
                        self.stack.proto()
                    };
                    tokio::spawn(async move {
                        let dest = resolver
                            .locate(&host, explicit, proto)
                            .await
                            .ok()
                            .and_then(|a| a.first().copied())
                            .ok_or_else(|| format!("cannot resolve `{host}`"));
                        let _ = tx.send(Task::Resolved { call: id, dest });
                    });
                }
            }
        }
    }

    /// The most redirects one call follows.
    const MAX_REDIRECTS: usize = 5;

    /// Where an outgoing call goes is known: it is announced (CTI's outgoing access, the
    /// history) with its final target.
    fn settle(&mut self, dialog: DialogId) {
        if let Some(i) = self.find_dialog(dialog)
            && !self.calls[i].settled
        {
            self.calls[i].settled = true;
            if self.calls[i].named {
                self.announce(i);
            }
        }
    }

    /// A 3xx to our INVITE (RFC 3261 §8.1.3.4): the call goes on with a new INVITE to the first
    /// target it has not tried, at most [`Self::MAX_REDIRECTS`] times; a target tried before
    /// is a loop and ends the call, as does running out of hops. The old dialog's end is then
    /// not the call's.
    async fn on_redirect(&mut self, dialog: DialogId, code: u16, targets: Vec<String>) {
        let Some(i) = self.find_dialog(dialog) else { return };
        let c = &self.calls[i];
        if c.incoming || c.state != CallState::Dialing || c.feature {
            return;
        }
        let id = c.id.clone();
        let Some(next) = targets.iter().find(|t| !c.targets.contains(t)).cloned() else {
            self.error(format!(
                "call {id}: redirected ({code}) back to a target already tried: a loop"
            ));
            return;
        };
        if c.targets.len() > Self::MAX_REDIRECTS {
            self.error(format!("call {id}: more than {} redirects", Self::MAX_REDIRECTS));
            return;
        }
        // The old dialog's end is not the call's; its offer is dropped, a new one goes out.
        self.by_dialog.remove(&dialog);
        let c = &mut self.calls[i];
        c.dialog = None;
        c.neg.rollback();
        c.targets.push(next.clone());
        let tel = Uri::parse(&next)
            .ok()
            .and_then(|u| u.user)
            .unwrap_or_else(|| next.clone());
        c.params.tel = tel.clone();
        c.params.called = tel.clone();
        c.params.telname.clear();
        let caller = c.caller.clone();
        tracing::info!(call = %id, %code, target = %next, "redirected");
        self.emit(PhoneEvent::Identity {
            call: id.clone(),
            tel,
            telname: String::new(),
        });
        self.dialing.insert(id.clone(), (next.clone(), caller));
        self.route_invite(&id, &next, &next).await;
    }

    async fn send_invite(&mut self, call_id: &str, dest: SocketAddr) {
        let Some((uri, caller)) = self.dialing.remove(call_id) else {
            return;
        };
        let Some(i) = self.find(call_id) else { return };
        let local = {
            let who = caller.clone().unwrap_or_default();
            let aor = format!(
                "sip:{}@{}",
                who.user.as_deref().unwrap_or(self.stack.user()),
                who.host.as_deref().unwrap_or(self.stack.domain())
            );
            let mut n = NameAddr::new(&aor);
            let display = who.display.unwrap_or_else(|| self.cfg.stack.display_name.clone());
            if !display.is_empty() {
                n.display = Some(display);
            }
            n
        };
        let Some(body) = self.local_offer(i) else { return };
        let headers = caller.map(|c| c.headers).unwrap_or_default();
        let dialog = self
            .stack
            .invite(call_id, &uri, dest, local, &headers, body)
            .await;
        self.calls[i].dialog = Some(dialog);
        self.by_dialog.insert(dialog, call_id.to_owned());
    }

    // ------------------------------------------------------------------------ re-offers

    async fn on_offer(&mut self, dialog: DialogId, offer: Option<String>) {
        let Some(i) = self.find_dialog(dialog) else {
            self.stack
                .refuse_offer(dialog, 481, "Call/Transaction Does Not Exist", None)
                .await;
            return;
        };
        // One offer at a time (RFC 3311 §5.2, RFC 3261 §14.2): ours unanswered → 491; theirs
        // (the INVITE's) not answered yet → 500.
        match self.calls[i].neg.state() {
            Neg::LocalOffer => {
                self.stack
                    .refuse_offer(dialog, 491, "Request Pending", None)
                    .await;
                return;
            }
            Neg::RemoteOffer => {
                self.stack
                    .refuse_offer(
                        dialog,
                        500,
                        "Server Internal Error",
                        Some("the first offer is not answered yet"),
                    )
                    .await;
                return;
            }
            Neg::Idle | Neg::Done => {}
        }
        match offer {
            Some(text) => {
                let parsed = match Sdp::parse(&text) {
                    Ok(s) => s,
                    Err(e) => {
                        self.stack
                            .refuse_offer(dialog, 488, "Not Acceptable Here", Some(&format!("bad SDP: {e}")))
                            .await;
                        return;
                    }
                };
                let params = self.local_params(i);
                let neg = &mut self.calls[i].neg;
                // A refused re-offer leaves the session in force running (RFC 3264 §8).
                match neg
                    .receive_offer(parsed)
                    .and_then(|()| neg.create_answer(&params))
                {
                    Ok(answer) => {
                        self.stack.answer_offer(dialog, answer.to_text(), false).await;
                        self.start_media(i).await;
                    }
                    Err(e) => {
                        neg.rollback();
                        let reason = if e.status() == 491 {
                            "Request Pending"
                        } else {
                            "Not Acceptable Here"
                        };
                        self.stack
                            .refuse_offer(dialog, e.status(), reason, Some(&e.to_string()))
                            .await;
                    }
                }
            }
            None => {
                // A re-INVITE without SDP: we offer the session in force; the answer comes in
                // the ACK.
                if let Some(body) = self.local_offer(i) {
                    self.stack.answer_offer(dialog, body, true).await;
                } else {
                    self.stack
                        .refuse_offer(dialog, 491, "Request Pending", None)
                        .await;
                }
            }
        }
    }

    async fn on_offer_answered(&mut self, dialog: DialogId, sdp: Option<String>) {
        let Some(i) = self.find_dialog(dialog) else { return };
        match sdp {
            Some(text) if self.calls[i].neg.state() == Neg::LocalOffer => {
                self.take_answer(i, &text);
            }
            // A refresh answered without SDP: the session in force goes on.
            _ => {
                self.calls[i].neg.rollback();
            }
        }
        let c = &mut self.calls[i];
        if let Some(hold) = c.pending_hold.take() {
            let id = c.id.clone();
            self.publish(
                i,
                Event::Phone(if hold {
                    PhoneEvent::Held { call: id }
                } else {
                    PhoneEvent::Resumed { call: id }
                }),
            );
        }
        self.start_media(i).await;
    }

    fn on_offer_refused(&mut self, dialog: DialogId, code: u16, reason: &str) {
        let Some(i) = self.find_dialog(dialog) else { return };
        // A refused re-offer leaves the call as it was (RFC 3261 §14.1, RFC 3264 §8).
        let c = &mut self.calls[i];
        c.neg.rollback();
        if let Some(hold) = c.pending_hold.take() {
            c.held = !hold;
        }
        self.error(format!("the far end refused the change: {code} {reason}"));
    }

    fn on_identity(&mut self, dialog: DialogId, request: &Message) {
        let Some(i) = self.find_dialog(dialog) else { return };
        let Some((tel, telname, anonymous)) = identity::updated_party(request) else {
            return;
        };
        let c = &mut self.calls[i];
        if c.params.tel == tel && c.params.telname == telname {
            return;
        }
        c.params.tel = tel.clone();
        c.params.telname = telname.clone();
        c.params.anonymous = anonymous;
        let id = c.id.clone();
        let params = c.params.clone();
        self.publish(
            i,
            Event::Phone(PhoneEvent::Identity {
                call: id,
                tel,
                telname,
            }),
        );
        self.publish(i, Event::Call(CallEvent::identity(params)));
    }

    async fn on_notify(&mut self, dialog: DialogId, event: &str, body: &str, source: SocketAddr) {
        let Some(i) = self.find_dialog(dialog) else { return };
        let package = event.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if package == "talk" {
            // The PBX answers a call ringing here for the agent (the "talk" event).
            let allowed = self.cfg.remote_answer && self.cfg.remote_answer_from.contains(&source.ip());
            if !self.calls[i].is_ringing_here() {
                return;
            }
            if allowed {
                self.calls[i].remote_answer = true;
                self.calls[i].auto_answer_at = None;
                self.answer_holding_others(i).await;
            } else {
                self.warn(format!(
                    "call {}: a request to answer it (NOTIFY talk) from {} was not honoured",
                    self.calls[i].id,
                    source.ip()
                ));
            }
            return;
        }
        // Transfer progress (RFC 3515).
        if self.calls[i].transfer_to.is_some() {
            self.on_transfer_progress(i, body).await;
        }
    }
}

/// The end reason, SIP code and (for a failure) a message for a dialog's end.
fn end_reason(end: &DialogEnd, incoming: bool) -> (EndReason, Option<u16>, Option<String>) {
    match end {
        DialogEnd::RemoteBye => (EndReason::RemoteHangup, None, None),
        DialogEnd::Cancelled => (EndReason::Cancelled, Some(487), None),
        DialogEnd::Refused { code, reason } => {
            let r = match code {
                486 | 600 => EndReason::Busy,
                603 => EndReason::Rejected,
                408 => EndReason::Timeout,
                487 => EndReason::Cancelled,
                _ => EndReason::Failed,
            };
            tracing::info!(code, %reason, "outgoing call failed");
            (r, Some(*code), None)
        }
        DialogEnd::Timeout if !incoming => (EndReason::Timeout, Some(408), None),
        DialogEnd::Timeout => (
            EndReason::Failed,
            Some(408),
            Some("no answer to a request".into()),
        ),
        DialogEnd::Unreachable(why) => (EndReason::Failed, Some(503), Some(why.clone())),
        DialogEnd::NoAck => (
            EndReason::Failed,
            None,
            Some("no ACK for our 200 OK: hung up".into()),
        ),
        DialogEnd::NoPrack => (
            EndReason::Failed,
            Some(504),
            Some("no PRACK for our reliable 180: the call was refused".into()),
        ),
        DialogEnd::SessionExpired => (
            EndReason::Failed,
            None,
            Some("the session timer expired without a refresh: hung up".into()),
        ),
        DialogEnd::Gone => (
            EndReason::Failed,
            Some(481),
            Some("the far end no longer knows the call".into()),
        ),
    }
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

/// {SECURE}: the call's audio is encrypted (SRTP), "1" or "0".
const SECURE: &str = "SECURE";

fn secure_flag(secure: bool) -> String {
    if secure { "1" } else { "0" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_info_bodies() {
        assert_eq!(
            dtmf_from_info("Signal=5\r\nDuration=160\r\n").as_deref(),
            Some("5")
        );
        assert_eq!(dtmf_from_info("signal= #\n").as_deref(), Some("#"));
        assert_eq!(dtmf_from_info("7").as_deref(), Some("7"));
        assert_eq!(dtmf_from_info("Signal=55").as_deref(), None);
        assert_eq!(dtmf_from_info("Signal=x").as_deref(), None);
    }

    #[test]
    fn dialog_ends_map_to_call_ends() {
        assert_eq!(end_reason(&DialogEnd::NoAck, true).0, EndReason::Failed);
        assert_eq!(
            end_reason(
                &DialogEnd::Refused {
                    code: 486,
                    reason: String::new()
                },
                false
            )
            .0,
            EndReason::Busy
        );
        assert_eq!(end_reason(&DialogEnd::Cancelled, true).0, EndReason::Cancelled);
        assert_eq!(end_reason(&DialogEnd::Timeout, false).0, EndReason::Timeout);
    }
}
