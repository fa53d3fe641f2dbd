//! The JSON-lines protocol the front ends speak: the form of each bus event on the wire (the
//! headless front end's stdout, the daemon's socket) and back again (a front end attached to
//! the daemon rebuilds the typed events it draws from), and the command lines.
//!
//! Call events stay inside the core; phone events go out as they are serialised; the CTI
//! engine's events go out as `{"event":"cti", …}` objects.

use serde_json::{Value, json};

use super::{ActionReport, Command, CtiEvent, Event};

/// The protocol form of a bus event; `None` for what stays internal (call events, and the
/// search access's own report, which `cti` search lines already tell).
pub fn to_json(ev: &Event) -> Option<Value> {
    match ev {
        Event::Phone(p) => serde_json::to_value(p).ok(),
        Event::Call(_) => None,
        Event::Cti(c) => Some(match c {
            CtiEvent::Skipped { call_id, event, why } => {
                json!({"event": "cti", "call": call_id, "for": event, "skipped": why})
            }
            CtiEvent::Searching { call_id } => {
                json!({"event": "cti", "call": call_id, "access": "search", "searching": true})
            }
            CtiEvent::SearchResult { call_id, vars } => {
                json!({"event": "cti", "call": call_id, "access": "search", "ok": true, "vars": vars})
            }
            CtiEvent::SearchFailed { call_id, error } => {
                json!({"event": "cti", "call": call_id, "access": "search", "ok": false, "error": error})
            }
            CtiEvent::Action { report, .. } if report.access == "search" => return None,
            CtiEvent::Action {
                call_id,
                event,
                report,
            } => json!({
                "event": "cti", "call": call_id, "for": event, "access": report.access, "ok": report.ok,
                "status": report.status, "error": report.error, "link": report.link,
                "method": report.method, "ms": report.ms,
            }),
        }),
    }
}

/// One event as a protocol line (without its newline).
pub fn to_line(ev: &Event) -> Option<String> {
    to_json(ev).map(|v| v.to_string())
}

/// The typed event a protocol object stands for: the inverse of [`to_json`]. `None` for an
/// object that is no event (the snapshot, a reply) or that this build does not know.
pub fn from_json(v: &Value) -> Option<Event> {
    let kind = v.get("event")?.as_str()?;
    if kind != "cti" {
        return serde_json::from_value(v.clone()).ok().map(Event::Phone);
    }
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let call_id = s("call")?;
    if let Some(why) = s("skipped") {
        return Some(Event::Cti(CtiEvent::Skipped {
            call_id,
            event: s("for").unwrap_or_default(),
            why,
        }));
    }
    let access = s("access")?;
    let ok = v.get("ok").and_then(Value::as_bool);
    if access == "search" && s("for").is_none() {
        return Some(Event::Cti(match ok {
            None => CtiEvent::Searching { call_id },
            Some(true) => CtiEvent::SearchResult {
                call_id,
                vars: serde_json::from_value(v.get("vars")?.clone()).ok()?,
            },
            Some(false) => CtiEvent::SearchFailed {
                call_id,
                error: s("error").unwrap_or_default(),
            },
        }));
    }
    Some(Event::Cti(CtiEvent::Action {
        call_id,
        event: s("for").unwrap_or_default(),
        report: ActionReport {
            access,
            method: s("method").unwrap_or_default(),
            target: Value::Null,
            ok: ok.unwrap_or(false),
            status: v.get("status").and_then(Value::as_i64),
            ms: v.get("ms").and_then(Value::as_u64).unwrap_or(0),
            error: s("error"),
            link: s("link"),
        },
    }))
}

/// A command line as a front end sends it (without its newline).
pub fn command_line(cmd: &Command) -> String {
    serde_json::to_string(cmd).unwrap_or_default()
}

/// Reads one command line; the error says what is wrong with it, for an `error` event.
pub fn parse_command(line: &str) -> Result<Command, String> {
    serde_json::from_str::<Command>(line).map_err(|e| format!("bad command: {e}"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::app::{AgentState, EndReason, PhoneEvent};

    #[test]
    fn every_event_a_front_end_draws_survives_the_wire() {
        let report = ActionReport {
            access: "ring".into(),
            method: "browser_get".into(),
            target: Value::Null,
            ok: false,
            status: Some(3),
            ms: 12,
            error: Some("no browser".into()),
            link: Some("https://crm.example/?tel=1".into()),
        };
        let events = [
            Event::Phone(PhoneEvent::Incoming {
                call: "c1".into(),
                tel: "0312345678".into(),
                telname: "山田".into(),
                called: "1001".into(),
                calledname: String::new(),
                anonymous: false,
            }),
            Event::Phone(PhoneEvent::Status {
                state: AgentState::AfterCall,
                reason: String::new(),
                wrapup: String::new(),
                since: "2026-12-04T10:00:00+09:00".into(),
            }),
            Event::Phone(PhoneEvent::Ended {
                call: "c1".into(),
                reason: EndReason::RemoteHangup,
                code: None,
                duration_s: 3.5,
                result: Some(crate::app::CallResult::Answered),
                detail: Some("TLS: the certificate of pbx.example has expired".into()),
            }),
            Event::Cti(CtiEvent::Searching { call_id: "c1".into() }),
            Event::Cti(CtiEvent::SearchResult {
                call_id: "c1".into(),
                vars: BTreeMap::from([("NAME".to_owned(), "Bob".to_owned())]),
            }),
            Event::Cti(CtiEvent::SearchFailed {
                call_id: "c1".into(),
                error: "timed out".into(),
            }),
            Event::Cti(CtiEvent::Skipped {
                call_id: "c1".into(),
                event: "ring".into(),
                why: "anonymous".into(),
            }),
            Event::Cti(CtiEvent::Action {
                call_id: "c1".into(),
                event: "ring".into(),
                report,
            }),
        ];
        for ev in events {
            let line = to_line(&ev).expect("sent");
            let back = from_json(&serde_json::from_str(&line).expect("json")).expect("an event");
            assert_eq!(back, ev, "{line}");
        }
    }

    #[test]
    fn what_is_no_event_is_not_taken_for_one() {
        for v in [
            json!({"snapshot": {}}),
            json!({"event": "explode"}),
            json!({"event": "cti"}),
            json!({"event": "incoming", "call": 1}),
            json!(3),
        ] {
            assert_eq!(from_json(&v), None, "{v}");
        }
    }

    #[test]
    fn commands_go_out_as_they_are_read() {
        for c in [
            Command::Dial { to: "1002".into() },
            Command::Hangup { call: None },
            Command::Reclick { id: "abc".into() },
            Command::Quit,
        ] {
            assert_eq!(parse_command(&command_line(&c)), Ok(c));
        }
        assert!(parse_command("{\"cmd\":\"dial\"}").is_err_and(|e| e.starts_with("bad command")));
    }
}
