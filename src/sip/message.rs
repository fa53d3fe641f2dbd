//! SIP messages (RFC 3261 §7, §25): parsing from the wire with the checks a user agent needs
//! (start line, compact header names, line folding, Content-Length framing, required headers,
//! CSeq), and building and writing requests and responses. Header values are kept as text;
//! typed readers for the headers the stack uses live in [`super::addr`].

use std::borrow::Cow;
use std::fmt;

/// The largest message accepted (datagram or stream).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Why a message was refused, and what a UAS answers (if anything).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    /// The status to answer a request with (400, 505…); `None`: drop silently.
    pub status: Option<u16>,
}

impl ParseError {
    fn bad(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: Some(400),
        }
    }
    fn drop(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: None,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The first line of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

/// A header name as stored: a `'static` spelling for every name the stack knows (no allocation
/// per header on the wire), an owned one for others.
pub type HeaderName = Cow<'static, str>;

/// One SIP message. Header names are stored in their full canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Vec<u8>,
}

/// Compact forms (RFC 3261 §7.3.3 and later RFCs).
const COMPACT: &[(u8, &str)] = &[
    (b'i', "Call-ID"),
    (b'f', "From"),
    (b't', "To"),
    (b'v', "Via"),
    (b'm', "Contact"),
    (b'l', "Content-Length"),
    (b'c', "Content-Type"),
    (b'e', "Content-Encoding"),
    (b'k', "Supported"),
    (b's', "Subject"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b'b', "Referred-By"),
    (b'u', "Allow-Events"),
    (b'x', "Session-Expires"),
];

/// Canonical spellings: those that word capitalisation would get wrong (Call-ID, CSeq…), and
/// the headers a call's messages carry, so that reading them allocates nothing.
const KNOWN: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Max-Forwards",
    "Content-Type",
    "Content-Length",
    "Record-Route",
    "Route",
    "Allow",
    "Supported",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "User-Agent",
    "Server",
    "Accept",
    "Expires",
    "Session-Expires",
    "Min-SE",
    "RSeq",
    "RAck",
    "Privacy",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "P-Called-Party-ID",
    "Remote-Party-ID",
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Authorization",
    "Proxy-Authorization",
    "Reason",
    "Warning",
    "Date",
    "Subject",
    "Event",
    "Allow-Events",
    "Refer-To",
    "Referred-By",
    "Call-Info",
    "Alert-Info",
];

/// The `'static` canonical spelling of a name the tables know, in any case.
fn known(name: &str) -> Option<&'static str> {
    if let [b] = name.as_bytes() {
        return COMPACT
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(b))
            .map(|(_, n)| *n);
    }
    KNOWN.iter().find(|k| k.eq_ignore_ascii_case(name)).copied()
}

/// The canonical spelling of a header name: borrowed, without allocating, for a name the
/// tables know (in any case, compact forms included) and for one already spelled canonically;
/// a new string only for other spellings.
pub fn canonical(name: &str) -> Cow<'_, str> {
    if let Some(k) = known(name) {
        return Cow::Borrowed(k);
    }
    // Each hyphen-separated word capitalised (content-type -> Content-Type): already so?
    let capitalised = name.split('-').all(|w| {
        let b = w.as_bytes();
        b.first().is_none_or(|f| !f.is_ascii_lowercase()) && b.iter().skip(1).all(|c| !c.is_ascii_uppercase())
    });
    if capitalised {
        return Cow::Borrowed(name);
    }
    let lower = name.to_ascii_lowercase();
    Cow::Owned(
        lower
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next().map_or_else(String::new, |f| {
                    std::iter::once(f.to_ascii_uppercase()).chain(c).collect()
                })
            })
            .collect::<Vec<_>>()
            .join("-"),
    )
}

/// A header name to store: [`canonical`], `'static` when the tables know it.
fn header_name(name: &str) -> HeaderName {
    match known(name) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(canonical(name).into_owned()),
    }
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// Splits a header value at top-level commas (not inside quotes or `<>`).
pub fn split_commas(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|v| !v.is_empty());
    out
}

