//! The terminal UI's state: calls, the incoming-call popup, the session's call list, the log,
//! the registration line, and what each key does. It turns bus events into state and keys into
//! phone commands; it draws nothing (see `view`) and never writes to the terminal.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use crossterm::event::{KeyCode, KeyEvent};

use crate::app::snapshot::QualityView;
use crate::app::{AgentState, CallResult, Command, CtiEvent, Direction, Event, PhoneEvent};
use crate::config::{Config, PopupSize};

use super::contacts::{self, Contacts};
use super::keys::{Action, KeyMap, LineKey, edit_line};
use super::text::clean;

/// A call in progress.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRow {
    pub id: String,
    pub incoming: bool,
    pub state: RowState,
    pub tel: String,
    pub telname: String,
    pub called: String,
    pub anonymous: bool,
    pub started: Instant,
    pub answered: Option<Instant>,
    /// The last quality report: its estimated MOS in the row ([`CallRow::quality_cell`]),
    /// all its figures under the selected call.
    pub quality: Option<QualityView>,
    pub crm: Crm,
    pub recording: bool,
    pub muted: bool,
    /// A consult call: the customer's call it consults for.
    pub consult_for: Option<String>,
    /// In the local conference.
    pub conference: bool,
    /// The SRTP suite protecting its audio (a lock in the list and the popup).
    pub srtp: Option<String>,
}

impl CallRow {
    /// A call just announced: `tel`, `telname` and `called` cleaned of control characters,
    /// nothing known yet about its answer, quality, CRM data, recording or conference.
    pub fn new(id: &str, incoming: bool, state: RowState, tel: &str, telname: &str, called: &str) -> CallRow {
        CallRow {
            id: id.to_owned(),
            incoming,
            state,
            tel: clean(tel),
            telname: clean(telname),
            called: clean(called),
            anonymous: false,
            started: Instant::now(),
            answered: None,
            quality: None,
            crm: Crm::default(),
            recording: false,
            muted: false,
            consult_for: None,
            conference: false,
            srtp: None,
        }
    }

    /// The call list's quality cell: the estimated MOS, or loss and jitter from a report
    /// without one; empty before the first report.
    pub fn quality_cell(&self) -> String {
        match &self.quality {
            None => String::new(),
            Some(q) if q.mos > 0.0 => format!("MOS {:.1}", q.mos),
            Some(q) => format!("{:.0}% {:.0}ms", q.loss_percent, q.jitter_ms),
        }
    }
}

/// What the CRM said about a call (POP-6).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Crm {
    pub searching: bool,
    pub company: String,
    pub name: String,
    pub ext_id: String,
    pub error: Option<String>,
    /// A browser access with no graphical session: the link to show (OSC 8) and copy.
    pub link: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowState {
    Ringing,
    Calling,
    Ringback,
    Active,
    Held,
}

/// A finished call, in this session's call list.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRow {
    pub id: String,
    pub date: DateTime<Local>,
    pub incoming: bool,
    pub result: CallResult,
    pub tel: String,
    /// The number that was called (offered as a target number, TGT-5).
    pub called: String,
    pub name: String,
    pub company: String,
    pub duration_s: f64,
    pub recording: Option<String>,
}

/// The incoming-call popup.
#[derive(Clone, Debug, PartialEq)]
pub struct Popup {
    pub call: String,
    pub shown: Instant,
}

/// What the screen shows on top of the call list.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    Normal,
    /// Typing a number or URI to dial (or to transfer to, or to consult).
    Dial {
        input: String,
        purpose: DialPurpose,
    },
    /// Typing a history filter or a date to jump to.
    Prompt {
        kind: PromptKind,
        input: String,
    },
    /// Picking a not-ready reason or a wrap-up code by its number.
    Choose(ChoiceKind),
    /// The colleagues' lamps, one selected.
    Blf {
        selected: usize,
    },
    /// The contacts pane.
    Contacts,
    Help,
    Settings,
    ConfirmQuit,
    /// Stopping the daemon (and its calls), asked first.
    ConfirmStop,
}

/// What [`Mode::Choose`] picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChoiceKind {
    NotReadyReason,
    WrapupCode,
}

/// What a typed number is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialPurpose {
    Call,
    /// Blind transfer of the current call.
    Transfer,
    /// Attended transfer, step 1: the colleague to consult.
    Consult,
}

/// What a [`Mode::Prompt`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptKind {
    Filter,
    Date,
}

/// The results a history filter cycles through (`None`: all), in [`CallResult::ALL`]'s order.
pub fn results() -> impl Iterator<Item = Option<CallResult>> {
    std::iter::once(None).chain(CallResult::ALL.into_iter().map(Some))
}

