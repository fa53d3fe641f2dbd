//! The events that travel on the bus: what happened to a call, and what the CTI engine did
//! about it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// Which way a call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// The parameters of one call, as the CTI templates see them (spec §5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallParams {
    /// {ID}: the SIP Call-ID.
    pub id: String,
    pub direction: Direction,
    /// {TEL}: the other party's number.
    pub tel: String,
    /// {TELNAME}: the other party's name (phonebook, else SIP display name).
    pub telname: String,
    /// {CALLED}: the number that was called.
    pub called: String,
    /// {CALLEDNAME}: the called party's name from the phonebook.
    pub calledname: String,
    /// The caller withheld its identity (POP-5).
    pub anonymous: bool,
    /// Further parameters known for this call ({REC_PATH}, {DURATION}, {RESULT}, …), by name.
    pub extra: BTreeMap<String, String>,
}

/// The parameter that names a call's result.
const RESULT: &str = "RESULT";

impl CallParams {
    /// Parameters of an incoming call from `tel` to `called`.
    pub fn incoming(id: &str, tel: &str, called: &str) -> Self {
        Self {
            id: id.to_owned(),
            direction: Direction::Incoming,
            tel: tel.to_owned(),
            telname: String::new(),
            called: called.to_owned(),
            calledname: String::new(),
            anonymous: false,
            extra: BTreeMap::new(),
        }
    }

    /// Parameters of a call the agent dials to `tel`.
    pub fn outgoing(id: &str, tel: &str) -> Self {
        Self {
            direction: Direction::Outgoing,
            ..Self::incoming(id, tel, tel)
        }
    }

    /// Sets {RESULT}, the call's result as the history names it.
    pub fn set_result(&mut self, result: CallResult) {
        self.extra.insert(RESULT.to_owned(), result.name().to_owned());
    }

    /// {RESULT} read back: `None` when unset, `Some(Err(text))` when it names no result.
    pub fn result(&self) -> Option<Result<CallResult, &str>> {
        self.extra
            .get(RESULT)
            .map(|r| CallResult::from_name(r).ok_or(r.as_str()))
    }
}

/// How a call ended, as the history, the call list, {RESULT} and the JSON events name it
/// (HIS-1). The one place a result is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallResult {
    /// Answered (either side), whoever hung up.
    Answered,
    /// An incoming call never answered: the caller gave up (cancel, hangup) or it timed out.
    Missed,
    /// Refused: an incoming call the agent declined, or an outgoing one the far end declined.
    Rejected,
    /// Refused because busy (486/600): our phone in a call, or the far end.
    Busy,
    /// An error: no route, no answer to the request, authentication, media, anything else.
    Failed,
    /// An outgoing call the agent hung up before it was answered.
    Cancelled,
    /// The phone stopped during the call (a crash, `kill -9`, a power cut): set by the
    /// history's recovery on a row found open at the next start, never by a live call.
    Interrupted,
}

impl CallResult {
    /// Every result, in the order the call list's filter cycles through them.
    pub const ALL: [CallResult; 7] = [
        Self::Answered,
        Self::Missed,
        Self::Rejected,
        Self::Busy,
        Self::Cancelled,
        Self::Failed,
        Self::Interrupted,
    ];

    /// The result of a call that ended for `reason`, answered or not.
    pub fn new(direction: Direction, answered: bool, reason: EndReason) -> Self {
        let incoming = direction == Direction::Incoming;
        match reason {
            _ if answered => Self::Answered,
            EndReason::Busy => Self::Busy,
            EndReason::Rejected => Self::Rejected,
            EndReason::Cancelled | EndReason::RemoteHangup | EndReason::Timeout if incoming => Self::Missed,
            // The agent hung up a call ringing in: refused it.
            EndReason::LocalHangup if incoming => Self::Rejected,
            EndReason::Cancelled | EndReason::LocalHangup => Self::Cancelled,
            EndReason::RemoteHangup | EndReason::Timeout | EndReason::Failed => Self::Failed,
        }
    }

