//! SDP (RFC 4566) session descriptions, and the RFC 3264 answer to an offer.
//!
//! [`Sdp::parse`] keeps every m-line in order: media type, port and port count, proto, the
//! format list as strings, its connection address, bandwidth lines and attributes. The
//! attributes offer/answer needs (rtpmap, fmtp, ptime, rtcp, the direction) are read into typed
//! fields, every other one is kept as it came; [`Sdp::to_text`] writes one back. [`offer`]
//! builds our offer and [`answer`] mirrors a remote offer's m-lines: the one audio stream we
//! take, with the common codecs and the RFC 3264 §6.1 direction, every other one refused with
//! port 0. The state of a dialog's offers and answers is [`super::offer_answer`]'s business.
//!
//! SDP comes from the network: bad input is an `Err` naming the line, never a panic, and the
//! input is bounded ([`MAX_LINE`], [`MAX_MEDIA`], [`MAX_ATTRIBUTES`], [`MAX_FORMATS`],
//! [`MAX_BANDWIDTHS`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use super::sdes::{self, LocalKeys, SrtpMode, is_secure_proto};

/// Longest SDP line we read, in bytes.
pub const MAX_LINE: usize = 4096;
/// Most m-lines in one session description.
pub const MAX_MEDIA: usize = 32;
/// Most `a=` lines in one session description, all levels together: as read, and as
/// [`Sdp::to_text`] would write it (which adds an rtpmap for static payload types, the
/// session's rtpmap/fmtp/ptime/direction in each stream that uses them, and a direction to
/// every enabled stream), so that what we write of a description we accepted parses again.
pub const MAX_ATTRIBUTES: usize = 512;
/// Most formats on one m-line (RTP has 128 payload types).
pub const MAX_FORMATS: usize = 128;
/// Most `b=` lines in one session description, all levels together.
pub const MAX_BANDWIDTHS: usize = 64;

/// Media stream direction (RFC 3264 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction as seen from the other side: sendonly <-> recvonly.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// The SDP attribute name (`sendrecv`, `sendonly`, `recvonly`, `inactive`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses a direction attribute name (exact, lower-case as in RFC 4566).
    pub fn from_attr(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// Whether the side this direction describes sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side this direction describes receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn from_flags(send: bool, recv: bool) -> Direction {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// What both `self` and `other` allow.
    pub fn intersect(self, other: Direction) -> Direction {
        Direction::from_flags(self.sends() && other.sends(), self.receives() && other.receives())
    }
}

/// One RTP payload format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Codec {
    pub pt: u8,
    pub name: String,
    pub rate: u32,
    pub channels: u8,
    pub fmtp: Option<String>,
}

impl Codec {
    /// G.711 µ-law, static payload type 0.
    pub fn pcmu() -> Codec {
        Codec::new(0, "PCMU", 8000, 1)
    }

    /// G.711 A-law, static payload type 8.
    pub fn pcma() -> Codec {
        Codec::new(8, "PCMA", 8000, 1)
    }

    /// RFC 4733 DTMF events 0-16 on dynamic payload type `pt`.
    pub fn telephone_event(pt: u8) -> Codec {
        Codec {
            fmtp: Some("0-16".to_string()),
            ..Codec::new(pt, "telephone-event", 8000, 1)
        }
    }

    fn new(pt: u8, name: &str, rate: u32, channels: u8) -> Codec {
        Codec {
            pt,
            name: name.to_string(),
            rate,
            channels,
            fmtp: None,
        }
    }

    /// The codec a static payload type (RFC 3551) stands for without rtpmap.
    pub fn from_static(pt: u8) -> Option<Codec> {
        let (name, rate, channels) = match pt {
            0 => ("PCMU", 8000, 1),
            3 => ("GSM", 8000, 1),
            4 => ("G723", 8000, 1),
            5 => ("DVI4", 8000, 1),
            6 => ("DVI4", 16000, 1),
            7 => ("LPC", 8000, 1),
            8 => ("PCMA", 8000, 1),
            9 => ("G722", 8000, 1),
            10 => ("L16", 44100, 2),
            11 => ("L16", 44100, 1),
            12 => ("QCELP", 8000, 1),
            13 => ("CN", 8000, 1),
            14 => ("MPA", 90000, 1),
            15 => ("G728", 8000, 1),
            16 => ("DVI4", 11025, 1),
            17 => ("DVI4", 22050, 1),
            18 => ("G729", 8000, 1),
            _ => return None,
        };
        Some(Codec::new(pt, name, rate, channels))
    }

    /// RFC 4733 events (DTMF), not audio.
    pub fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event")
    }

    /// Same format: name (case-insensitive), clock rate and channels.
    pub fn same_format(&self, other: &Codec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.rate == other.rate
            && self.channels == other.channels
    }
}

/// An attribute kept as it came: `a=name` or `a=name:value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

impl Attribute {
    fn parse(text: &str) -> Attribute {
        match text.split_once(':') {
            Some((name, value)) => Attribute {
                name: name.to_string(),
                value: Some(value.to_string()),
            },
            None => Attribute {
                name: text.to_string(),
                value: None,
            },
        }
    }

    fn write(&self, out: &mut String) {
        out.push_str("a=");
        out.push_str(&clean(&self.name));
        if let Some(v) = &self.value {
            out.push(':');
            out.push_str(&clean(v));
        }
        out.push_str("\r\n");
    }
}

/// The `a=rtcp` attribute (RFC 3605): where the far end wants its RTCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rtcp {
    pub port: u16,
    /// The address, when the attribute names one; else the stream's.
    pub addr: Option<IpAddr>,
}

/// The `o=` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub user: String,
    pub session_id: u64,
    pub version: u64,
    pub net_type: String,
    pub addr_type: String,
    /// An address or a host name, as written.
    pub address: String,
}

impl Origin {
    /// Our origin: `IN IP4|IP6 addr`.
    pub fn new(user: &str, session_id: u64, version: u64, addr: IpAddr) -> Origin {
        Origin {
            user: user.to_string(),
            session_id,
            version,
            net_type: "IN".to_string(),
            addr_type: addr_type(addr).to_string(),
            address: addr.to_string(),
        }
    }
}

/// One m-line with what belongs to it.
///
/// A disabled stream (port 0) keeps every attribute in [`Media::attributes`]: its codecs,
/// ptime and rtcp stay empty and its direction is `Inactive`. An enabled one has its
/// direction resolved (its own attribute, else the session's, else `sendonly` when its
/// address is `0.0.0.0` or `::`, the old hold, else `sendrecv`); an RTP one has its formats
/// read as payload types into [`Media::codecs`] (rtpmap and fmtp at media, else session
/// level; static types without rtpmap; dynamic types without rtpmap are left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, `image`, `application`, …
    pub kind: String,
    pub port: u16,
    /// The `/n` of `m=audio 49170/2`.
    pub port_count: Option<u16>,
    pub proto: String,
    /// The format list as written (payload type numbers for RTP).
    pub formats: Vec<String>,
    /// The stream's connection address: its own `c=`, else the session's.
    pub addr: IpAddr,
    /// `b=` lines (`AS:64`).
    pub bandwidth: Vec<String>,
    pub codecs: Vec<Codec>,
    pub direction: Direction,
    pub ptime: Option<u32>,
    pub rtcp: Option<Rtcp>,
    /// Every other attribute, in order.
    pub attributes: Vec<Attribute>,
}

impl Media {
    /// An enabled RTP/AVP audio stream with `codecs` in preference order.
    pub fn audio(addr: IpAddr, port: u16, codecs: &[Codec], direction: Direction) -> Media {
        Media {
            kind: "audio".to_string(),
            port,
            port_count: None,
            proto: "RTP/AVP".to_string(),
            formats: codecs.iter().map(|c| c.pt.to_string()).collect(),
            addr,
            bandwidth: Vec::new(),
            codecs: codecs.to_vec(),
            direction,
            ptime: None,
            rtcp: None,
            attributes: Vec::new(),
        }
    }

    /// The refusal of `offered` in an answer (RFC 3264 §6): port 0, same media type and proto,
    /// its first format.
    pub fn refused(offered: &Media, addr: IpAddr) -> Media {
        Media {
            kind: offered.kind.clone(),
            port: 0,
            port_count: None,
            proto: offered.proto.clone(),
            formats: offered.formats.iter().take(1).cloned().collect(),
            addr,
            bandwidth: Vec::new(),
            codecs: Vec::new(),
            direction: Direction::Inactive,
            ptime: None,
            rtcp: None,
            attributes: Vec::new(),
        }
    }

    /// An RTP proto (`RTP/AVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVP`, `TCP/RTP/AVP`, …).
    pub fn is_rtp(&self) -> bool {
        is_rtp_proto(&self.proto)
    }

    /// The stream is enabled (port not 0).
    pub fn is_enabled(&self) -> bool {
        self.port != 0
    }

    /// An audio stream we could take: enabled, `RTP/AVP`, `RTP/AVPF` or (with SRTP on)
    /// `RTP/SAVP`, `RTP/SAVPF` (the rest refused, see docs/decisions.md D4).
    pub fn is_acceptable_audio(&self) -> bool {
        self.kind == "audio" && self.is_enabled() && acceptable_proto(&self.proto, SrtpMode::Mandatory)
    }