/// The call list's filter (HIS-2): text, result, and the date it starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    pub text: String,
    pub result: Option<CallResult>,
    /// `YYYY-MM-DD`: calls of that day and before.
    pub until: Option<String>,
}

impl HistoryFilter {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.result.is_none() && self.until.is_none()
    }

    /// The database query for it.
    pub fn query(&self) -> crate::history::Query {
        crate::history::Query {
            text: self.text.clone(),
            result: self.result,
            until: self.until.clone(),
            limit: HISTORY_ROWS,
            ..Default::default()
        }
    }

    /// Does a call that just ended belong in the filtered list?
    fn admits(&self, h: &HistoryRow) -> bool {
        let text = self.text.to_lowercase();
        self.until.is_none()
            && self.result.is_none_or(|r| r == h.result)
            && (text.is_empty()
                || [&h.tel, &h.called, &h.name, &h.company]
                    .iter()
                    .any(|f| f.to_lowercase().contains(&text)))
    }
}

/// Registration as shown in the status bar.
#[derive(Clone, Debug, PartialEq)]
pub enum Reg {
    Starting,
    Registered(String),
    Failed(String),
    Unregistered,
    Direct(String),
}

/// Something the main loop must do after a key or an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Command(Command),
    /// Copy to the agent's clipboard (OSC 52).
    Copy(String),
    /// Ring the terminal bell and raise a desktop notification (OSC 9 / 777).
    Notify(String),
    OpenSettings,
    /// Read the call list from the history database with this query.
    LoadHistory(crate::history::Query),
    /// Run the click access again for this past call (HIS-2).
    Reclick(String),
    /// Open this recording, or copy its path where nothing can open it.
    OpenRecording(String),
    /// Search or change the phonebook.
    Contacts(contacts::Op),
    /// Stop the phone (and leave the screen).
    Quit,
    /// Leave the screen; the daemon and its calls go on.
    Detach,
}

/// Log levels of the log pane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

const LOG_LINES: usize = 200;
const HISTORY_ROWS: usize = 500;

/// The UI's state.
#[derive(Debug)]
pub struct App {
    pub account: String,
    pub reg: Reg,
    pub calls: Vec<CallRow>,
    pub history: Vec<HistoryRow>,
    pub popup: Option<Popup>,
    pub mode: Mode,
    /// Selected row of the combined list (calls first, then history).
    pub selected: usize,
    pub dnd: bool,
    pub show_log: bool,
    pub log: VecDeque<(Level, String)>,
    pub popup_size: PopupSize,
    pub popup_buttons: bool,
    pub popup_seconds: u32,
    pub copy_number: bool,
    pub anonymous_name: String,
    pub keys: KeyMap,
    /// The call list's filter.
    pub filter: HistoryFilter,
    /// The contacts pane.
    pub contacts: Contacts,
    /// Something changed since the last frame.
    pub dirty: bool,
    /// The agent's status as the phone last reported it (none until it does).
    pub agent: Option<AgentView>,
    /// The watched colleagues' lamps (`[blf] watch`), in the panel's order.
    pub blf: Vec<BlfRow>,
    /// The voicemail light: new messages (`None`: never reported).
    pub voicemail: Option<u32>,
    /// The central log (issue 18): changes waiting for PostgreSQL and why (`None`: not
    /// configured, or all delivered).
    pub central: Option<(u64, String)>,
    /// `[account] voicemail`: the number the voicemail key dials.
    pub voicemail_number: String,
    /// `[agent]` not-ready reasons and wrap-up codes, offered by number.
    pub not_ready_reasons: Vec<String>,
    pub wrapup_codes: Vec<String>,
    /// Attached to the daemon: `q` detaches, `Q` stops it.
    pub attached: bool,
}

/// A watched colleague in the lamp panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlfRow {
    pub number: String,
    pub name: String,
    /// `idle`, `ringing`, `busy` or `unknown`.
    pub state: String,
}

/// The agent's status for the status bar.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentView {
    pub state: AgentState,
    pub reason: String,
    pub since: Instant,
}

impl App {
    pub fn new(config: &Config, keys: KeyMap) -> Self {
        let account = if config.account.uri.is_empty() {
            config.account.username.clone()
        } else {
            config.account.uri.clone()
        };
        Self {
            account: clean(&account),
            reg: if config.account.registrar.trim().is_empty() {
                Reg::Direct(config.account.listen.clone())
            } else {
                Reg::Starting
            },
            calls: Vec::new(),
            history: Vec::new(),
            popup: None,
            mode: Mode::Normal,
            selected: 0,
            dnd: false,
            show_log: false,
            log: VecDeque::new(),
            popup_size: config.popup.size,
            popup_buttons: config.popup.buttons,
            popup_seconds: config.popup.display_seconds,
            copy_number: config.popup.copy_number,
            anonymous_name: clean(&config.popup.anonymous_name),
            keys,
            filter: HistoryFilter::default(),
            contacts: Contacts::default(),
            dirty: true,
            agent: None,
            blf: config
                .blf
                .watch
                .iter()
                .map(|w| BlfRow {
                    number: clean(&w.number),
                    name: clean(&w.name),
                    state: "unknown".into(),
                })
                .collect(),
            voicemail: None,
            central: None,
            voicemail_number: config.account.voicemail.clone(),
            not_ready_reasons: config.agent.not_ready_reasons.iter().map(|r| clean(r)).collect(),
            wrapup_codes: config.agent.wrapup_codes.iter().map(|r| clean(r)).collect(),
            attached: false,
        }
    }