    /// The name, as stored and as serialised (`answered`, `missed`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Missed => "missed",
            Self::Rejected => "rejected",
            Self::Busy => "busy",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    /// The result of that name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl std::fmt::Display for CallResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What happened to the call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CallEventKind {
    /// An incoming call starts ringing.
    Ring,
    /// The call was answered (either side).
    Answer,
    /// The call ended; `answered` tells whether it was ever answered (CUS-10). `wrapup`:
    /// after-call work follows (AGT-3), and the hangup access waits for its [`Self::WrapUp`].
    Hangup { answered: bool, wrapup: bool },
    /// The agent's after-call work for this call ended: the wrap-up code picked ("" when the
    /// time ran out or the agent went ready without one). `params` carry {WRAPUP}.
    WrapUp { code: String },
    /// The agent's status changed (AGT-6); `params` are the last call's (empty before the
    /// first) with {STATUS}, {REASON} and {WRAPUP}.
    Status { state: AgentState },
    /// The agent activated the popup (CUS-5).
    Click,
    /// The agent ran the click access again for a past call (HIS-2), with the CRM values
    /// stored for it then (no new search).
    Reclick { stored: BTreeMap<String, String> },
    /// The agent dialled (outgoing access).
    Outgoing,
    /// The call's recording file is complete (REC-2).
    Recorded { path: PathBuf },
    /// An incoming call refused without ringing (busy, or by the agent's status): the agent
    /// never saw it. The history keeps a row for it (HIS-1); the CTI engine runs no access
    /// for it (no ring, answer or hangup happened, see `cti::engine`).
    Refused { result: CallResult },
    /// The far end of a call in progress is someone else now (a connected-line update: the
    /// PBX's re-INVITE or UPDATE with a new P-Asserted-Identity after a transfer). `params`
    /// carry the new {TEL} and {TELNAME}; the CTI engine searches the CRM again for them and
    /// the history row follows.
    Identity,
}

impl CallEventKind {
    /// The event's name as used on the command line and in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::Answer => "answer",
            Self::Hangup { .. } => "hangup",
            Self::WrapUp { .. } => "wrapup",
            Self::Status { .. } => "status",
            Self::Click | Self::Reclick { .. } => "click",
            Self::Outgoing => "outgoing",
            Self::Recorded { .. } => "recorded",
            Self::Refused { .. } => "refused",
            Self::Identity => "identity",
        }
    }
}

/// One call event with the call's parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallEvent {
    pub kind: CallEventKind,
    pub params: CallParams,
}

impl CallEvent {
    pub fn ring(params: CallParams) -> Self {
        Self {
            kind: CallEventKind::Ring,
            params,
        }
    }
    pub fn answer(params: CallParams) -> Self {
        Self {
            kind: CallEventKind::Answer,
            params,
        }
    }
    pub fn hangup(params: CallParams, answered: bool) -> Self {
        Self {
            kind: CallEventKind::Hangup {
                answered,
                wrapup: false,
            },
            params,
        }
    }
    pub fn click(params: CallParams) -> Self {
        Self {
            kind: CallEventKind::Click,
            params,
        }
    }
    pub fn reclick(params: CallParams, stored: BTreeMap<String, String>) -> Self {
        Self {
            kind: CallEventKind::Reclick { stored },
            params,
        }
    }
    pub fn outgoing(params: CallParams) -> Self {
        Self {
            kind: CallEventKind::Outgoing,
            params,
        }
    }
    pub fn identity(params: CallParams) -> Self {
        Self {
            kind: CallEventKind::Identity,
            params,
        }
    }
    pub fn recorded(params: CallParams, path: PathBuf) -> Self {
        Self {
            kind: CallEventKind::Recorded { path },
            params,
        }
    }
    /// An incoming call refused without ringing; `result` is usually [`CallResult::Busy`].
    pub fn refused(params: CallParams, result: CallResult) -> Self {
        Self {
            kind: CallEventKind::Refused { result },
            params,
        }
    }
}

/// What one access did (an HTTP request, a command, a browser hand-off).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActionReport {
    /// The access: auth, search, click, ring, answer, hangup, outgoing, recorded.
    pub access: String,
    /// The method as configured (`get`, `post`, `browser_get`, `browser_post`, `command`).
    pub method: String,
    /// The expanded URL (or argv for a command) with secrets masked.
    pub target: serde_json::Value,
    pub ok: bool,
    /// HTTP status or exit code, when there is one.
    pub status: Option<i64>,
    pub ms: u64,
    pub error: Option<String>,
    /// For a browser method with no graphical session: the URL to offer as a link instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// What the CTI engine reports back on the bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "cti", rename_all = "snake_case")]
pub enum CtiEvent {
    /// The event was not a CTI target; `why` says which rule skipped it.
    Skipped {
        call_id: String,
        event: String,
        why: String,
    },
    /// The search access started for this call ("searching…").
    Searching { call_id: String },
    /// The search answered; the captured values (secrets masked).
    SearchResult {
        call_id: String,
        vars: BTreeMap<String, String>,
    },
    /// The search failed; why.
    SearchFailed { call_id: String, error: String },
    /// One access finished.
    Action {
        call_id: String,
        event: String,
        report: ActionReport,
    },
}

