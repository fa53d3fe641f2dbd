//! Who is calling: {TEL}, {TELNAME}, {CALLED} from an INVITE's identity headers
//! (P-Asserted-Identity, else Remote-Party-ID, else From; Privacy: id), a connected-line
//! update's new party, and the phonebook's names for both numbers (looked up beside the
//! signalling loop: the phonebook is a database).

use crate::app::CallParams;
use crate::sip::addr::{NameAddr, Uri};
use crate::sip::message::Message;

/// {TEL}, {TELNAME}, {CALLED} of an incoming INVITE (P-Asserted-Identity, else
/// Remote-Party-ID, else From; P-Called-Party-ID, else To, else the Request-URI).
pub fn caller_identity(msg: &Message) -> CallParams {
    let (user, display, anonymous) = party(msg);
    let called = ["P-Called-Party-ID", "To"]
        .iter()
        .find_map(|h| msg.get(h).and_then(|v| NameAddr::parse(v).ok()))
        .and_then(|n| Uri::parse(&n.uri).ok())
        .and_then(|u| u.user)
        .or_else(|| msg.uri().and_then(|u| Uri::parse(u).ok()).and_then(|u| u.user))
        .unwrap_or_default();
    let mut p = CallParams::incoming(msg.call_id().unwrap_or(""), &user, &called);
    p.telname = display;
    p.anonymous = anonymous;
    p
}

/// The other party of a request: its number, display name, and whether it is withheld.
fn party(msg: &Message) -> (String, String, bool) {
    let who = ["P-Asserted-Identity", "Remote-Party-ID", "From"]
        .iter()
        .find_map(|h| msg.get_all(h).first().and_then(|v| NameAddr::parse(v).ok()));
    let uri = who.as_ref().and_then(|w| Uri::parse(&w.uri).ok());
    let user = uri.as_ref().and_then(|u| u.user.clone()).unwrap_or_default();
    let privacy = msg
        .get("Privacy")
        .is_some_and(|p| p.split(';').any(|t| t.trim().eq_ignore_ascii_case("id")));
    let anonymous = privacy || user.is_empty() || user.eq_ignore_ascii_case("anonymous");
    (user, who.and_then(|w| w.display).unwrap_or_default(), anonymous)
}

/// The new party named by a connected-line update (a re-INVITE or UPDATE with a new
/// P-Asserted-Identity): number, display name, withheld.
pub fn updated_party(msg: &Message) -> Option<(String, String, bool)> {
    let asserted = ["P-Asserted-Identity", "Remote-Party-ID"]
        .iter()
        .any(|h| !msg.get_all(h).is_empty());
    asserted.then(|| party(msg))
}

/// Names both parties from the phonebook (the local entry over the shared one): {TELNAME}
/// stays the SIP display name when the phonebook has no entry, and a withheld number is never
/// looked up. Blocking (a database): run beside the loop.
/// Names the caller ({TELNAME}, not for an anonymous one) and the called party
/// ({CALLEDNAME}) from the phonebook, waiting for it if something else holds it.
pub fn name_parties(pb: &crate::phonebook::Phonebook, params: &mut CallParams) {
    name_parties_with(params, |n| Some(pb.name_for(n)));
}

/// [`name_parties`] without waiting: `false` (and `params` unchanged) when the phonebook is
/// busy.
pub fn try_name_parties(pb: &crate::phonebook::Phonebook, params: &mut CallParams) -> bool {
    name_parties_with(params, |n| pb.try_name_for(n))
}

/// Names the parties with `name_for` (`None`: it could not look now; nothing changed then).
fn name_parties_with(
    params: &mut CallParams,
    mut name_for: impl FnMut(&str) -> Option<Option<String>>,
) -> bool {
    let tel = if params.anonymous {
        None
    } else {
        match name_for(&params.tel) {
            Some(n) => n,
            None => return false,
        }
    };
    let Some(called) = name_for(&params.called) else {
        return false;
    };
    if let Some(name) = tel {
        params.telname = name;
    }
    if let Some(name) = called {
        params.calledname = name;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: &str) -> Message {
        let text = format!(
            "INVITE sip:0120@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKa\r\n\
             From: \"Spoof\" <sip:0399999999@127.0.0.1>;tag=f\r\nTo: <sip:0120000111@127.0.0.1>\r\n\
             Call-ID: c1\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn caller_identity_prefers_asserted_identity_and_detects_anonymous() {
        let p = caller_identity(&request(
            "P-Asserted-Identity: \"Yamada\" <sip:0311112222@pbx>\r\n",
        ));
        assert_eq!((p.tel.as_str(), p.telname.as_str()), ("0311112222", "Yamada"));
        assert_eq!(p.called, "0120000111");
        assert!(!p.anonymous);
        let p = caller_identity(&request(""));
        assert_eq!((p.tel.as_str(), p.telname.as_str()), ("0399999999", "Spoof"));
        let p = caller_identity(&request("Privacy: id\r\n"));
        assert!(p.anonymous);
        let p = caller_identity(&request(
            "P-Asserted-Identity: <sip:anonymous@anonymous.invalid>\r\n",
        ));
        assert!(p.anonymous);
    }

    #[test]
    fn a_connected_line_update_needs_an_asserted_identity() {
        assert_eq!(updated_party(&request("")), None);
        assert_eq!(
            updated_party(&request("P-Asserted-Identity: \"Sato\" <sip:0355556666@pbx>\r\n")),
            Some(("0355556666".into(), "Sato".into(), false))
        );
    }
}
