//! What a front end needs to draw the phone at once when it attaches to a running core: the
//! registration, the live calls with their CRM data and the popup, the agent's status, the
//! lamps and the voicemail light. [`Live`] keeps it up to date from the bus events, in the
//! order they were published; [`Live::snapshot`] is the protocol's first line to a front end.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{AgentState, CtiEvent, Event, PhoneEvent};

/// The registration as last reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Registration {
    /// Nothing reported yet (starting, or no registrar: `listen` says where calls come in).
    #[default]
    None,
    Registered {
        aor: String,
        expires: u32,
        /// What STUN learned for the SIP socket ("" without it).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        stun: String,
    },
    Failed {
        code: Option<u16>,
        reason: String,
    },
    Unregistered,
}

/// What the CRM said about a call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CrmView {
    pub searching: bool,
    /// The search's captured values (secrets masked).
    pub vars: BTreeMap<String, String>,
    pub error: Option<String>,
    /// A browser access with no graphical session: the link offered instead.
    pub link: Option<String>,
}

/// A call in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveCall {
    pub call: String,
    pub incoming: bool,
    /// `ringing` (incoming, not answered), `calling`, `ringback`, `active` or `held`.
    pub state: String,
    pub tel: String,
    pub telname: String,
    pub called: String,
    pub calledname: String,
    pub anonymous: bool,
    /// Seconds since it rang or was dialled.
    pub age_s: f64,
    /// Seconds since it was answered.
    pub answered_s: Option<f64>,
    pub crm: CrmView,
    /// A consult call: the customer's call it consults for.
    pub consult_for: Option<String>,
    pub conference: bool,
    /// The last quality report.
    pub quality: Option<QualityView>,
    #[serde(default)]
    pub muted: bool,
    #[serde(default)]
    pub recording: bool,
    /// The SRTP suite protecting its audio, `None` for plain RTP.
    #[serde(default)]
    pub srtp: Option<String>,
}

/// A call's last `quality` report, as the front ends show it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityView {
    pub loss_percent: f64,
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
    #[serde(default)]
    pub lost: u64,
    #[serde(default)]
    pub late: u64,
    #[serde(default)]
    pub concealed_s: f64,
    #[serde(default)]
    pub buffer_ms: u32,
    /// E-model estimate; 0 when the report carried none.
    #[serde(default)]
    pub mos: f64,
}

impl QualityView {
    /// The figures of a `quality` event (`None` for any other event).
    pub fn of(ev: &PhoneEvent) -> Option<QualityView> {
        match ev {
            PhoneEvent::Quality {
                loss_percent,
                jitter_ms,
                rtt_ms,
                lost,
                late,
                concealed_s,
                buffer_ms,
                mos,
                ..
            } => Some(QualityView {
                loss_percent: *loss_percent,
                jitter_ms: *jitter_ms,
                rtt_ms: *rtt_ms,
                lost: *lost,
                late: *late,
                concealed_s: *concealed_s,
                buffer_ms: *buffer_ms,
                mos: *mos,
            }),
            _ => None,
        }
    }
}

impl LiveCall {
    /// A call just announced: nothing known of it yet but who and which way.
    fn new(call: &str, incoming: bool, state: &str, tel: &str, called: &str) -> LiveCall {
        LiveCall {
            call: call.to_owned(),
            incoming,
            state: state.to_owned(),
            tel: tel.to_owned(),
            telname: String::new(),
            called: called.to_owned(),
            calledname: String::new(),
            anonymous: false,
            age_s: 0.0,
            answered_s: None,
            crm: CrmView::default(),
            consult_for: None,
            conference: false,
            quality: None,
            muted: false,
            recording: false,
            srtp: None,
        }
    }
}

/// The popup: the call it is for, and how long it has shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopupView {
    pub call: String,
    pub age_s: f64,
}

/// The agent's status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    pub state: AgentState,
    pub reason: String,
    pub wrapup: String,
    /// Local time, RFC 3339.
    pub since: String,
    /// Seconds in this state.
    pub for_s: f64,
}

/// A watched colleague's lamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lamp {
    pub number: String,
    pub name: String,
    pub state: String,
}