/// The agent's status (AGT-1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Takes calls.
    #[default]
    Ready,
    /// Takes none, for a reason.
    NotReady,
    /// Writing up the last call (after-call work): takes none.
    AfterCall,
}

impl AgentState {
    /// The name used in events, templates ({STATUS}) and the protocol.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::NotReady => "not_ready",
            Self::AfterCall => "after_call",
        }
    }
}

/// Why a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    LocalHangup,
    RemoteHangup,
    Cancelled,
    Rejected,
    Busy,
    Failed,
    Timeout,
}

/// What the phone reports: registration and call progress (the headless protocol's events).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PhoneEvent {
    /// The SIP socket is bound.
    Ready {
        listen: String,
        transport: String,
    },
    Registered {
        aor: String,
        expires: u32,
        /// The registrar (or outbound proxy) address that answered, `IP:port` ("" from older
        /// versions).
        #[serde(default)]
        server: String,
        /// The address in the Contact registered, `IP:port` (behind NAT: the public one).
        #[serde(default)]
        contact: String,
        /// The address the STUN server saw the SIP socket at (`[account] stun_server`), ""
        /// without STUN or without an answer.
        #[serde(default)]
        stun: String,
    },
    RegistrationFailed {
        code: Option<u16>,
        reason: String,
    },
    Unregistered,
    /// A call rings (the caller's identity as the CTI sees it).
    Incoming {
        call: String,
        tel: String,
        telname: String,
        called: String,
        calledname: String,
        anonymous: bool,
    },
    /// The agent dialled; `call` names the new call.
    Outgoing {
        call: String,
        to: String,
    },
    /// The far end of an outgoing call rings.
    Ringing {
        call: String,
    },
    Answered {
        call: String,
        /// The SRTP suite protecting the call's audio (`AES_CM_128_HMAC_SHA1_80`, …), or
        /// `null` for plain RTP.
        #[serde(default)]
        srtp: Option<String>,
    },
    /// The far end's identity changed during the call (a connected-line update: the PBX's
    /// re-INVITE or UPDATE with a new P-Asserted-Identity, e.g. after a transfer).
    Identity {
        call: String,
        tel: String,
        telname: String,
    },
    /// The agent's status changed (AGT-1): since when (local time, RFC 3339), with the
    /// not-ready reason or the wrap-up code that ended after-call work.
    Status {
        state: AgentState,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        wrapup: String,
        since: String,
    },
    /// A watched colleague's lamp (RFC 4235): `idle`, `ringing`, `busy` or `unknown`.
    Blf {
        number: String,
        name: String,
        state: String,
    },
    /// The central log (`[history] central`, issue 18): changes waiting in the outbox for
    /// PostgreSQL, and why they wait ("" when PostgreSQL takes them).
    Central {
        backlog: u64,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        error: String,
    },
    /// The voicemail light (RFC 3842): messages waiting, new and old voice messages.
    Voicemail {
        waiting: bool,
        new: u32,
        old: u32,
    },
    /// A consult call for `call` (attended transfer, step 1) was dialled.
    Consult {
        call: String,
        consult: String,
    },
    /// `call` was transferred to `to` (the far end accepted and the new call is up); for an
    /// attended transfer, `consult` is the call it replaced.
    Transferred {
        call: String,
        to: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        consult: Option<String>,
    },
    /// Another party took the far end's place in `call` (an INVITE with Replaces, RFC 3891):
    /// the new party's identity.
    Replaced {
        call: String,
        tel: String,
        telname: String,
    },
    /// The local conference's calls now (empty: it ended).
    Conference {
        calls: Vec<String>,
    },
    Held {
        call: String,
    },
    /// The agent's microphone in the call was muted or unmuted (by any front end).
    Muted {
        call: String,
        muted: bool,
    },
    /// The call's recording started or stopped (the file is announced by `recorded`).
    Recording {
        call: String,
        on: bool,
    },
    Resumed {
        call: String,
    },
    Ended {
        call: String,
        reason: EndReason,
        code: Option<u16>,
        duration_s: f64,
        /// The call's result, as the history will name it.
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<CallResult>,
        /// Why it failed, in words, when more is known than `reason` (a TLS certificate
        /// refused, no ACK, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    Dtmf {
        call: String,
        digit: String,
    },
    /// Call quality every 5 s (from RTCP and the receive statistics; counts since the call's
    /// audio began).
    Quality {
        call: String,
        loss_percent: f64,
        jitter_ms: f64,
        remote_loss_percent: Option<f64>,
        rtt_ms: Option<f64>,
        /// Packets lost on the way (RTP sequence gaps) and packets that came too late to play.
        #[serde(default)]
        lost: u64,
        #[serde(default)]
        late: u64,
        /// Audio made up by concealment (seconds), and frames rebuilt from Opus in-band FEC.
        #[serde(default)]
        concealed_s: f64,
        #[serde(default)]
        fec_recovered: u64,
        /// The jitter buffer's delay now (ms).
        #[serde(default)]
        buffer_ms: u32,
        /// Estimated listening-and-talking quality: ITU-T G.107 E-model MOS (1-4.5) from the
        /// frames that could not be played, their burstiness and the one-way delay.
        #[serde(default)]
        mos: f64,
        /// The SRTP suite, `null` for plain RTP.
        #[serde(default)]
        srtp: Option<String>,
        /// SRTP/SRTCP packets dropped so far: failed authentication, and replayed.
        #[serde(default)]
        srtp_auth_failed: u64,
        #[serde(default)]
        srtp_replayed: u64,
    },
    /// A call's recording is complete.
    Recorded {
        call: String,
        path: String,
    },
    /// Something degraded but the phone goes on (no sound card: the null device is used).
    Warning {
        message: String,
    },
    Error {
        message: String,
    },
}

