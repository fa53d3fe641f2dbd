//! The configuration file: its typed form, where it is found, and loading it with every
//! problem located as `FILE:LINE:COL` (unknown keys, wrong types, bad enum values, bad
//! regexes). Template and capture checks live with the CTI engine (`cti::plan`), which
//! reports through the same [`Diagnostic`] type. The bottom layer: it imports nothing else of
//! the crate (`settings` joins a configuration with its compiled CTI plan).

pub mod defaults;
pub mod diag;
pub mod edit;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use diag::{ConfigError, Diagnostic};

/// The whole configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub account: Account,
    pub calls: Calls,
    pub blf: Blf,
    pub agent: Agent,
    pub cti: Cti,
    pub popup: Popup,
    pub audio: Audio,
    pub media: MediaConfig,
    pub recording: Recording,
    pub ui: Ui,
    pub history: HistoryConfig,
    pub phonebook: PhonebookConfig,
    /// `[keys]`: action name → key, overriding the defaults of the terminal UI.
    pub keys: BTreeMap<String, String>,
    /// The file it came from and that file's text (for diagnostics found later).
    pub source: Source,
}

/// Where a configuration came from.
#[derive(Clone, Debug, Default)]
pub struct Source {
    pub path: Option<PathBuf>,
    pub text: String,
}

impl Source {
    /// The name used in diagnostics.
    pub fn name(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "<defaults>".to_owned(), |p| p.display().to_string())
    }
}

/// SIP transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

/// `[account]`: the SIP account.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Account {
    pub uri: String,
    pub username: String,
    pub password: Option<String>,
    pub password_command: Option<Spanned<String>>,
    pub registrar: String,
    pub transport: Transport,
    pub listen: String,
    pub expires: u32,
    /// {EXT} (PAR-8).
    pub extension: String,
    pub display_name: String,
    /// A second call rings as waiting instead of being answered 486 Busy Here.
    pub call_waiting: bool,
    /// Subscribe to the voicemail light (RFC 3842 message-summary) once registered.
    pub mwi: bool,
    /// The voicemail number a key dials ("" = none).
    pub voicemail: String,
    /// TLS: a PEM file of CA certificates to trust (default: the system's).
    pub tls_ca: String,
    /// TLS: our certificate chain and private key (PEM), for incoming TLS connections.
    pub tls_cert: String,
    pub tls_key: String,
    /// Every request outside a dialog goes through this proxy (an SBC): `sip:host[:port]`
    /// with `;transport=udp|tcp|tls`, or `sips:`. "" = none.
    pub outbound_proxy: String,
    /// Behind NAT: the public address to put in Contact and SDP. "" = the address the
    /// registrar saw us at (received/rport), else our own.
    pub public_address: String,
    /// Behind NAT: a STUN server (RFC 8489), `host[:port]` or `stun:host[:port]` (port 3478 by
    /// default), asked the address our SIP and media sockets are seen at. "" = off.
    pub stun_server: String,
    /// NAT keep-alives (RFC 5626): a CRLF ping to the registrar (or outbound proxy) this often
    /// while registered, its pong checked over TCP/TLS. 0 = off.
    pub keepalive_seconds: u32,
    /// DNS servers (`IP:port`, or an IP for port 53) asked instead of the system's for the
    /// registrar, the outbound proxy and dialled domains (NAPTR, SRV, A/AAAA). [] = the system's.
    pub dns_servers: Vec<String>,
}

/// The largest `[account] keepalive_seconds`.
pub const MAX_KEEPALIVE_SECONDS: u32 = 3600;

impl Default for Account {
    fn default() -> Self {
        Self {
            uri: String::new(),
            username: String::new(),
            password: None,
            password_command: None,
            registrar: String::new(),
            transport: Transport::Udp,
            listen: "0.0.0.0:5060".to_owned(),
            expires: 3600,
            extension: String::new(),
            display_name: String::new(),
            call_waiting: false,
            mwi: false,
            voicemail: String::new(),
            tls_ca: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            outbound_proxy: String::new(),
            public_address: String::new(),
            stun_server: String::new(),
            keepalive_seconds: 25,
            dns_servers: Vec::new(),
        }
    }
}

/// `[agent]`: the contact-center agent account (PAR-7) and their status (AGT-1…6).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Agent {
    /// {AID}
    pub id: String,
    /// {APW}: a secret, masked in every log and report (SAF-3).
    pub password: String,
    /// AGT-2: the reasons offered for "not ready" ({REASON}).
    pub not_ready_reasons: Vec<String>,
    /// AGT-3: after each answered call, after-call work for this long (0: none).
    pub after_call_seconds: u32,
    /// AGT-3: the wrap-up codes offered to end after-call work ({WRAPUP}).
    pub wrapup_codes: Vec<String>,
    /// AGT-4: while not ready, calls ring silently instead of being refused (486).
    pub ring_when_not_ready: bool,
    /// AGT-5: PBX feature codes dialled on becoming ready / not ready ("" = none).
    pub ready_code: String,
    pub not_ready_code: String,
}