    pub fn log(&mut self, level: Level, msg: impl Into<String>) {
        self.log.push_back((level, clean(&msg.into())));
        while self.log.len() > LOG_LINES {
            self.log.pop_front();
        }
        self.dirty = true;
    }

    fn call_mut(&mut self, id: &str) -> Option<&mut CallRow> {
        self.calls.iter_mut().find(|c| c.id == id)
    }

    pub fn call(&self, id: &str) -> Option<&CallRow> {
        self.calls.iter().find(|c| c.id == id)
    }

    /// The call a key acts on: the popup's, else the selected one, else the newest.
    pub fn current_call(&self) -> Option<&CallRow> {
        if let Some(p) = &self.popup
            && let Some(c) = self.call(&p.call)
        {
            return Some(c);
        }
        self.calls.get(self.selected).or_else(|| self.calls.last())
    }

    /// The number shown for a call (POP-5 for withheld numbers).
    pub fn shown_number<'a>(&'a self, c: &'a CallRow) -> &'a str {
        if c.anonymous || c.tel.is_empty() {
            &self.anonymous_name
        } else {
            &c.tel
        }
    }

    /// Applies one bus event; returns what the main loop must do.
    pub fn on_event(&mut self, ev: &Event) -> Vec<Effect> {
        let mut fx = Vec::new();
        match ev {
            Event::Phone(p) => self.on_phone(p, &mut fx),
            Event::Cti(c) => self.on_cti(c),
            Event::Call(_) => return fx,
        }
        self.dirty = true;
        fx
    }