/// The voicemail light.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoicemailView {
    pub waiting: bool,
    pub new: u32,
    pub old: u32,
}

/// Everything a front end draws from, at one point of the event stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The core's process.
    pub pid: u32,
    pub version: String,
    /// Where SIP listens (once bound).
    pub listen: String,
    pub registration: Registration,
    pub calls: Vec<LiveCall>,
    pub popup: Option<PopupView>,
    pub agent: Option<AgentView>,
    pub blf: Vec<Lamp>,
    pub voicemail: Option<VoicemailView>,
    /// The central log's state (`None`: not configured, or nothing said yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub central: Option<CentralView>,
    /// The latest finished calls of the history, newest first (as `history list --json`).
    #[serde(default)]
    pub history: Vec<serde_json::Value>,
}

/// The central log: changes waiting for PostgreSQL and why ("" when it takes them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CentralView {
    pub backlog: u64,
    #[serde(default)]
    pub error: String,
}

struct Call {
    view: LiveCall,
    started: Instant,
    answered: Option<Instant>,
}

/// The live state, kept from the bus events.
#[derive(Default)]
pub struct Live {
    listen: String,
    registration: Registration,
    calls: Vec<Call>,
    popup: Option<(String, Instant)>,
    agent: Option<(AgentView, Instant)>,
    blf: Vec<Lamp>,
    voicemail: Option<VoicemailView>,
    central: Option<CentralView>,
}

impl Live {
    fn call(&mut self, id: &str) -> Option<&mut Call> {
        self.calls.iter_mut().find(|c| c.view.call == id)
    }

    fn add(&mut self, view: LiveCall) {
        // A call announced twice stays one call.
        if self.call(&view.call).is_none() {
            self.calls.push(Call {
                view,
                started: Instant::now(),
                answered: None,
            });
        }
    }

    /// Applies one bus event.
    pub fn apply(&mut self, ev: &Event) {
        match ev {
            Event::Phone(p) => self.phone(p),
            Event::Cti(c) => self.cti(c),
            Event::Call(_) => {}
        }
    }