/// The longest `[agent] after_call_seconds`.
pub const MAX_AFTER_CALL_SECONDS: u32 = 3600;

/// BAS-1: which CRM integration runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    #[default]
    None,
    Custom,
}

impl Target {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Custom => "custom",
        }
    }
}

/// One entry of the target-number list (TGT-1).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetNumber {
    pub number: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// The five methods of an access (MET-1…5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    BrowserGet,
    Get,
    BrowserPost,
    Post,
    Command,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Self::BrowserGet => "browser_get",
            Self::Get => "get",
            Self::BrowserPost => "browser_post",
            Self::Post => "post",
            Self::Command => "command",
        }
    }

    /// The method opens the user's browser.
    pub fn is_browser(self) -> bool {
        matches!(self, Self::BrowserGet | Self::BrowserPost)
    }

    /// The method sends a POST (a body is built).
    pub fn is_post(self) -> bool {
        matches!(self, Self::BrowserPost | Self::Post)
    }
}

/// The accesses of the custom integration (CUS-1…10, plus outgoing and recorded).
pub const ACCESS_NAMES: [&str; 9] = [
    "auth", "search", "click", "ring", "answer", "hangup", "outgoing", "recorded", "status",
];

/// One `[cti.NAME]` table as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    pub method: Spanned<Method>,
    pub template: Spanned<String>,
    #[serde(default)]
    pub body: Option<Spanned<String>>,
    /// VAR = "json:/pointer" | "regex:PATTERN" | "line:KEY"
    #[serde(default)]
    pub captures: BTreeMap<Spanned<String>, Spanned<String>>,
    /// `[cti.answer]` only (CUS-8).
    #[serde(default)]
    pub delay_seconds: Option<Spanned<f64>>,
    /// `[cti.hangup]` only (CUS-10).
    #[serde(default)]
    pub only_if_answered: Option<Spanned<bool>>,
}

impl AccessConfig {
    /// CUS-8 when `delay_seconds` is not written: the answer access runs at once.
    pub const DEFAULT_DELAY_SECONDS: f64 = 0.0;
    /// CUS-10 when `only_if_answered` is not written: the hangup access runs for every call.
    pub const DEFAULT_ONLY_IF_ANSWERED: bool = false;

    /// CUS-8: the delay as written, else [`Self::DEFAULT_DELAY_SECONDS`].
    pub fn delay_seconds(&self) -> f64 {
        self.delay_seconds
            .as_ref()
            .map_or(Self::DEFAULT_DELAY_SECONDS, |d| *d.get_ref())
    }

    /// CUS-10: as written, else [`Self::DEFAULT_ONLY_IF_ANSWERED`].
    pub fn only_if_answered(&self) -> bool {
        self.only_if_answered
            .as_ref()
            .map_or(Self::DEFAULT_ONLY_IF_ANSWERED, |o| *o.get_ref())
    }
}

/// `[cti]`: basic settings (BAS), target numbers (TGT) and the accesses.
#[derive(Clone, Debug)]
pub struct Cti {
    pub target: Target,
    pub skip_internal: bool,
    pub internal_pattern: regex::Regex,
    pub session_keep_minutes: f64,
    pub timeout_seconds: f64,
    pub system_number: String,
    pub server_address: String,
    pub numbers: Vec<TargetNumber>,
    /// Where browser_post's one-shot page server listens, when pinned (a loopback address);
    /// `None`: a free port of 127.0.0.1.
    pub form_listen: Option<std::net::SocketAddr>,
    /// The configured accesses by name (a subset of [`ACCESS_NAMES`]).
    pub accesses: BTreeMap<String, AccessConfig>,
}

impl Default for Cti {
    fn default() -> Self {
        let basic = CtiBasic::default();
        Self {
            target: basic.target,
            skip_internal: basic.skip_internal,
            internal_pattern: regex::Regex::new(DEFAULT_INTERNAL_PATTERN)
                .expect("the default internal pattern is a valid regex"),
            session_keep_minutes: basic.session_keep_minutes,
            timeout_seconds: basic.timeout_seconds,
            system_number: basic.system_number,
            server_address: basic.server_address,
            numbers: basic.numbers,
            form_listen: None,
            accesses: BTreeMap::new(),
        }
    }
}

const DEFAULT_INTERNAL_PATTERN: &str = "^[0-9]{2,5}$";

/// The scalar keys of `[cti]`, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CtiBasic {
    target: Target,
    skip_internal: bool,
    internal_pattern: Spanned<String>,
    session_keep_minutes: f64,
    timeout_seconds: f64,
    system_number: String,
    server_address: String,
    numbers: Vec<TargetNumber>,
    form_listen: Option<Spanned<String>>,
}

impl Default for CtiBasic {
    fn default() -> Self {
        Self {
            target: Target::None,
            skip_internal: false,
            internal_pattern: Spanned::new(0..0, DEFAULT_INTERNAL_PATTERN.to_owned()),
            session_keep_minutes: 30.0,
            timeout_seconds: 5.0,
            system_number: "9999".to_owned(),
            server_address: String::new(),
            numbers: Vec::new(),
            form_listen: None,
        }
    }
}