/// Everything that travels on the bus.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    Call(CallEvent),
    Cti(CtiEvent),
    Phone(PhoneEvent),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_follow_direction_answer_and_reason() {
        use CallResult as R;
        use Direction::{Incoming as In, Outgoing as Out};
        use EndReason as E;
        let cases = [
            (In, true, E::RemoteHangup, R::Answered),
            (Out, true, E::LocalHangup, R::Answered),
            (In, true, E::Failed, R::Answered),
            (In, false, E::Cancelled, R::Missed),
            (In, false, E::Timeout, R::Missed),
            (In, false, E::RemoteHangup, R::Missed),
            (In, false, E::Rejected, R::Rejected),
            (In, false, E::LocalHangup, R::Rejected),
            (In, false, E::Busy, R::Busy),
            (In, false, E::Failed, R::Failed),
            (Out, false, E::Cancelled, R::Cancelled),
            (Out, false, E::LocalHangup, R::Cancelled),
            (Out, false, E::Rejected, R::Rejected),
            (Out, false, E::Busy, R::Busy),
            (Out, false, E::Timeout, R::Failed),
            (Out, false, E::RemoteHangup, R::Failed),
            (Out, false, E::Failed, R::Failed),
        ];
        for (dir, answered, reason, want) in cases {
            assert_eq!(
                CallResult::new(dir, answered, reason),
                want,
                "{dir:?} {answered} {reason:?}"
            );
        }
    }

    #[test]
    fn a_result_is_named_alike_everywhere() {
        for r in CallResult::ALL {
            assert_eq!(CallResult::from_name(r.name()), Some(r));
            assert_eq!(serde_json::to_value(r).ok(), Some(serde_json::json!(r.name())));
            let mut p = CallParams::incoming("c", "1", "2");
            p.set_result(r);
            assert_eq!(p.extra.get("RESULT").map(String::as_str), Some(r.name()));
            assert_eq!(p.result(), Some(Ok(r)));
        }
        assert_eq!(CallResult::from_name("Missed"), None);
        let mut p = CallParams::incoming("c", "1", "2");
        assert_eq!(p.result(), None);
        p.extra.insert("RESULT".into(), "gone".into());
        assert_eq!(p.result(), Some(Err("gone")));
        let ended = PhoneEvent::Ended {
            call: "c".into(),
            reason: EndReason::Cancelled,
            code: Some(487),
            duration_s: 0.0,
            result: Some(CallResult::Missed),
            detail: None,
        };
        let v = serde_json::to_value(&ended).expect("json");
        assert_eq!(
            (v["reason"].as_str(), v["result"].as_str()),
            (Some("cancelled"), Some("missed"))
        );
        let refused = CallEvent::refused(CallParams::incoming("r", "1", "2"), CallResult::Busy);
        assert_eq!(refused.kind.name(), "refused");
        let v = serde_json::to_value(&refused.kind).expect("json");
        assert_eq!(v, serde_json::json!({"kind": "refused", "result": "busy"}));
    }
}