    fn on_phone(&mut self, p: &PhoneEvent, fx: &mut Vec<Effect>) {
        match p {
            PhoneEvent::Ready { listen, .. } => {
                if let Reg::Direct(_) = self.reg {
                    self.reg = Reg::Direct(listen.clone());
                }
            }
            PhoneEvent::Registered { aor, .. } => self.reg = Reg::Registered(clean(aor)),
            PhoneEvent::RegistrationFailed { reason, .. } => {
                self.reg = Reg::Failed(clean(reason));
                self.log(Level::Warn, format!("registration failed: {reason}"));
            }
            PhoneEvent::Unregistered => self.reg = Reg::Unregistered,
            PhoneEvent::Incoming {
                call,
                tel,
                telname,
                called,
                anonymous,
                ..
            } => {
                if self.dnd {
                    fx.push(Effect::Command(Command::Reject {
                        call: Some(call.clone()),
                    }));
                    self.log(Level::Info, format!("do not disturb: rejected a call from {tel}"));
                    return;
                }
                self.calls.push(CallRow {
                    anonymous: *anonymous,
                    ..CallRow::new(call, true, RowState::Ringing, tel, telname, called)
                });
                self.popup = Some(Popup {
                    call: call.clone(),
                    shown: Instant::now(),
                });
                let who = if *anonymous {
                    self.anonymous_name.clone()
                } else {
                    clean(tel)
                };
                fx.push(Effect::Notify(format!("ctiphone: {who}")));
                if self.copy_number && !*anonymous && !tel.is_empty() {
                    fx.push(Effect::Copy(tel.clone()));
                }
            }
            PhoneEvent::Outgoing { call, to } => {
                self.calls
                    .push(CallRow::new(call, false, RowState::Calling, to, "", to));
            }
            PhoneEvent::Ringing { call } => {
                if let Some(c) = self.call_mut(call) {
                    c.state = RowState::Ringback;
                }
            }
            PhoneEvent::Answered { call, srtp } => {
                if let Some(c) = self.call_mut(call) {
                    c.state = RowState::Active;
                    c.answered = Some(Instant::now());
                    c.srtp = srtp.as_deref().map(clean);
                }
            }
            PhoneEvent::Identity { call, tel, telname } => {
                if let Some(c) = self.call_mut(call) {
                    c.tel = clean(tel);
                    c.telname = clean(telname);
                }
            }
            PhoneEvent::Status {
                state,
                reason,
                wrapup,
                ..
            } => {
                self.agent = Some(AgentView {
                    state: *state,
                    reason: clean(reason),
                    since: Instant::now(),
                });
                let msg = match (reason.is_empty(), wrapup.is_empty()) {
                    (false, _) => format!("status: {} ({reason})", state.name()),
                    (true, false) => format!("status: {} (wrap-up: {wrapup})", state.name()),
                    (true, true) => format!("status: {}", state.name()),
                };
                self.log(Level::Info, msg);
            }
            PhoneEvent::Blf { number, state, .. } => {
                if let Some(r) = self.blf.iter_mut().find(|r| r.number == clean(number)) {
                    r.state = clean(state);
                }
            }
            PhoneEvent::Voicemail { waiting, new, .. } => {
                self.voicemail = Some(if *waiting { (*new).max(1) } else { 0 });
            }
            PhoneEvent::Central { backlog, error } => {
                self.central = (*backlog > 0 || !error.is_empty()).then(|| (*backlog, clean(error)));
            }
            PhoneEvent::Replaced { call, tel, telname } => {
                // Another party in the call's place: its row and popup show them, and the
                // CRM's answer about them replaces the old one.
                if let Some(c) = self.call_mut(call) {
                    c.tel = clean(tel);
                    c.telname = clean(telname);
                    c.crm = Crm::default();
                    c.state = RowState::Active;
                }
                self.popup = Some(Popup {
                    call: call.clone(),
                    shown: Instant::now(),
                });
                self.log(Level::Info, format!("call replaced: now with {}", clean(tel)));
            }
            PhoneEvent::Consult { call, consult } => {
                if let Some(c) = self.call_mut(consult) {
                    c.consult_for = Some(call.clone());
                }
            }
            PhoneEvent::Transferred { to, .. } => {
                self.log(Level::Info, format!("call transferred to {}", clean(to)));
            }
            PhoneEvent::Conference { calls } => {
                for c in &mut self.calls {
                    c.conference = calls.contains(&c.id);
                }
                if calls.is_empty() {
                    self.log(Level::Info, "conference ended".to_owned());
                } else {
                    self.log(Level::Info, format!("conference of {} calls", calls.len()));
                }
            }
            PhoneEvent::Held { call } => {
                if let Some(c) = self.call_mut(call) {
                    c.state = RowState::Held;
                }
            }
            // What the phone did, whichever front end asked.
            PhoneEvent::Muted { call, muted } => {
                if let Some(c) = self.call_mut(call) {
                    c.muted = *muted;
                }
            }
            PhoneEvent::Recording { call, on } => {
                if let Some(c) = self.call_mut(call) {
                    c.recording = *on;
                }
            }
            PhoneEvent::Resumed { call } => {
                if let Some(c) = self.call_mut(call) {
                    c.state = RowState::Active;
                }
            }
            PhoneEvent::Ended {
                call,
                reason,
                duration_s,
                result,
                ..
            } => {
                if let Some(i) = self.calls.iter().position(|c| c.id == *call) {
                    let c = self.calls.remove(i);
                    // As the phone named it for the history; else from what the list knows.
                    let result = result.unwrap_or_else(|| {
                        let direction = if c.incoming {
                            Direction::Incoming
                        } else {
                            Direction::Outgoing
                        };
                        CallResult::new(direction, c.answered.is_some(), *reason)
                    });
                    let row = HistoryRow {
                        id: c.id.clone(),
                        date: Local::now(),
                        incoming: c.incoming,
                        result,
                        tel: if c.anonymous {
                            self.anonymous_name.clone()
                        } else {
                            c.tel.clone()
                        },
                        called: if c.incoming {
                            c.called.clone()
                        } else {
                            String::new()
                        },
                        name: if c.crm.name.is_empty() {
                            c.telname.clone()
                        } else {
                            c.crm.name.clone()
                        },
                        company: c.crm.company.clone(),
                        duration_s: *duration_s,
                        recording: None,
                    };
                    if self.filter.admits(&row) {
                        self.history.insert(0, row);
                        self.history.truncate(HISTORY_ROWS);
                    }
                }
                if self.popup.as_ref().is_some_and(|p| p.call == *call) {
                    self.popup = None;
                }
                self.clamp_selection();
            }
            PhoneEvent::Quality { call, srtp, .. } => {
                let q = QualityView::of(p);
                if let Some(c) = self.call_mut(call) {
                    c.quality = q;
                    c.srtp = srtp.as_deref().map(clean);
                }
            }
            PhoneEvent::Recorded { call, path } => {
                if let Some(h) = self.history.iter_mut().find(|h| h.id == *call) {
                    h.recording = Some(clean(path));
                }
                self.log(Level::Info, format!("recording saved: {path}"));
            }
            PhoneEvent::Dtmf { digit, .. } => self.log(Level::Info, format!("DTMF received: {digit}")),
            PhoneEvent::Warning { message } => self.log(Level::Warn, message.clone()),
            PhoneEvent::Error { message } => self.log(Level::Error, message.clone()),
        }
    }

