//! `ctiphone dial`, `answer`, `hangup`, `status` and `open`: one command to the running
//! daemon, the outcome printed, and out. Exit codes: 0 done, 1 the phone refused or did not
//! confirm, 2 bad input or a broken connection, 3 no daemon runs for this configuration.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::client::{ConnectError, Connection, connect};
use super::{Paths, uri};
use crate::app::Command;
use crate::app::snapshot::{LiveCall, Registration, Snapshot};

/// How long a command waits for the phone to confirm it.
const CONFIRM_WAIT: Duration = Duration::from_secs(5);

/// One remote command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    Dial(String),
    /// A `tel:`/`sip:` link.
    Open(String),
    Answer,
    Hangup,
    Status {
        json: bool,
    },
}

/// Text from the phone (a caller's name, a CRM value) as it may go to a terminal.
fn shown(s: &str) -> String {
    s.escape_debug().to_string()
}

/// Runs one remote command against the daemon of `paths`.
pub fn main(paths: &Paths, what: Remote) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ctiphone: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    ExitCode::from(rt.block_on(run(paths, what)))
}

async fn run(paths: &Paths, what: Remote) -> u8 {
    // A link is checked before anything is asked of the phone.
    let what = match what {
        Remote::Open(link) => match uri::target(&link) {
            Ok(to) => Remote::Dial(to),
            Err(e) => {
                eprintln!("ctiphone open: {e}");
                return 2;
            }
        },
        w => w,
    };
    let (snap, mut conn) = match connect(&paths.socket).await {
        Ok(c) => c,
        Err(ConnectError::NotRunning) => {
            if matches!(what, Remote::Status { json: true }) {
                println!("{}", serde_json::json!({"running": false}));
            } else {
                eprintln!(
                    "ctiphone: no phone is running for this configuration ({}): start it with `ctiphone` or `ctiphone daemon`",
                    paths.socket.display()
                );
            }
            return 3;
        }
        Err(e) => {
            eprintln!("ctiphone: {e}");
            return 2;
        }
    };
    match what {
        Remote::Status { json } => {
            if json {
                let mut v = serde_json::to_value(&snap).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("running".into(), Value::Bool(true));
                }
                println!("{v}");
            } else {
                print!("{}", status_text(&snap));
            }
            0
        }
        Remote::Dial(to) => {
            let cmd = Command::Dial { to: to.clone() };
            confirm(&mut conn, &cmd, |v| {
                (kind(v) == "outgoing")
                    .then(|| format!("dialling {} (call {})", shown(&to), shown(str_of(v, "call"))))
            })
            .await
        }
        Remote::Answer => {
            let Some(call) = snap.calls.iter().find(|c| c.incoming && c.state == "ringing") else {
                eprintln!("ctiphone answer: no call is ringing");
                return 1;
            };
            let id = call.call.clone();
            let cmd = Command::Answer {
                call: Some(id.clone()),
            };
            confirm(&mut conn, &cmd, |v| {
                (str_of(v, "call") == id && matches!(kind(v), "answered" | "ended"))
                    .then(|| format!("{} {}", kind(v), shown(&id)))
            })
            .await
        }
        Remote::Hangup => {
            let Some(call) = current(&snap.calls) else {
                eprintln!("ctiphone hangup: no call to hang up");
                return 1;
            };
            let id = call.call.clone();
            let cmd = if call.incoming && call.state == "ringing" {
                Command::Reject {
                    call: Some(id.clone()),
                }
            } else {
                Command::Hangup {
                    call: Some(id.clone()),
                }
            };
            confirm(&mut conn, &cmd, |v| {
                (str_of(v, "call") == id && kind(v) == "ended").then(|| format!("ended {}", shown(&id)))
            })
            .await
        }
        Remote::Open(_) => 2,
    }
}

