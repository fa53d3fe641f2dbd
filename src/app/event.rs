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
}

/// What happened to the call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CallEventKind {
    /// An incoming call starts ringing.
    Ring,
    /// The call was answered (either side).
    Answer,
    /// The call ended; `answered` tells whether it was ever answered (CUS-10).
    Hangup { answered: bool },
    /// The agent activated the popup (CUS-5).
    Click,
    /// The agent ran the click access again for a past call (HIS-2), with the CRM values
    /// stored for it then (no new search).
    Reclick { stored: BTreeMap<String, String> },
    /// The agent dialled (outgoing access).
    Outgoing,
    /// The call's recording file is complete (REC-2).
    Recorded { path: PathBuf },
}

impl CallEventKind {
    /// The event's name as used on the command line and in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::Answer => "answer",
            Self::Hangup { .. } => "hangup",
            Self::Click | Self::Reclick { .. } => "click",
            Self::Outgoing => "outgoing",
            Self::Recorded { .. } => "recorded",
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
            kind: CallEventKind::Hangup { answered },
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
    pub fn recorded(params: CallParams, path: PathBuf) -> Self {
        Self {
            kind: CallEventKind::Recorded { path },
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

/// Why a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize)]
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
    },
    /// The far end's identity changed during the call (a connected-line update: the PBX's
    /// re-INVITE or UPDATE with a new P-Asserted-Identity, e.g. after a transfer).
    Identity {
        call: String,
        tel: String,
        telname: String,
    },
    Held {
        call: String,
    },
    Resumed {
        call: String,
    },
    Ended {
        call: String,
        reason: EndReason,
        code: Option<u16>,
        duration_s: f64,
    },
    Dtmf {
        call: String,
        digit: String,
    },
    /// Call quality every 5 s (from RTCP and the receive statistics).
    Quality {
        call: String,
        loss_percent: f64,
        jitter_ms: f64,
        remote_loss_percent: Option<f64>,
        rtt_ms: Option<f64>,
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