    fn phone(&mut self, p: &PhoneEvent) {
        let set_state = |live: &mut Live, call: &str, state: &str| {
            if let Some(c) = live.call(call) {
                c.view.state = state.to_owned();
            }
        };
        match p {
            PhoneEvent::Ready { listen, .. } => self.listen = listen.clone(),
            PhoneEvent::Registered {
                aor, expires, stun, ..
            } => {
                self.registration = Registration::Registered {
                    aor: aor.clone(),
                    expires: *expires,
                    stun: stun.clone(),
                }
            }
            PhoneEvent::RegistrationFailed { code, reason } => {
                self.registration = Registration::Failed {
                    code: *code,
                    reason: reason.clone(),
                }
            }
            PhoneEvent::Unregistered => self.registration = Registration::Unregistered,
            PhoneEvent::Incoming {
                call,
                tel,
                telname,
                called,
                calledname,
                anonymous,
            } => {
                self.add(LiveCall {
                    telname: telname.clone(),
                    calledname: calledname.clone(),
                    anonymous: *anonymous,
                    ..LiveCall::new(call, true, "ringing", tel, called)
                });
                self.popup = Some((call.clone(), Instant::now()));
            }
            PhoneEvent::Outgoing { call, to } => self.add(LiveCall::new(call, false, "calling", to, to)),
            PhoneEvent::Ringing { call } => set_state(self, call, "ringback"),
            PhoneEvent::Answered { call, srtp } => {
                if let Some(c) = self.call(call) {
                    c.view.state = "active".into();
                    c.view.srtp = srtp.clone();
                    c.answered.get_or_insert_with(Instant::now);
                }
            }
            PhoneEvent::Held { call } => set_state(self, call, "held"),
            PhoneEvent::Muted { call, muted } => {
                if let Some(c) = self.call(call) {
                    c.view.muted = *muted;
                }
            }
            PhoneEvent::Recording { call, on } => {
                if let Some(c) = self.call(call) {
                    c.view.recording = *on;
                }
            }
            PhoneEvent::Resumed { call } => set_state(self, call, "active"),
            PhoneEvent::Identity { call, tel, telname } => {
                if let Some(c) = self.call(call) {
                    c.view.tel = tel.clone();
                    c.view.telname = telname.clone();
                }
            }
            PhoneEvent::Replaced { call, tel, telname } => {
                if let Some(c) = self.call(call) {
                    c.view.tel = tel.clone();
                    c.view.telname = telname.clone();
                    c.view.crm = CrmView::default();
                    c.view.state = "active".into();
                }
                self.popup = Some((call.clone(), Instant::now()));
            }
            PhoneEvent::Consult { call, consult } => {
                if let Some(c) = self.call(consult) {
                    c.view.consult_for = Some(call.clone());
                }
            }
            PhoneEvent::Conference { calls } => {
                for c in &mut self.calls {
                    c.view.conference = calls.contains(&c.view.call);
                }
            }
            PhoneEvent::Ended { call, .. } => {
                self.calls.retain(|c| c.view.call != *call);
                if self.popup.as_ref().is_some_and(|(p, _)| p == call) {
                    self.popup = None;
                }
            }
            PhoneEvent::Quality { call, srtp, .. } => {
                let q = QualityView::of(p);
                if let Some(c) = self.call(call) {
                    c.view.quality = q;
                    c.view.srtp = srtp.clone();
                }
            }
            PhoneEvent::Status {
                state,
                reason,
                wrapup,
                since,
            } => {
                self.agent = Some((
                    AgentView {
                        state: *state,
                        reason: reason.clone(),
                        wrapup: wrapup.clone(),
                        since: since.clone(),
                        for_s: 0.0,
                    },
                    Instant::now(),
                ))
            }
            PhoneEvent::Blf { number, name, state } => {
                let lamp = Lamp {
                    number: number.clone(),
                    name: name.clone(),
                    state: state.clone(),
                };
                match self.blf.iter_mut().find(|l| l.number == *number) {
                    Some(l) => *l = lamp,
                    None => self.blf.push(lamp),
                }
            }
            PhoneEvent::Voicemail { waiting, new, old } => {
                self.voicemail = Some(VoicemailView {
                    waiting: *waiting,
                    new: *new,
                    old: *old,
                })
            }
            PhoneEvent::Central { backlog, error } => {
                self.central = Some(CentralView {
                    backlog: *backlog,
                    error: error.clone(),
                });
            }
            PhoneEvent::Transferred { .. }
            | PhoneEvent::Dtmf { .. }
            | PhoneEvent::Recorded { .. }
            | PhoneEvent::Warning { .. }
            | PhoneEvent::Error { .. } => {}
        }
    }

    fn cti(&mut self, c: &CtiEvent) {
        match c {
            CtiEvent::Searching { call_id } => {
                if let Some(c) = self.call(call_id) {
                    c.view.crm.searching = true;
                }
            }
            CtiEvent::SearchResult { call_id, vars } => {
                if let Some(c) = self.call(call_id) {
                    c.view.crm.searching = false;
                    c.view.crm.vars = vars.clone();
                    c.view.crm.error = None;
                }
            }
            CtiEvent::SearchFailed { call_id, error } => {
                if let Some(c) = self.call(call_id) {
                    c.view.crm.searching = false;
                    c.view.crm.error = Some(error.clone());
                }
            }
            CtiEvent::Action { call_id, report, .. } => {
                if let Some(link) = &report.link
                    && let Some(c) = self.call(call_id)
                {
                    c.view.crm.link = Some(link.clone());
                }
            }
            CtiEvent::Skipped { .. } => {}
        }
    }

