//! Message catalogs: one flat TOML file per language.
//!
//! Each language is a file `src/lang/<code>.toml` of `key = "text"` entries
//! (dotted keys such as `status.failed` are flattened), embedded into the
//! binary with `include_str!`. English is the reference: a key missing from
//! another catalog falls back to English, then to the key itself, so a
//! half-finished translation never shows an empty label.
//!
//! Adding a third language: add the file, a [`Lang`] variant, its codes in
//! [`Lang::parse`] and one line in [`Lang::source`]. The tests then check
//! that the new file has exactly the English key set and placeholders.

use std::collections::HashMap;
use std::sync::LazyLock;

/// A user-interface language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    /// English (the reference catalog).
    #[default]
    En,
    /// Japanese.
    Ja,
}

impl Lang {
    /// Every supported language, reference first.
    pub const ALL: &'static [Lang] = &[Lang::En, Lang::Ja];

    /// Parses a language code or a POSIX locale name: `"en"`, `"ja"`,
    /// `"ja_JP.UTF-8"`, `"en-US"`, `"ja_JP@euro"` (case-insensitive).
    /// `"C"`, `"POSIX"` and unsupported languages give `None`.
    pub fn parse(s: &str) -> Option<Lang> {
        let s = s.trim();
        let end = s.find(['.', '@']).unwrap_or(s.len());
        let base = s.get(..end).unwrap_or(s);
        let lang = base.split(['_', '-']).next().unwrap_or(base);
        match lang.to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "ja" => Some(Lang::Ja),
            _ => None,
        }
    }

    /// The language from the environment, POSIX precedence: the first
    /// non-empty of `LC_ALL`, `LC_MESSAGES`, `LANG` decides; unset, `C`,
    /// `POSIX` or an unsupported language give English.
    pub fn from_env() -> Lang {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(get: impl Fn(&str) -> Option<String>) -> Lang {
        ["LC_ALL", "LC_MESSAGES", "LANG"]
            .into_iter()
            .filter_map(get)
            .find(|v| !v.trim().is_empty())
            .and_then(|v| Lang::parse(&v))
            .unwrap_or_default()
    }

    /// The short code, as used for the catalog file name.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    /// The embedded catalog text.
    fn source(self) -> &'static str {
        match self {
            Lang::En => include_str!("../lang/en.toml"),
            Lang::Ja => include_str!("../lang/ja.toml"),
        }
    }
}

type Messages = HashMap<String, String>;

static EN: LazyLock<Messages> = LazyLock::new(|| load(Lang::En));
static JA: LazyLock<Messages> = LazyLock::new(|| load(Lang::Ja));

fn messages(lang: Lang) -> &'static Messages {
    match lang {
        Lang::En => &EN,
        Lang::Ja => &JA,
    }
}

/// Parses an embedded catalog; a broken file (caught by the tests) yields an
/// empty catalog rather than a panic, so lookups fall back.
fn load(lang: Lang) -> Messages {
    parse_catalog(lang.source()).unwrap_or_default()
}

/// Parses and flattens a catalog; errors name the offending key.
fn parse_catalog(src: &str) -> Result<Messages, String> {
    let table: toml::Table = toml::from_str(src).map_err(|e| e.to_string())?;
    let mut out = Messages::new();
    flatten("", &table, &mut out)?;
    Ok(out)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Messages) -> Result<(), String> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            toml::Value::Table(t) => flatten(&key, t, out)?,
            _ => return Err(format!("{key}: value must be a string")),
        }
    }
    Ok(())
}

/// The messages of one language, with English fallback.
#[derive(Debug, Clone, Copy)]
pub struct Catalog {
    lang: Lang,
    own: &'static Messages,
    en: &'static Messages,
}

impl Catalog {
    /// The catalog for `lang` (parsed once per process, then shared).
    pub fn new(lang: Lang) -> Catalog {
        Catalog {
            lang,
            own: messages(lang),
            en: messages(Lang::En),
        }
    }

    /// A catalog from a file (a language beyond the bundled ones: a third language is a file,
    /// e.g. `$XDG_CONFIG_HOME/ctiphone/lang/fr.toml`, not a code change). Missing keys fall
    /// back to English. The file is read once per process.
    pub fn from_file(path: &std::path::Path) -> Result<Catalog, String> {
        let src = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let parsed = parse_catalog(&src).map_err(|e| format!("{}: {e}", path.display()))?;
        let own: &'static Messages = Box::leak(Box::new(parsed));
        Ok(Catalog {
            lang: Lang::En,
            own,
            en: messages(Lang::En),
        })
    }