/// POP-1: the popup's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PopupSize {
    Small,
    #[default]
    Medium,
    Large,
}

impl PopupSize {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Small => "small",
            Self::Medium => "medium",
            Self::Large => "large",
        }
    }
}

/// `[popup]` (POP-1…5).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Popup {
    pub size: PopupSize,
    pub buttons: bool,
    pub display_seconds: u32,
    pub copy_number: bool,
    pub anonymous_name: String,
}

impl Default for Popup {
    fn default() -> Self {
        Self {
            size: PopupSize::Medium,
            buttons: true,
            display_seconds: 30,
            copy_number: false,
            anonymous_name: "Anonymous".to_owned(),
        }
    }
}

/// `[audio]`: devices and codecs.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Audio {
    /// Microphone: "" or "default", "null", "file:PATH.wav", or a device name.
    pub input: String,
    /// Speaker: as `input`.
    pub output: String,
    /// Codecs in preference order (PCMU, PCMA, G722, opus).
    pub codecs: Vec<String>,
    /// Play a ring tone on the output device while a call rings.
    pub ring: bool,
    /// The PulseAudio (or PipeWire-pulse) server the sound devices are on, as `PULSE_SERVER`
    /// takes it (`tcp:127.0.0.1:4713`, `unix:/path`); "" = the environment's, else the local.
    pub pulse_server: String,
}

impl Default for Audio {
    fn default() -> Self {
        Self {
            input: String::new(),
            output: String::new(),
            codecs: vec!["PCMU".into(), "PCMA".into(), "G722".into(), "opus".into()],
            ring: true,
            pulse_server: String::new(),
        }
    }
}

/// `[media]`: where a call's RTP is accepted from, and how long the far end may stay silent.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Learn a NAT'd peer's real RTP source: one switch, to a source that sent a run of
    /// in-sequence packets in the first seconds of a call while the SDP address stayed silent.
    /// Off: only the address the peer's SDP names is listened to.
    pub symmetric_rtp: bool,
    /// Report a call whose far end sent no RTP for this many seconds while it should; 0 = off.
    pub rtp_timeout_seconds: u32,
    /// SRTP (SDES): `off`, `optional` (offer it, take plain RTP too) or `mandatory`
    /// (`RTP/SAVP`; a call without crypto is refused or fails).
    pub srtp: crate::call::sdes::SrtpMode,
    /// Put SRTP keys in the SDP of calls whose signalling is not TLS (UDP, TCP), where anyone
    /// on the path can read them. Off: SRTP is used only over TLS.
    pub srtp_over_udp: bool,
}

/// The largest `[media] rtp_timeout_seconds`.
pub const MAX_RTP_TIMEOUT_SECONDS: u32 = 3600;

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            symmetric_rtp: false,
            rtp_timeout_seconds: 30,
            srtp: crate::call::sdes::SrtpMode::Off,
            srtp_over_udp: false,
        }
    }
}

impl MediaConfig {
    /// The RTP timeout, `None` when off.
    pub fn rtp_timeout(&self) -> Option<Duration> {
        (self.rtp_timeout_seconds > 0).then(|| Duration::from_secs(u64::from(self.rtp_timeout_seconds)))
    }
}

/// `[blf]`: colleagues' lamps (RFC 4235 dialog event package).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Blf {
    /// The colleagues watched, in the panel's order.
    pub watch: Vec<Watched>,
    /// The PBX's directed pickup prefix (e.g. "**": `**1002`), used when a ringing
    /// colleague's call cannot be picked up with Replaces. "" = none.
    pub pickup_code: String,
}

/// One watched colleague.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watched {
    pub number: String,
    #[serde(default)]
    pub name: String,
}

/// `[calls]`: calls the PBX answers for the agent.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Calls {
    /// Answer an INVITE that asks for it (`Call-Info: …;answer-after=N`, `Alert-Info: …;
    /// info=alert-autoanswer`, `Answer-Mode: Auto`, RFC 5373) and a ringing call the PBX
    /// answers with `NOTIFY Event: talk`, when it comes from `remote_answer_from`.
    pub remote_answer: bool,
    /// The hosts (IP addresses or names) allowed to ask; empty: the registrar's host.
    pub remote_answer_from: Vec<String>,
}

/// `[history]`: how long calls are kept.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Calls older than this many days are deleted at start; 0 keeps them forever.
    pub keep_days: u32,
    /// Delete the recordings of the calls deleted too.
    pub delete_recordings: bool,
    /// The contact center's central log (issue 18): `postgresql://user@host/db` (with
    /// `?sslmode=…&sslrootcert=…`); "" = none, the local history only.
    pub central: String,
    /// Prints the central log's password (split into words, no shell); "" = none.
    pub central_password_command: String,
    /// This agent's id in the central log; "" = the account's user@host (`[account] uri`).
    pub agent_id: String,
}