/// Headers that may be combined with commas and so may be split.
fn is_list_header(name: &str) -> bool {
    matches!(
        name,
        "Via"
            | "Contact"
            | "Route"
            | "Record-Route"
            | "Allow"
            | "Supported"
            | "Require"
            | "Proxy-Require"
            | "Unsupported"
    )
}

impl Message {
    /// A request with no headers yet.
    pub fn request(method: &str, uri: &str) -> Self {
        Self {
            start: StartLine::Request {
                method: method.to_owned(),
                uri: uri.to_owned(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A response to `req`: its Via, From, To, Call-ID and CSeq copied (RFC 3261 §8.2.6).
    pub fn response(req: &Message, code: u16, reason: &str) -> Self {
        let mut r = Self {
            start: StartLine::Response {
                code,
                reason: reason.to_owned(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        for (n, v) in &req.headers {
            if matches!(
                n.as_ref(),
                "Via" | "From" | "To" | "Call-ID" | "CSeq" | "Record-Route"
            ) {
                r.headers.push((n.clone(), v.clone()));
            }
        }
        r
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The first value of a header (case-insensitive name, compact forms understood).
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = canonical(name);
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, comma-separated lists split for list headers.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        let name = canonical(name);
        let list = is_list_header(&name);
        let mut out = Vec::new();
        for (_, v) in self.headers.iter().filter(|(n, _)| *n == name) {
            if list {
                out.extend(split_commas(v));
            } else {
                out.push(v.as_str());
            }
        }
        out
    }

    /// Adds a header at the end.
    pub fn push(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.headers.push((header_name(name), value.into()));
        self
    }

    /// Sets a header, replacing every existing value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        let name = canonical(name);
        let value = value.into();
        match self.headers.iter().position(|(n, _)| *n == name) {
            Some(i) => {
                self.headers[i].1 = value;
                let mut k = 0;
                self.headers.retain(|(n, _)| {
                    k += 1;
                    k - 1 == i || *n != name
                });
            }
            None => self.headers.push((header_name(&name), value)),
        }
        self
    }

    pub fn remove(&mut self, name: &str) {
        let name = canonical(name);
        self.headers.retain(|(n, _)| *n != name);
    }

    /// Sets the body and its Content-Type.
    pub fn with_body(&mut self, content_type: &str, body: Vec<u8>) -> &mut Self {
        self.set("Content-Type", content_type);
        self.body = body;
        self
    }

    /// The CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let v = self.get("CSeq")?;
        let mut parts = v.split_whitespace();
        let n = parts.next()?.parse().ok()?;
        Some((n, parts.next()?))
    }

    pub fn call_id(&self) -> Option<&str> {
        self.get("Call-ID")
    }

    /// Writes the message, with Content-Length always set to the body's length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                out.extend_from_slice(format!("{method} {uri} SIP/2.0\r\n").as_bytes())
            }
            StartLine::Response { code, reason } => {
                out.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes())
            }
        }
        for (n, v) in &self.headers {
            if n == "Content-Length" {
                continue;
            }
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// Parses one message from a datagram (trailing bytes past Content-Length are ignored).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        parse(bytes, false).map(|(m, _)| m)
    }
}

/// Where the header section ends: (index of the blank line's start, length of the separator).
fn header_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Stream framing: the length of the first complete message in `buf`, `Ok(None)` when more
/// bytes are needed, or an error when the stream cannot be framed (close the connection).
pub fn frame(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    // Keep-alive CRLFs between messages (RFC 5626) are skipped by the caller.
    let Some((end, sep)) = header_end(buf) else {
        if buf.len() > MAX_MESSAGE {
            return Err(ParseError::drop("header section larger than 64 KiB"));
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut length = None;
    for line in head.split('\n') {
        if let Some((name, value)) = line.split_once(':')
            && canonical(name.trim()) == "Content-Length"
        {
            let v = value.trim();
            let n: usize = v
                .parse()
                .map_err(|_| ParseError::drop(format!("bad Content-Length `{v}`")))?;
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::drop("conflicting Content-Length headers"));
            }
            length = Some(n);
        }
    }
    // Over a stream, Content-Length is mandatory (RFC 3261 §18.3); without it the body is empty.
    // The length is the peer's: added with a check, as a number near usize::MAX would wrap.
    let (head_len, body_len) = (end + sep, length.unwrap_or(0));
    let Some(total) = head_len.checked_add(body_len).filter(|t| *t <= MAX_MESSAGE) else {
        return Err(ParseError::drop(format!(
            "{head_len} bytes of headers and a Content-Length of {body_len}: over the 64 KiB limit"
        )));
    };
    Ok((buf.len() >= total).then_some(total))
}

/// Parses a message; `stream` means Content-Length is required.
pub fn parse(bytes: &[u8], stream: bool) -> Result<(Message, usize), ParseError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(ParseError::drop("message larger than 64 KiB"));
    }
    let (end, sep) =
        header_end(bytes).ok_or_else(|| ParseError::bad("no blank line ends the header section"))?;
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or("");
    let start = parse_start(first)?;
    // Unfold continuation lines.
    let mut raw: Vec<Cow<'_, str>> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            match raw.last_mut() {
                Some(prev) => {
                    let prev = prev.to_mut();
                    prev.push(' ');
                    prev.push_str(line.trim_start());
                }
                None => return Err(ParseError::bad("a continuation line before any header")),
            }
        } else {
            raw.push(Cow::Borrowed(line));
        }
    }
    let mut headers = Vec::with_capacity(raw.len());
    for line in raw {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::bad(format!(
                "header line without `:`: `{}`",
                clip(&line)
            )));
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(ParseError::bad(format!("invalid header name `{}`", clip(name))));
        }
        headers.push((header_name(name), value.trim().to_owned()));
    }
    let mut msg = Message {
        start,
        headers,
        body: Vec::new(),
    };
    // Content-Length: one value, digits only.
    let lengths: Vec<&str> = msg.get_all("Content-Length");
    let mut length = None;
    for l in &lengths {
        let n: usize = l
            .parse()
            .map_err(|_| ParseError::bad(format!("invalid Content-Length `{}`", clip(l))))?;
        if length.is_some_and(|prev| prev != n) {
            return Err(ParseError::bad("conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    let body_start = end + sep;
    let available = bytes.len() - body_start;
    let body_len = match length {
        Some(n) if n > available => {
            return Err(ParseError::bad(format!(
                "Content-Length {n} is larger than the {available} bytes of body"
            )));
        }
        Some(n) => n,
        None if stream => 0,
        None => available,
    };
    msg.body = bytes[body_start..body_start + body_len].to_vec();
    check(&msg)?;
    Ok((msg, body_start + body_len))
}

fn clip(s: &str) -> String {
    s.chars().take(60).flat_map(char::escape_default).collect()
}

fn parse_start(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        // A response: SIP/2.0 SP 3DIGIT SP reason.
        let mut parts = rest.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let code = parts.next().unwrap_or("");
        let reason = parts.next().unwrap_or("").to_owned();
        if version != "2.0" {
            return Err(ParseError::drop(format!(
                "unsupported SIP version `SIP/{}`",
                clip(version)
            )));
        }
        let code: u16 = match code.parse() {
            Ok(c) if code.len() == 3 && (100..=699).contains(&c) => c,
            _ => return Err(ParseError::drop(format!("invalid status code `{}`", clip(code)))),
        };
        return Ok(StartLine::Response { code, reason });
    }
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3 {
        return Err(ParseError::bad(
            "the request line must be `METHOD SP Request-URI SP SIP/2.0`",
        ));
    }
    let (method, uri, version) = (parts[0], parts[1], parts[2]);
    if method.is_empty() || !method.bytes().all(is_token_char) {
        return Err(ParseError::bad(format!("invalid method `{}`", clip(method))));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        // Bytes, not `str` slicing: the fifth byte may sit inside a multi-byte character.
        if version.len() > 4 && version.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
            return Err(ParseError {
                message: format!("unsupported version `{}`", clip(version)),
                status: Some(505),
            });
        }
        return Err(ParseError::bad(format!(
            "invalid SIP version `{}`",
            clip(version)
        )));
    }
    check_request_uri(uri)?;
    Ok(StartLine::Request {
        method: method.to_owned(),
        uri: uri.to_owned(),
    })
}

fn check_request_uri(uri: &str) -> Result<(), ParseError> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(ParseError::bad(format!(
            "Request-URI `{}` has no scheme",
            clip(uri)
        )));
    };
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok || rest.is_empty() {
        return Err(ParseError::bad(format!("invalid Request-URI `{}`", clip(uri))));
    }
    if uri.contains(['<', '>', '"']) || uri.chars().any(|c| c.is_control()) {
        return Err(ParseError::bad(format!(
            "invalid characters in the Request-URI `{}`",
            clip(uri)
        )));
    }
    if matches!(scheme.to_ascii_lowercase().as_str(), "sip" | "sips") {
        let parsed =
            super::addr::Uri::parse(uri).map_err(|e| ParseError::bad(format!("invalid Request-URI: {e}")))?;
        if parsed.headers.is_some() {
            return Err(ParseError::bad(
                "a Request-URI cannot carry escaped headers (`?…`)",
            ));
        }
    }
    Ok(())
}