fn kind(v: &Value) -> &str {
    str_of(v, "event")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The call `hangup` ends: the only one, else the active one, else the newest.
fn current(calls: &[LiveCall]) -> Option<&LiveCall> {
    if calls.len() == 1 {
        return calls.first();
    }
    calls
        .iter()
        .rev()
        .find(|c| c.state == "active")
        .or_else(|| calls.last())
}

/// Sends `cmd` and waits for the event `done` recognises (its text is printed), or an
/// `error` event (printed, exit 1).
async fn confirm(conn: &mut Connection, cmd: &Command, done: impl Fn(&Value) -> Option<String>) -> u8 {
    if let Err(e) = conn.send(cmd).await {
        eprintln!("ctiphone: the daemon's socket: {e}");
        return 2;
    }
    let wait = async {
        while let Some(v) = conn.next().await {
            if let Some(text) = done(&v) {
                println!("{text}");
                return 0;
            }
            if kind(&v) == "error" {
                eprintln!("ctiphone: {}", shown(str_of(&v, "message")));
                return 1;
            }
        }
        eprintln!("ctiphone: the daemon closed the connection");
        2
    };
    match tokio::time::timeout(CONFIRM_WAIT, wait).await {
        Ok(code) => code,
        Err(_) => {
            eprintln!(
                "ctiphone: the phone did not confirm within {} s",
                CONFIRM_WAIT.as_secs()
            );
            1
        }
    }
}

/// `ctiphone status` as text.
pub fn status_text(s: &Snapshot) -> String {
    let mut out = format!("ctiphone {} running, PID {}\n", shown(&s.version), s.pid);
    let reg = match &s.registration {
        Registration::None if s.listen.is_empty() => "starting".to_owned(),
        Registration::None => format!("no registrar, calls to {}", shown(&s.listen)),
        Registration::Registered { aor, expires, stun } if !stun.is_empty() => {
            format!(
                "registered as {} ({expires} s), seen at {} (STUN)",
                shown(aor),
                shown(stun)
            )
        }
        Registration::Registered { aor, expires, .. } => {
            format!("registered as {} ({expires} s)", shown(aor))
        }
        Registration::Failed { code, reason } => match code {
            Some(c) => format!("failed: {c} {}", shown(reason)),
            None => format!("failed: {}", shown(reason)),
        },
        Registration::Unregistered => "unregistered".to_owned(),
    };
    out.push_str(&format!("registration: {reg}\n"));
    if let Some(a) = &s.agent {
        let mut line = format!("agent: {} for {}", a.state.name(), clock(a.for_s));
        if !a.reason.is_empty() {
            line.push_str(&format!(" ({})", shown(&a.reason)));
        }
        out.push_str(&line);
        out.push('\n');
    }
    if let Some(v) = &s.voicemail {
        out.push_str(&format!("voicemail: {} new, {} old\n", v.new, v.old));
    }
    if let Some(c) = &s.central {
        match (c.backlog, c.error.is_empty()) {
            (0, true) => out.push_str("central log: up to date\n"),
            (n, true) => out.push_str(&format!("central log: sending, {n} changes waiting\n")),
            (n, false) => out.push_str(&format!(
                "central log: {n} changes waiting ({})\n",
                shown(&c.error)
            )),
        }
    }
    out.push_str(&format!("calls: {}\n", s.calls.len()));
    for c in &s.calls {
        let dir = if c.incoming { "in " } else { "out" };
        let time = clock(c.answered_s.unwrap_or(c.age_s));
        let name = c
            .crm
            .vars
            .get("NAME")
            .filter(|n| !n.is_empty())
            .unwrap_or(&c.telname);
        let company = c.crm.vars.get("COMPANY").map(String::as_str).unwrap_or_default();
        // The SRTP suite of an encrypted call, last.
        let secure = c
            .srtp
            .as_deref()
            .map(|s| format!("  srtp {}", shown(s)))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}  {dir}  {:8} {time}  {}  {}  {}{secure}\n",
            shown(&c.call),
            c.state,
            shown(&c.tel),
            shown(name),
            shown(company)
        ));
    }
    out
}

/// Seconds as `m:ss` or `h:mm:ss`.
fn clock(secs: f64) -> String {
    let s = if secs.is_finite() && secs > 0.0 {
        secs as u64
    } else {
        0
    };
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_escapes_what_callers_chose() {
        let mut live = crate::app::snapshot::Live::default();
        live.apply(&crate::app::Event::Phone(crate::app::PhoneEvent::Incoming {
            call: "c1".into(),
            tel: "\u{1b}[2J0312".into(),
            telname: "Bob\nforged".into(),
            called: "1001".into(),
            calledname: String::new(),
            anonymous: false,
        }));
        let text = status_text(&live.snapshot());
        assert!(
            !text.contains('\u{1b}') && text.contains("Bob\\nforged"),
            "{text}"
        );
        assert!(text.contains("calls: 1") && text.contains("ringing"), "{text}");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(clock(f64::NAN), "0:00");
    }
}