impl HistoryConfig {
    /// The agent id the central log files this phone's calls under.
    pub fn agent(&self, account: &Account) -> String {
        let id = self.agent_id.trim();
        if !id.is_empty() {
            return id.to_owned();
        }
        let uri = account.uri.trim();
        let bare = uri
            .strip_prefix("sips:")
            .or_else(|| uri.strip_prefix("sip:"))
            .unwrap_or(uri);
        let bare = bare.split([';', '?', '>']).next().unwrap_or(bare);
        if bare.is_empty() {
            account.username.clone()
        } else {
            bare.to_owned()
        }
    }
}

/// `[phonebook]`: names for numbers ({TELNAME}, {CALLEDNAME}; PAR-2, PAR-4).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhonebookConfig {
    /// A shared phonebook: a CSV or vCard file, by path or `https://` (or `http://`) URL;
    /// "" = none. The local phonebook (kept with the history) wins over it.
    pub shared: String,
    /// How often the shared phonebook is fetched again, in minutes (0: only at start).
    pub refresh_minutes: u32,
    /// The country calling code of the agent's country, without `+` (e.g. "81"): a number
    /// written `+81 3-1234-5678` then matches `03-1234-5678`. "" = compare numbers as
    /// written, separators dropped.
    pub country_code: String,
    /// The prefix dialled before a country code from this country (e.g. "00", Japan "010").
    pub international_prefix: String,
    /// The trunk prefix of national numbers (e.g. "0").
    pub trunk_prefix: String,
}

impl Default for PhonebookConfig {
    fn default() -> Self {
        Self {
            shared: String::new(),
            refresh_minutes: 60,
            country_code: String::new(),
            international_prefix: "00".into(),
            trunk_prefix: "0".into(),
        }
    }
}

/// `[ui]`: the terminal UI.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ui {
    /// "en" or "ja"; "" = from LANG.
    pub language: String,
    /// A bundled theme (default, light, high-contrast, mono) or one in
    /// `$XDG_CONFIG_HOME/ctiphone/themes/`; "" = default.
    pub theme: String,
}

/// The default recording file name template (`[recording] name`).
pub const DEFAULT_RECORDING_NAME: &str =
    "{DATE-YYYY}{DATE-MM}{DATE-DD}-{DATE-HH}{DATE-II}{DATE-SS}_{TEL}_{ID}.wav";

/// `[recording]` (REC-1).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Recording {
    /// Record every call from its answer.
    pub auto: bool,
    /// Where recordings go; "" = `$XDG_DATA_HOME/ctiphone/recordings`.
    pub dir: String,
    /// The file name template (CTI parameters; caller values are made safe).
    pub name: String,
}

impl Default for Recording {
    fn default() -> Self {
        Self {
            auto: false,
            dir: String::new(),
            name: DEFAULT_RECORDING_NAME.to_owned(),
        }
    }
}

impl Recording {
    /// The recordings directory.
    pub fn dir(&self) -> PathBuf {
        if !self.dir.is_empty() {
            return PathBuf::from(&self.dir);
        }
        data_dir().join("recordings")
    }
}

/// `$XDG_DATA_HOME/ctiphone`, else `~/.local/share/ctiphone`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("ctiphone")
}

/// The default configuration file: `$XDG_CONFIG_HOME/ctiphone/config.toml`, else
/// `~/.config/ctiphone/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("ctiphone").join("config.toml"))
}

