//! The value the phone uses for a key the file does not write, by dotted key path
//! (`popup.buttons`, `cti.answer.delay_seconds`), as the settings panes show it. Every value
//! is read off `Config::default()` (or the constants next to the types), so a default changed
//! there shows in the panes without a second literal here.

use super::edit::Value;
use super::{AccessConfig, Config};

/// The default of `key`, or None for a key without one: an access's `method` and `template`
/// (an access the file does not write does not run) and keys the panes do not know.
pub fn default_value(key: &str) -> Option<Value> {
    let c = Config::default();
    let text = |s: &str| Some(Value::Text(s.to_owned()));
    let list = |l: &[String]| Some(Value::List(l.to_vec()));
    let int = |i: u32| Some(Value::Int(i64::from(i)));
    match key {
        "account.uri" => text(&c.account.uri),
        "account.username" => text(&c.account.username),
        "account.password" => c.account.password.as_deref().and_then(text),
        "account.registrar" => text(&c.account.registrar),
        "account.outbound_proxy" => text(&c.account.outbound_proxy),
        "account.public_address" => text(&c.account.public_address),
        "account.stun_server" => text(&c.account.stun_server),
        "account.keepalive_seconds" => int(c.account.keepalive_seconds),
        "account.dns_servers" => list(&c.account.dns_servers),
        "account.transport" => text(c.account.transport.name()),
        "account.listen" => text(&c.account.listen),
        "account.expires" => int(c.account.expires),
        "account.extension" => text(&c.account.extension),
        "account.display_name" => text(&c.account.display_name),
        "account.call_waiting" => Some(Value::Bool(c.account.call_waiting)),
        "account.mwi" => Some(Value::Bool(c.account.mwi)),
        "account.voicemail" => text(&c.account.voicemail),
        "calls.remote_answer" => Some(Value::Bool(c.calls.remote_answer)),
        "calls.remote_answer_from" => list(&c.calls.remote_answer_from),
        "agent.not_ready_reasons" => list(&c.agent.not_ready_reasons),
        "agent.after_call_seconds" => int(c.agent.after_call_seconds),
        "agent.wrapup_codes" => list(&c.agent.wrapup_codes),
        "agent.ring_when_not_ready" => Some(Value::Bool(c.agent.ring_when_not_ready)),
        "agent.ready_code" => text(&c.agent.ready_code),
        "agent.not_ready_code" => text(&c.agent.not_ready_code),
        "cti.target" => text(c.cti.target.name()),
        "cti.skip_internal" => Some(Value::Bool(c.cti.skip_internal)),
        "cti.internal_pattern" => text(c.cti.internal_pattern.as_str()),
        "cti.session_keep_minutes" => Some(Value::Float(c.cti.session_keep_minutes)),
        "cti.timeout_seconds" => Some(Value::Float(c.cti.timeout_seconds)),
        "cti.system_number" => text(&c.cti.system_number),
        "cti.server_address" => text(&c.cti.server_address),
        "cti.answer.delay_seconds" => Some(Value::Float(AccessConfig::DEFAULT_DELAY_SECONDS)),
        "cti.hangup.only_if_answered" => Some(Value::Bool(AccessConfig::DEFAULT_ONLY_IF_ANSWERED)),
        "popup.size" => text(c.popup.size.name()),
        "popup.buttons" => Some(Value::Bool(c.popup.buttons)),
        "popup.display_seconds" => int(c.popup.display_seconds),
        "popup.copy_number" => Some(Value::Bool(c.popup.copy_number)),
        "popup.anonymous_name" => text(&c.popup.anonymous_name),
        "audio.input" => text(&c.audio.input),
        "audio.output" => text(&c.audio.output),
        "audio.codecs" => list(&c.audio.codecs),
        "audio.ring" => Some(Value::Bool(c.audio.ring)),
        "media.symmetric_rtp" => Some(Value::Bool(c.media.symmetric_rtp)),
        "media.rtp_timeout_seconds" => int(c.media.rtp_timeout_seconds),
        "media.srtp" => text(c.media.srtp.as_str()),
        "media.srtp_over_udp" => Some(Value::Bool(c.media.srtp_over_udp)),
        "ui.theme" => text(&c.ui.theme),
        "ui.language" => text(&c.ui.language),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::edit::Editor;

    /// Every section of a configuration but where it came from.
    fn sections(c: &Config) -> String {
        format!(
            "{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}",
            c.account,
            c.calls,
            c.blf,
            c.agent,
            c.cti,
            c.popup,
            c.audio,
            c.media,
            c.recording,
            c.ui,
            c.history,
            c.phonebook,
            c.keys
        )
    }

    const KEYS: &[&str] = &[
        "account.uri",
        "account.username",
        "account.registrar",
        "account.outbound_proxy",
        "account.public_address",
        "account.stun_server",
        "account.keepalive_seconds",
        "account.dns_servers",
        "account.transport",
        "account.listen",
        "account.expires",
        "account.extension",
        "account.display_name",
        "account.call_waiting",
        "account.mwi",
        "account.voicemail",
        "calls.remote_answer",
        "calls.remote_answer_from",
        "agent.not_ready_reasons",
        "agent.after_call_seconds",
        "agent.wrapup_codes",
        "agent.ring_when_not_ready",
        "agent.ready_code",
        "agent.not_ready_code",
        "cti.target",
        "cti.skip_internal",
        "cti.internal_pattern",
        "cti.session_keep_minutes",
        "cti.timeout_seconds",
        "cti.system_number",
        "cti.server_address",
        "popup.size",
        "popup.buttons",
        "popup.display_seconds",
        "popup.copy_number",
        "popup.anonymous_name",
        "audio.input",
        "audio.output",
        "audio.codecs",
        "audio.ring",
        "media.symmetric_rtp",
        "media.rtp_timeout_seconds",
        "media.srtp",
        "media.srtp_over_udp",
        "ui.theme",
        "ui.language",
    ];

    /// Writing a key's default into an empty file changes nothing the phone reads: the value
    /// shown as the default is the one the phone uses.
    #[test]
    fn writing_a_default_is_the_same_as_leaving_it_out() {
        let defaults = sections(&Config::default());
        for key in KEYS {
            let value = default_value(key).unwrap_or_else(|| panic!("{key} has no default"));
            let mut ed = Editor::from_text("", "c.toml".into()).unwrap();
            ed.set(key, Some(value)).unwrap();
            let c =
                Config::parse(ed.as_str(), None).unwrap_or_else(|e| panic!("{key}: {e}\n{}", ed.as_str()));
            assert_eq!(sections(&c), defaults, "{key}: {}", ed.as_str());
        }
        // Keys read by the CTI engine through `AccessConfig`.
        let text = "[cti.answer]\nmethod = \"get\"\ntemplate = \"https://h/\"\n\
                    [cti.hangup]\nmethod = \"get\"\ntemplate = \"https://h/\"\n";
        let c = Config::parse(text, None).unwrap();
        let written = text.replace(
            "[cti.hangup]",
            &format!(
                "delay_seconds = {:?}\n[cti.hangup]\nonly_if_answered = {:?}",
                AccessConfig::DEFAULT_DELAY_SECONDS,
                AccessConfig::DEFAULT_ONLY_IF_ANSWERED
            ),
        );
        let w = Config::parse(&written, None).unwrap();
        for (a, name) in [(&c, "unwritten"), (&w, "written")] {
            let answer = &a.cti.accesses["answer"];
            let hangup = &a.cti.accesses["hangup"];
            assert_eq!(
                (answer.delay_seconds(), hangup.only_if_answered()),
                (
                    AccessConfig::DEFAULT_DELAY_SECONDS,
                    AccessConfig::DEFAULT_ONLY_IF_ANSWERED
                ),
                "{name}"
            );
        }
        assert!(w.cti.accesses["answer"].delay_seconds.is_some());
    }

    #[test]
    fn accesses_and_unknown_keys_have_no_default() {
        assert_eq!(default_value("cti.ring.method"), None);
        assert_eq!(default_value("cti.ring.template"), None);
        assert_eq!(default_value("nothing.here"), None);
        assert_eq!(default_value("account.password"), None);
        assert_eq!(default_value("popup.buttons"), Some(Value::Bool(true)));
        assert_eq!(default_value("cti.timeout_seconds"), Some(Value::Float(5.0)));
    }
}
