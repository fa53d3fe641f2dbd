//! What the settings panes hold: each pane's fields (dotted key, catalog label, how it is
//! edited), the value a field shows — the file's, else the default the phone uses, marked as
//! such — and the text form of an access's captures (`TOKEN=json:/token, SID=line:SID`).

use crate::config::ACCESS_NAMES;
use crate::config::defaults::default_value;
use crate::config::edit::Value;

use super::super::i18n::Catalog;

/// How a field is edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Bool,
    Int,
    Float,
    Text,
    Secret,
    /// Cycled through; `""` removes the key.
    Enum(&'static [&'static str]),
    List,
    /// An access's captures, edited as `VAR=rule, VAR=rule`.
    Captures,
}

/// One editable field: its dotted key, its label (catalog key), its kind, and the catalog
/// key of what an empty value means for it.
#[derive(Clone, Debug)]
pub(super) struct Field {
    pub key: String,
    pub label: String,
    pub kind: Kind,
    pub empty: &'static str,
}

fn field(key: &str, label: &str, kind: Kind) -> Field {
    Field {
        key: key.to_owned(),
        label: label.to_owned(),
        kind,
        empty: "settings.none",
    }
}

impl Field {
    fn empty_means(mut self, catalog_key: &'static str) -> Field {
        self.empty = catalog_key;
        self
    }
}

/// The methods an access cycles through; `""` removes the access's method.
pub(super) const METHODS: &[&str] = &["", "browser_get", "get", "browser_post", "post", "command"];

/// The panes, by catalog key.
pub(super) const PANES: [&str; 7] = [
    "settings.basic",
    "settings.targets",
    "settings.popup",
    "settings.custom",
    "settings.account",
    "settings.audio",
    "settings.theme",
];

/// The pane of target numbers (built from the file and the calls seen).
pub(super) const NUMBERS_PANE: usize = 1;
/// The Custom integration pane: a table of the accesses, then [`pane_fields`] of it.
pub(super) const CUSTOM_PANE: usize = 3;

/// The columns of the accesses table, after the access's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Column {
    Method,
    Template,
    Captures,
}

impl Column {
    pub const ALL: [Column; 3] = [Column::Method, Column::Template, Column::Captures];

    /// The catalog key of the column's header.
    pub fn label(self) -> &'static str {
        match self {
            Column::Method => "field.method",
            Column::Template => "field.template",
            Column::Captures => "field.captures",
        }
    }

    /// The dotted key this column edits for `access`.
    pub fn key(self, access: &str) -> String {
        match self {
            Column::Method => format!("cti.{access}.method"),
            Column::Template => format!("cti.{access}.template"),
            Column::Captures => format!("cti.{access}.captures"),
        }
    }
}

/// The field one cell of the accesses table edits.
pub(super) fn cell(access: &str, col: Column) -> Field {
    let kind = match col {
        Column::Method => Kind::Enum(METHODS),
        Column::Template => Kind::Text,
        Column::Captures => Kind::Captures,
    };
    field(&col.key(access), col.label(), kind)
}