impl Config {
    /// Reads and parses a file. Every problem found is returned, each located in the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            text: String::new(),
            problems: vec![Diagnostic::nowhere(format!("cannot read the file: {e}"))],
        })?;
        Self::parse(&text, Some(path.to_path_buf()))
    }

    /// Parses configuration text; `path` names it in diagnostics.
    pub fn parse(text: &str, path: Option<PathBuf>) -> Result<Self, ConfigError> {
        let (config, problems) = Self::parse_partial(text, path);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                file: config.source.name(),
                text: text.to_owned(),
                problems,
            })
        }
    }

    /// Parses as much as can be parsed: the configuration (with defaults wherever a section
    /// was wrong) and every problem found, in file order. Syntax errors stop there.
    pub fn parse_partial(text: &str, path: Option<PathBuf>) -> (Self, Vec<Diagnostic>) {
        let mut config = Config {
            source: Source {
                path,
                text: text.to_owned(),
            },
            ..Config::default()
        };
        let (root, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            let problems = syntax
                .into_iter()
                .map(|e| {
                    let msg = format!("invalid TOML: {}", one_line(e.message()));
                    match e.span() {
                        Some(s) => Diagnostic::at(s, msg),
                        None => Diagnostic::nowhere(msg),
                    }
                })
                .collect();
            return (config, problems);
        }
        let mut problems = Vec::new();
        let mut srtp_at = None;
        for (key, value) in root.into_inner() {
            let span = value.span();
            match key.get_ref().as_ref() {
                "account" => {
                    let proxy_at = key_value_span(&value, "outbound_proxy");
                    let public_at = key_value_span(&value, "public_address");
                    let keepalive_at = key_value_span(&value, "keepalive_seconds");
                    let stun_at = key_value_span(&value, "stun_server");
                    let dns_at = key_value_span(&value, "dns_servers");
                    if let Some(v) = section::<Account>(value, &mut problems) {
                        if !v.outbound_proxy.trim().is_empty()
                            && let Err(e) = crate::call::config::proxy_target(&v.outbound_proxy)
                        {
                            problems.push(Diagnostic::at(
                                proxy_at.unwrap_or(span.clone()),
                                format!("`[account] outbound_proxy`: {e}"),
                            ));
                        }
                        if !v.public_address.trim().is_empty()
                            && v.public_address.trim().parse::<std::net::IpAddr>().is_err()
                        {
                            problems.push(Diagnostic::at(
                                public_at.unwrap_or(span.clone()),
                                format!(
                                    "`[account] public_address` is `{}`, expected an IP address",
                                    v.public_address
                                ),
                            ));
                        }
                        if let Err(e) = crate::sip::stun::parse_server(&v.stun_server) {
                            problems.push(Diagnostic::at(
                                stun_at.unwrap_or(span.clone()),
                                format!("`[account] stun_server` is {e}"),
                            ));
                        }
                        if v.keepalive_seconds > MAX_KEEPALIVE_SECONDS {
                            problems.push(Diagnostic::at(
                                keepalive_at.unwrap_or(span.clone()),
                                format!(
                                    "`[account] keepalive_seconds` is {}, expected 0 (off) to {MAX_KEEPALIVE_SECONDS} seconds",
                                    v.keepalive_seconds
                                ),
                            ));
                        }
                        for s in &v.dns_servers {
                            if let Err(e) = crate::sip::resolve::parse_dns_server(s) {
                                problems.push(Diagnostic::at(
                                    dns_at.clone().unwrap_or(span.clone()),
                                    format!("`[account] dns_servers`: {e}"),
                                ));
                            }
                        }
                        config.account = v;
                    }
                }
                "calls" => {
                    if let Some(v) = section::<Calls>(value, &mut problems) {
                        config.calls = v;
                    }
                }
                "blf" => {
                    if let Some(v) = section::<Blf>(value, &mut problems) {
                        check_blf(&v, span, &mut problems);
                        config.blf = v;
                    }
                }
                "agent" => {
                    let keys: Vec<(&str, Range<usize>)> = AGENT_CHECKED
                        .iter()
                        .filter_map(|k| key_value_span(&value, k).map(|s| (*k, s)))
                        .collect();
                    let at = |k: &str| {
                        keys.iter()
                            .find(|(n, _)| *n == k)
                            .map_or_else(|| span.clone(), |(_, s)| s.clone())
                    };
                    if let Some(v) = section::<Agent>(value, &mut problems) {
                        check_agent(&v, &at, &mut problems);
                        config.agent = v;
                    }
                }
                "popup" => {
                    if let Some(v) = section::<Popup>(value, &mut problems) {
                        config.popup = v;
                    }
                }
                "audio" => {
                    let server_at = key_value_span(&value, "pulse_server");
                    if let Some(v) = section::<Audio>(value, &mut problems) {
                        if let (Some(at), Err(e)) = (server_at, check_pulse_server(&v.pulse_server)) {
                            problems.push(Diagnostic::at(at, format!("`[audio] pulse_server`: {e}")));
                        }
                        check_audio(&v, span, &mut problems);
                        config.audio = v;
                    }
                }
                "media" => {
                    let timeout_at = key_value_span(&value, "rtp_timeout_seconds");
                    srtp_at = Some(key_value_span(&value, "srtp").unwrap_or(span.clone()));
                    if let Some(v) = section::<MediaConfig>(value, &mut problems) {
                        check_media(&v, timeout_at.unwrap_or(span), &mut problems);
                        config.media = v;
                    }
                }
                "recording" => {
                    if let Some(v) = section::<Recording>(value, &mut problems) {
                        config.recording = v;
                    }
                }
                "ui" => {
                    if let Some(v) = section::<Ui>(value, &mut problems) {
                        config.ui = v;
                    }
                }
                "history" => {
                    let central_at = key_value_span(&value, "central");
                    let agent_at = key_value_span(&value, "agent_id");
                    if let Some(v) = section::<HistoryConfig>(value, &mut problems) {
                        if !v.central.trim().is_empty()
                            && let Err(e) = crate::central::target::parse(&v.central, &v.central_password_command)
                        {
                            problems.push(Diagnostic::at(
                                central_at.unwrap_or(span.clone()),
                                format!("`[history] central`: {e}"),
                            ));
                        }
                        if v.agent_id.len() > 200 || v.agent_id.chars().any(char::is_control) {
                            problems.push(Diagnostic::at(
                                agent_at.unwrap_or(span),
                                "`[history] agent_id`: expected at most 200 characters, without control characters",
                            ));
                        }
                        config.history = v;
                    }
                }
                "phonebook" => {
                    if let Some(v) = section::<PhonebookConfig>(value, &mut problems) {
                        check_phonebook(&v, span, &mut problems);
                        config.phonebook = v;
                    }
                }
                "keys" => {
                    if let Some(v) = section::<BTreeMap<String, String>>(value, &mut problems) {
                        config.keys = v;
                    }
                }
                "cti" => config.cti = parse_cti(value, span, &mut problems),
                other => problems.push(Diagnostic::at(
                    key.span(),
                    format!(
                        "unknown section `{other}`, expected one of `account`, `agent`, `audio`, `blf`, `calls`, `cti`, `history`, `keys`, `media`, `phonebook`, `popup`, `recording`, `ui`"
                    ),
                )),
            }
        }
        check_account(&config.account, &mut problems);
        if config.media.srtp == crate::call::sdes::SrtpMode::Mandatory
            && config.account.transport != Transport::Tls
            && !names_tls(&config.account.registrar)
            && !names_tls(&config.account.outbound_proxy)
            && !config.media.srtp_over_udp
            && let Some(at) = srtp_at
        {
            problems.push(Diagnostic::at(
                at,
                format!(
                    "`[media] srtp = \"mandatory\"` with `[account] transport = \"{}\"`: the keys travel in the SDP, expected transport = \"tls\" (or `[media] srtp_over_udp = true` to send them in clear)",
                    config.account.transport.name()
                ),
            ));
        }
        sort(&mut problems);
        (config, problems)
    }
}

