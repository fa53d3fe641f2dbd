//! What the call layer needs from the configuration: the signalling stack's settings
//! ([`StackConfig`]) and the call-level ones (call waiting, auto-answer, codecs, devices,
//! ring tone, recording, media addressing), read once at start.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::call::sdp::Codec;
use crate::config::{Config, Transport as TransportKind};
use crate::cti::template::Template;
use crate::cti::vars::Identity;
use crate::media::device::DeviceSpec;
use crate::private::AgentUmask as _;
use crate::sip::addr::{Uri, split_host_port};
use crate::sip::resolve::Resolver;
use crate::sip::stack::{Relocate, StackConfig};
use crate::sip::transport::{Proto, TlsSettings};

/// The agent's status settings (`[agent]`, AGT-1…5).
#[derive(Clone, Debug, Default)]
pub struct AgentConfig {
    pub not_ready_reasons: Vec<String>,
    /// After-call work after each answered call (`None`: none).
    pub after_call: Option<Duration>,
    pub wrapup_codes: Vec<String>,
    pub ring_when_not_ready: bool,
    pub ready_code: String,
    pub not_ready_code: String,
    /// The status is in use (any of the above set, or a `[cti.status]` access): announced at
    /// start.
    pub in_use: bool,
}

impl AgentConfig {
    pub fn from_config(config: &Config) -> Self {
        let a = &config.agent;
        let after_call =
            (a.after_call_seconds > 0).then(|| Duration::from_secs(u64::from(a.after_call_seconds)));
        let in_use = !a.not_ready_reasons.is_empty()
            || after_call.is_some()
            || !a.wrapup_codes.is_empty()
            || a.ring_when_not_ready
            || !a.ready_code.is_empty()
            || !a.not_ready_code.is_empty()
            || config.cti.accesses.contains_key("status");
        Self {
            not_ready_reasons: a.not_ready_reasons.clone(),
            after_call,
            wrapup_codes: a.wrapup_codes.clone(),
            ring_when_not_ready: a.ring_when_not_ready,
            ready_code: a.ready_code.clone(),
            not_ready_code: a.not_ready_code.clone(),
            in_use,
        }
    }
}

/// The call layer's settings.
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// The agent's status (`[agent]`).
    pub agent: AgentConfig,
    pub stack: StackConfig,
    pub call_waiting: bool,
    pub auto_answer: Option<Duration>,
    /// `[account] mwi`: subscribe to the voicemail light.
    pub mwi: bool,
    /// `[blf] watch`: (number, name) of each colleague watched.
    pub blf_watch: Vec<(String, String)>,
    /// `[blf] pickup_code`.
    pub pickup_code: String,
    /// `[calls] remote_answer`: honour a PBX's auto-answer request.
    pub remote_answer: bool,
    /// The addresses a PBX's auto-answer request may come from ([calls] remote_answer_from,
    /// resolved at start; the registrar's by default).
    pub remote_answer_from: Vec<IpAddr>,
    pub codecs: Vec<Codec>,
    /// Microphone and speaker.
    pub input: DeviceSpec,
    pub output: DeviceSpec,
    /// Ring tone on the output device while a call rings.
    pub ring: bool,
    /// Record every call from its answer.
    pub record_auto: bool,
    pub record_dir: std::path::PathBuf,
    pub record_name: Template,
    /// The agent's identity, for recording names ({EXT}, {AID}…).
    pub identity: Identity,
    /// NAT latching of the far end's RTP source ([media] symmetric_rtp).
    pub symmetric_rtp: bool,
    /// SRTP ([media] srtp) and whether it may go over signalling that is not TLS
    /// ([media] srtp_over_udp).
    pub srtp: crate::call::sdes::SrtpMode,
    pub srtp_over_udp: bool,
    /// No RTP for this long ends the call ([media] rtp_timeout_seconds; `None`: off).
    pub rtp_timeout: Option<Duration>,
    /// Names for numbers ({TELNAME}, {CALLEDNAME}); the SIP display name when it has none.
    pub phonebook: Option<std::sync::Arc<crate::phonebook::Phonebook>>,
    /// Locates dialled domains without a registrar (RFC 3263; `[account] dns_servers`).
    pub resolver: Resolver,
}