    /// Where the far end wants RTCP: `a=rtcp`, else the RTP port + 1 (RFC 3550 §11).
    pub fn rtcp_addr(&self) -> (IpAddr, u16) {
        match self.rtcp {
            Some(r) => (r.addr.unwrap_or(self.addr), r.port),
            None => (self.addr, self.port.saturating_add(1)),
        }
    }

    /// The stream puts the far end on hold: it does not want to receive, or its address is
    /// `0.0.0.0` / `::` (RFC 3264 §8.4; RFC 2543's hold).
    pub fn holds(&self) -> bool {
        !self.direction.receives() || self.addr.is_unspecified()
    }
}

/// A session description: the session-level lines and every m-line, in order.
///
/// Lines other than v/o/s/c/b/t/a/m (i=, u=, e=, p=, k=, r=, z=) are not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sdp {
    pub origin: Origin,
    /// `s=`; `-` when missing or empty.
    pub session_name: String,
    /// The session-level `c=` address.
    pub connection: Option<IpAddr>,
    pub bandwidth: Vec<String>,
    /// `t=`, as written (`0 0`).
    pub timing: String,
    /// Session-level attributes, all of them, in order.
    pub attributes: Vec<Attribute>,
    pub media: Vec<Media>,
}

/// Why an offer cannot be answered: a 488 Not Acceptable Here, whose Warning
/// (RFC 3261 §20.43) is [`NotAcceptable::warn_code`] and the `Display` text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotAcceptable {
    /// No m=audio line at all.
    NoAudio,
    /// Every audio stream has port 0.
    AudioDisabled,
    /// The audio streams need a transport we do not have (SRTP: `RTP/SAVP`, …).
    Proto(String),
    /// The audio address is multicast, or of the other IP version than ours.
    Address(IpAddr),
    /// No audio codec (telephone-event aside) in common.
    NoCommonCodec,
    /// `RTP/SAVP` without an `a=crypto` line we can use (RFC 4568 §7.1.2).
    NoCrypto,
    /// Our SRTP is mandatory and the stream has no crypto.
    SrtpRequired,
}

impl NotAcceptable {
    /// The SIP Warning code: 301 incompatible address, 302 incompatible transport, 304 media
    /// type not available, 305 incompatible media format.
    pub fn warn_code(&self) -> u16 {
        match self {
            NotAcceptable::NoAudio | NotAcceptable::AudioDisabled => 304,
            NotAcceptable::Proto(_) | NotAcceptable::NoCrypto | NotAcceptable::SrtpRequired => 302,
            NotAcceptable::Address(_) => 301,
            NotAcceptable::NoCommonCodec => 305,
        }
    }

    /// How far an audio stream got: the refusal of the stream that got furthest is reported.
    fn rank(&self) -> u8 {
        match self {
            NotAcceptable::NoAudio => 0,
            NotAcceptable::AudioDisabled => 1,
            NotAcceptable::Proto(_) => 2,
            NotAcceptable::SrtpRequired | NotAcceptable::NoCrypto => 3,
            NotAcceptable::Address(_) => 4,
            NotAcceptable::NoCommonCodec => 5,
        }
    }
}

impl fmt::Display for NotAcceptable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotAcceptable::NoAudio => f.write_str("offer has no audio stream"),
            NotAcceptable::AudioDisabled => f.write_str("offer's audio stream is disabled (port 0)"),
            NotAcceptable::Proto(p) if is_secure_proto(p) => {
                write!(
                    f,
                    "audio over {} needs SRTP, which is off ([media] srtp)",
                    clean(p)
                )
            }
            NotAcceptable::Proto(p) => write!(f, "audio over {} is not supported, only RTP/AVP", clean(p)),
            NotAcceptable::NoCrypto => f.write_str("no SRTP crypto suite in common"),
            NotAcceptable::SrtpRequired => f.write_str("SRTP is required and the offer has no crypto"),
            NotAcceptable::Address(a) => write!(f, "audio address {a} is not usable"),
            NotAcceptable::NoCommonCodec => f.write_str("no common codec"),
        }
    }
}

impl std::error::Error for NotAcceptable {}

fn is_rtp_proto(proto: &str) -> bool {
    proto.split('/').any(|part| part.eq_ignore_ascii_case("RTP"))
}

fn acceptable_proto(proto: &str, srtp: SrtpMode) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP")
        || proto.eq_ignore_ascii_case("RTP/AVPF")
        || (srtp != SrtpMode::Off && is_secure_proto(proto))
}

fn addr_type(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// `s` with every control character replaced by a space, so it stays on its line.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `s` with whitespace and control characters replaced, so it stays one field; `-` if empty.
fn one_token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if t.is_empty() { "-".to_string() } else { t }
}

/// Parses the body of a `c=` line: `IN IP4|IP6 <addr>[/ttl[/n]]`.
fn parse_connection(v: &str, line_no: usize) -> Result<IpAddr, String> {
    let fields: Vec<&str> = v.split_whitespace().collect();
    let [nettype, addrtype, addr] = fields[..] else {
        return Err(format!("line {line_no}: c= needs 3 fields, got {:?}", v.trim()));
    };
    if nettype != "IN" {
        return Err(format!("line {line_no}: unsupported network type {nettype:?}"));
    }
    let host = addr.split('/').next().unwrap_or_default();
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("line {line_no}: bad connection address {addr:?}"))?;
    match (addrtype, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(ip),
        _ => Err(format!(
            "line {line_no}: address {host:?} does not match address type {addrtype:?}"
        )),
    }
}

/// Splits `"<pt> <rest>"` as used by rtpmap and fmtp.
fn split_pt(v: &str) -> Option<(u8, &str)> {
    let v = v.trim_start();
    let (pt, rest) = v.split_once([' ', '\t'])?;
    let pt = pt.parse::<u8>().ok().filter(|&p| p <= 127)?;
    let rest = rest.trim();
    (!rest.is_empty()).then_some((pt, rest))
}

/// `a=rtpmap:<pt> <name>/<rate>[/<channels>]`.
fn parse_rtpmap(v: &str) -> Option<(u8, Codec)> {
    let (pt, enc) = split_pt(v)?;
    let mut parts = enc.split('/');
    let name = parts.next().unwrap_or_default().trim();
    let rate = parts.next()?.trim().parse::<u32>().ok().filter(|&r| r > 0)?;
    let channels = match parts.next() {
        None => 1,
        Some(c) => c.trim().parse::<u8>().ok().filter(|&c| c > 0)?,
    };
    if parts.next().is_some() || name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some((pt, Codec::new(pt, name, rate, channels)))
}

/// `a=fmtp:<pt> <parameters>`.
fn parse_fmtp(v: &str) -> Option<(u8, String)> {
    split_pt(v).map(|(pt, params)| (pt, params.to_string()))
}

/// `a=ptime:<ms>`.
fn parse_ptime(v: &str) -> Option<u32> {
    v.trim().parse::<u32>().ok().filter(|&ms| ms > 0)
}

/// `a=rtcp:<port> [IN IP4|IP6 <addr>]`.
fn parse_rtcp(v: &str) -> Option<Rtcp> {
    let fields: Vec<&str> = v.split_whitespace().collect();
    match fields[..] {
        [port] => Some(Rtcp {
            port: port.parse().ok()?,
            addr: None,
        }),
        [port, net, atype, addr] => Some(Rtcp {
            port: port.parse().ok()?,
            addr: Some(parse_connection(&format!("{net} {atype} {addr}"), 0).ok()?),
        }),
        _ => None,
    }
}

/// What the session level says for every stream that says nothing itself.
#[derive(Default)]
struct SessionDefaults {
    rtpmap: HashMap<u8, Codec>,
    fmtp: HashMap<u8, String>,
    ptime: Option<u32>,
    direction: Option<Direction>,
}

impl SessionDefaults {
    fn from_attributes(attrs: &[Attribute]) -> SessionDefaults {
        let mut d = SessionDefaults::default();
        for a in attrs {
            match (a.name.as_str(), a.value.as_deref()) {
                ("rtpmap", Some(v)) => {
                    if let Some((pt, codec)) = parse_rtpmap(v) {
                        d.rtpmap.entry(pt).or_insert(codec);
                    }
                }
                ("fmtp", Some(v)) => {
                    if let Some((pt, params)) = parse_fmtp(v) {
                        d.fmtp.entry(pt).or_insert(params);
                    }
                }
                ("ptime", Some(v)) => d.ptime = d.ptime.or(parse_ptime(v)),
                (name, None) => d.direction = d.direction.or(Direction::from_attr(name)),
                _ => {}
            }
        }
        d
    }
}

/// An m-line section as read, before the session level is applied.
struct RawMedia {
    line_no: usize,
    kind: String,
    port: u16,
    port_count: Option<u16>,
    proto: String,
    formats: Vec<String>,
    connection: Option<IpAddr>,
    bandwidth: Vec<String>,
    attributes: Vec<Attribute>,
}