/// A registrar or proxy address that names TLS: a `sips:` URI, or `;transport=tls`.
pub fn names_tls(address: &str) -> bool {
    let a = address.trim();
    a.split_once(':')
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("sips"))
        || a.split(';')
            .skip(1)
            .any(|p| p.trim().eq_ignore_ascii_case("transport=tls"))
}

/// Orders problems as they appear in the file.
pub fn sort(problems: &mut [Diagnostic]) {
    problems.sort_by_key(|p| p.span.as_ref().map_or(0, |s| s.start));
}

/// Deserializes one table, turning serde errors into located diagnostics. serde stops at the
/// first error, so the offending key is dropped and the table tried again, to report every
/// problem of the table at once.
fn section<T: for<'de> Deserialize<'de>>(
    value: Spanned<DeValue<'_>>,
    problems: &mut Vec<Diagnostic>,
) -> Option<T> {
    let span = value.span();
    let mut value = value;
    for _ in 0..64 {
        let err = match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let at = err.span().unwrap_or(span.clone());
        problems.push(Diagnostic::at(at.clone(), plain_types(&one_line(err.message()))));
        // Drop the key the error is about and look for more.
        let DeValue::Table(table) = value.get_ref() else {
            return None;
        };
        let culprit = table.iter().find(|(k, v)| {
            let (ks, vs) = (k.span(), v.span());
            (ks.start <= at.start && at.start < ks.end.max(ks.start + 1))
                || (vs.start <= at.start && at.start < vs.end.max(vs.start + 1))
        });
        let (key, _) = culprit?;
        let key = key.clone();
        let mut rest = table.clone();
        rest.remove(&key);
        value = Spanned::new(span.clone(), DeValue::Table(rest));
    }
    None
}

fn parse_cti(value: Spanned<DeValue<'_>>, span: Range<usize>, problems: &mut Vec<Diagnostic>) -> Cti {
    let mut cti = Cti::default();
    let DeValue::Table(table) = value.into_inner() else {
        problems.push(Diagnostic::at(span, "`cti` must be a table"));
        return cti;
    };
    let mut basic = DeTable::new();
    for (key, value) in table {
        let name = key.get_ref().to_string();
        if ACCESS_NAMES.contains(&name.as_str()) {
            let vspan = value.span();
            if let Some(access) = section::<AccessConfig>(value, problems) {
                check_access_keys(&name, &access, vspan, problems);
                cti.accesses.insert(name, access);
            }
        } else {
            basic.insert(key, value);
        }
    }
    if let Some(b) = section::<CtiBasic>(Spanned::new(span.clone(), DeValue::Table(basic)), problems) {
        match regex::Regex::new(b.internal_pattern.get_ref()) {
            Ok(re) => cti.internal_pattern = re,
            Err(e) => problems.push(Diagnostic::at(
                b.internal_pattern.span(),
                format!(
                    "invalid regular expression in `internal_pattern`: {}",
                    one_line(&e.to_string())
                ),
            )),
        }
        if !b.session_keep_minutes.is_finite() || b.session_keep_minutes <= 0.0 {
            problems.push(Diagnostic::at(
                span.clone(),
                "`session_keep_minutes` must be a positive number of minutes",
            ));
        }
        if !(0.0..=3600.0).contains(&b.timeout_seconds) || b.timeout_seconds == 0.0 {
            problems.push(Diagnostic::at(
                span,
                "`timeout_seconds` must be between 0 and 3600 seconds",
            ));
        }
        cti.target = b.target;
        cti.skip_internal = b.skip_internal;
        cti.session_keep_minutes = b.session_keep_minutes;
        cti.timeout_seconds = b.timeout_seconds;
        cti.system_number = b.system_number;
        cti.server_address = b.server_address;
        cti.numbers = b.numbers;
        if let Some(listen) = &b.form_listen {
            match loopback_addr(listen.get_ref()) {
                Ok(addr) => cti.form_listen = Some(addr),
                Err(e) => problems.push(Diagnostic::at(listen.span(), e)),
            }
        }
    }
    cti
}