    /// The catalog's language.
    pub fn lang(&self) -> Lang {
        self.lang
    }

    /// The text for `key`: this language, else English, else `key` itself.
    pub fn get<'a>(&'a self, key: &'a str) -> &'a str {
        self.own
            .get(key)
            .or_else(|| self.en.get(key))
            .map_or(key, String::as_str)
    }

    /// [`get`](Self::get) with `{name}` placeholders replaced by the values
    /// in `args`. Unknown placeholders are left as they are; substituted
    /// values are not scanned again. Values are inserted verbatim: pass
    /// caller-controlled text through `text::clean` first.
    pub fn fmt(&self, key: &str, args: &[(&str, &str)]) -> String {
        substitute(self.get(key), args)
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::new(Lang::default())
    }
}

fn substitute(template: &str, args: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (before, from_open) = rest.split_at(open);
        out.push_str(before);
        let after_open = from_open.get(1..).unwrap_or("");
        let value = after_open.find('}').and_then(|close| {
            let name = after_open.get(..close)?;
            let value = args.iter().find(|(n, _)| *n == name)?.1;
            Some((value, close))
        });
        match value {
            Some((value, close)) => {
                out.push_str(value);
                rest = after_open.get(close + 1..).unwrap_or("");
            }
            None => {
                out.push('{');
                rest = after_open;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn a_third_language_is_a_file() {
        let dir = std::env::temp_dir().join(format!("ctiphone-lang-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("fr.toml");
        std::fs::write(&path, "\"popup.answer\" = \"Répondre\"\n").unwrap();
        let c = Catalog::from_file(&path).unwrap();
        assert_eq!(c.get("popup.answer"), "Répondre");
        assert_eq!(
            c.get("popup.hangup"),
            Catalog::new(Lang::En).get("popup.hangup"),
            "falls back to English"
        );
        std::fs::write(&path, "broken = [").unwrap();
        assert!(Catalog::from_file(&path).unwrap_err().contains("fr.toml"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Keys the UI uses; all must exist in English.
    const REQUIRED: &[&str] = &[
        "app.title",
        "status.registered",
        "status.registering",
        "status.unregistered",
        "status.failed",
        "status.direct",
        "status.dnd",
        "status.muted",
        "status.recording",
        "calls.active",
        "calls.history",
        "calls.empty",
        "col.state",
        "col.date",
        "col.dir",
        "col.result",
        "col.number",
        "col.name",
        "col.company",
        "col.duration",
        "col.quality",
        "col.rec",
        "quality.detail",
        "quality.rtt",
        "state.ringing",
        "state.calling",
        "state.ringback",
        "state.active",
        "state.held",
        "state.conference",
        "dir.in",
        "dir.out",
        "popup.title",
        "popup.number",
        "popup.name",
        "popup.called",
        "popup.called_name",
        "popup.company",
        "popup.crm_name",
        "popup.ext_id",
        "popup.searching",
        "popup.search_failed",
        "popup.not_found",
        "popup.answer",
        "popup.hangup",
        "popup.open",
        "popup.closes",
        "popup.link",
        "popup.copied",
        "dial.prompt",
        "dial.hint",
        "help.title",
        "help.answer",
        "help.hangup",
        "help.hold",
        "help.mute",
        "help.transfer",
        "help.consult",
        "help.swap",
        "help.complete",
        "help.cancel_consult",
        "help.conference",
        "help.ready",
        "help.not_ready",
        "help.wrapup",
        "help.voicemail",
        "help.blf",
        "blf.title",
        "blf.keys",
        "blf.idle",
        "blf.ringing",
        "blf.busy",
        "blf.unknown",
        "status.voicemail",
        "status.central",
        "status.ready",
        "status.not_ready",
        "status.after_call",
        "choose.not_ready",
        "choose.wrapup",
        "help.dnd",
        "help.record",
        "help.dial",
        "help.settings",
        "help.help",
        "help.quit",
        "help.detach",
        "help.stop",
        "help.log",
        "help.up",
        "help.down",
        "help.callback",
        "help.click",
        "log.title",
        "quit.confirm",
        "quit.confirm_stop",
        "settings.title",
        "settings.basic",
        "settings.targets",
        "settings.popup",
        "settings.custom",
        "settings.account",
        "settings.audio",
        "settings.theme",
        "settings.save",
        "settings.saved",
        "settings.invalid",
        "settings.preview",
        "settings.check_all",
        "settings.uncheck_all",
        "settings.default_value",
        "settings.none",
        "settings.from_env",
        "settings.registrar_host",
        "settings.system_device",
        "settings.theme_default",
        "settings.access",
        "settings.keys",
        "settings.keys_table",
        "field.target",
        "field.skip_internal",
        "field.internal_pattern",
        "field.session_keep",
        "field.timeout",
        "field.system_number",
        "field.server_address",
        "field.size",
        "field.buttons",
        "field.display_seconds",
        "field.copy_number",
        "field.anonymous_name",
        "field.method",
        "field.template",
        "field.body",
        "field.captures",
        "field.delay",
        "field.only_if_answered",
        "access.auth",
        "access.search",
        "access.click",
        "access.ring",
        "access.answer",
        "access.hangup",
        "access.outgoing",
        "access.recorded",
        "access.status",
        "method.browser_get",
        "method.get",
        "method.browser_post",
        "method.post",
        "method.command",
        "field.uri",
        "field.username",
        "field.password",
        "field.registrar",
        "field.outbound_proxy",
        "field.public_address",
        "field.stun_server",
        "field.keepalive",
        "field.dns_servers",
        "field.transport",
        "field.listen",
        "field.extension",
        "field.display_name",
        "field.call_waiting",
        "field.mwi",
        "field.voicemail",
        "field.remote_answer",
        "field.remote_answer_from",
        "field.not_ready_reasons",
        "field.after_call_seconds",
        "field.wrapup_codes",
        "field.ring_when_not_ready",
        "field.ready_code",
        "field.not_ready_code",
        "field.input",
        "field.output",
        "field.codecs",
        "field.ring",
        "field.symmetric_rtp",
        "field.rtp_timeout",
        "field.srtp",
        "field.srtp_over_udp",
        "field.theme",
        "field.language",
        "yes",
        "no",
        "anonymous",
    ];

    fn parsed(lang: Lang) -> Messages {
        match parse_catalog(lang.source()) {
            Ok(m) => m,
            Err(e) => panic!("src/lang/{}.toml: {e}", lang.code()),
        }
    }

    fn placeholders(s: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            rest = &rest[open + 1..];
            if let Some(close) = rest.find('}') {
                out.insert(rest[..close].to_owned());
                rest = &rest[close + 1..];
            }
        }
        out
    }

    #[test]
    fn all_catalogs_parse_and_are_not_empty() {
        for &lang in Lang::ALL {
            let m = parsed(lang);
            assert!(!m.is_empty(), "{} is empty", lang.code());
            for (k, v) in &m {
                assert!(!v.trim().is_empty(), "{}: {k} is blank", lang.code());
                assert!(
                    !v.chars().any(char::is_control),
                    "{}: {k} contains a control character",
                    lang.code()
                );
            }
        }
    }

    #[test]
    fn english_has_every_required_key() {
        let en = parsed(Lang::En);
        // Every call result is named in the call list (`result.answered`, …).
        let results = crate::app::CallResult::ALL.map(|r| format!("result.{r}"));
        let missing: Vec<_> = REQUIRED
            .iter()
            .map(|k| k.to_string())
            .chain(results)
            .filter(|k| !en.contains_key(k))
            .collect();
        assert!(missing.is_empty(), "en.toml lacks {missing:?}");
    }

    #[test]
    fn key_sets_identical() {
        let en: BTreeSet<String> = parsed(Lang::En).into_keys().collect();
        for &lang in &Lang::ALL[1..] {
            let other: BTreeSet<String> = parsed(lang).into_keys().collect();
            let missing: Vec<_> = en.difference(&other).collect();
            let extra: Vec<_> = other.difference(&en).collect();
            assert!(missing.is_empty(), "{}.toml lacks keys {missing:?}", lang.code());
            assert!(
                extra.is_empty(),
                "{}.toml has keys not in en.toml: {extra:?}",
                lang.code()
            );
        }
    }

    #[test]
    fn placeholders_match_english() {
        let en = parsed(Lang::En);
        for &lang in &Lang::ALL[1..] {
            let other = parsed(lang);
            for (k, v) in &en {
                if let Some(t) = other.get(k) {
                    assert_eq!(
                        placeholders(v),
                        placeholders(t),
                        "{}.toml: placeholders of {k} differ from en",
                        lang.code()
                    );
                }
            }
        }
        assert_eq!(
            placeholders(&en["status.failed"]),
            BTreeSet::from(["reason".to_owned()])
        );
    }

    #[test]
    fn vendor_terms_in_japanese() {
        let ja = Catalog::new(Lang::Ja);
        assert_eq!(ja.get("settings.basic"), "基本設定");
        assert_eq!(ja.get("field.session_keep"), "セッション保持時間（分）");
        assert_eq!(ja.get("method.command"), "OSコマンド");
        assert_eq!(ja.get("access.recorded"), "録音完了時アクセス");
    }

    #[test]
    fn fallback_to_english_then_key() {
        let ja = Catalog::new(Lang::Ja);
        assert_eq!(ja.get("popup.answer"), "応答");
        assert_eq!(ja.get("no.such.key"), "no.such.key");
        let en = Catalog::new(Lang::En);
        assert_eq!(en.get("popup.answer"), "Answer");

        // Language fallback, exercised on a catalog with a missing entry.
        let empty: &'static Messages = Box::leak(Box::default());
        let partial = Catalog {
            lang: Lang::Ja,
            own: empty,
            en: messages(Lang::En),
        };
        assert_eq!(partial.get("popup.answer"), "Answer");
        assert_eq!(partial.fmt("popup.closes", &[("secs", "5")]), "closes in 5 s");
    }

    #[test]
    fn fmt_replaces_placeholders() {
        let en = Catalog::new(Lang::En);
        assert_eq!(
            en.fmt("status.failed", &[("reason", "403 Forbidden")]),
            "registration failed: 403 Forbidden"
        );
        let ja = Catalog::new(Lang::Ja);
        assert_eq!(ja.fmt("popup.closes", &[("secs", "10")]), "10 秒後に閉じます");
        assert_eq!(en.fmt("popup.closes", &[]), "closes in {secs} s");
        assert_eq!(substitute("{a}{b}{a}", &[("a", "{b}"), ("b", "x")]), "{b}x{b}");
        assert_eq!(substitute("{ {x} }", &[("x", "1")]), "{ 1 }");
        assert_eq!(substitute("tail {", &[]), "tail {");
        assert_eq!(substitute("{unknown} ok", &[("x", "1")]), "{unknown} ok");
    }

    #[test]
    fn parse_locales() {
        assert_eq!(Lang::parse("en"), Some(Lang::En));
        assert_eq!(Lang::parse("ja"), Some(Lang::Ja));
        assert_eq!(Lang::parse("ja_JP.UTF-8"), Some(Lang::Ja));
        assert_eq!(Lang::parse("ja_JP.eucJP@x"), Some(Lang::Ja));
        assert_eq!(Lang::parse("JA-jp"), Some(Lang::Ja));
        assert_eq!(Lang::parse("en_US.UTF-8"), Some(Lang::En));
        assert_eq!(Lang::parse("C.UTF-8"), None);
        assert_eq!(Lang::parse("POSIX"), None);
        assert_eq!(Lang::parse("fr_FR"), None);
        assert_eq!(Lang::parse(""), None);
    }

    #[test]
    fn env_precedence() {
        let vars = |all: Option<&'static str>, msg: Option<&'static str>, lang: Option<&'static str>| {
            move |name: &str| {
                match name {
                    "LC_ALL" => all,
                    "LC_MESSAGES" => msg,
                    "LANG" => lang,
                    _ => None,
                }
                .map(str::to_owned)
            }
        };
        assert_eq!(Lang::from_vars(vars(None, None, None)), Lang::En);
        assert_eq!(Lang::from_vars(vars(None, None, Some("ja_JP.UTF-8"))), Lang::Ja);
        assert_eq!(
            Lang::from_vars(vars(None, Some("en_US"), Some("ja_JP"))),
            Lang::En
        );
        assert_eq!(
            Lang::from_vars(vars(Some("ja_JP"), Some("en_US"), None)),
            Lang::Ja
        );
        assert_eq!(Lang::from_vars(vars(Some(""), Some("ja"), None)), Lang::Ja);
        assert_eq!(Lang::from_vars(vars(Some("C"), None, Some("ja_JP"))), Lang::En);
    }
}