    fn on_cti(&mut self, c: &CtiEvent) {
        match c {
            CtiEvent::Searching { call_id } => {
                if let Some(c) = self.call_mut(call_id) {
                    c.crm.searching = true;
                }
            }
            CtiEvent::SearchResult { call_id, vars } => {
                if let Some(c) = self.call_mut(call_id) {
                    c.crm.searching = false;
                    let get = |k: &str| vars.get(k).map(|v| clean(v)).unwrap_or_default();
                    c.crm.company = get("COMPANY");
                    c.crm.name = get("NAME");
                    c.crm.ext_id = get("EXT_ID");
                    c.crm.error = None;
                }
            }
            CtiEvent::SearchFailed { call_id, error } => {
                if let Some(c) = self.call_mut(call_id) {
                    c.crm.searching = false;
                    c.crm.error = Some(clean(error));
                }
                self.log(Level::Warn, format!("CRM search failed: {error}"));
            }
            CtiEvent::Action { call_id, report, .. } => {
                if let Some(link) = &report.link
                    && let Some(c) = self.call_mut(call_id)
                {
                    c.crm.link = Some(link.clone());
                }
                let msg = match &report.error {
                    Some(e) => format!("CTI {} failed: {e}", report.access),
                    None => format!("CTI {} ok ({} ms)", report.access, report.ms),
                };
                self.log(if report.ok { Level::Info } else { Level::Warn }, msg);
            }
            CtiEvent::Skipped { .. } => {}
        }
    }

    /// Takes the daemon's snapshot on attaching: the registration, the live calls with
    /// their timers, CRM data and popup, the agent's status, the lamps and the voicemail light.
    /// (The call list's history is read from the database as always.)
    pub fn attach(&mut self, s: &crate::app::snapshot::Snapshot) {
        use crate::app::snapshot::Registration;
        self.attached = true;
        let now = Instant::now();
        let ago = |secs: f64| {
            now.checked_sub(Duration::try_from_secs_f64(secs).unwrap_or_default())
                .unwrap_or(now)
        };
        self.reg = match &s.registration {
            Registration::Registered { aor, .. } => Reg::Registered(clean(aor)),
            Registration::Failed { reason, .. } => Reg::Failed(clean(reason)),
            Registration::Unregistered => Reg::Unregistered,
            Registration::None => match &self.reg {
                Reg::Direct(_) if !s.listen.is_empty() => Reg::Direct(clean(&s.listen)),
                other => other.clone(),
            },
        };
        self.calls = s
            .calls
            .iter()
            .map(|c| {
                let get = |k: &str| c.crm.vars.get(k).map(|v| clean(v)).unwrap_or_default();
                let state = match c.state.as_str() {
                    "ringing" => RowState::Ringing,
                    "calling" => RowState::Calling,
                    "ringback" => RowState::Ringback,
                    "held" => RowState::Held,
                    _ => RowState::Active,
                };
                CallRow {
                    anonymous: c.anonymous,
                    started: ago(c.age_s),
                    answered: c.answered_s.map(ago),
                    quality: c.quality.clone(),
                    crm: Crm {
                        searching: c.crm.searching,
                        company: get("COMPANY"),
                        name: get("NAME"),
                        ext_id: get("EXT_ID"),
                        error: c.crm.error.as_deref().map(clean),
                        link: c.crm.link.clone(),
                    },
                    recording: c.recording,
                    muted: c.muted,
                    consult_for: c.consult_for.clone(),
                    conference: c.conference,
                    srtp: c.srtp.as_deref().map(clean),
                    ..CallRow::new(&c.call, c.incoming, state, &c.tel, &c.telname, &c.called)
                }
            })
            .collect();
        self.popup = s
            .popup
            .as_ref()
            .filter(|p| self.calls.iter().any(|c| c.id == p.call))
            .map(|p| Popup {
                call: p.call.clone(),
                shown: ago(p.age_s),
            });
        if let Some(a) = &s.agent {
            self.agent = Some(AgentView {
                state: a.state,
                reason: clean(&a.reason),
                since: ago(a.for_s),
            });
        }
        for lamp in &s.blf {
            if let Some(r) = self.blf.iter_mut().find(|r| r.number == clean(&lamp.number)) {
                r.state = clean(&lamp.state);
            }
        }
        if let Some(v) = &s.voicemail {
            self.voicemail = Some(if v.waiting { v.new.max(1) } else { 0 });
        }
        if let Some(c) = &s.central {
            self.central = (c.backlog > 0 || !c.error.is_empty()).then(|| (c.backlog, clean(&c.error)));
        }
        self.clamp_selection();
        // A popup shown longer than its display time goes at once (POP-3).
        self.tick();
    }