    /// The state now, with the calls' and the status's ages.
    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let secs = |t: Instant| now.saturating_duration_since(t).as_secs_f64();
        Snapshot {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            listen: self.listen.clone(),
            registration: self.registration.clone(),
            calls: self
                .calls
                .iter()
                .map(|c| LiveCall {
                    age_s: secs(c.started),
                    answered_s: c.answered.map(secs),
                    ..c.view.clone()
                })
                .collect(),
            popup: self.popup.as_ref().map(|(call, t)| PopupView {
                call: call.clone(),
                age_s: secs(*t),
            }),
            agent: self.agent.as_ref().map(|(a, t)| AgentView {
                for_s: secs(*t),
                ..a.clone()
            }),
            blf: self.blf.clone(),
            voicemail: self.voicemail,
            central: self.central.clone(),
            history: Vec::new(),
        }
    }

    /// How many calls are live.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::EndReason;

    fn incoming(call: &str) -> Event {
        Event::Phone(PhoneEvent::Incoming {
            call: call.into(),
            tel: "0312345678".into(),
            telname: String::new(),
            called: "1001".into(),
            calledname: String::new(),
            anonymous: false,
        })
    }

    #[test]
    fn a_call_is_followed_from_ring_to_end() {
        let mut live = Live::default();
        live.apply(&Event::Phone(PhoneEvent::Registered {
            aor: "sip:1001@pbx".into(),
            expires: 300,
            server: "192.0.2.1:5060".into(),
            contact: "192.0.2.9:5060".into(),
            stun: String::new(),
        }));
        live.apply(&incoming("c1"));
        live.apply(&incoming("c1"));
        live.apply(&Event::Cti(CtiEvent::Searching { call_id: "c1".into() }));
        let s = live.snapshot();
        assert_eq!(s.calls.len(), 1);
        assert_eq!(s.calls[0].state, "ringing");
        assert!(s.calls[0].crm.searching);
        assert_eq!(s.popup.as_ref().map(|p| p.call.as_str()), Some("c1"));
        live.apply(&Event::Cti(CtiEvent::SearchResult {
            call_id: "c1".into(),
            vars: BTreeMap::from([("NAME".to_owned(), "山田".to_owned())]),
        }));
        live.apply(&Event::Phone(PhoneEvent::Answered {
            call: "c1".into(),
            srtp: None,
        }));
        live.apply(&Event::Phone(PhoneEvent::Held { call: "c1".into() }));
        live.apply(&Event::Phone(PhoneEvent::Muted {
            call: "c1".into(),
            muted: true,
        }));
        live.apply(&Event::Phone(PhoneEvent::Recording {
            call: "c1".into(),
            on: true,
        }));
        let s = live.snapshot();
        let c = &s.calls[0];
        assert_eq!((c.state.as_str(), c.crm.searching), ("held", false));
        assert!(c.muted && c.recording);
        assert_eq!(c.crm.vars.get("NAME").map(String::as_str), Some("山田"));
        assert!(c.answered_s.is_some_and(|a| a <= c.age_s));
        assert_eq!(
            s.registration,
            Registration::Registered {
                aor: "sip:1001@pbx".into(),
                expires: 300,
                stun: String::new(),
            }
        );
        live.apply(&Event::Phone(PhoneEvent::Ended {
            call: "c1".into(),
            reason: EndReason::LocalHangup,
            code: None,
            duration_s: 1.0,
            result: None,
            detail: None,
        }));
        let s = live.snapshot();
        assert!(s.calls.is_empty() && s.popup.is_none());
        assert_eq!(live.calls(), 0);
    }

    #[test]
    fn the_snapshot_reads_back_as_it_was_written() {
        let mut live = Live::default();
        live.apply(&incoming("c2"));
        live.apply(&Event::Phone(PhoneEvent::Status {
            state: AgentState::NotReady,
            reason: "Lunch".into(),
            wrapup: String::new(),
            since: "2026-12-04T12:00:00+09:00".into(),
        }));
        live.apply(&Event::Phone(PhoneEvent::Blf {
            number: "1003".into(),
            name: "Sato".into(),
            state: "busy".into(),
        }));
        live.apply(&Event::Phone(PhoneEvent::Voicemail {
            waiting: true,
            new: 2,
            old: 1,
        }));
        let s = live.snapshot();
        let back: Snapshot = serde_json::from_str(&serde_json::to_string(&s).expect("json")).expect("read");
        assert_eq!(back, s);
        assert_eq!(back.agent.map(|a| a.reason), Some("Lunch".into()));
        assert_eq!(back.blf.len(), 1);
    }
}
