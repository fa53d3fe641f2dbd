//! SDP (RFC 4566) for a single audio stream, and offer/answer (RFC 3264).
//!
//! [`Sdp::parse`] reads a session description and keeps the first
//! `m=audio` stream; [`Sdp::to_text`] writes one back. [`offer`] builds our
//! offer and [`answer`] answers a remote offer by choosing common codecs and
//! the stream direction.

use std::collections::HashMap;
use std::net::IpAddr;

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

    fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    fn receives(self) -> bool {
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

    fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event")
    }

    /// Same format: name (case-insensitive), clock rate and channels.
    fn same_format(&self, other: &Codec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.rate == other.rate
            && self.channels == other.channels
    }
}

/// The audio stream of a session description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audio {
    pub addr: IpAddr,
    pub port: u16,
    pub codecs: Vec<Codec>,
    pub direction: Direction,
    pub ptime: Option<u32>,
}

/// A session description with at most one audio stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sdp {
    pub origin_user: String,
    pub session_id: u64,
    pub version: u64,
    pub addr: IpAddr,
    pub audio: Option<Audio>,
}

/// Attributes collected at one level (session or audio media).
#[derive(Default)]
struct Attrs {
    rtpmap: HashMap<u8, (String, u32, u8)>,
    fmtp: HashMap<u8, String>,
    ptime: Option<u32>,
    direction: Option<Direction>,
}

impl Attrs {
    fn add(&mut self, attr: &str, line_no: usize) -> Result<(), String> {
        let (name, value) = match attr.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (attr, None),
        };
        let bad = |what: &str| format!("line {line_no}: malformed a={name} attribute: {what}");
        match (name, value) {
            ("rtpmap", Some(v)) => {
                let (pt, enc) = split_pt(v).ok_or_else(|| bad(v))?;
                let mut parts = enc.split('/');
                let codec = parts.next().unwrap_or_default().trim();
                let rate = parts.next().and_then(|r| r.trim().parse::<u32>().ok());
                let channels = match parts.next() {
                    None => Some(1),
                    Some(c) => c.trim().parse::<u8>().ok().filter(|&c| c > 0),
                };
                match (rate, channels, parts.next()) {
                    (Some(rate), Some(channels), None) if !codec.is_empty() && rate > 0 => {
                        self.rtpmap
                            .entry(pt)
                            .or_insert((codec.to_string(), rate, channels));
                    }
                    _ => return Err(bad(v)),
                }
            }
            ("fmtp", Some(v)) => {
                let (pt, params) = split_pt(v).ok_or_else(|| bad(v))?;
                self.fmtp.entry(pt).or_insert_with(|| params.to_string());
            }
            ("ptime", Some(v)) => {
                let ms = v.trim().parse::<u32>().map_err(|_| bad(v))?;
                self.ptime = Some(ms);
            }
            (n, None) => {
                if let Some(d) = Direction::from_attr(n) {
                    self.direction = Some(d);
                }
            }
            _ => {}
        }
        Ok(())
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

enum Section {
    Session,
    Audio,
    /// A media section we do not use (video, or a second audio stream).
    Other,
}

impl Sdp {
    /// Parses SDP text (CRLF or LF line ends). Takes the first m=audio line; connection address from the media-level c= else session-level c=; static payload types 0 (PCMU/8000) and 8 (PCMA/8000) and others known without rtpmap; rtpmap/fmtp/ptime and sendrecv/sendonly/recvonly/inactive at session or media level (media wins); `c=IN IP4 0.0.0.0` means hold (treat as sendonly from the far end's view, i.e. direction SendOnly if no attribute says otherwise). IPv6 (c=IN IP6 ::1) supported. Bad input → Err with a message, never a panic; unknown lines ignored.
    ///
    /// Dynamic payload types without an rtpmap are left out of the codec
    /// list. With no c= line at all and no audio stream, the origin address
    /// becomes [`Sdp::addr`].
    pub fn parse(text: &str) -> Result<Sdp, String> {
        let mut seen_version = false;
        let mut origin: Option<(String, u64, u64, Option<IpAddr>)> = None;
        let mut session_c: Option<IpAddr> = None;
        let mut media_c: Option<IpAddr> = None;
        let mut session_attrs = Attrs::default();
        let mut media_attrs = Attrs::default();
        let mut media: Option<(u16, Vec<u8>)> = None;
        let mut section = Section::Session;

        for (idx, raw) in text.split('\n').enumerate() {
            let line_no = idx + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
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
            match (kind, &section) {
                (b'o', Section::Session) => {
                    let f: Vec<&str> = value.split_whitespace().collect();
                    let [user, id, ver, _net, _atype, addr] = f[..] else {
                        return Err(format!("line {line_no}: o= needs 6 fields"));
                    };
                    let id = id
                        .parse::<u64>()
                        .map_err(|_| format!("line {line_no}: bad session id {id:?}"))?;
                    let ver = ver
                        .parse::<u64>()
                        .map_err(|_| format!("line {line_no}: bad session version {ver:?}"))?;
                    origin = Some((user.to_string(), id, ver, addr.parse().ok()));
                }
                (b'c', Section::Session) => session_c = Some(parse_connection(value, line_no)?),
                (b'c', Section::Audio) => media_c = Some(parse_connection(value, line_no)?),
                (b'a', Section::Session) => session_attrs.add(value, line_no)?,
                (b'a', Section::Audio) => media_attrs.add(value, line_no)?,
                (b'm', _) => {
                    let f: Vec<&str> = value.split_whitespace().collect();
                    let [mtype, port, _proto, fmts @ ..] = &f[..] else {
                        return Err(format!("line {line_no}: m= needs media, port and proto"));
                    };
                    let port_num = port
                        .split('/')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                        .ok_or_else(|| format!("line {line_no}: bad media port {port:?}"))?;
                    if *mtype == "audio" && media.is_none() {
                        let pts = fmts
                            .iter()
                            .map(|f| {
                                f.parse::<u8>()
                                    .ok()
                                    .filter(|&p| p <= 127)
                                    .ok_or_else(|| format!("line {line_no}: bad RTP payload type {f:?}"))
                            })
                            .collect::<Result<Vec<u8>, String>>()?;
                        media = Some((port_num, pts));
                        section = Section::Audio;
                    } else {
                        section = Section::Other;
                    }
                }
                _ => {}
            }
        }

        if !seen_version {
            return Err("empty SDP".to_string());
        }
        let (origin_user, session_id, version, origin_addr) = origin.ok_or("SDP has no o= line")?;

        let audio = match media {
            None => None,
            Some((port, pts)) => {
                let addr = media_c
                    .or(session_c)
                    .ok_or("SDP has no connection address (c=) for the audio stream")?;
                let mut codecs = Vec::new();
                for pt in pts {
                    if codecs.iter().any(|c: &Codec| c.pt == pt) {
                        continue;
                    }
                    let mapped = media_attrs
                        .rtpmap
                        .get(&pt)
                        .or_else(|| session_attrs.rtpmap.get(&pt));
                    let codec = match mapped {
                        Some((name, rate, channels)) => Some(Codec::new(pt, name, *rate, *channels)),
                        None => Codec::from_static(pt),
                    };
                    if let Some(mut codec) = codec {
                        codec.fmtp = media_attrs
                            .fmtp
                            .get(&pt)
                            .or_else(|| session_attrs.fmtp.get(&pt))
                            .cloned();
                        codecs.push(codec);
                    }
                }
                let hold = if addr.is_unspecified() {
                    Direction::SendOnly
                } else {
                    Direction::SendRecv
                };
                Some(Audio {
                    addr,
                    port,
                    codecs,
                    direction: media_attrs.direction.or(session_attrs.direction).unwrap_or(hold),
                    ptime: media_attrs.ptime.or(session_attrs.ptime),
                })
            }
        };
        let addr = session_c
            .or(media_c)
            .or(origin_addr)
            .ok_or("SDP has no connection address")?;
        Ok(Sdp {
            origin_user,
            session_id,
            version,
            addr,
            audio,
        })
    }