/// The label/value fields of a pane (for the Custom integration pane, those below the
/// accesses table; none for the target numbers).
pub(super) fn pane_fields(pane: usize) -> Vec<Field> {
    match pane {
        0 => vec![
            field("cti.target", "field.target", Kind::Enum(&["none", "custom"])),
            field("cti.skip_internal", "field.skip_internal", Kind::Bool),
            field("cti.internal_pattern", "field.internal_pattern", Kind::Text),
            field("cti.session_keep_minutes", "field.session_keep", Kind::Float),
            field("cti.timeout_seconds", "field.timeout", Kind::Float),
            field("cti.system_number", "field.system_number", Kind::Text),
            // PAR-6: an empty server address means the registrar's host.
            field("cti.server_address", "field.server_address", Kind::Text)
                .empty_means("settings.registrar_host"),
        ],
        2 => vec![
            field(
                "popup.size",
                "field.size",
                Kind::Enum(&["small", "medium", "large"]),
            ),
            field("popup.buttons", "field.buttons", Kind::Bool),
            field("popup.display_seconds", "field.display_seconds", Kind::Int),
            field("popup.copy_number", "field.copy_number", Kind::Bool),
            field("popup.anonymous_name", "field.anonymous_name", Kind::Text),
        ],
        CUSTOM_PANE => vec![
            field("cti.answer.delay_seconds", "field.delay", Kind::Float),
            field(
                "cti.hangup.only_if_answered",
                "field.only_if_answered",
                Kind::Bool,
            ),
        ],
        4 => vec![
            field("account.uri", "field.uri", Kind::Text),
            field("account.username", "field.username", Kind::Text),
            field("account.password", "field.password", Kind::Secret),
            field("account.registrar", "field.registrar", Kind::Text),
            field("account.outbound_proxy", "field.outbound_proxy", Kind::Text),
            field("account.public_address", "field.public_address", Kind::Text),
            field("account.stun_server", "field.stun_server", Kind::Text),
            field("account.keepalive_seconds", "field.keepalive", Kind::Int),
            field("account.dns_servers", "field.dns_servers", Kind::List),
            field(
                "account.transport",
                "field.transport",
                Kind::Enum(&["udp", "tcp", "tls"]),
            ),
            field("account.listen", "field.listen", Kind::Text),
            field("account.extension", "field.extension", Kind::Text),
            field("account.display_name", "field.display_name", Kind::Text),
            field("account.call_waiting", "field.call_waiting", Kind::Bool),
            field("account.mwi", "field.mwi", Kind::Bool),
            field("account.voicemail", "field.voicemail", Kind::Text),
            field("calls.remote_answer", "field.remote_answer", Kind::Bool),
            // An empty list: the registrar's host may ask.
            field("calls.remote_answer_from", "field.remote_answer_from", Kind::List)
                .empty_means("settings.registrar_host"),
            field("agent.not_ready_reasons", "field.not_ready_reasons", Kind::List),
            field("agent.after_call_seconds", "field.after_call_seconds", Kind::Int),
            field("agent.wrapup_codes", "field.wrapup_codes", Kind::List),
            field(
                "agent.ring_when_not_ready",
                "field.ring_when_not_ready",
                Kind::Bool,
            ),
            field("agent.ready_code", "field.ready_code", Kind::Text),
            field("agent.not_ready_code", "field.not_ready_code", Kind::Text),
        ],
        5 => vec![
            field("audio.input", "field.input", Kind::Text).empty_means("settings.system_device"),
            field("audio.output", "field.output", Kind::Text).empty_means("settings.system_device"),
            field("audio.codecs", "field.codecs", Kind::List),
            field("audio.ring", "field.ring", Kind::Bool),
            field("media.symmetric_rtp", "field.symmetric_rtp", Kind::Bool),
            field("media.rtp_timeout_seconds", "field.rtp_timeout", Kind::Int),
            field(
                "media.srtp",
                "field.srtp",
                Kind::Enum(&["off", "optional", "mandatory"]),
            ),
            field("media.srtp_over_udp", "field.srtp_over_udp", Kind::Bool),
        ],
        6 => vec![
            // An empty theme is the bundled `default` one.
            field(
                "ui.theme",
                "field.theme",
                Kind::Enum(&["", "light", "high-contrast", "mono"]),
            )
            .empty_means("settings.theme_default"),
            field("ui.language", "field.language", Kind::Enum(&["", "en", "ja"]))
                .empty_means("settings.from_env"),
        ],
        _ => Vec::new(),
    }
}

/// The accesses of the table, in the manual's order.
pub(super) fn accesses() -> &'static [&'static str] {
    &ACCESS_NAMES
}

/// A value as the file has it, else the default the phone uses (`true` when it is the
/// default). None: neither (an access not written, a password not set).
pub(super) fn effective(written: Option<Value>, key: &str) -> (Option<Value>, bool) {
    match written {
        Some(v) => (Some(v), false),
        None => (default_value(key), true),
    }
}

/// The text a field's value is edited as (no catalog words: what the user types).
pub(super) fn raw(v: Option<&Value>) -> String {
    match v {
        None => String::new(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::Float(f)) => f.to_string(),
        Some(Value::Text(t)) => t.clone(),
        Some(Value::List(l)) => l.join(", "),
        Some(Value::Numbers(n)) => n.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "),
    }
}

/// The words a field's value is shown as: yes/no for a switch, `***` for a set secret, what
/// an empty value means for the field, else the value itself.
pub(super) fn shown(v: Option<&Value>, f: &Field, cat: &Catalog) -> String {
    match v {
        None => cat.get("settings.none").to_owned(),
        Some(_) if f.kind == Kind::Secret => "***".to_owned(),
        Some(Value::Bool(b)) => cat.get(if *b { "yes" } else { "no" }).to_owned(),
        Some(v) => {
            let text = raw(Some(v));
            if text.is_empty() {
                cat.get(f.empty).to_owned()
            } else {
                text
            }
        }
    }
}