/// `[cti] form_listen`: an IP address of the loopback interface and a port (0: any free one).
/// The form pages carry the agent's CRM values, so they are never offered on the network.
fn loopback_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = text.parse().map_err(|_| {
        format!(
            "`form_listen` is not an address and port: `{}`, expected e.g. \"127.0.0.1:8765\" or \"[::1]:8765\"",
            text.escape_debug()
        )
    })?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "`form_listen` must be a loopback address (127.0.0.0/8 or ::1), not {}: the form pages carry the agent's CRM values",
            addr.ip()
        ));
    }
    Ok(addr)
}

/// Keys that belong to one access only, and the methods auth and search allow.
fn check_access_keys(name: &str, access: &AccessConfig, span: Range<usize>, problems: &mut Vec<Diagnostic>) {
    if let Some(d) = &access.delay_seconds {
        if name != "answer" {
            problems.push(Diagnostic::at(
                d.span(),
                format!("`delay_seconds` belongs to `[cti.answer]`, not `[cti.{name}]`"),
            ));
        } else if !(0.0..=3600.0).contains(d.get_ref()) {
            problems.push(Diagnostic::at(
                d.span(),
                "`delay_seconds` must be between 0 and 3600",
            ));
        }
    }
    if let Some(o) = &access.only_if_answered
        && name != "hangup"
    {
        problems.push(Diagnostic::at(
            o.span(),
            format!("`only_if_answered` belongs to `[cti.hangup]`, not `[cti.{name}]`"),
        ));
    }
    let method = *access.method.get_ref();
    if matches!(name, "auth" | "search") && method.is_browser() {
        problems.push(Diagnostic::at(
            access.method.span(),
            format!(
                "method `{}` is not allowed for `[cti.{name}]`, expected one of `get`, `post`, `command`",
                method.name()
            ),
        ));
    }
    if access.body.is_some() && !method.is_post() {
        problems.push(Diagnostic::at(
            access.body.as_ref().map_or(span, |b| b.span()),
            format!(
                "`body` is only used by `post` and `browser_post`, not `{}`",
                method.name()
            ),
        ));
    }
}

fn check_account(account: &Account, problems: &mut Vec<Diagnostic>) {
    if let (Some(_), Some(cmd)) = (&account.password, &account.password_command) {
        problems.push(Diagnostic::at(
            cmd.span(),
            "`[account]` has both `password` and `password_command`, expected one of them",
        ));
    }
}

fn check_blf(blf: &Blf, span: Range<usize>, problems: &mut Vec<Diagnostic>) {
    let dialable = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "*#+-._".contains(c))
    };
    for (i, w) in blf.watch.iter().enumerate() {
        if !dialable(&w.number) {
            problems.push(Diagnostic::at(
                span.clone(),
                format!(
                    "`[blf] watch` entry {} has the number `{}`, expected an extension or number (letters, digits, * # + - . _)",
                    i + 1,
                    w.number
                ),
            ));
        } else if blf.watch[..i].iter().any(|o| o.number == w.number) {
            problems.push(Diagnostic::at(
                span.clone(),
                format!("`[blf] watch` has `{}` twice", w.number),
            ));
        }
    }
    if !blf.pickup_code.is_empty()
        && !blf
            .pickup_code
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
    {
        problems.push(Diagnostic::at(
            span,
            format!(
                "`[blf] pickup_code` is `{}`, expected digits, * and # (e.g. \"**\")",
                blf.pickup_code
            ),
        ));
    }
}

/// The `[agent]` keys checked beyond their types (located at their values).
const AGENT_CHECKED: [&str; 5] = [
    "after_call_seconds",
    "not_ready_reasons",
    "wrapup_codes",
    "ready_code",
    "not_ready_code",
];

fn check_agent(agent: &Agent, at: &dyn Fn(&str) -> Range<usize>, problems: &mut Vec<Diagnostic>) {
    let mut say = |key: &str, m: String| problems.push(Diagnostic::at(at(key), m));
    if agent.after_call_seconds > MAX_AFTER_CALL_SECONDS {
        say(
            "after_call_seconds",
            format!(
                "`[agent] after_call_seconds` is {}, expected 0 (none) to {MAX_AFTER_CALL_SECONDS}",
                agent.after_call_seconds
            ),
        );
    }
    for (key, list) in [
        ("not_ready_reasons", &agent.not_ready_reasons),
        ("wrapup_codes", &agent.wrapup_codes),
    ] {
        for (i, v) in list.iter().enumerate() {
            if v.trim().is_empty() || v.chars().any(char::is_control) || v.chars().count() > 64 {
                say(
                    key,
                    format!(
                        "`[agent] {key}` entry {} is {v:?}, expected a name of 1 to 64 printable characters",
                        i + 1
                    ),
                );
            } else if list[..i].contains(v) {
                say(key, format!("`[agent] {key}` has `{v}` twice"));
            }
        }
        if list.len() > 9 {
            say(
                key,
                format!(
                    "`[agent] {key}` has {} entries, expected at most 9 (one key each)",
                    list.len()
                ),
            );
        }
    }
    for (key, code) in [
        ("ready_code", &agent.ready_code),
        ("not_ready_code", &agent.not_ready_code),
    ] {
        if !code.is_empty()
            && (code.len() > 32 || !code.chars().all(|c| c.is_ascii_digit() || c == '*' || c == '#'))
        {
            say(
                key,
                format!(
                    "`[agent] {key}` is `{code}`, expected a feature code of digits, * and # (e.g. \"*45\")"
                ),
            );
        }
    }
}