    /// Serializes with CRLF line ends: v=0, o=, s=-, c=, t=0 0, m=audio PORT RTP/AVP pts..., a=rtpmap for each codec, a=fmtp where set, a=ptime if set, the direction attribute.
    ///
    /// A media-level c= is added only when the audio address differs from
    /// [`Sdp::addr`].
    pub fn to_text(&self) -> String {
        let mut user = one_token(&self.origin_user);
        if user.is_empty() {
            user = "-".to_string();
        }
        let mut out = format!(
            "v=0\r\no={user} {} {} IN {} {}\r\ns=-\r\nc=IN {} {}\r\nt=0 0\r\n",
            self.session_id,
            self.version,
            addr_type(self.addr),
            self.addr,
            addr_type(self.addr),
            self.addr
        );
        if let Some(a) = &self.audio {
            out.push_str(&format!("m=audio {} RTP/AVP", a.port));
            for c in &a.codecs {
                out.push_str(&format!(" {}", c.pt));
            }
            out.push_str("\r\n");
            if a.addr != self.addr {
                out.push_str(&format!("c=IN {} {}\r\n", addr_type(a.addr), a.addr));
            }
            for c in &a.codecs {
                out.push_str(&format!("a=rtpmap:{} {}/{}", c.pt, one_token(&c.name), c.rate));
                if c.channels != 1 {
                    out.push_str(&format!("/{}", c.channels));
                }
                out.push_str("\r\n");
            }
            for c in &a.codecs {
                if let Some(f) = &c.fmtp {
                    let f: String = f.chars().filter(|ch| !ch.is_control()).collect();
                    if !f.trim().is_empty() {
                        out.push_str(&format!("a=fmtp:{} {}\r\n", c.pt, f.trim()));
                    }
                }
            }
            if let Some(p) = a.ptime {
                out.push_str(&format!("a=ptime:{p}\r\n"));
            }
            out.push_str(&format!("a={}\r\n", a.direction.as_str()));
        }
        out
    }
}

fn addr_type(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// `s` with whitespace and control characters replaced, so it stays one field.
fn one_token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Our offer: `codecs` in preference order.
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
        origin_user: user.to_string(),
        session_id,
        version,
        addr,
        audio: Some(Audio {
            addr,
            port,
            codecs: codecs.to_vec(),
            direction,
            ptime: None,
        }),
    }
}