impl CallConfig {
    /// Reads the account settings; resolves the registrar and runs `password_command`.
    pub async fn from_config(config: &Config, auto_answer: Option<Duration>) -> Result<Self, String> {
        let a = &config.account;
        let listen: SocketAddr = a
            .listen
            .parse()
            .map_err(|_| format!("[account] listen `{}` is not an IP:port address", a.listen))?;
        let mut proto = match a.transport {
            TransportKind::Udp => Proto::Udp,
            TransportKind::Tcp => Proto::Tcp,
            TransportKind::Tls => Proto::Tls,
        };
        let path = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
        let mut tls = TlsSettings {
            ca: path(&a.tls_ca),
            cert: path(&a.tls_cert),
            key: path(&a.tls_key),
            server_name: None,
            enabled: proto == Proto::Tls || !a.tls_cert.is_empty(),
        };
        let aor = if a.uri.is_empty() {
            None
        } else {
            Some(Uri::parse(&a.uri).map_err(|e| format!("[account] uri: {e}"))?)
        };
        let dns_servers = a
            .dns_servers
            .iter()
            .map(|s| {
                crate::sip::resolve::parse_dns_server(s).map_err(|e| format!("[account] dns_servers: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let resolver = Resolver::new(&dns_servers);
        let has_proxy = !a.outbound_proxy.trim().is_empty();
        let mut targets = Vec::new();
        let mut relocate = None;
        let registrar = if a.registrar.trim().is_empty() {
            None
        } else {
            let r = a.registrar.trim();
            // A `sips:` registrar (or `;transport=tls`) is reached over TLS only, whatever
            // `transport` says (RFC 3261 §19.1.1: no downgrade).
            if crate::config::names_tls(r) {
                proto = Proto::Tls;
                tls.enabled = true;
            }
            let r = match r.split_once(':') {
                Some((scheme, rest))
                    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") =>
                {
                    rest
                }
                _ => r,
            };
            let hostport = r.split(';').next().unwrap_or(r);
            let (host, port) = split_host_port(hostport).map_err(|e| format!("[account] registrar: {e}"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            if host.parse::<IpAddr>().is_err() {
                tls.server_name = Some(host.clone());
            }
            if has_proxy {
                // Reached through the proxy: its address is the one looked up below.
                Some(SocketAddr::from(([0, 0, 0, 0], 0)))
            } else {
                // RFC 3263: NAPTR/SRV for a name without a port, then A/AAAA.
                targets = resolver
                    .locate(&host, port, proto)
                    .await
                    .map_err(|e| format!("[account] registrar `{}`: {e}", a.registrar))?;
                relocate = Some(Relocate {
                    resolver: resolver.clone(),
                    host: host.clone(),
                    port,
                });
                targets.first().copied()
            }
        };
        // The name a TLS registrar must prove: its own host name, else (an address was given
        // for it) the account's domain, the Request-URI of our REGISTER (RFC 5922 §7.2).
        if tls.server_name.is_none()
            && registrar.is_some()
            && let Some(u) = &aor
            && !u.host.is_empty()
            && u.host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_err()
        {
            tls.server_name = Some(u.host.clone());
        }
        // An outbound proxy (an SBC) is the next hop of everything outside a dialog: the
        // "registrar" address below becomes the proxy's, and its Route goes on each request.
        let mut route = None;
        let registrar = match (registrar, a.outbound_proxy.trim()) {
            (Some(_), p) if !p.is_empty() => {
                let t = proxy_target(p).map_err(|e| format!("[account] outbound_proxy: {e}"))?;
                proto = t.proto.unwrap_or(proto);
                tls.enabled |= proto == Proto::Tls;
                if ip_literal_host(&t.host).is_none() {
                    tls.server_name = Some(t.host.clone());
                }
                targets = resolver
                    .locate(&t.host, t.port, proto)
                    .await
                    .map_err(|e| format!("[account] outbound_proxy `{p}`: {e}"))?;
                relocate = Some(Relocate {
                    resolver: resolver.clone(),
                    host: t.host.clone(),
                    port: t.port,
                });
                route = Some(t.route);
                targets.first().copied()
            }
            (r, _) => r,
        };
        let user = aor
            .as_ref()
            .and_then(|u| u.user.clone())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                if a.username.is_empty() {
                    "ctiphone".into()
                } else {
                    a.username.clone()
                }
            });
        let domain = match (&aor, registrar) {
            (Some(u), _) if !u.host.is_empty() => match u.port {
                Some(p) => format!("{}:{p}", u.host),
                None => u.host.clone(),
            },
            (_, Some(r)) => r.to_string(),
            _ => listen.ip().to_string(),
        };
        let password = match (&a.password, &a.password_command) {
            (Some(p), _) => p.clone(),
            (None, Some(cmd)) => run_password_command(cmd.get_ref()).await?,
            (None, None) => String::new(),
        };
        let mut remote_answer_from = Vec::new();
        for host in &config.calls.remote_answer_from {
            let h = host.trim().trim_start_matches('[').trim_end_matches(']');
            match h.parse::<IpAddr>() {
                Ok(ip) => remote_answer_from.push(ip),
                Err(_) => {
                    let addrs = tokio::net::lookup_host((h, 5060))
                        .await
                        .map_err(|e| format!("[calls] remote_answer_from `{host}`: {e}"))?;
                    remote_answer_from.extend(addrs.map(|a| a.ip()));
                }
            }
        }
        if config.calls.remote_answer_from.is_empty() {
            for t in &targets {
                if !remote_answer_from.contains(&t.ip()) {
                    remote_answer_from.push(t.ip());
                }
            }
        }
        Ok(Self {
            agent: AgentConfig::from_config(config),
            stack: StackConfig {
                listen,
                proto,
                registrar,
                registrar_targets: targets,
                relocate,
                domain,
                auth_user: if a.username.is_empty() {
                    user.clone()
                } else {
                    a.username.clone()
                },
                user,
                password,
                display_name: a.display_name.clone(),
                expires: a.expires.max(10),
                tls,
                route,
                public_address: a.public_address.trim().parse().ok(),
                stun_server: crate::sip::stun::parse_server(&a.stun_server).ok().flatten(),
                keepalive: (a.keepalive_seconds > 0)
                    .then(|| Duration::from_secs(u64::from(a.keepalive_seconds))),
            },
            call_waiting: a.call_waiting,
            auto_answer,
            mwi: a.mwi,
            blf_watch: config
                .blf
                .watch
                .iter()
                .map(|w| (w.number.clone(), w.name.clone()))
                .collect(),
            pickup_code: config.blf.pickup_code.clone(),
            remote_answer: config.calls.remote_answer,
            remote_answer_from,
            codecs: sdp_codecs(&config.audio.codecs),
            input: DeviceSpec::parse(&config.audio.input),
            output: DeviceSpec::parse(&config.audio.output),
            ring: config.audio.ring,
            record_auto: config.recording.auto,
            record_dir: config.recording.dir(),
            record_name: Template::parse(&config.recording.name, &|n| {
                crate::cti::plan::BUILTIN_PARAMS.contains(&n)
            })
            .map_err(|e| {
                format!(
                    "[recording] name: {}",
                    e.first().map_or_else(String::new, |e| e.message.clone())
                )
            })?,
            identity: Identity::from_config(config),
            symmetric_rtp: config.media.symmetric_rtp,
            srtp: config.media.srtp,
            srtp_over_udp: config.media.srtp_over_udp,
            rtp_timeout: config.media.rtp_timeout(),
            phonebook: None,
            resolver,
        })
    }
}

/// The SDP codec list for the configured codec names, telephone-event last.
pub fn sdp_codecs(names: &[String]) -> Vec<Codec> {
    let mut out: Vec<Codec> = names
        .iter()
        .filter_map(|n| match n.to_ascii_lowercase().as_str() {
            "pcmu" => Some(Codec::pcmu()),
            "pcma" => Some(Codec::pcma()),
            "g722" => Some(Codec {
                pt: 9,
                name: "G722".into(),
                rate: 8000,
                channels: 1,
                fmtp: None,
            }),
            "opus" => Some(Codec {
                pt: 111,
                name: "opus".into(),
                rate: 48000,
                channels: 2,
                fmtp: Some("useinbandfec=1".into()),
            }),
            _ => None,
        })
        .collect();
    out.push(Codec::telephone_event(101));
    out
}

/// Runs `password_command` (split into words, no shell); its first output line is the password.
async fn run_password_command(cmd: &str) -> Result<String, String> {
    run_secret_command("[account] password_command", cmd).await
}

/// Runs a command that prints a secret (split into words, no shell; at most 10 s): its first
/// output line. `what` names the setting in errors; the output is never in them.
pub async fn run_secret_command(what: &str, cmd: &str) -> Result<String, String> {
    let words = shell_words::split(cmd).map_err(|e| format!("{what}: {e}"))?;
    let (prog, args) = words.split_first().ok_or(format!("{what} is empty"))?;
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(prog)
            .args(args)
            .agent_umask()
            .output(),
    )
    .await
    .map_err(|_| format!("{what} took more than 10 s"))?
    .map_err(|e| format!("{what} `{prog}`: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what} failed ({})", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned())
}

/// An outbound proxy as configured: where it is, the transport it asks for, and the Route
/// header value that names it (loose routing, `;lr`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyTarget {
    pub host: String,
    pub port: Option<u16>,
    pub proto: Option<Proto>,
    pub route: String,
}

/// Reads `[account] outbound_proxy`: a `sip:` or `sips:` URI (`sip:sbc.example;transport=tls`,
/// `sip:10.0.0.1:5070`), or a bare `host[:port]`.
pub fn proxy_target(text: &str) -> Result<ProxyTarget, String> {
    let text = text.trim();
    let lower = text.get(..5).unwrap_or(text).to_ascii_lowercase();
    let uri = if lower.starts_with("sip:") || lower.starts_with("sips:") {
        text.to_owned()
    } else {
        format!("sip:{text}")
    };
    let u = crate::sip::addr::Uri::parse(&uri).map_err(|e| format!("`{text}`: {e}"))?;
    if u.host.is_empty() || u.user.is_some() || u.host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{text}` is not a proxy address, expected `sip:HOST[:PORT][;transport=udp|tcp|tls]`"
        ));
    }
    let proto = match (
        u.scheme.as_str(),
        u.param("transport").map(str::to_ascii_lowercase).as_deref(),
    ) {
        ("sips", _) | (_, Some("tls")) => Some(Proto::Tls),
        (_, Some("tcp")) => Some(Proto::Tcp),
        (_, Some("udp")) => Some(Proto::Udp),
        (_, None) => None,
        (_, Some(other)) => return Err(format!("unknown transport `{other}`, expected udp, tcp or tls")),
    };
    let hostport = match u.port {
        Some(p) => format!("{}:{p}", u.host),
        None => u.host.clone(),
    };
    let transport = match proto {
        Some(Proto::Tls) if u.scheme == "sips" => String::new(),
        Some(p) => format!(";transport={}", p.name().to_ascii_lowercase()),
        None => String::new(),
    };
    Ok(ProxyTarget {
        host: u.host.trim_start_matches('[').trim_end_matches(']').to_owned(),
        port: u.port,
        proto,
        route: format!("<{}:{hostport}{transport};lr>", u.scheme),
    })
}

fn ip_literal_host(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_proxies_are_read_with_their_transport_and_route() {
        let t = proxy_target("sip:sbc.example;transport=tls").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.proto),
            ("sbc.example", None, Some(Proto::Tls))
        );
        assert_eq!(t.route, "<sip:sbc.example;transport=tls;lr>");
        let t = proxy_target("10.0.0.1:5070").unwrap();
        assert_eq!(
            (t.port, t.proto, t.route.as_str()),
            (Some(5070), None, "<sip:10.0.0.1:5070;lr>")
        );
        let t = proxy_target("SIPS:sbc.example").unwrap();
        assert_eq!((t.host.as_str(), t.proto), ("sbc.example", Some(Proto::Tls)));
        let t = proxy_target("sips:[2001:db8::1]:5061").unwrap();
        assert_eq!((t.host.as_str(), t.proto), ("2001:db8::1", Some(Proto::Tls)));
        assert_eq!(t.route, "<sips:[2001:db8::1]:5061;lr>");
        for bad in [
            "sip:user@sbc.example",
            "sip:sbc.example;transport=sctp",
            "sip:",
            "sip:a b",
        ] {
            assert!(proxy_target(bad).is_err(), "{bad}");
        }
    }

    async fn call_config(extra: &str) -> CallConfig {
        let text = format!(
            "[account]\nuri = \"sip:1001@127.0.0.1\"\nregistrar = \"127.0.0.3:5999\"\nlisten = \"127.0.0.1:0\"\n{extra}"
        );
        let config = Config::parse(&text, None).unwrap_or_else(|e| panic!("{e}"));
        CallConfig::from_config(&config, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_sips_registrar_is_reached_over_tls_on_5061() {
        for (registrar, tls) in [
            ("sips:127.0.0.3", true),
            ("SIPS:127.0.0.3", true),
            ("sip:127.0.0.3;transport=tls", true),
            ("sip:127.0.0.3", false),
            ("127.0.0.3", false),
        ] {
            let text = format!(
                "[account]\nuri = \"sip:1001@kamailio.test\"\nregistrar = \"{registrar}\"\nlisten = \"127.0.0.1:0\"\n"
            );
            let config = Config::parse(&text, None).unwrap_or_else(|e| panic!("{e}"));
            let c = CallConfig::from_config(&config, None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let want = if tls {
                (Proto::Tls, 5061)
            } else {
                (Proto::Udp, 5060)
            };
            let port = c.stack.registrar.map(|r| r.port());
            assert_eq!((c.stack.proto, port), (want.0, Some(want.1)), "{registrar}");
            assert_eq!(c.stack.tls.enabled, tls, "{registrar}");
            // Checked against the account's domain: the registrar is an address.
            assert_eq!(
                c.stack.tls.server_name.as_deref(),
                Some("kamailio.test"),
                "{registrar}"
            );
        }
        assert!(crate::config::names_tls("sip:sbc.example;lr;transport=TLS"));
        assert!(!crate::config::names_tls("sip:sbc.example;transport=tcp"));
    }

    #[tokio::test]
    async fn auto_answer_requests_are_taken_from_the_registrar_unless_listed() {
        let c = call_config("").await;
        assert!(!c.remote_answer, "off by default");
        assert_eq!(c.remote_answer_from, ["127.0.0.3".parse::<IpAddr>().unwrap()]);
        let c =
            call_config("[calls]\nremote_answer = true\nremote_answer_from = [\"127.0.0.2\", \"[::1]\"]\n")
                .await;
        assert!(c.remote_answer);
        assert_eq!(
            c.remote_answer_from,
            ["127.0.0.2".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()],
            "the listed hosts only, not the registrar"
        );
    }
}
