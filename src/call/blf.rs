//! The busy-lamp field: what a colleague's `dialog` event (RFC 4235 `application/dialog-info
//! +xml`) says about them — idle, ringing, in a call — and, for a ringing one, the early
//! dialog a pickup would replace. The XML is a stranger's: parsed by roxmltree (no entities
//! expanded beyond XML's own, no DTD), size-capped, and any value kept is cleaned by the front
//! ends before it is shown.

use serde::Serialize;

/// The most bytes of a dialog-info document read.
const MAX_BODY: usize = 64 * 1024;

/// A colleague's lamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lamp {
    /// No subscription answer yet, or it failed.
    #[default]
    Unknown,
    Idle,
    Ringing,
    Busy,
}

impl Lamp {
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Idle => "idle",
            Self::Ringing => "ringing",
            Self::Busy => "busy",
        }
    }
}

/// A ringing colleague's early dialog, as their phone sees it, and who calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EarlyDialog {
    pub call_id: String,
    /// The colleague's tag.
    pub local_tag: String,
    /// The caller's tag.
    pub remote_tag: String,
    /// The caller's address (`<remote><target uri>`, else `<remote><identity>`).
    pub remote: String,
}

/// What one NOTIFY says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DialogInfo {
    pub lamp: Lamp,
    /// The first early dialog where the colleague is called (for a pickup).
    pub ringing: Option<EarlyDialog>,
}

/// Reads a dialog-info document: busy when any dialog is confirmed, else ringing when any is
/// early (trying, proceeding, early), else idle. `Err` for a document that is not one.
pub fn parse(body: &str) -> Result<DialogInfo, String> {
    if body.trim().is_empty() {
        // A notifier with no published state sends no body (Kamailio's presence does): no
        // dialogs, no calls.
        return Ok(DialogInfo {
            lamp: Lamp::Idle,
            ringing: None,
        });
    }
    if body.len() > MAX_BODY {
        return Err(format!(
            "dialog-info of {} bytes (at most {MAX_BODY})",
            body.len()
        ));
    }
    let doc = roxmltree::Document::parse(body).map_err(|e| format!("dialog-info: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "dialog-info" {
        return Err(format!(
            "dialog-info: the root element is <{}>",
            root.tag_name().name()
        ));
    }
    let (mut busy, mut early) = (false, None::<EarlyDialog>);
    let mut any_early = false;
    for d in root
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "dialog")
    {
        let state = d
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == "state")
            .and_then(|n| n.text())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match state.as_str() {
            "confirmed" => busy = true,
            "trying" | "proceeding" | "early" => {
                any_early = true;
                let called = d.attribute("direction") != Some("initiator");
                if early.is_none() && called {
                    let remote = d
                        .children()
                        .find(|n| n.is_element() && n.tag_name().name() == "remote")
                        .map(|r| {
                            let target = r
                                .children()
                                .find(|n| n.is_element() && n.tag_name().name() == "target")
                                .and_then(|t| t.attribute("uri"));
                            let identity = r
                                .children()
                                .find(|n| n.is_element() && n.tag_name().name() == "identity")
                                .and_then(|t| t.text());
                            target.or(identity).unwrap_or("").trim().to_owned()
                        })
                        .unwrap_or_default();
                    early = Some(EarlyDialog {
                        call_id: d.attribute("call-id").unwrap_or("").to_owned(),
                        local_tag: d.attribute("local-tag").unwrap_or("").to_owned(),
                        remote_tag: d.attribute("remote-tag").unwrap_or("").to_owned(),
                        remote,
                    });
                }
            }
            _ => {}
        }
    }
    let lamp = if busy {
        Lamp::Busy
    } else if any_early {
        Lamp::Ringing
    } else {
        Lamp::Idle
    };
    Ok(DialogInfo {
        lamp,
        ringing: early.filter(|e| !e.call_id.is_empty() && lamp == Lamp::Ringing),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RINGING: &str = r#"<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:1002@pbx">
  <dialog id="a1" call-id="abc@host" local-tag="callee" remote-tag="caller" direction="recipient">
    <state>early</state>
    <remote><identity>sip:0311112222@pbx</identity><target uri="sip:0311112222@10.0.0.9:5060"/></remote>
  </dialog>
</dialog-info>"#;

    #[test]
    fn the_lamp_follows_the_dialog_states() {
        let r = parse(RINGING).unwrap();
        assert_eq!(r.lamp, Lamp::Ringing);
        let e = r.ringing.unwrap();
        assert_eq!(
            (e.call_id.as_str(), e.local_tag.as_str(), e.remote_tag.as_str()),
            ("abc@host", "callee", "caller")
        );
        assert_eq!(e.remote, "sip:0311112222@10.0.0.9:5060");
        let busy = RINGING.replace("<state>early</state>", "<state>confirmed</state>");
        assert_eq!(parse(&busy).unwrap().lamp, Lamp::Busy);
        assert_eq!(parse(&busy).unwrap().ringing, None);
        let idle = RINGING.replace("<state>early</state>", "<state>terminated</state>");
        assert_eq!(parse(&idle).unwrap().lamp, Lamp::Idle);
        let empty = r#"<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="2" state="full" entity="sip:1002@pbx"/>"#;
        assert_eq!(parse(empty).unwrap().lamp, Lamp::Idle);
        // Calling out: ringing, but nothing to pick up.
        let out = RINGING.replace("direction=\"recipient\"", "direction=\"initiator\"");
        let r = parse(&out).unwrap();
        assert_eq!((r.lamp, r.ringing), (Lamp::Ringing, None));
    }

    #[test]
    fn hostile_documents_are_errors() {
        assert_eq!(parse("").unwrap().lamp, Lamp::Idle, "no body: no dialogs");
        for bad in [
            "not xml",
            "<html/>",
            "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><dialog-info>&a;&a;</dialog-info>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let huge = format!("<dialog-info>{}</dialog-info>", " ".repeat(MAX_BODY));
        assert!(parse(&huge).is_err());
    }
}