    fn clamp_selection(&mut self) {
        let n = self.calls.len() + self.history.len();
        if self.selected >= n {
            self.selected = n.saturating_sub(1);
        }
    }

    /// Once a second: the popup's display time (POP-3) and the clock.
    pub fn tick(&mut self) {
        if let Some(p) = &self.popup {
            let expired = self.popup_seconds > 0
                && p.shown.elapsed() >= Duration::from_secs(u64::from(self.popup_seconds));
            if expired {
                self.popup = None;
            }
        }
        self.dirty = true;
    }

    /// Handles a key; returns what the main loop must do.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        self.dirty = true;
        match self.mode.clone() {
            Mode::Dial { mut input, purpose } => {
                match edit_line(&mut input, &key) {
                    LineKey::Esc => self.mode = Mode::Normal,
                    LineKey::Enter => {
                        self.mode = Mode::Normal;
                        let to = input.trim().to_owned();
                        if to.is_empty() {
                            return vec![];
                        }
                        let call = self.current_call().map(|c| c.id.clone());
                        let cmd = match purpose {
                            DialPurpose::Transfer => Command::Transfer { to, call },
                            DialPurpose::Consult => Command::Consult { to, call },
                            DialPurpose::Call => Command::Dial { to },
                        };
                        return vec![Effect::Command(cmd)];
                    }
                    LineKey::Edited | LineKey::Other => self.mode = Mode::Dial { input, purpose },
                }
                vec![]
            }
            Mode::Blf { selected } => {
                let n = self.blf.len();
                let number = self.blf.get(selected).map(|r| r.number.clone());
                let call = self.current_call().map(|c| c.id.clone());
                match key.code {
                    KeyCode::Up | KeyCode::Char('k') => {
                        self.mode = Mode::Blf {
                            selected: selected.saturating_sub(1),
                        };
                        vec![]
                    }
                    KeyCode::Down | KeyCode::Char('j') => {
                        self.mode = Mode::Blf {
                            selected: (selected + 1).min(n.saturating_sub(1)),
                        };
                        vec![]
                    }
                    KeyCode::Enter => {
                        self.mode = Mode::Normal;
                        number.map_or_else(Vec::new, |to| vec![Effect::Command(Command::Dial { to })])
                    }
                    KeyCode::Char('t') => {
                        self.mode = Mode::Normal;
                        match (number, call) {
                            (Some(to), Some(call)) => {
                                vec![Effect::Command(Command::Transfer { to, call: Some(call) })]
                            }
                            _ => vec![],
                        }
                    }
                    KeyCode::Char('p') => {
                        self.mode = Mode::Normal;
                        number.map_or_else(Vec::new, |number| {
                            vec![Effect::Command(Command::Pickup { number })]
                        })
                    }
                    _ => {
                        self.mode = Mode::Normal;
                        vec![]
                    }
                }
            }
            Mode::Choose(kind) => {
                self.mode = Mode::Normal;
                let list = match kind {
                    ChoiceKind::NotReadyReason => &self.not_ready_reasons,
                    ChoiceKind::WrapupCode => &self.wrapup_codes,
                };
                let picked = match key.code {
                    KeyCode::Char(c @ '1'..='9') => list.get(c as usize - '1' as usize).cloned(),
                    _ => None,
                };
                match (kind, picked) {
                    (ChoiceKind::NotReadyReason, Some(reason)) => vec![Effect::Command(Command::Status {
                        state: AgentState::NotReady,
                        reason: Some(reason),
                    })],
                    (ChoiceKind::WrapupCode, Some(code)) => vec![Effect::Command(Command::Wrapup { code })],
                    (_, None) => vec![],
                }
            }
            Mode::Prompt { kind, mut input } => {
                match edit_line(&mut input, &key) {
                    LineKey::Esc => self.mode = Mode::Normal,
                    LineKey::Enter => {
                        self.mode = Mode::Normal;
                        let v = input.trim().to_owned();
                        match kind {
                            PromptKind::Filter => self.filter.text = v,
                            PromptKind::Date => self.filter.until = (!v.is_empty()).then_some(v),
                        }
                        return self.reload();
                    }
                    LineKey::Edited | LineKey::Other => self.mode = Mode::Prompt { kind, input },
                }
                vec![]
            }
            Mode::Contacts => match self.contacts.on_key(key) {
                contacts::Outcome::Nothing => vec![],
                contacts::Outcome::Close => {
                    self.mode = Mode::Normal;
                    vec![]
                }
                contacts::Outcome::Op(op) => vec![Effect::Contacts(op)],
                contacts::Outcome::Dial(to) => {
                    self.mode = Mode::Normal;
                    vec![Effect::Command(Command::Dial { to })]
                }
            },
            Mode::Help => {
                self.mode = Mode::Normal;
                vec![]
            }
            Mode::ConfirmQuit | Mode::ConfirmStop => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => vec![Effect::Quit],
                _ => {
                    self.mode = Mode::Normal;
                    vec![]
                }
            },
            Mode::Settings => vec![],
            Mode::Normal => self.normal_key(key),
        }
    }

    /// The call list again from the database, after the filter changed.
    fn reload(&mut self) -> Vec<Effect> {
        self.selected = 0;
        vec![Effect::LoadHistory(self.filter.query())]
    }

    /// The call list read from the database (the filter's result).
    pub fn set_history(&mut self, rows: Vec<HistoryRow>) {
        self.history = rows;
        self.clamp_selection();
        self.dirty = true;
    }

    /// The selected history row, if a history row is selected.
    pub fn selected_history(&self) -> Option<&HistoryRow> {
        self.selected
            .checked_sub(self.calls.len())
            .and_then(|i| self.history.get(i))
    }

    fn normal_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(action) = self.keys.action(&key) else {
            return vec![];
        };
        self.act(action)
    }

    /// Runs an action (from a key, or a click on a popup button).
    pub fn act(&mut self, action: Action) -> Vec<Effect> {
        self.dirty = true;
        let call = self.current_call().map(|c| c.id.clone());
        let cmd = |c: Command| vec![Effect::Command(c)];
        match action {
            // The call in view if it rings, else the latest ringing one (call waiting: the
            // popup may be closed while the first call is selected).
            Action::Answer => match self.current_call() {
                Some(c) if c.state == RowState::Ringing => cmd(Command::Answer { call }),
                _ => match self.calls.iter().rev().find(|c| c.state == RowState::Ringing) {
                    Some(c) => cmd(Command::Answer {
                        call: Some(c.id.clone()),
                    }),
                    None => vec![],
                },
            },
            Action::Hangup => match self.current_call() {
                Some(c) if c.state == RowState::Ringing => cmd(Command::Reject { call }),
                Some(_) => cmd(Command::Hangup { call }),
                None => {
                    self.popup = None;
                    vec![]
                }
            },
            Action::Hold => match self.current_call() {
                Some(c) if c.state == RowState::Held => cmd(Command::Unhold { call }),
                Some(c) if c.state == RowState::Active => cmd(Command::Hold { call }),
                _ => vec![],
            },
            Action::Mute => {
                let Some(id) = call else { return vec![] };
                let Some(c) = self.call_mut(&id) else {
                    return vec![];
                };
                c.muted = !c.muted;
                if c.muted {
                    cmd(Command::Mute { call: Some(id) })
                } else {
                    cmd(Command::Unmute { call: Some(id) })
                }
            }
            Action::Transfer => {
                if self.current_call().is_some_and(|c| c.state == RowState::Active) {
                    self.mode = Mode::Dial {
                        input: String::new(),
                        purpose: DialPurpose::Transfer,
                    };
                }
                vec![]
            }
            Action::Consult => {
                if self.current_call().is_some_and(|c| c.state == RowState::Active) {
                    self.mode = Mode::Dial {
                        input: String::new(),
                        purpose: DialPurpose::Consult,
                    };
                }
                vec![]
            }
            Action::Swap => cmd(Command::Swap { call: None }),
            Action::Complete => cmd(Command::Complete { call }),
            Action::CancelConsult => cmd(Command::Cancel { call }),
            Action::Conference => cmd(Command::Conference),
            Action::Ready => cmd(Command::Status {
                state: AgentState::Ready,
                reason: None,
            }),
            Action::NotReady => {
                if self.not_ready_reasons.is_empty() {
                    cmd(Command::Status {
                        state: AgentState::NotReady,
                        reason: None,
                    })
                } else {
                    self.mode = Mode::Choose(ChoiceKind::NotReadyReason);
                    vec![]
                }
            }
            Action::Wrapup => {
                if self.wrapup_codes.is_empty() {
                    cmd(Command::Wrapup { code: String::new() })
                } else {
                    self.mode = Mode::Choose(ChoiceKind::WrapupCode);
                    vec![]
                }
            }
            Action::Blf => {
                if self.blf.is_empty() {
                    self.log(Level::Warn, "no colleagues to watch: set [blf] watch".to_owned());
                } else {
                    self.mode = Mode::Blf { selected: 0 };
                }
                vec![]
            }
            Action::Voicemail => {
                let to = self.voicemail_number.trim().to_owned();
                if to.is_empty() {
                    self.log(
                        Level::Warn,
                        "no voicemail number: set [account] voicemail".to_owned(),
                    );
                    vec![]
                } else {
                    cmd(Command::Dial { to })
                }
            }
            Action::Dnd => {
                self.dnd = !self.dnd;
                vec![]
            }
            Action::Record => {
                let Some(id) = call else { return vec![] };
                let on = !self.calls.iter().any(|c| c.id == id && c.recording);
                if let Some(c) = self.call_mut(&id) {
                    c.recording = on;
                }
                cmd(Command::Record { on, call: Some(id) })
            }
            Action::Dial => {
                self.mode = Mode::Dial {
                    input: String::new(),
                    purpose: DialPurpose::Call,
                };
                vec![]
            }
            Action::Settings => vec![Effect::OpenSettings],
            Action::Help => {
                self.mode = Mode::Help;
                vec![]
            }
            Action::Log => {
                self.show_log = !self.show_log;
                vec![]
            }
            Action::Up => {
                self.selected = self.selected.saturating_sub(1);
                vec![]
            }
            Action::Down => {
                let n = self.calls.len() + self.history.len();
                if self.selected + 1 < n {
                    self.selected += 1;
                }
                vec![]
            }
            Action::Activate => {
                // On the popup or an active call: the click access (CUS-5). On a history row:
                // call back.
                if let Some(p) = &self.popup {
                    return cmd(Command::Click {
                        call: Some(p.call.clone()),
                    });
                }
                if self.selected < self.calls.len() {
                    return cmd(Command::Click { call });
                }
                match self.history.get(self.selected - self.calls.len()) {
                    Some(h) if !h.tel.is_empty() && h.tel != self.anonymous_name => {
                        cmd(Command::Dial { to: h.tel.clone() })
                    }
                    _ => vec![],
                }
            }
            Action::Filter => {
                self.mode = Mode::Prompt {
                    kind: PromptKind::Filter,
                    input: self.filter.text.clone(),
                };
                vec![]
            }
            Action::JumpDate => {
                self.mode = Mode::Prompt {
                    kind: PromptKind::Date,
                    input: self.filter.until.clone().unwrap_or_default(),
                };
                vec![]
            }
            Action::ResultFilter => {
                // The one after the current, from "all" round to "all" again.
                self.filter.result = results()
                    .skip_while(|r| *r != self.filter.result)
                    .nth(1)
                    .flatten();
                self.reload()
            }
            Action::Contacts => {
                self.mode = Mode::Contacts;
                vec![Effect::Contacts(contacts::Op::Search(
                    self.contacts.query.clone(),
                ))]
            }
            Action::Reclick => match self.selected_history() {
                Some(h) => vec![Effect::Reclick(h.id.clone())],
                None => vec![],
            },
            Action::OpenRecording => match self.selected_history() {
                Some(h) => match &h.recording {
                    Some(path) => vec![Effect::OpenRecording(path.clone())],
                    None => vec![],
                },
                None => vec![],
            },
            Action::Copy if self.popup.is_none() && self.selected_history().is_some() => {
                // On a history row: its recording's path, else its number.
                match self.selected_history() {
                    Some(HistoryRow {
                        recording: Some(path),
                        ..
                    }) => vec![Effect::Copy(path.clone())],
                    Some(h) if !h.tel.is_empty() && h.tel != self.anonymous_name => {
                        vec![Effect::Copy(h.tel.clone())]
                    }
                    _ => vec![],
                }
            }
            Action::Copy => match self.current_call() {
                Some(c) => match &c.crm.link {
                    Some(link) => vec![Effect::Copy(link.clone())],
                    None if !c.anonymous => vec![Effect::Copy(c.tel.clone())],
                    None => vec![],
                },
                None => vec![],
            },
            Action::ClosePopup => {
                self.popup = None;
                vec![]
            }
            Action::Quit if self.attached => vec![Effect::Detach],
            Action::Stop if self.attached => {
                self.mode = Mode::ConfirmStop;
                vec![]
            }
            Action::Quit | Action::Stop => {
                if self.calls.is_empty() {
                    vec![Effect::Quit]
                } else {
                    self.mode = Mode::ConfirmQuit;
                    vec![]
                }
            }
        }
    }
}

impl HistoryRow {
    /// A row of the call history database, for the call list.
    pub fn from_db(r: &crate::history::Row) -> HistoryRow {
        // No result: a call still open (in progress on this phone), shown as before.
        let result = r.result.unwrap_or(CallResult::Failed);
        let date = DateTime::parse_from_rfc3339(&r.ring_at)
            .map_or_else(|_| Local::now(), |d| d.with_timezone(&Local));
        HistoryRow {
            id: r.call_id.clone(),
            date,
            incoming: r.direction == "in",
            result,
            tel: clean(&r.tel),
            called: clean(&r.called),
            name: clean(if r.name.is_empty() { &r.telname } else { &r.name }),
            company: clean(&r.company),
            duration_s: r.duration_s.unwrap_or(0.0),
            recording: r.recording.as_deref().map(clean),
        }
    }
}