/// An access's captures as one line: `VAR=rule, VAR=rule`.
pub(super) fn captures_text(entries: &[(String, String)]) -> String {
    entries
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads `captures_text` back. A comma starts a new capture only when a variable name and
/// `=` follow it (or nothing), so a rule may hold commas (`regex:a{1,3}`). Names are letters, digits and
/// `_`, not starting with a digit; every rule is non-empty.
pub(super) fn parse_captures(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices(',') {
        let rest = &text[i + 1..];
        if starts_with_name_eq(rest) || rest.trim().is_empty() {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    parts.push(&text[start..]);
    let mut out: Vec<(String, String)> = Vec::new();
    for part in parts.into_iter().filter(|p| !p.trim().is_empty()) {
        let Some((name, rule)) = part.split_once('=') else {
            return Err(format!(
                "capture `{}`: expected NAME=rule (json:/pointer, regex:PATTERN or line:KEY)",
                part.trim()
            ));
        };
        let (name, rule) = (name.trim(), rule.trim());
        if !is_name(name) {
            return Err(format!(
                "capture name `{name}`: expected letters, digits and _ (not starting with a digit)"
            ));
        }
        if rule.is_empty() {
            return Err(format!("capture `{name}` has no rule"));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("capture `{name}` is given twice"));
        }
        out.push((name.to_owned(), rule.to_owned()));
    }
    Ok(out)
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `s` starts, after blanks, with a capture name and `=`.
fn starts_with_name_eq(s: &str) -> bool {
    s.trim_start()
        .split_once('=')
        .is_some_and(|(name, _)| is_name(name.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::i18n::Lang;

    #[test]
    fn captures_read_back_and_rules_keep_their_commas() {
        let entries = vec![
            ("TOKEN".to_owned(), "json:/token".to_owned()),
            ("CODE".to_owned(), "regex:id=([0-9]{1,3}), x".to_owned()),
            ("SID".to_owned(), "line:SID".to_owned()),
        ];
        let text = captures_text(&entries);
        assert_eq!(
            text,
            "TOKEN=json:/token, CODE=regex:id=([0-9]{1,3}), x, SID=line:SID"
        );
        assert_eq!(parse_captures(&text).unwrap(), entries);
        assert_eq!(parse_captures("  ").unwrap(), vec![]);
        assert_eq!(
            parse_captures(" A = json:/a ,B=line:B,").unwrap(),
            vec![("A".into(), "json:/a".into()), ("B".into(), "line:B".into())]
        );
    }

    #[test]
    fn bad_captures_are_refused_with_the_reason() {
        assert!(parse_captures("json:/a").unwrap_err().contains("NAME=rule"));
        assert!(parse_captures("1A=json:/a").unwrap_err().contains("`1A`"));
        assert!(parse_captures("A.B=json:/a").unwrap_err().contains("`A.B`"));
        assert!(parse_captures("A=").unwrap_err().contains("no rule"));
        assert!(parse_captures("A=x, A=y").unwrap_err().contains("twice"));
    }

    #[test]
    fn unset_fields_show_the_default_the_phone_uses() {
        let cat = Catalog::new(Lang::En);
        let fields = pane_fields(2);
        let buttons = fields.iter().find(|f| f.key == "popup.buttons").unwrap();
        let (v, default) = effective(None, &buttons.key);
        assert!(default);
        assert_eq!(shown(v.as_ref(), buttons, &cat), "Yes");
        let (v, default) = effective(Some(Value::Bool(false)), &buttons.key);
        assert!(!default);
        assert_eq!(shown(v.as_ref(), buttons, &cat), "No");
        let language = pane_fields(6)
            .into_iter()
            .find(|f| f.key == "ui.language")
            .unwrap();
        let (v, _) = effective(None, &language.key);
        assert_eq!(shown(v.as_ref(), &language, &cat), "from LANG");
        let password = pane_fields(4)
            .into_iter()
            .find(|f| f.kind == Kind::Secret)
            .unwrap();
        assert_eq!(shown(None, &password, &cat), "none");
        assert_eq!(shown(Some(&Value::Text("pw".into())), &password, &cat), "***");
    }

    #[test]
    fn every_access_and_label_is_in_the_catalogs() {
        for lang in Lang::ALL {
            let cat = Catalog::new(*lang);
            let keys = accesses()
                .iter()
                .map(|a| format!("access.{a}"))
                .chain(
                    (0..PANES.len())
                        .flat_map(pane_fields)
                        .flat_map(|f| [f.label, f.empty.to_owned()]),
                )
                .chain(Column::ALL.iter().map(|c| c.label().to_owned()));
            for key in keys {
                assert_ne!(cat.get(&key), key, "{lang:?} has no {key}");
            }
        }
    }

    #[test]
    fn every_field_of_every_pane_has_a_default() {
        for pane in 0..PANES.len() {
            for f in pane_fields(pane) {
                assert!(
                    f.kind == Kind::Secret || default_value(&f.key).is_some(),
                    "{} has no default",
                    f.key
                );
            }
        }
    }
}