/// serde's type names in words an admin reads.
fn plain_types(msg: &str) -> String {
    msg.replace("expected f64", "expected a number")
        .replace("expected u32", "expected a whole number (0 or more)")
        .replace("expected a boolean", "expected true or false")
}

/// A PulseAudio server address as `PULSE_SERVER` takes it: `unix:PATH`, `tcp:HOST[:PORT]`
/// (`tcp4:`, `tcp6:`), a path, or `HOST[:PORT]`; "" for none (see [`crate::media::pulse_server`]).
pub fn check_pulse_server(s: &str) -> Result<(), String> {
    crate::media::pulse_server::parse(s).map(|_| ()).map_err(|e| {
        format!("{e}; expected one server such as `tcp:127.0.0.1:4713` or `unix:/run/user/1000/pulse/native`")
    })
}

fn check_audio(audio: &Audio, span: Range<usize>, problems: &mut Vec<Diagnostic>) {
    const KNOWN: [&str; 4] = ["PCMU", "PCMA", "G722", "opus"];
    for c in &audio.codecs {
        if !KNOWN.iter().any(|k| k.eq_ignore_ascii_case(c)) {
            problems.push(Diagnostic::at(
                span.clone(),
                format!("unknown codec `{c}` in `[audio] codecs`, expected some of PCMU, PCMA, G722, opus"),
            ));
        }
    }
    if audio.codecs.is_empty() {
        problems.push(Diagnostic::at(
            span,
            "`[audio] codecs` is empty, expected at least one of PCMU, PCMA, G722, opus",
        ));
    }
}

/// The span of `key`'s value in a table as written (for checks made after deserializing).
fn key_value_span(table: &Spanned<DeValue<'_>>, key: &str) -> Option<Range<usize>> {
    let DeValue::Table(t) = table.get_ref() else {
        return None;
    };
    t.iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v.span())
}

fn check_media(media: &MediaConfig, span: Range<usize>, problems: &mut Vec<Diagnostic>) {
    if media.rtp_timeout_seconds > MAX_RTP_TIMEOUT_SECONDS {
        problems.push(Diagnostic::at(
            span,
            format!(
                "`[media] rtp_timeout_seconds` is {}, expected 0 (off) to {MAX_RTP_TIMEOUT_SECONDS} seconds",
                media.rtp_timeout_seconds
            ),
        ));
    }
}

fn check_phonebook(pb: &PhonebookConfig, span: Range<usize>, problems: &mut Vec<Diagnostic>) {
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    for (key, value) in [
        ("country_code", &pb.country_code),
        ("international_prefix", &pb.international_prefix),
        ("trunk_prefix", &pb.trunk_prefix),
    ] {
        if !digits(value) || value.len() > 4 {
            problems.push(Diagnostic::at(
                span.clone(),
                format!("`[phonebook] {key}` is `{value}`, expected up to 4 digits"),
            ));
        }
    }
    let s = pb.shared.trim();
    if let Some(rest) = s.split_once("://").map(|(scheme, _)| scheme)
        && !rest.eq_ignore_ascii_case("https")
        && !rest.eq_ignore_ascii_case("http")
    {
        problems.push(Diagnostic::at(
            span,
            format!("`[phonebook] shared` has the scheme `{rest}`, expected a file path or an https:// URL"),
        ));
    }
}

/// A multi-line library message on one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where a string value's content starts in the file, when its text is written there
/// verbatim (no escapes), so a position inside the value maps to a file position.
pub fn content_origin(text: &str, span: &Range<usize>, value: &str) -> Option<usize> {
    let raw = text.get(span.clone())?;
    for quote in ["\"\"\"", "'''", "\"", "'"] {
        if let Some(rest) = raw.strip_prefix(quote) {
            let mut start = span.start + quote.len();
            // A newline right after an opening triple quote is trimmed by TOML.
            let rest = if quote.len() == 3 {
                if let Some(r) = rest.strip_prefix("\r\n") {
                    start += 2;
                    r
                } else if let Some(r) = rest.strip_prefix('\n') {
                    start += 1;
                    r
                } else {
                    rest
                }
            } else {
                rest
            };
            return rest.starts_with(value).then_some(start);
        }
    }
    None
}

#[cfg(test)]
mod tests;
