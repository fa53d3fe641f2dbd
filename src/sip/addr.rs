//! Addresses in SIP headers: name-addr / addr-spec (From, To, Contact, P-Asserted-Identity,
//! Refer-To), SIP and tel URIs, header parameters (`tag`), and the Via header.

use std::fmt;

/// `"Display" <uri>;params` or `uri;params`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted and unescaped.
    pub display: Option<String>,
    pub uri: String,
    /// Header parameters after the address (`tag`, `expires`, …).
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn new(uri: &str) -> Self {
        Self {
            display: None,
            uri: uri.to_owned(),
            params: Vec::new(),
        }
    }

    /// Parses one address (not a comma-separated list).
    pub fn parse(value: &str) -> Result<Self, String> {
        let v = value.trim();
        let (display, rest) = if let Some(after) = v.strip_prefix('"') {
            let (text, used) = unquote(after)?;
            let rest = after[used..].trim_start();
            if !rest.starts_with('<') {
                return Err("a quoted display name must be followed by `<uri>`".to_owned());
            }
            (Some(text), rest)
        } else if let Some(lt) = v.find('<') {
            let name = v[..lt].trim();
            if name.contains(['"', '>', ';', ',', '@', ':']) {
                return Err(format!("invalid display name `{name}`"));
            }
            (
                if name.is_empty() {
                    None
                } else {
                    Some(name.to_owned())
                },
                &v[lt..],
            )
        } else {
            (None, v)
        };
        let (uri, params) = if let Some(inner) = rest.strip_prefix('<') {
            let gt = inner.find('>').ok_or("`<` without `>`")?;
            (&inner[..gt], &inner[gt + 1..])
        } else {
            // addr-spec: parameters after `;` belong to the header, not the URI, and a URI
            // with `,` or `?` must be in brackets (RFC 3261 §20).
            let (u, p) = match rest.find(';') {
                Some(i) => (rest[..i].trim_end(), &rest[i..]),
                None => (rest, ""),
            };
            if u.contains([',', '?']) {
                return Err(format!("URI `{u}` with `,` or `?` must be enclosed in `<>`"));
            }
            (u, p)
        };
        if uri.is_empty() || uri.chars().any(|c| c.is_whitespace() || c == '<' || c == '>') {
            return Err(format!("invalid URI `{uri}`"));
        }
        if !uri.contains(':') {
            return Err(format!("URI `{uri}` has no scheme"));
        }
        let params = parse_params(params)?;
        Ok(Self {
            display,
            uri: uri.to_owned(),
            params,
        })
    }

    /// A header parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag").filter(|t| !t.is_empty())
    }

    pub fn set_param(&mut self, name: &str, value: &str) {
        self.params.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.params.push((name.to_owned(), Some(value.to_owned())));
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "\"{}\" ", d.replace('\\', "\\\\").replace('"', "\\\""))?;
        }
        write!(f, "<{}>", self.uri)?;
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// Reads a quoted string's content (after the opening quote); returns the text and the bytes
/// used including the closing quote.
fn unquote(s: &str) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => match chars.next() {
                Some((_, e)) => out.push(e),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unbalanced quote in the display name".to_owned())
}

fn parse_params(s: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let s = s.trim();
    if s.is_empty() {
        return Ok(out);
    }
    let Some(s) = s.strip_prefix(';') else {
        return Err(format!("unexpected `{s}` after the address, expected `;param`"));
    };
    for p in s.split(';').map(str::trim) {
        if p.is_empty() {
            return Err("empty parameter".to_owned());
        }
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"').to_owned())),
            None => (p, None),
        };
        if n.is_empty() || n.contains(char::is_whitespace) {
            return Err(format!("invalid parameter `{p}`"));
        }
        out.push((n.to_owned(), v));
    }
    Ok(out)
}

/// The parts of a `sip:`, `sips:` or `tel:` URI a phone uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    pub scheme: String,
    /// The user part, percent-decoded (lossy UTF-8).
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
    /// Escaped headers after `?` (never turned into real headers).
    pub headers: Option<String>,
}

