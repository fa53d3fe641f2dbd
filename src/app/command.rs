//! The commands a front end gives the phone (the headless protocol's `cmd` objects, and what
//! the terminal UI's keys map to). `call` picks a call; without it, the current one.

use serde::{Deserialize, Serialize};

/// Who an outgoing call says it is calling from, in place of the account's identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerId {
    /// The From display name (`None`: the account's).
    pub display: Option<String>,
    /// The From URI's user part (`None`: the account's).
    pub user: Option<String>,
    /// The From URI's host (`None`: the account's domain), e.g. `anonymous.invalid`.
    pub host: Option<String>,
    /// Further headers of the INVITE, in order (name, value).
    pub headers: Vec<(String, String)>,
}

/// One command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Call a number or a SIP URI.
    Dial { to: String },
    /// Call as someone else: the From's display name and user, and extra headers
    /// (P-Asserted-Identity, Privacy). For the built-in demo's caller and tests; not part of
    /// the headless protocol.
    #[serde(skip)]
    DialAs { to: String, caller: CallerId },
    Answer {
        #[serde(default)]
        call: Option<String>,
    },
    Hangup {
        #[serde(default)]
        call: Option<String>,
    },
    Reject {
        #[serde(default)]
        call: Option<String>,
    },
    Hold {
        #[serde(default)]
        call: Option<String>,
    },
    Unhold {
        #[serde(default)]
        call: Option<String>,
    },
    Mute {
        #[serde(default)]
        call: Option<String>,
    },
    Unmute {
        #[serde(default)]
        call: Option<String>,
    },
    Dtmf {
        digits: String,
        #[serde(default)]
        call: Option<String>,
    },
    Transfer {
        to: String,
        #[serde(default)]
        call: Option<String>,
    },
    /// Attended transfer, step 1: hold the call and call `to` (the colleague).
    Consult {
        to: String,
        #[serde(default)]
        call: Option<String>,
    },
    /// Hold the active call and resume the held one (consult, call waiting); `call`: the one
    /// to resume.
    Swap {
        #[serde(default)]
        call: Option<String>,
    },
    /// Attended transfer, step 2: REFER the customer to the colleague, replacing the consult
    /// call (RFC 5589 §7). `call`: either of the two.
    Complete {
        #[serde(default)]
        call: Option<String>,
    },
    /// Attended transfer given up: hang up the consult call, resume the customer.
    Cancel {
        #[serde(default)]
        call: Option<String>,
    },
    /// Join the answered calls into a local 3-way conference.
    Conference,
    Record {
        on: bool,
        #[serde(default)]
        call: Option<String>,
    },
    /// Run the click access for a call (CUS-5).
    Click {
        #[serde(default)]
        call: Option<String>,
    },
    /// Set the agent's status (AGT-1); `reason` for not ready, one of `[agent]
    /// not_ready_reasons` when there are some.
    Status {
        state: crate::app::AgentState,
        #[serde(default)]
        reason: Option<String>,
    },
    /// End after-call work with a wrap-up code (AGT-3) and become ready.
    Wrapup { code: String },
    /// Pick up the call ringing at a watched colleague (Replaces to the caller's early
    /// dialog, else `[blf] pickup_code` + number).
    Pickup { number: String },
    /// Run the click access again for a past call of the history (HIS-2), by its call id.
    /// Handled by the core, next to the history; never reaches the user agent.
    Reclick { id: String },
    /// Unregister and stop.
    Quit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lines_parse() {
        let c: Command = serde_json::from_str(r#"{"cmd":"dial","to":"1002"}"#).unwrap();
        assert_eq!(c, Command::Dial { to: "1002".into() });
        let c: Command = serde_json::from_str(r#"{"cmd":"dtmf","digits":"12#","call":"x"}"#).unwrap();
        assert_eq!(
            c,
            Command::Dtmf {
                digits: "12#".into(),
                call: Some("x".into())
            }
        );
        let c: Command = serde_json::from_str(r#"{"cmd":"answer"}"#).unwrap();
        assert_eq!(c, Command::Answer { call: None });
        let c: Command = serde_json::from_str(r#"{"cmd":"consult","to":"1003"}"#).unwrap();
        assert_eq!(
            c,
            Command::Consult {
                to: "1003".into(),
                call: None
            }
        );
        let c: Command = serde_json::from_str(r#"{"cmd":"conference"}"#).unwrap();
        assert_eq!(c, Command::Conference);
        assert!(serde_json::from_str::<Command>(r#"{"cmd":"consult"}"#).is_err());
        let c: Command =
            serde_json::from_str(r#"{"cmd":"status","state":"not_ready","reason":"Lunch"}"#).unwrap();
        assert_eq!(
            c,
            Command::Status {
                state: crate::app::AgentState::NotReady,
                reason: Some("Lunch".into())
            }
        );
        assert!(serde_json::from_str::<Command>(r#"{"cmd":"status","state":"asleep"}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"cmd":"explode"}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"cmd":"dial"}"#).is_err());
    }
}