impl RawMedia {
    /// `m=<media> <port>[/<count>] <proto> <fmt> ...`.
    fn parse(value: &str, line_no: usize) -> Result<RawMedia, String> {
        let f: Vec<&str> = value.split_whitespace().collect();
        let [kind, port, proto, formats @ ..] = &f[..] else {
            return Err(format!("line {line_no}: m= needs media, port, proto and formats"));
        };
        if formats.is_empty() {
            return Err(format!("line {line_no}: m= lists no format"));
        }
        if formats.len() > MAX_FORMATS {
            return Err(format!("line {line_no}: more than {MAX_FORMATS} formats"));
        }
        let (port_text, count_text) = match port.split_once('/') {
            Some((p, c)) => (p, Some(c)),
            None => (*port, None),
        };
        let bad_port = || format!("line {line_no}: bad media port {port:?}");
        let port_num = port_text.parse::<u16>().map_err(|_| bad_port())?;
        let port_count = match count_text {
            None => None,
            Some(c) => Some(c.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(bad_port)?),
        };
        Ok(RawMedia {
            line_no,
            kind: (*kind).to_string(),
            port: port_num,
            port_count,
            proto: (*proto).to_string(),
            formats: formats.iter().map(|s| (*s).to_string()).collect(),
            connection: None,
            bandwidth: Vec::new(),
            attributes: Vec::new(),
        })
    }

    /// The stream with the session level applied and its typed attributes read.
    fn resolve(self, session: &SessionDefaults, session_c: Option<IpAddr>) -> Result<Media, String> {
        let line_no = self.line_no;
        let enabled = self.port != 0;
        let addr = match self.connection.or(session_c) {
            Some(a) => a,
            None if !enabled => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            None => {
                return Err(format!(
                    "line {line_no}: no connection address (c=) for this {} stream",
                    clean(&self.kind)
                ));
            }
        };
        let mut media = Media {
            kind: self.kind,
            port: self.port,
            port_count: self.port_count,
            proto: self.proto,
            formats: self.formats,
            addr,
            bandwidth: self.bandwidth,
            codecs: Vec::new(),
            direction: Direction::Inactive,
            ptime: None,
            rtcp: None,
            attributes: Vec::new(),
        };
        if !enabled {
            media.attributes = self.attributes;
            return Ok(media);
        }
        let rtp = media.is_rtp();
        let mut pts: Vec<u8> = Vec::new();
        if rtp {
            for f in &media.formats {
                let pt = f
                    .parse::<u8>()
                    .ok()
                    .filter(|&p| p <= 127)
                    .ok_or_else(|| format!("line {line_no}: bad RTP payload type {f:?}"))?;
                if !pts.contains(&pt) {
                    pts.push(pt);
                }
            }
        }
        let mut rtpmap: HashMap<u8, Codec> = HashMap::new();
        let mut fmtp: HashMap<u8, String> = HashMap::new();
        // rtpmap/fmtp lines, each with the payload type it describes, in order: those no codec
        // uses are kept as plain attributes.
        let mut maps: Vec<(u8, Attribute)> = Vec::new();
        let mut direction = None;
        for attr in self.attributes {
            let value = attr.value.as_deref();
            match (attr.name.as_str(), value) {
                ("rtpmap", Some(v)) if rtp => match parse_rtpmap(v) {
                    Some((pt, codec)) => {
                        if let Entry::Vacant(e) = rtpmap.entry(pt) {
                            e.insert(codec);
                            maps.push((pt, attr));
                        }
                    }
                    None => media.attributes.push(attr),
                },
                ("fmtp", Some(v)) if rtp => match parse_fmtp(v) {
                    Some((pt, params)) => {
                        if let Entry::Vacant(e) = fmtp.entry(pt) {
                            e.insert(params);
                            maps.push((pt, attr));
                        }
                    }
                    None => media.attributes.push(attr),
                },
                ("ptime", Some(v)) if rtp => match parse_ptime(v) {
                    Some(ms) => media.ptime = media.ptime.or(Some(ms)),
                    None => media.attributes.push(attr),
                },
                ("rtcp", Some(v)) if rtp => match parse_rtcp(v) {
                    Some(r) => media.rtcp = media.rtcp.or(Some(r)),
                    None => media.attributes.push(attr),
                },
                (name, None) if Direction::from_attr(name).is_some() => {
                    direction = direction.or(Direction::from_attr(name));
                }
                _ => media.attributes.push(attr),
            }
        }
        for pt in pts {
            let codec = rtpmap
                .get(&pt)
                .or_else(|| session.rtpmap.get(&pt))
                .cloned()
                .or_else(|| Codec::from_static(pt));
            if let Some(mut codec) = codec {
                codec.pt = pt;
                codec.fmtp = fmtp.get(&pt).or_else(|| session.fmtp.get(&pt)).cloned();
                media.codecs.push(codec);
            }
        }
        for (pt, attr) in maps {
            if !media.codecs.iter().any(|c| c.pt == pt) {
                media.attributes.push(attr);
            }
        }
        let hold = if addr.is_unspecified() {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        media.direction = direction.or(session.direction).unwrap_or(hold);
        if rtp {
            media.ptime = media.ptime.or(session.ptime);
        }
        Ok(media)
    }
}

impl Sdp {
    /// Parses SDP text (CRLF or LF line ends).
    ///
    /// `v=0` first, an `o=` line required; `s=` and `t=` default to `-` and `0 0`. Each
    /// enabled stream needs a connection address, its own `c=` or the session's; an RTP one
    /// needs payload types 0-127 as formats. Control characters inside a line become
    /// spaces. A malformed rtpmap, fmtp, ptime or rtcp attribute is kept as a plain attribute
    /// (it does not condemn the whole offer); of repeated ones the first counts. Bad input
    /// → `Err` naming the line, never a panic.
    pub fn parse(text: &str) -> Result<Sdp, String> {
        let mut seen_version = false;
        let mut origin: Option<Origin> = None;
        let mut session_name: Option<String> = None;
        let mut timing: Option<String> = None;
        let mut connection: Option<IpAddr> = None;
        let mut bandwidth: Vec<String> = Vec::new();
        let mut attributes: Vec<Attribute> = Vec::new();
        let mut raw_media: Vec<RawMedia> = Vec::new();
        let (mut n_attrs, mut n_bandwidths) = (0usize, 0usize);

        for (idx, raw) in text.split('\n').enumerate() {
            let line_no = idx + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.len() > MAX_LINE {
                return Err(format!("line {line_no}: longer than {MAX_LINE} bytes"));
            }
            let cleaned;
            let line = if line.contains(char::is_control) {
                cleaned = clean(line);
                cleaned.as_str()
            } else {
                line
            };
            let line = line.trim_end();
            if line.trim().is_empty() {
                continue;
            }
            let bytes = line.as_bytes();
            if bytes.len() < 2 || !bytes[0].is_ascii_alphabetic() || bytes[1] != b'=' {
                return Err(format!("line {line_no}: not an SDP line: {line:?}"));
            }
            let kind = bytes[0];
            // The first two bytes are ASCII, so this is a char boundary.
            let value = &line[2..];
            if !seen_version {
                if kind != b'v' {
                    return Err(format!("line {line_no}: SDP must start with v=0"));
                }
                if value.trim() != "0" {
                    return Err(format!("line {line_no}: unsupported SDP version {value:?}"));
                }
                seen_version = true;
                continue;
            }
            let current = raw_media.last_mut();
            match (kind, current) {
                (b'm', _) => {
                    if raw_media.len() == MAX_MEDIA {
                        return Err(format!("line {line_no}: more than {MAX_MEDIA} m-lines"));
                    }
                    raw_media.push(RawMedia::parse(value, line_no)?);
                }
                (b'a', current) => {
                    n_attrs += 1;
                    if n_attrs > MAX_ATTRIBUTES {
                        return Err(format!("line {line_no}: more than {MAX_ATTRIBUTES} attributes"));
                    }
                    let attr = Attribute::parse(value);
                    match current {
                        Some(m) => m.attributes.push(attr),
                        None => attributes.push(attr),
                    }
                }
                (b'b', current) => {
                    n_bandwidths += 1;
                    if n_bandwidths > MAX_BANDWIDTHS {
                        return Err(format!("line {line_no}: more than {MAX_BANDWIDTHS} b= lines"));
                    }
                    match current {
                        Some(m) => m.bandwidth.push(value.trim().to_string()),
                        None => bandwidth.push(value.trim().to_string()),
                    }
                }
                (b'c', Some(m)) => m.connection = Some(parse_connection(value, line_no)?),
                (b'c', None) => connection = Some(parse_connection(value, line_no)?),
                (b'o', None) if origin.is_none() => origin = Some(parse_origin(value, line_no)?),
                (b's', None) if session_name.is_none() => session_name = Some(value.trim().to_string()),
                (b't', None) if timing.is_none() => timing = Some(value.trim().to_string()),
                _ => {}
            }
        }

        if !seen_version {
            return Err("empty SDP".to_string());
        }
        let origin = origin.ok_or("SDP has no o= line")?;
        let defaults = SessionDefaults::from_attributes(&attributes);
        let media = raw_media
            .into_iter()
            .map(|m| m.resolve(&defaults, connection))
            .collect::<Result<Vec<Media>, String>>()?;
        let or_default = |s: Option<String>, default: &str| match s {
            Some(s) if !s.is_empty() => s,
            _ => default.to_string(),
        };
        let sdp = Sdp {
            origin,
            session_name: or_default(session_name, "-"),
            connection,
            bandwidth,
            timing: or_default(timing, "0 0"),
            attributes,
            media,
        };
        if sdp.attribute_lines() > MAX_ATTRIBUTES {
            return Err(format!(
                "more than {MAX_ATTRIBUTES} attributes once each stream has its codecs and direction"
            ));
        }
        Ok(sdp)
    }