/// The checks of a well-formed message (RFC 3261 §8.2, §20).
fn check(msg: &Message) -> Result<(), ParseError> {
    let request = msg.is_request();
    let fail = |m: String| {
        if request {
            ParseError::bad(m)
        } else {
            ParseError::drop(m)
        }
    };
    for name in ["Call-ID", "CSeq", "From", "To"] {
        match msg.headers.iter().filter(|(n, _)| n == name).count() {
            0 => return Err(fail(format!("missing {name} header"))),
            1 => {}
            _ => return Err(fail(format!("more than one {name} header"))),
        }
    }
    let vias = msg.get_all("Via");
    if vias.is_empty() {
        return Err(fail("missing Via header".to_owned()));
    }
    for v in vias {
        super::addr::Via::parse(v).map_err(|e| fail(format!("invalid Via: {e}")))?;
    }
    let cseq = msg.get("CSeq").unwrap_or("");
    let mut parts = cseq.split_whitespace();
    let number = parts.next().unwrap_or("");
    let method = parts.next().unwrap_or("");
    let valid_number = !number.is_empty()
        && number.len() <= 10
        && number.bytes().all(|b| b.is_ascii_digit())
        && number.parse::<u64>().is_ok_and(|n| n < 1 << 31);
    if !valid_number || method.is_empty() || parts.next().is_some() {
        return Err(fail(format!("invalid CSeq `{}`", clip(cseq))));
    }
    if let Some(m) = msg.method()
        && m != method
    {
        return Err(fail(format!(
            "CSeq method `{}` does not match the request method `{m}`",
            clip(method)
        )));
    }
    if let Some(mf) = msg.get("Max-Forwards")
        && (mf.is_empty() || mf.len() > 10 || !mf.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(fail(format!("invalid Max-Forwards `{}`", clip(mf))));
    }
    for name in ["From", "To"] {
        let v = msg.get(name).unwrap_or("");
        super::addr::NameAddr::parse(v).map_err(|e| fail(format!("invalid {name}: {e}")))?;
    }
    for c in msg.get_all("Contact") {
        if c != "*" {
            super::addr::NameAddr::parse(c).map_err(|e| fail(format!("invalid Contact: {e}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