impl Uri {
    pub fn parse(uri: &str) -> Result<Self, String> {
        let (scheme, rest) = uri.split_once(':').ok_or("no scheme")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "tel" {
            let rest = rest.split('?').next().unwrap_or("");
            let mut parts = rest.split(';');
            let number = parts.next().unwrap_or("");
            let params = parse_params(&rest[number.len()..])?;
            return Ok(Self {
                scheme,
                user: Some(decode(number)),
                host: String::new(),
                port: None,
                params,
                headers: None,
            });
        }
        // The user part may hold `?` and `;`; headers start at the first `?` after the `@`.
        let (user, hostport) = match rest.rfind('@') {
            Some(i) => (Some(decode(&rest[..i])), &rest[i + 1..]),
            None => (None, rest),
        };
        let (hostport, headers) = match hostport.split_once('?') {
            Some((h, q)) => (h, Some(q.to_owned())),
            None => (hostport, None),
        };
        // User parameters after `;` in the user part stay in the user (RFC 4475 semiuri).
        let (hostport, params) = match hostport.find(';') {
            Some(i) => (&hostport[..i], parse_params(&hostport[i..])?),
            None => (hostport, Vec::new()),
        };
        let (host, port) = split_host_port(hostport)?;
        Ok(Self {
            scheme,
            user,
            host,
            port,
            params,
            headers,
        })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
}

/// Splits `host:port`, `[v6]:port`, `host`.
pub fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or("`[` without `]` in the host")?;
        let host = format!("[{}]", &rest[..end]);
        let port = match rest[end + 1..].strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| format!("invalid port `{p}`"))?),
            None => None,
        };
        return Ok((host, port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse().map_err(|_| format!("invalid port `{p}`"))?)),
        None => (s, None),
    };
    if host.is_empty() || host.contains([':', '[', ']']) || host.chars().any(char::is_whitespace) {
        return Err(format!("invalid host `{host}` (an IPv6 address needs `[ ]`)"));
    }
    Ok((host.to_owned(), port))
}

/// Percent-decodes, lossily.
pub fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The top Via: `SIP/2.0/UDP host:port;branch=…;rport;received=…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    pub fn parse(value: &str) -> Result<Self, String> {
        // sent-protocol is `SIP / 2.0 / UDP`, with optional whitespace around the slashes.
        let v = value.trim();
        let (name, r) = v.split_once('/').ok_or("Via without protocol")?;
        let (version, r) = r.split_once('/').ok_or("Via without transport")?;
        if !name.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" {
            return Err(format!(
                "invalid Via protocol `{}/{}`",
                name.trim(),
                version.trim()
            ));
        }
        let r = r.trim_start();
        let (transport, rest) = r.split_once(char::is_whitespace).ok_or("Via without sent-by")?;
        let transport = transport.to_ascii_uppercase();
        let rest = rest.trim();
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (rest[..i].trim(), parse_params(&rest[i..])?),
            None => (rest, Vec::new()),
        };
        let (host, port) = split_host_port(&sent_by.replace(' ', ""))?;
        Ok(Self {
            transport,
            host,
            port,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let a = NameAddr::parse("\"Taro \\\"T\\\" Yamada\" <sip:0311112222@pbx;user=phone>;tag=abc").unwrap();
        assert_eq!(a.display.as_deref(), Some("Taro \"T\" Yamada"));
        assert_eq!(a.uri, "sip:0311112222@pbx;user=phone");
        assert_eq!(a.tag(), Some("abc"));
        let b = NameAddr::parse("sip:1000@h;tag=x").unwrap();
        assert_eq!((b.uri.as_str(), b.tag()), ("sip:1000@h", Some("x")));
        let c = NameAddr::parse("caller <sip:caller@example.com>").unwrap();
        assert_eq!(c.display.as_deref(), Some("caller"));
        assert!(NameAddr::parse("\"unbalanced <sip:a@b>").is_err());
        assert!(NameAddr::parse("<sip:a@b").is_err());
        assert!(NameAddr::parse("<sip: a@b>").is_err());
    }

    #[test]
    fn uri_user_is_decoded_and_keeps_semicolons() {
        let u = Uri::parse("sip:user;par=u%40example.net@example.com;transport=tcp").unwrap();
        assert_eq!(u.user.as_deref(), Some("user;par=u@example.net"));
        assert_eq!(u.host, "example.com");
        assert_eq!(u.param("transport"), Some("tcp"));
        let t = Uri::parse("tel:+1-555-0100;phone-context=+1").unwrap();
        assert_eq!(t.user.as_deref(), Some("+1-555-0100"));
        let v6 = Uri::parse("sip:[2001:db8::10]:5070").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("[2001:db8::10]", Some(5070)));
    }

    #[test]
    fn via_parts() {
        let v = Via::parse("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bK1"));
        assert_eq!(v.param("rport"), Some(""));
    }
}