    /// How many `a=` lines [`Sdp::to_text`] writes.
    fn attribute_lines(&self) -> usize {
        let media: usize = self
            .media
            .iter()
            .map(|m| {
                if !m.is_enabled() {
                    return m.attributes.len();
                }
                let fmtp = m
                    .codecs
                    .iter()
                    .filter(|c| c.fmtp.as_deref().is_some_and(|f| !clean(f).trim().is_empty()))
                    .count();
                let other = m.attributes.iter().filter(|a| !is_direction_attribute(a)).count();
                m.codecs.len()
                    + fmtp
                    + usize::from(m.ptime.is_some())
                    + usize::from(m.rtcp.is_some())
                    + other
                    + 1
            })
            .sum();
        self.attributes.len() + media
    }

    /// The first audio stream we can take (enabled, RTP/AVP or RTP/AVPF), if any.
    pub fn audio(&self) -> Option<&Media> {
        self.audio_index().and_then(|i| self.media.get(i))
    }

    /// [`Sdp::audio`], to change.
    pub fn audio_mut(&mut self) -> Option<&mut Media> {
        self.audio_index().and_then(|i| self.media.get_mut(i))
    }

    /// The position of [`Sdp::audio`] among the m-lines.
    pub fn audio_index(&self) -> Option<usize> {
        self.media.iter().position(Media::is_acceptable_audio)
    }

    /// Serializes with CRLF line ends, in RFC 4566 order: v=0, o=, s=, the session c= and
    /// b= lines, t=, the session attributes, then each m-line with its c= (when it differs
    /// from the session's), its b= lines and attributes. An enabled stream writes rtpmap for
    /// each codec, fmtp where set, ptime, rtcp, its other attributes, then its direction; a
    /// disabled one its attributes as they are. What [`Sdp::parse`] returned is written so
    /// that it parses back the same.
    pub fn to_text(&self) -> String {
        let o = &self.origin;
        let mut out = format!(
            "v=0\r\no={} {} {} {} {} {}\r\ns={}\r\n",
            one_token(&o.user),
            o.session_id,
            o.version,
            one_token(&o.net_type),
            one_token(&o.addr_type),
            one_token(&o.address),
            non_empty(&self.session_name, "-"),
        );
        if let Some(c) = self.connection {
            out.push_str(&format!("c=IN {} {c}\r\n", addr_type(c)));
        }
        for b in &self.bandwidth {
            out.push_str(&format!("b={}\r\n", clean(b).trim()));
        }
        out.push_str(&format!("t={}\r\n", non_empty(&self.timing, "0 0")));
        for a in &self.attributes {
            a.write(&mut out);
        }
        for m in &self.media {
            self.write_media(m, &mut out);
        }
        out
    }

    fn write_media(&self, m: &Media, out: &mut String) {
        out.push_str(&format!("m={} {}", one_token(&m.kind), m.port));
        if let Some(n) = m.port_count {
            out.push_str(&format!("/{n}"));
        }
        out.push_str(&format!(" {}", one_token(&m.proto)));
        if m.formats.is_empty() {
            for c in &m.codecs {
                out.push_str(&format!(" {}", c.pt));
            }
        }
        for f in &m.formats {
            out.push_str(&format!(" {}", one_token(f)));
        }
        out.push_str("\r\n");
        if self.connection != Some(m.addr) {
            out.push_str(&format!("c=IN {} {}\r\n", addr_type(m.addr), m.addr));
        }
        for b in &m.bandwidth {
            out.push_str(&format!("b={}\r\n", clean(b).trim()));
        }
        if !m.is_enabled() {
            for a in &m.attributes {
                a.write(out);
            }
            return;
        }
        for c in &m.codecs {
            out.push_str(&format!("a=rtpmap:{} {}/{}", c.pt, one_token(&c.name), c.rate));
            if c.channels != 1 {
                out.push_str(&format!("/{}", c.channels));
            }
            out.push_str("\r\n");
        }
        for c in &m.codecs {
            if let Some(f) = &c.fmtp {
                let f = clean(f);
                if !f.trim().is_empty() {
                    out.push_str(&format!("a=fmtp:{} {}\r\n", c.pt, f.trim()));
                }
            }
        }
        if let Some(p) = m.ptime {
            out.push_str(&format!("a=ptime:{p}\r\n"));
        }
        if let Some(r) = m.rtcp {
            match r.addr {
                Some(a) => out.push_str(&format!("a=rtcp:{} IN {} {a}\r\n", r.port, addr_type(a))),
                None => out.push_str(&format!("a=rtcp:{}\r\n", r.port)),
            }
        }
        // The direction is written once, below.
        for a in m.attributes.iter().filter(|a| !is_direction_attribute(a)) {
            a.write(out);
        }
        out.push_str(&format!("a={}\r\n", m.direction.as_str()));
    }
}

/// `a=sendrecv`, `a=sendonly`, `a=recvonly` or `a=inactive`.
fn is_direction_attribute(a: &Attribute) -> bool {
    a.value.is_none() && Direction::from_attr(&a.name).is_some()
}

/// `o=<user> <id> <version> <nettype> <addrtype> <address>`.
fn parse_origin(value: &str, line_no: usize) -> Result<Origin, String> {
    let f: Vec<&str> = value.split_whitespace().collect();
    let [user, id, ver, net, atype, addr] = f[..] else {
        return Err(format!("line {line_no}: o= needs 6 fields"));
    };
    let session_id = id
        .parse::<u64>()
        .map_err(|_| format!("line {line_no}: bad session id {id:?}"))?;
    let version = ver
        .parse::<u64>()
        .map_err(|_| format!("line {line_no}: bad session version {ver:?}"))?;
    Ok(Origin {
        user: user.to_string(),
        session_id,
        version,
        net_type: net.to_string(),
        addr_type: atype.to_string(),
        address: addr.to_string(),
    })
}

/// `s` made one line, or `default` when that is blank.
fn non_empty(s: &str, default: &str) -> String {
    let s = clean(s);
    if s.trim().is_empty() {
        default.to_string()
    } else {
        s.trim().to_string()
    }
}

/// Our offer: one RTP/AVP audio stream with `codecs` in preference order.
pub fn offer(
    user: &str,
    session_id: u64,
    version: u64,
    addr: IpAddr,
    port: u16,
    codecs: &[Codec],
    direction: Direction,
) -> Sdp {
    Sdp {
        origin: Origin::new(user, session_id, version, addr),
        session_name: "-".to_string(),
        connection: Some(addr),
        bandwidth: Vec::new(),
        timing: "0 0".to_string(),
        attributes: Vec::new(),
        media: vec![Media::audio(addr, port, codecs, direction)],
    }
}

/// The audio stream of `offer` we take, by position, with the codecs of our answer: the
/// first audio stream that is enabled, over RTP/AVP or RTP/AVPF, at a unicast address of our
/// IP version (or `0.0.0.0`/`::`, a hold), with an audio codec in common. See [`answer`] for
/// the codecs.
pub fn select_audio(
    offer: &Sdp,
    addr: IpAddr,
    supported: &[Codec],
    srtp: SrtpMode,
) -> Result<(usize, Vec<Codec>), NotAcceptable> {
    let mut why = NotAcceptable::NoAudio;
    let mut worse = |w: NotAcceptable| {
        if w.rank() > why.rank() {
            why = w;
        }
    };
    for (i, m) in offer.media.iter().enumerate() {
        if m.kind != "audio" {
            continue;
        }
        if !m.is_enabled() {
            worse(NotAcceptable::AudioDisabled);
            continue;
        }
        if !acceptable_proto(&m.proto, srtp) {
            worse(NotAcceptable::Proto(m.proto.clone()));
            continue;
        }
        // SRTP (RFC 4568): a secure profile needs a crypto line we can use; mandatory SRTP
        // needs one whatever the profile.
        if srtp != SrtpMode::Off && sdes::usable(m).is_empty() {
            if is_secure_proto(&m.proto) {
                worse(NotAcceptable::NoCrypto);
                continue;
            }
            if srtp == SrtpMode::Mandatory {
                worse(if sdes::has_crypto(m) {
                    NotAcceptable::NoCrypto
                } else {
                    NotAcceptable::SrtpRequired
                });
                continue;
            }
        }
        let other_family = addr.is_ipv4() != m.addr.is_ipv4() && !m.addr.is_unspecified();
        if m.addr.is_multicast() || other_family {
            worse(NotAcceptable::Address(m.addr));
            continue;
        }
        let codecs = common_codecs(m, supported);
        if codecs.iter().any(|c| !c.is_telephone_event()) {
            return Ok((i, codecs));
        }
        worse(NotAcceptable::NoCommonCodec);
    }
    Err(why)
}

/// The codecs of `offered` we support, in OUR order, with the offer's payload type numbers.
fn common_codecs(offered: &Media, supported: &[Codec]) -> Vec<Codec> {
    let mut codecs: Vec<Codec> = Vec::new();
    for ours in supported {
        let Some(theirs) = offered.codecs.iter().find(|c| c.same_format(ours)) else {
            continue;
        };
        if codecs.iter().any(|c| c.pt == theirs.pt) {
            continue;
        }
        codecs.push(Codec {
            pt: theirs.pt,
            name: ours.name.clone(),
            rate: ours.rate,
            channels: ours.channels,
            fmtp: ours.fmtp.clone().or_else(|| theirs.fmtp.clone()),
        });
    }
    codecs
}

/// Our answer to `offer` (RFC 3264 §6): exactly the offer's m-lines, in order.
///
/// The audio stream [`select_audio`] picks is accepted on `addr`:`port` with the offer's
/// proto, the codecs both support in OUR preference order (from `supported`) under the
/// OFFER's payload type numbers (dynamic types like telephone-event matched by
/// name/rate/channels, case-insensitive; telephone-event only if offered; our fmtp when we
/// set one, else the offer's), the offer's ptime echoed, and the direction = our wanted
/// direction intersected with the reverse of the offer's (offer sendonly → we recvonly,
/// inactive → inactive, recvonly → we sendonly). Every other m-line is refused: port 0, same
/// media type and proto, its first offered format. No acceptable audio stream → `Err`, the
/// reason of the audio stream that got furthest.
#[allow(clippy::too_many_arguments)]
pub fn answer(
    offer: &Sdp,
    user: &str,
    session_id: u64,
    version: u64,
    addr: IpAddr,
    port: u16,
    supported: &[Codec],
    want: Direction,
    srtp: SrtpMode,
    keys: &mut LocalKeys,
) -> Result<Sdp, NotAcceptable> {
    let (chosen, codecs) = select_audio(offer, addr, supported, srtp)?;
    // The first usable crypto line of the offer, answered with our key for its suite.
    let crypto = match sdes::usable(&offer.media[chosen]).first() {
        Some(c) if srtp != SrtpMode::Off => {
            let key = keys.get(c.key.suite()).map_err(|_| NotAcceptable::NoCrypto)?;
            vec![sdes::attribute(c.tag, &key)]
        }
        _ => Vec::new(),
    };
    let media = offer
        .media
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if i != chosen {
                return Media::refused(m, addr);
            }
            Media {
                proto: m.proto.clone(),
                ptime: m.ptime,
                attributes: crypto.clone(),
                ..Media::audio(addr, port, &codecs, want.intersect(m.direction.reverse()))
            }
        })
        .collect();
    Ok(Sdp {
        media,
        ..offer_session(user, session_id, version, addr)
    })
}