/// Our answer to `offer`: the codecs both support, in OUR preference order (from `supported`), using the OFFER's payload type numbers (dynamic types like telephone-event matched by name/rate, case-insensitive); telephone-event included only if offered; direction = intersection of our wanted direction and the reverse of the offer's (offer sendonly → we recvonly; offer inactive → inactive; offer recvonly → we sendonly, etc.). If no audio codec (other than telephone-event) is common → Err("no common codec").
///
/// Codecs also match on channel count. A codec keeps our fmtp when we set
/// one, otherwise the offer's. The offer's ptime is echoed. An offer without
/// an audio stream, or with the audio stream disabled (port 0), is an error.
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
) -> Result<Sdp, String> {
    let remote = offer.audio.as_ref().ok_or("offer has no audio stream")?;
    if remote.port == 0 {
        return Err("offer's audio stream is disabled (port 0)".to_string());
    }
    let mut codecs: Vec<Codec> = Vec::new();
    for ours in supported {
        let Some(theirs) = remote.codecs.iter().find(|c| c.same_format(ours)) else {
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
    if !codecs.iter().any(|c| !c.is_telephone_event()) {
        return Err("no common codec".to_string());
    }
    Ok(Sdp {
        origin_user: user.to_string(),
        session_id,
        version,
        addr,
        audio: Some(Audio {
            addr,
            port,
            codecs,
            direction: want.intersect(remote.direction.reverse()),
            ptime: remote.ptime,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    const BARESIP: &str = "v=0\r\n\
        o=- 1209306187 1209306187 IN IP4 192.168.1.20\r\n\
        s=-\r\n\
        c=IN IP4 192.168.1.20\r\n\
        t=0 0\r\n\
        a=tool:baresip 3.10.1\r\n\
        m=audio 10106 RTP/AVP 96 9 0 8 101\r\n\
        b=AS:98\r\n\
        a=rtpmap:96 opus/48000/2\r\n\
        a=fmtp:96 stereo=1;sprop-stereo=1\r\n\
        a=rtpmap:9 G722/8000\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-15\r\n\
        a=sendrecv\r\n\
        a=label:1\r\n\
        a=rtcp-rsize\r\n\
        a=ssrc:2914133316 cname:b3c5a1d2\r\n\
        a=ptime:20\r\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
    }

    #[test]
    fn parses_sipp_offer() {
        let s = Sdp::parse(SIPP).unwrap();
        assert_eq!(s.origin_user, "user1");
        assert_eq!(s.session_id, 53655765);
        assert_eq!(s.version, 2353687637);
        assert_eq!(s.addr, ip("127.0.0.1"));
        let a = s.audio.unwrap();
        assert_eq!(a.addr, ip("127.0.0.1"));
        assert_eq!(a.port, 6000);
        assert_eq!(a.codecs, vec![Codec::pcmu()]);
        assert_eq!(a.direction, Direction::SendRecv);
        assert_eq!(a.ptime, None);
    }

    #[test]
    fn parses_baresip_offer_with_lf_line_ends() {
        let lf = BARESIP.replace("\r\n", "\n");
        let s = Sdp::parse(&lf).unwrap();
        assert_eq!(s, Sdp::parse(BARESIP).unwrap());
        let a = s.audio.unwrap();
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
    }

    #[test]
    fn static_types_without_rtpmap_and_unknown_dynamic_dropped() {
        let s = Sdp::parse(
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 8 0 18 99\n",
        )
        .unwrap();
        let a = s.audio.unwrap();
        let names: Vec<&str> = a.codecs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["PCMA", "PCMU", "G729"]);
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
        assert_eq!(s.addr, ip("10.0.0.1"));
        let a = s.audio.unwrap();
        assert_eq!(a.addr, ip("10.0.0.2"));
        assert_eq!(a.direction, Direction::SendOnly);
        assert_eq!(a.ptime, Some(20));
        assert_eq!(a.codecs[0].name, "iLBC");

        // Session-level attributes apply when the media has none.
        let s = Sdp::parse(
            "v=0\r\no=alice 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             a=recvonly\r\na=ptime:30\r\nm=audio 5004 RTP/AVP 0\r\n",
        )
        .unwrap();
        let a = s.audio.unwrap();
        assert_eq!(a.direction, Direction::RecvOnly);
        assert_eq!(a.ptime, Some(30));
    }

    #[test]
    fn only_media_level_connection() {
        let s = Sdp::parse(
            "v=0\r\no=- 7 7 IN IP4 host.example.com\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\nc=IN IP4 192.0.2.5/127\r\n",
        )
        .unwrap();
        assert_eq!(s.addr, ip("192.0.2.5"));
        assert_eq!(s.audio.unwrap().addr, ip("192.0.2.5"));
    }

    #[test]
    fn ipv6() {
        let s = Sdp::parse(
            "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0 8\r\n",
        )
        .unwrap();
        assert_eq!(s.addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        let text = s.to_text();
        assert!(text.contains("o=- 1 1 IN IP6 ::1\r\n"), "{text}");
        assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
        assert_eq!(Sdp::parse(&text).unwrap(), s);
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
        if let Some(a) = other.audio.as_mut() {
            a.addr = ip("10.1.1.1");
            a.direction = Direction::Inactive;
        }
        assert_eq!(Sdp::parse(&other.to_text()).unwrap(), other);
    }

    #[test]
    fn answer_prefers_our_order_and_uses_offer_pts() {
        let o = Sdp::parse(BARESIP).unwrap();
        let ans = answer(
            &o,
            "me",
            9,
            1,
            ip("10.0.0.9"),
            30000,
            &[Codec::pcma(), Codec::pcmu(), Codec::telephone_event(96)],
            Direction::SendRecv,
        )
        .unwrap();
        let a = ans.audio.as_ref().unwrap();
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
        let ans = answer(
            &o,
            "me",
            1,
            1,
            ip("10.0.0.2"),
            5002,
            &[Codec::pcmu(), Codec::telephone_event(101)],
            Direction::SendRecv,
        )
        .unwrap();
        let pts: Vec<u8> = ans.audio.unwrap().codecs.iter().map(|c| c.pt).collect();
        assert_eq!(pts, vec![0, 97]);

        let ans = answer(
            &Sdp::parse(SIPP).unwrap(),
            "me",
            1,
            1,
            ip("10.0.0.2"),
            5002,
            &[Codec::pcmu(), Codec::telephone_event(101)],
            Direction::SendRecv,
        )
        .unwrap();
        assert_eq!(ans.audio.unwrap().codecs, vec![Codec::pcmu()]);
    }

    fn answer_direction(offer_text: &str, want: Direction) -> Direction {
        let o = Sdp::parse(offer_text).unwrap();
        answer(&o, "me", 1, 1, ip("10.0.0.2"), 5002, &[Codec::pcmu()], want)
            .unwrap()
            .audio
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
        assert_eq!(parsed.audio.as_ref().unwrap().direction, SendOnly);
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
    }

    #[test]
    fn no_common_codec() {
        let o = Sdp::parse(SIPP).unwrap();
        let err = answer(
            &o,
            "me",
            1,
            1,
            ip("10.0.0.2"),
            5002,
            &[Codec::pcma(), Codec::telephone_event(101)],
            Direction::SendRecv,
        )
        .unwrap_err();
        assert_eq!(err, "no common codec");

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
            &[Codec::pcma(), Codec::telephone_event(101)],
            Direction::SendRecv,
        )
        .unwrap_err();
        assert_eq!(err, "no common codec");
    }

    #[test]
    fn answer_errors_without_usable_audio() {
        let no_audio =
            Sdp::parse("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n").unwrap();
        assert!(no_audio.audio.is_none());
        let r = answer(
            &no_audio,
            "me",
            1,
            1,
            ip("10.0.0.2"),
            5002,
            &[Codec::pcmu()],
            Direction::SendRecv,
        );
        assert!(r.is_err());
        let disabled = Sdp::parse(&SIPP.replace("m=audio 6000", "m=audio 0")).unwrap();
        let r = answer(
            &disabled,
            "me",
            1,
            1,
            ip("10.0.0.2"),
            5002,
            &[Codec::pcmu()],
            Direction::SendRecv,
        );
        assert!(r.is_err());
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
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=audio 70000 RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 300\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 0\r\na=ptime:fast\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 host\r\ns=-\r\n",
            "v=0\r\n\u{1F600}=x\r\n",
            "v=0\r\n=\r\n",
        ] {
            assert!(Sdp::parse(bad).is_err(), "accepted {bad:?}");
        }
        // Every prefix of real offers parses or fails cleanly.
        for text in [SIPP, BARESIP] {
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