/// A session description of ours without m-lines.
fn offer_session(user: &str, session_id: u64, version: u64, addr: IpAddr) -> Sdp {
    Sdp {
        media: Vec::new(),
        ..offer(user, session_id, version, addr, 0, &[], Direction::SendRecv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    const BARESIP: &str = include_str!("../../tests/fixtures/sdp/baresip.sdp");

    /// The PBX-style bodies of docs/decisions.md D4, by name.
    const FIXTURES: [(&str, &str); 15] = [
        (
            "asterisk-offer",
            include_str!("../../tests/fixtures/sdp/asterisk-offer.sdp"),
        ),
        (
            "asterisk-hold",
            include_str!("../../tests/fixtures/sdp/asterisk-hold.sdp"),
        ),
        ("baresip", BARESIP),
        (
            "cucm-hold-zero",
            include_str!("../../tests/fixtures/sdp/cucm-hold-zero.sdp"),
        ),
        (
            "cucm-offer",
            include_str!("../../tests/fixtures/sdp/cucm-offer.sdp"),
        ),
        (
            "cucm-video-port0",
            include_str!("../../tests/fixtures/sdp/cucm-video-port0.sdp"),
        ),
        (
            "freeswitch-offer",
            include_str!("../../tests/fixtures/sdp/freeswitch-offer.sdp"),
        ),
        (
            "freeswitch-savp",
            include_str!("../../tests/fixtures/sdp/freeswitch-savp.sdp"),
        ),
        (
            "freeswitch-video",
            include_str!("../../tests/fixtures/sdp/freeswitch-video.sdp"),
        ),
        ("ipv6", include_str!("../../tests/fixtures/sdp/ipv6.sdp")),
        ("linphone", include_str!("../../tests/fixtures/sdp/linphone.sdp")),
        (
            "polycom-avpf",
            include_str!("../../tests/fixtures/sdp/polycom-avpf.sdp"),
        ),
        (
            "sessionlevel-only-attrs",
            include_str!("../../tests/fixtures/sdp/sessionlevel-only-attrs.sdp"),
        ),
        (
            "video-audio-order",
            include_str!("../../tests/fixtures/sdp/video-audio-order.sdp"),
        ),
        (
            "webrtc-savpf",
            include_str!("../../tests/fixtures/sdp/webrtc-savpf.sdp"),
        ),
    ];

    /// The SDP of 13 of RFC 4475's messages: an rtpmap without clock rate in the video stream.
    const RFC4475: &str = "v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.25\r\ns=-\r\n\
        c=IN IP4 192.0.2.25\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\n\
        a=rtpmap:31 LPC\r\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fixture(name: &str) -> Sdp {
        let (_, text) = FIXTURES.iter().find(|(n, _)| *n == name).unwrap();
        Sdp::parse(text).unwrap()
    }

    fn ours() -> Vec<Codec> {
        vec![Codec::pcma(), Codec::pcmu(), Codec::telephone_event(101)]
    }

    fn answer_v4(offer: &Sdp) -> Result<Sdp, NotAcceptable> {
        answer(
            offer,
            "me",
            9,
            1,
            ip("10.0.0.9"),
            30000,
            &ours(),
            Direction::SendRecv,
            SrtpMode::Off,
            &mut LocalKeys::default(),
        )
    }

    #[test]
    fn direction_helpers() {
        use Direction::*;
        assert_eq!(SendOnly.reverse(), RecvOnly);
        assert_eq!(RecvOnly.reverse(), SendOnly);
        assert_eq!(SendRecv.reverse(), SendRecv);
        assert_eq!(Inactive.reverse(), Inactive);
        assert_eq!(SendRecv.as_str(), "sendrecv");
        assert_eq!(Inactive.as_str(), "inactive");
        assert_eq!(SendRecv.intersect(RecvOnly), RecvOnly);
        assert_eq!(SendOnly.intersect(RecvOnly), Inactive);
        assert!(SendOnly.sends() && !SendOnly.receives());
    }

    #[test]
    fn parses_sipp_offer() {
        let s = Sdp::parse(SIPP).unwrap();
        assert_eq!(s.origin.user, "user1");
        assert_eq!(s.origin.session_id, 53655765);
        assert_eq!(s.origin.version, 2353687637);
        assert_eq!(s.origin.address, "127.0.0.1");
        assert_eq!(s.session_name, "-");
        assert_eq!(s.timing, "0 0");
        assert_eq!(s.connection, Some(ip("127.0.0.1")));
        assert_eq!(s.media.len(), 1);
        let a = s.audio().unwrap();
        assert_eq!(a.addr, ip("127.0.0.1"));
        assert_eq!(a.port, 6000);
        assert_eq!(a.proto, "RTP/AVP");
        assert_eq!(a.formats, vec!["0"]);
        assert_eq!(a.codecs, vec![Codec::pcmu()]);
        assert_eq!(a.direction, Direction::SendRecv);
        assert_eq!(a.ptime, None);
        assert!(a.attributes.is_empty());
    }

    #[test]
    fn parses_baresip_offer_with_lf_line_ends() {
        let lf = BARESIP.replace("\r\n", "\n");
        let s = Sdp::parse(&lf).unwrap();
        assert_eq!(s, Sdp::parse(BARESIP).unwrap());
        let a = s.audio().unwrap();
        assert_eq!(a.port, 10106);
        assert_eq!(a.ptime, Some(20));
        let pts: Vec<u8> = a.codecs.iter().map(|c| c.pt).collect();
        assert_eq!(pts, vec![96, 9, 0, 8, 101]);
        assert_eq!(a.codecs[0].name, "opus");
        assert_eq!(a.codecs[0].rate, 48000);
        assert_eq!(a.codecs[0].channels, 2);
        assert_eq!(a.codecs[0].fmtp.as_deref(), Some("stereo=1;sprop-stereo=1"));
        assert_eq!(a.codecs[3], Codec::pcma());
        assert_eq!(a.codecs[4].name, "telephone-event");
        assert_eq!(a.codecs[4].fmtp.as_deref(), Some("0-15"));
        assert_eq!(a.bandwidth, vec!["AS:98"]);
        let names: Vec<&str> = a.attributes.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, vec!["label", "rtcp-rsize", "ssrc"]);
        assert_eq!(
            a.attributes[2].value.as_deref(),
            Some("2914133316 cname:b3c5a1d2")
        );
        assert_eq!(
            s.attributes,
            vec![Attribute {
                name: "tool".into(),
                value: Some("baresip 3.10.1".into())
            }]
        );
    }

    #[test]
    fn static_types_without_rtpmap_and_unknown_dynamic_dropped() {
        let s = Sdp::parse(
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 8 0 18 99\n",
        )
        .unwrap();
        let a = s.audio().unwrap();
        let names: Vec<&str> = a.codecs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["PCMA", "PCMU", "G729"]);
        assert_eq!(
            a.formats,
            vec!["8", "0", "18", "99"],
            "the format list stays whole"
        );
    }

    #[test]
    fn media_level_wins_over_session_level() {
        let s = Sdp::parse(
            "v=0\r\no=alice 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             a=recvonly\r\na=ptime:30\r\na=rtpmap:97 iLBC/8000\r\n\
             m=audio 5004 RTP/AVP 97 0\r\nc=IN IP4 10.0.0.2\r\na=sendonly\r\na=ptime:20\r\n\
             m=video 5006 RTP/AVP 98\r\nc=IN IP4 10.0.0.3\r\na=inactive\r\na=ptime:40\r\n",
        )
        .unwrap();
        assert_eq!(s.connection, Some(ip("10.0.0.1")));
        let a = s.audio().unwrap();
        assert_eq!(a.addr, ip("10.0.0.2"));
        assert_eq!(a.direction, Direction::SendOnly);
        assert_eq!(a.ptime, Some(20));
        assert_eq!(a.codecs[0].name, "iLBC");
        let v = &s.media[1];
        assert_eq!((v.kind.as_str(), v.port, v.addr), ("video", 5006, ip("10.0.0.3")));
        assert_eq!((v.direction, v.ptime), (Direction::Inactive, Some(40)));
        assert!(v.codecs.is_empty(), "98 has no rtpmap");

        // Session-level attributes apply when the media has none.
        let s = Sdp::parse(
            "v=0\r\no=alice 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             a=recvonly\r\na=ptime:30\r\nm=audio 5004 RTP/AVP 0\r\n",
        )
        .unwrap();
        let a = s.audio().unwrap();
        assert_eq!(a.direction, Direction::RecvOnly);
        assert_eq!(a.ptime, Some(30));
        assert_eq!(s.attributes.len(), 2, "session attributes are all kept");
    }

    #[test]
    fn only_media_level_connection() {
        let s = Sdp::parse(
            "v=0\r\no=- 7 7 IN IP4 host.example.com\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\nc=IN IP4 192.0.2.5/127\r\n",
        )
        .unwrap();
        assert_eq!(s.connection, None);
        assert_eq!(s.origin.address, "host.example.com");
        assert_eq!(s.audio().unwrap().addr, ip("192.0.2.5"));
        let text = s.to_text();
        assert!(text.contains("o=- 7 7 IN IP4 host.example.com\r\n"), "{text}");
        assert_eq!(Sdp::parse(&text).unwrap(), s);
    }

    #[test]
    fn ipv6() {
        let s = Sdp::parse(
            "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0 8\r\n",
        )
        .unwrap();
        assert_eq!(s.connection, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        let text = s.to_text();
        assert!(text.contains("o=- 1 1 IN IP6 ::1\r\n"), "{text}");
        assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
        assert_eq!(Sdp::parse(&text).unwrap(), s);

        // Answered from an IPv6 address: IP6 in o= and c=; refused from an IPv4 one (301).
        let offer = fixture("ipv6");
        assert_eq!(offer.audio().unwrap().rtcp_addr(), (ip("2001:db8::10"), 40003));
        let ans = answer(
            &offer,
            "me",
            1,
            1,
            ip("2001:db8::99"),
            5000,
            &ours(),
            Direction::SendRecv,
            SrtpMode::Off,
            &mut LocalKeys::default(),
        )
        .unwrap();
        let text = ans.to_text();
        assert!(text.contains("o=me 1 1 IN IP6 2001:db8::99\r\n"), "{text}");
        assert!(text.contains("c=IN IP6 2001:db8::99\r\nt=0 0\r\nm=audio 5000 RTP/AVP 8 0 101\r\n"));
        let err = answer_v4(&offer).unwrap_err();
        assert_eq!(err, NotAcceptable::Address(ip("2001:db8::10")));
        assert_eq!(err.warn_code(), 301);
    }

    #[test]
    fn round_trip() {
        let ours = offer(
            "me",
            42,
            1,
            IpAddr::V4(Ipv4Addr::new(192, 168, 0, 10)),
            40000,
            &[Codec::pcma(), Codec::pcmu(), Codec::telephone_event(101)],
            Direction::SendRecv,
        );
        let text = ours.to_text();
        assert_eq!(
            text,
            "v=0\r\no=me 42 1 IN IP4 192.168.0.10\r\ns=-\r\nc=IN IP4 192.168.0.10\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
        );
        assert_eq!(Sdp::parse(&text).unwrap(), ours);

        let mut other = Sdp::parse(BARESIP).unwrap();
        if let Some(a) = other.audio_mut() {
            a.addr = ip("10.1.1.1");
            a.direction = Direction::Inactive;
        }
        assert_eq!(Sdp::parse(&other.to_text()).unwrap(), other);
    }

    #[test]
    fn fixtures_parse_whole_and_round_trip() {
        for (name, text) in FIXTURES.iter().copied().chain([("rfc4475", RFC4475)]) {
            let s = Sdp::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let m_lines = text.lines().filter(|l| l.starts_with("m=")).count();
            assert_eq!(s.media.len(), m_lines, "{name}");
            // Every a= line is a typed field or an attribute (a repeated one aside).
            let written = s.to_text();
            assert_eq!(Sdp::parse(&written).unwrap(), s, "{name}\n{written}");
            assert_eq!(Sdp::parse(&written).unwrap().to_text(), written, "{name}");
            for line in text.lines().map(str::trim_end).filter(|l| l.starts_with("a=")) {
                let kept = written.lines().any(|w| w == line)
                    || line.starts_with("a=rtpmap:")
                    || line.starts_with("a=fmtp:")
                    || Direction::from_attr(&line[2..]).is_some();
                assert!(kept, "{name}: {line} lost\n{written}");
            }
        }
    }

    #[test]
    fn mline_details_kept() {
        let s = fixture("video-audio-order");
        let kinds: Vec<&str> = s.media.iter().map(|m| m.kind.as_str()).collect();
        assert_eq!(kinds, vec!["video", "audio"]);
        assert_eq!(s.media[0].formats, vec!["31", "32"]);
        assert_eq!(s.media[1].port_count, Some(2));
        assert!(s.to_text().contains("m=audio 49170/2 RTP/AVP 0 97\r\n"));
        assert_eq!(s.audio_index(), Some(1));

        let cucm = fixture("cucm-video-port0");
        let lines: Vec<String> = cucm
            .media
            .iter()
            .map(|m| format!("{} {} {} {}", m.kind, m.port, m.proto, m.formats.join(" ")))
            .collect();
        assert_eq!(
            lines,
            vec![
                "audio 24580 RTP/AVP 8 18 101",
                "video 0 RTP/AVP 126 97",
                "application 0 UDP/BFCP *",
                "image 0 udptl t38"
            ]
        );
        // A disabled stream: attributes as they came, no codecs, inactive.
        let video = &cucm.media[1];
        assert!(video.codecs.is_empty());
        assert_eq!(video.direction, Direction::Inactive);
        assert_eq!(video.attributes.len(), 2);
        assert_eq!(video.attributes[0].value.as_deref(), Some("126 H264/90000"));
        assert_eq!(cucm.bandwidth, Vec::<String>::new());
        assert_eq!(fixture("cucm-offer").bandwidth, vec!["TIAS:64000", "AS:64"]);
        assert_eq!(fixture("cucm-offer").media[0].bandwidth, vec!["TIAS:64000"]);
    }

    #[test]
    fn rtcp_attribute() {
        let fs = fixture("freeswitch-offer");
        let a = fs.audio().unwrap();
        assert_eq!(
            a.rtcp,
            Some(Rtcp {
                port: 24311,
                addr: Some(ip("192.168.10.2"))
            })
        );
        let lin = fixture("linphone");
        let a = lin.audio().unwrap();
        assert_eq!(
            a.rtcp,
            Some(Rtcp {
                port: 7079,
                addr: None
            })
        );
        assert_eq!(a.rtcp_addr(), (ip("192.168.0.12"), 7079));
        assert_eq!(
            Sdp::parse(SIPP).unwrap().audio().unwrap().rtcp_addr(),
            (ip("127.0.0.1"), 6001)
        );
        // Malformed: kept as an attribute, RTCP on port + 1.
        let s = Sdp::parse(&(SIPP.to_string() + "a=rtcp:x\r\n")).unwrap();
        let a = s.audio().unwrap();
        assert_eq!((a.rtcp, a.rtcp_addr().1), (None, 6001));
        assert_eq!(a.attributes[0].value.as_deref(), Some("x"));
    }

    #[test]
    fn answer_prefers_our_order_and_uses_offer_pts() {
        let o = Sdp::parse(BARESIP).unwrap();
        let ans = answer_v4(&o).unwrap();
        let a = ans.audio().unwrap();
        assert_eq!(a.codecs[0], Codec::pcma());
        assert_eq!(a.codecs[1], Codec::pcmu());
        assert_eq!(a.codecs[2].pt, 101, "offer's payload type number");
        assert_eq!(a.codecs[2].name, "telephone-event");
        assert_eq!(a.codecs.len(), 3);
        assert_eq!(a.direction, Direction::SendRecv);
        assert_eq!(a.port, 30000);
        assert_eq!(a.ptime, Some(20));
        let text = ans.to_text();
        assert!(text.contains("m=audio 30000 RTP/AVP 8 0 101\r\n"), "{text}");
        assert_eq!(Sdp::parse(&text).unwrap(), ans);
    }

    #[test]
    fn answer_matches_dynamic_case_insensitive_and_skips_unoffered_dtmf() {
        let o = Sdp::parse(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             m=audio 5000 RTP/AVP 0 97\r\na=rtpmap:97 TELEPHONE-EVENT/8000\r\n",
        )
        .unwrap();
        let ans = answer_v4(&o).unwrap();
        let pts: Vec<u8> = ans.audio().unwrap().codecs.iter().map(|c| c.pt).collect();
        assert_eq!(pts, vec![0, 97]);

        let ans = answer_v4(&Sdp::parse(SIPP).unwrap()).unwrap();
        assert_eq!(ans.audio().unwrap().codecs, vec![Codec::pcmu()]);
    }

    fn answer_direction(offer_text: &str, want: Direction) -> Direction {
        let o = Sdp::parse(offer_text).unwrap();
        answer(
            &o,
            "me",
            1,
            1,
            ip("10.0.0.2"),
            5002,
            &[Codec::pcmu()],
            want,
            SrtpMode::Off,
            &mut LocalKeys::default(),
        )
        .unwrap()
        .audio()
        .unwrap()
        .direction
    }

    #[test]
    fn hold_and_direction_negotiation() {
        use Direction::*;
        let sendonly = SIPP.to_string() + "a=sendonly\r\n";
        assert_eq!(answer_direction(&sendonly, SendRecv), RecvOnly);

        let zero = SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        let parsed = Sdp::parse(&zero).unwrap();
        assert_eq!(parsed.audio().unwrap().direction, SendOnly);
        assert!(parsed.audio().unwrap().holds());
        assert_eq!(answer_direction(&zero, SendRecv), RecvOnly);
        // An explicit attribute overrides the 0.0.0.0 hold convention.
        assert_eq!(
            answer_direction(&(zero.clone() + "a=inactive\r\n"), SendRecv),
            Inactive
        );

        let inactive = SIPP.to_string() + "a=inactive\r\n";
        assert_eq!(answer_direction(&inactive, SendRecv), Inactive);
        let recvonly = SIPP.to_string() + "a=recvonly\r\n";
        assert_eq!(answer_direction(&recvonly, SendRecv), SendOnly);
        assert_eq!(answer_direction(&recvonly, RecvOnly), Inactive);
        assert_eq!(answer_direction(SIPP, SendOnly), SendOnly);
        assert_eq!(answer_direction(SIPP, SendRecv), SendRecv);
        assert!(!Sdp::parse(SIPP).unwrap().audio().unwrap().holds());

        // CUCM's hold: 0.0.0.0 and inactive, answered inactive.
        let ans = answer_v4(&fixture("cucm-hold-zero")).unwrap();
        assert_eq!(ans.audio().unwrap().direction, Inactive);
        // IPv6's unspecified address holds too.
        let v6 = "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";
        assert!(Sdp::parse(v6).unwrap().audio().unwrap().holds());
    }

    #[test]
    fn no_common_codec() {
        let o = Sdp::parse(SIPP).unwrap();
        let supported = [Codec::pcma(), Codec::telephone_event(101)];
        let err = answer(
            &o,
            "me",
            1,
            1,
            ip("10.0.0.2"),
            5002,
            &supported,
            Direction::SendRecv,
            SrtpMode::Off,
            &mut LocalKeys::default(),
        )
        .unwrap_err();
        assert_eq!(err, NotAcceptable::NoCommonCodec);
        assert_eq!(
            (err.to_string().as_str(), err.warn_code()),
            ("no common codec", 305)
        );

        // telephone-event alone is not enough.
        let o = Sdp::parse(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n",
        )
        .unwrap();
        let err = answer(
            &o,
            "me",
            1,
            1,
            ip("10.0.0.2"),
            5002,
            &supported,
            Direction::SendRecv,
            SrtpMode::Off,
            &mut LocalKeys::default(),
        )
        .unwrap_err();
        assert_eq!(err, NotAcceptable::NoCommonCodec);
    }

    #[test]
    fn answer_errors_without_usable_audio() {
        let no_audio =
            Sdp::parse("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n").unwrap();
        assert!(no_audio.audio().is_none());
        assert_eq!(answer_v4(&no_audio).unwrap_err(), NotAcceptable::NoAudio);
        let disabled = Sdp::parse(&SIPP.replace("m=audio 6000", "m=audio 0")).unwrap();
        assert!(disabled.audio().is_none());
        let err = answer_v4(&disabled).unwrap_err();
        assert_eq!(
            (err.clone(), err.warn_code()),
            (NotAcceptable::AudioDisabled, 304)
        );
        let video_only = Sdp::parse(&SIPP.replace("m=audio", "m=video")).unwrap();
        assert_eq!(answer_v4(&video_only).unwrap_err(), NotAcceptable::NoAudio);
        let multicast = Sdp::parse(&SIPP.replace("127.0.0.1\r\nt=", "224.2.1.1/127\r\nt=")).unwrap();
        assert_eq!(
            answer_v4(&multicast).unwrap_err(),
            NotAcceptable::Address(ip("224.2.1.1"))
        );
    }

    #[test]
    fn answer_mirrors_every_mline() {
        // Video first, audio second: two m-lines, video refused with one offered format.
        let ans = answer_v4(&fixture("video-audio-order")).unwrap();
        let text = ans.to_text();
        assert!(
            text.contains("t=0 0\r\nm=video 0 RTP/AVP 31\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:30\r\na=sendrecv\r\n"),
            "{text}"
        );
        assert_eq!(ans.audio_index(), Some(1));
        assert_eq!(Sdp::parse(&text).unwrap(), ans);

        for (name, text) in FIXTURES {
            let offer = Sdp::parse(text).unwrap();
            let ans = match answer_v4(&offer) {
                Ok(a) => a,
                Err(e) => {
                    let want = match name {
                        "freeswitch-savp" => NotAcceptable::Proto("RTP/SAVP".into()),
                        "webrtc-savpf" => NotAcceptable::Proto("UDP/TLS/RTP/SAVPF".into()),
                        "ipv6" => NotAcceptable::Address(ip("2001:db8::10")),
                        _ => panic!("{name}: {e}"),
                    };
                    assert_eq!(e, want, "{name}");
                    continue;
                }
            };
            assert_eq!(ans.media.len(), offer.media.len(), "{name}");
            let mut enabled = 0;
            for (a, o) in ans.media.iter().zip(&offer.media) {
                assert_eq!((&a.kind, &a.proto), (&o.kind, &o.proto), "{name}");
                if a.is_enabled() {
                    enabled += 1;
                    assert!(a.is_acceptable_audio(), "{name}");
                } else {
                    assert_eq!(a.formats.len(), 1, "{name}");
                    assert!(o.formats.contains(&a.formats[0]), "{name}");
                }
            }
            assert_eq!(enabled, 1, "{name}");
            let written = ans.to_text();
            assert_eq!(Sdp::parse(&written).unwrap(), ans, "{name}\n{written}");
        }

        let cucm = answer_v4(&fixture("cucm-video-port0")).unwrap().to_text();
        assert!(
            cucm.contains(
                "a=sendrecv\r\nm=video 0 RTP/AVP 126\r\nm=application 0 UDP/BFCP *\r\nm=image 0 udptl t38\r\n"
            ),
            "{cucm}"
        );
    }

    #[test]
    fn srtp_refused_avpf_accepted() {
        let savp = fixture("freeswitch-savp");
        assert!(savp.audio().is_some(), "an SRTP stream is audio we could take");
        let err = answer_v4(&savp).unwrap_err();
        assert_eq!(err.warn_code(), 302);
        assert_eq!(
            err.to_string(),
            "audio over RTP/SAVP needs SRTP, which is off ([media] srtp)"
        );

        // SAVP offered next to plain RTP (two m=audio, as some PBXs do): the AVP one is taken.
        let both = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
            m=audio 5000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n\
            m=audio 5002 RTP/AVP 0\r\n";
        let ans = answer_v4(&Sdp::parse(both).unwrap()).unwrap();
        let text = ans.to_text();
        assert!(
            text.contains("m=audio 0 RTP/SAVP 0\r\nm=audio 30000 RTP/AVP 0\r\n"),
            "{text}"
        );
        assert!(!text.contains("crypto"), "{text}");

        // RTP/AVPF: answered RTP/AVPF, no feedback.
        let ans = answer_v4(&fixture("polycom-avpf")).unwrap();
        let text = ans.to_text();
        assert!(text.contains("m=audio 30000 RTP/AVPF 8 0 101\r\n"), "{text}");
        assert!(!text.contains("rtcp-fb"), "{text}");
        // The session-level sendrecv of Polycom applies.
        assert_eq!(ans.audio().unwrap().direction, Direction::SendRecv);
    }

    #[test]
    fn lenient_attributes() {
        // RFC 4475's rtpmap without clock rate, in a stream we refuse anyway.
        let s = Sdp::parse(RFC4475).unwrap();
        assert_eq!(s.media[1].attributes[0].value.as_deref(), Some("31 LPC"));
        assert!(s.media[1].codecs.is_empty());
        let ans = answer_v4(&s).unwrap();
        assert!(ans.to_text().contains("m=video 0 RTP/AVP 31\r\n"));

        for (extra, kept) in [
            ("a=rtpmap:0\r\n", "rtpmap"),
            ("a=rtpmap:0 PCMU/\r\n", "rtpmap"),
            ("a=rtpmap:96 opus/48000/2/9\r\n", "rtpmap"),
            ("a=fmtp:x y\r\n", "fmtp"),
            ("a=ptime:fast\r\n", "ptime"),
            ("a=ptime:0\r\n", "ptime"),
            ("a=rtcp:99999\r\n", "rtcp"),
            ("a=rtcp:5 IN IP4 ::1\r\n", "rtcp"),
        ] {
            let s = Sdp::parse(&(SIPP.to_string() + extra)).unwrap_or_else(|e| panic!("{extra}: {e}"));
            let a = s.audio().unwrap();
            assert_eq!(a.codecs, vec![Codec::pcmu()], "{extra}");
            assert_eq!((a.ptime, a.rtcp), (None, None), "{extra}");
            assert_eq!(a.attributes.len(), 1, "{extra}");
            assert_eq!(a.attributes[0].name, kept);
            assert_eq!(Sdp::parse(&s.to_text()).unwrap(), s, "{extra}");
        }

        // An rtpmap or fmtp for a payload type the m-line does not list stays an attribute;
        // of repeated ones the first counts.
        let s = Sdp::parse(
            &(SIPP.to_string()
                + "a=rtpmap:0 PCMA/8000\r\na=fmtp:99 x=1\r\na=ptime:20\r\na=ptime:30\r\na=sendonly\r\na=recvonly\r\n"),
        )
        .unwrap();
        let a = s.audio().unwrap();
        assert_eq!(a.codecs, vec![Codec::pcmu()]);
        assert_eq!((a.ptime, a.direction), (Some(20), Direction::SendOnly));
        assert_eq!(a.attributes.len(), 1);
        assert_eq!(a.attributes[0].value.as_deref(), Some("99 x=1"));
        assert_eq!(Sdp::parse(&s.to_text()).unwrap(), s);
    }

    #[test]
    fn control_characters_become_spaces() {
        let s = Sdp::parse(&(SIPP.to_string() + "a=tool:x\u{1b}[2Jy\u{7}\r\ns=evil\u{0}\r\n")).unwrap();
        let a = s.audio().unwrap();
        assert_eq!(a.attributes[0].value.as_deref(), Some("x [2Jy"));
        let text = s.to_text();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\r' && c != '\n'),
            "{text:?}"
        );
        assert_eq!(Sdp::parse(&text).unwrap(), s);
        // A constructed one: written on one line each.
        let mut o = offer(
            "a\r\nb=c",
            1,
            1,
            ip("10.0.0.1"),
            4000,
            &[Codec::pcmu()],
            Direction::SendRecv,
        );
        o.session_name = "x\r\nm=video 1 RTP/AVP 0".into();
        o.attributes.push(Attribute {
            name: "k\n".into(),
            value: Some("v\r\nc=IN IP4 6.6.6.6".into()),
        });
        let text = o.to_text();
        assert_eq!(text.matches("\r\n").count(), text.lines().count(), "{text:?}");
        let back = Sdp::parse(&text).unwrap();
        assert_eq!((back.media.len(), back.connection), (1, Some(ip("10.0.0.1"))));
    }

    #[test]
    fn limits() {
        let head = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n";
        let many = |line: &str, n: usize| head.to_string() + "m=audio 5000 RTP/AVP 0\r\n" + &line.repeat(n);

        let ok = head.to_string() + &"m=video 0 RTP/AVP 0\r\n".repeat(MAX_MEDIA);
        assert_eq!(Sdp::parse(&ok).unwrap().media.len(), MAX_MEDIA);
        let err = Sdp::parse(&(ok + "m=audio 5000 RTP/AVP 0\r\n")).unwrap_err();
        assert!(err.contains("more than 32 m-lines"), "{err}");

        // One line for the direction of the stream.
        assert!(Sdp::parse(&many("a=x\r\n", MAX_ATTRIBUTES - 2)).is_ok());
        let err = Sdp::parse(&many("a=x\r\n", MAX_ATTRIBUTES - 1)).unwrap_err();
        assert!(err.contains("more than 512 attributes once"), "{err}");
        let err = Sdp::parse(&many("a=x\r\n", MAX_ATTRIBUTES + 1)).unwrap_err();
        assert!(err.contains("more than 512 attributes"), "{err}");

        assert!(Sdp::parse(&many("b=AS:1\r\n", MAX_BANDWIDTHS)).is_ok());
        assert!(Sdp::parse(&many("b=AS:1\r\n", MAX_BANDWIDTHS + 1)).is_err());

        let long = format!("a=x:{}\r\n", "y".repeat(MAX_LINE - 4));
        assert!(Sdp::parse(&many(&long, 1)).is_ok());
        let err = Sdp::parse(&many(&format!("a=x:{}\r\n", "y".repeat(MAX_LINE)), 1)).unwrap_err();
        assert!(err.contains("longer than 4096 bytes"), "{err}");

        let fmts = |n: usize| {
            (0..n)
                .map(|i| (i % 128).to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert!(Sdp::parse(&format!("{head}m=audio 5000 RTP/AVP {}\r\n", fmts(MAX_FORMATS))).is_ok());
        let err = Sdp::parse(&format!(
            "{head}m=audio 5000 RTP/AVP {}\r\n",
            fmts(MAX_FORMATS + 1)
        ))
        .unwrap_err();
        assert!(err.contains("more than 128 formats"), "{err}");
    }

    #[test]
    fn what_we_write_of_an_accepted_sdp_parses_again() {
        for (name, text) in FIXTURES {
            let s = Sdp::parse(text).unwrap();
            let written = s.to_text().matches("\r\na=").count();
            assert_eq!(s.attribute_lines(), written, "{name}");
        }
        // Static payload types get an rtpmap each, every stream a direction: 17 + 1 lines a
        // stream, from none read.
        let statics = "m=audio 5000 RTP/AVP 0 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18\r\n";
        let head = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n";
        let fits = head.to_string() + &statics.repeat(MAX_ATTRIBUTES / 18);
        let s = Sdp::parse(&fits).unwrap();
        assert_eq!(Sdp::parse(&s.to_text()).unwrap(), s);
        assert!(Sdp::parse(&(fits + statics)).is_err());
        // The session's rtpmaps (16), in every stream that uses them (32 × 17 with the
        // direction).
        let maps: String = (96..112)
            .map(|pt| format!("a=rtpmap:{pt} x{pt}/8000\r\n"))
            .collect();
        let pts: Vec<String> = (96..112).map(|pt| pt.to_string()).collect();
        let inherit = format!(
            "{head}{maps}{}",
            format!("m=audio 5000 RTP/AVP {}\r\n", pts.join(" ")).repeat(MAX_MEDIA)
        );
        let err = Sdp::parse(&inherit).unwrap_err();
        assert!(err.contains("attributes once"), "{err}");
    }

    #[test]
    fn garbage_and_truncated_input() {
        for bad in [
            "",
            "\r\n\r\n",
            "hello world",
            "v=1\r\n",
            "o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n",
            "v=0\r\n",
            "v=0\r\no=user1 53655765",
            "v=0\r\no=user1 x 1 IN IP4 127.0.0.1\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 not-an-ip\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP6 127.0.0.1\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=audio\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=audio 70000 RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000/0 RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000/x RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 300\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=video 6000 RTP/AVP x\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 0\r\nc=IN IP4 1.2.3.4 5\r\n",
            "v=0\r\n\u{1F600}=x\r\n",
            "v=0\r\n=\r\n",
        ] {
            assert!(Sdp::parse(bad).is_err(), "accepted {bad:?}");
        }
        // No media needs no connection address; a disabled stream neither, nor a non-RTP
        // stream numeric formats.
        for good in [
            "v=0\r\no=- 1 1 IN IP4 host\r\ns=-\r\n",
            "v=0\r\no=- 1 1 IN IP4 host\r\ns=-\r\nt=0 0\r\nm=video 0 RTP/AVP x\r\n",
            "v=0\r\no=- 1 1 IN IP4 host\r\nc=IN IP4 1.2.3.4\r\nm=image 5000 udptl t38\r\n",
        ] {
            assert!(Sdp::parse(good).is_ok(), "refused {good:?}");
        }
        // Every prefix of real offers parses or fails cleanly.
        for (_, text) in FIXTURES.iter().copied().chain([("sipp", SIPP)]) {
            for end in 0..=text.len() {
                if let Some(prefix) = text.get(..end) {
                    let _ = Sdp::parse(prefix);
                }
            }
        }
        // Truncated inside the o= line.
        let cut = &SIPP[..SIPP.find("2353687637").unwrap_or(0)];
        assert!(Sdp::parse(cut).is_err());
    }
}
