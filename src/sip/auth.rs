//! SIP digest authentication (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).
//!
//! [`Challenge::parse`] reads one `WWW-Authenticate` / `Proxy-Authenticate`
//! header value, [`pick`] chooses which of several challenges to answer
//! (SHA-256 before MD5), and [`authorization`] builds the matching
//! `Authorization` / `Proxy-Authorization` header value. Random values (the
//! client nonce) are taken as parameters so the caller decides where they
//! come from.

use md5::Md5;
use sha2::{Digest, Sha256};

/// Digest hash algorithm named by a challenge's `algorithm` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// Parses an `algorithm` token (case-insensitive).
    pub fn from_token(token: &str) -> Result<Algorithm, String> {
        const NAMES: [(&str, Algorithm); 4] = [
            ("MD5", Algorithm::Md5),
            ("MD5-sess", Algorithm::Md5Sess),
            ("SHA-256", Algorithm::Sha256),
            ("SHA-256-sess", Algorithm::Sha256Sess),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(token))
            .map(|&(_, alg)| alg)
            .ok_or_else(|| format!("unsupported digest algorithm {token:?}"))
    }

    /// The canonical token, as written in an Authorization header.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Lower-case hex digest of `data`.
    fn hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => to_hex(&Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => to_hex(&Sha256::digest(data)),
        }
    }

    /// Preference used by [`pick`]: higher is better.
    fn rank(self) -> u8 {
        match self {
            Algorithm::Sha256 => 3,
            Algorithm::Sha256Sess => 2,
            Algorithm::Md5 => 1,
            Algorithm::Md5Sess => 0,
        }
    }
}

/// One parsed Digest challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The offered qop values, lower-cased (e.g. `["auth", "auth-int"]`);
    /// empty when the challenge has no qop parameter.
    pub qop: Vec<String>,
    pub stale: bool,
}

impl Challenge {
    /// Parses the value of one WWW-Authenticate / Proxy-Authenticate header ("Digest realm=\"x\", nonce=..., qop=\"auth,auth-int\", algorithm=SHA-256, ...").
    /// Quoted strings with backslash escapes, unquoted tokens, any order, case-insensitive parameter names and scheme, unknown params ignored. Non-Digest schemes and a missing realm/nonce are errors. Unknown algorithms are errors (so the caller can skip that challenge).
    pub fn parse(value: &str) -> Result<Challenge, String> {
        let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
        let scheme_end = value
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(value.len());
        let scheme = &value[..scheme_end];
        if scheme.is_empty() {
            return Err("empty authentication challenge".to_string());
        }
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(format!("unsupported authentication scheme {scheme:?}"));
        }
        let params = parse_params(&value[scheme_end..])?;

        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = None;
        let mut qop = None;
        let mut stale = None;
        // The first occurrence of a parameter wins; repeats are ignored.
        for (name, val) in params {
            let slot = match name.to_ascii_lowercase().as_str() {
                "realm" => &mut realm,
                "nonce" => &mut nonce,
                "opaque" => &mut opaque,
                "algorithm" => &mut algorithm,
                "qop" => &mut qop,
                "stale" => &mut stale,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(val);
            }
        }

        let realm = realm.ok_or("digest challenge has no realm")?;
        let nonce = nonce.ok_or("digest challenge has no nonce")?;
        if nonce.is_empty() {
            return Err("digest challenge has an empty nonce".to_string());
        }
        let algorithm = match algorithm {
            Some(a) => Algorithm::from_token(a.trim())?,
            None => Algorithm::Md5,
        };
        let qop = qop
            .map(|q| {
                q.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let stale = stale.is_some_and(|s| s.trim().eq_ignore_ascii_case("true"));
        Ok(Challenge {
            realm,
            nonce,
            opaque,
            algorithm,
            qop,
            stale,
        })
    }
}

/// Splits `name=value, name="quoted value", ...` into (name, unescaped value)
/// pairs.
fn parse_params(input: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    let is_ws = |c: char| c == ' ' || c == '\t' || c == '\r' || c == '\n';
    loop {
        // Skip separators (empty list elements are allowed).
        while chars.next_if(|&c| is_ws(c) || c == ',').is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|&c| !is_ws(c) && c != '=' && c != ',' && c != '"') {
            name.push(c);
        }
        if name.is_empty() {
            return Err("malformed digest challenge: expected a parameter name".to_string());
        }
        while chars.next_if(|&c| is_ws(c)).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "malformed digest challenge: parameter {name:?} has no '='"
            ));
        }
        while chars.next_if(|&c| is_ws(c)).is_some() {}
        let mut val = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "malformed digest challenge: unterminated quoted value for {name:?}"
                        ));
                    }
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => val.push(c),
                        None => {
                            return Err(format!("malformed digest challenge: dangling escape in {name:?}"));
                        }
                    },
                    Some(c) => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|&c| !is_ws(c) && c != ',' && c != '"') {
                val.push(c);
            }
            if val.is_empty() {
                return Err(format!(
                    "malformed digest challenge: parameter {name:?} has no value"
                ));
            }
        }
        if val.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!(
                "malformed digest challenge: control character in {name:?}"
            ));
        }
        while chars.next_if(|&c| is_ws(c)).is_some() {}
        match chars.next() {
            None | Some(',') => {}
            Some(c) => {
                return Err(format!(
                    "malformed digest challenge: unexpected {c:?} after parameter {name:?}"
                ));
            }
        }
        out.push((name, val));
    }
    Ok(out)
}

/// Of several challenges (a 401 may carry one per algorithm), the one to answer: SHA-256 preferred over MD5.
pub fn pick(challenges: &[Challenge]) -> Option<&Challenge> {
    let mut best: Option<&Challenge> = None;
    for ch in challenges {
        if best.is_none_or(|b| ch.algorithm.rank() > b.algorithm.rank()) {
            best = Some(ch);
        }
    }
    best
}

/// The value of the Authorization / Proxy-Authorization header answering `ch`.
/// qop: if the challenge offers "auth", use qop=auth with nc (8 lowercase hex digits) and the given cnonce; if it offers only "auth-int", use auth-int (hash of `body`); with no qop, the RFC 2069 form. Hex digests lower-case. Include username, realm, nonce, uri, response, algorithm (as in the challenge, e.g. MD5, SHA-256), opaque if present, qop/nc/cnonce when qop is used. Quote and escape values properly.
///
/// For the `-sess` algorithms the cnonce enters H(A1), so it is also sent
/// when the challenge has no qop. Control characters (which a quoted string
/// The header that carries credentials for a challenge: `Proxy-Authorization` for a proxy's
/// (407), else `Authorization` (401).
pub fn header_for(proxy: bool) -> &'static str {
    if proxy {
        "Proxy-Authorization"
    } else {
        "Authorization"
    }
}

/// The credentials header (name, value) answering `ch` for a request without a body
/// (REGISTER, SUBSCRIBE), with a fresh cnonce.
pub fn credentials(
    ch: &Challenge,
    proxy: bool,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
) -> (&'static str, String) {
    let cnonce = super::stack::random_token(12);
    (
        header_for(proxy),
        authorization(ch, username, password, method, uri, nc, &cnonce, &[]),
    )
}

/// cannot carry) are left out of the quoted header values.
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    ch: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
    body: &[u8],
) -> String {
    let alg = ch.algorithm;
    let offers = |q: &str| ch.qop.iter().any(|o| o.eq_ignore_ascii_case(q));
    let qop = if offers("auth") {
        Some("auth")
    } else if offers("auth-int") {
        Some("auth-int")
    } else {
        None
    };

    let mut ha1 = alg.hex(format!("{username}:{}:{password}", ch.realm).as_bytes());
    if alg.is_sess() {
        ha1 = alg.hex(format!("{ha1}:{}:{cnonce}", ch.nonce).as_bytes());
    }
    let a2 = if qop == Some("auth-int") {
        format!("{method}:{uri}:{}", alg.hex(body))
    } else {
        format!("{method}:{uri}")
    };
    let ha2 = alg.hex(a2.as_bytes());
    let nc_hex = format!("{nc:08x}");
    let response = match qop {
        Some(q) => alg.hex(format!("{ha1}:{}:{nc_hex}:{cnonce}:{q}:{ha2}", ch.nonce).as_bytes()),
        None => alg.hex(format!("{ha1}:{}:{ha2}", ch.nonce).as_bytes()),
    };

    let mut out = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
        quote(username),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(uri),
        quote(&response),
        alg.as_str()
    );
    if let Some(opaque) = &ch.opaque {
        out.push_str(&format!(", opaque={}", quote(opaque)));
    }
    match qop {
        Some(q) => out.push_str(&format!(", qop={q}, nc={nc_hex}, cnonce={}", quote(cnonce))),
        None if alg.is_sess() => out.push_str(&format!(", cnonce={}", quote(cnonce))),
        None => {}
    }
    out
}

/// A quoted-string: `"` and `\` escaped, control characters dropped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value of `name` in an Authorization header built by this module.
    fn param(header: &str, name: &str) -> Option<String> {
        let rest = header.strip_prefix("Digest ")?;
        parse_params(rest)
            .ok()?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    fn rfc2617() -> Challenge {
        Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap()
    }

    fn rfc7616(alg: &str) -> Challenge {
        Challenge::parse(&format!(
            "Digest\r\n realm=\"http-auth@example.org\",\r\n qop=\"auth, auth-int\",\r\n \
             algorithm={alg},\r\n nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        ))
        .unwrap()
    }

    #[test]
    fn rfc2617_example() {
        let c = rfc2617();
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(c.qop, vec!["auth", "auth-int"]);
        let h = authorization(
            &c,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
            b"",
        );
        assert_eq!(param(&h, "response").unwrap(), "6629fae49393a05397450978507c4ef1");
        assert!(h.starts_with("Digest username=\"Mufasa\", realm=\"testrealm@host.com\""));
        assert!(h.contains("uri=\"/dir/index.html\""), "{h}");
        assert!(h.contains("algorithm=MD5"), "{h}");
        assert!(h.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""), "{h}");
        assert!(h.contains("qop=auth, nc=00000001, cnonce=\"0a4f113b\""), "{h}");
    }

    #[test]
    fn rfc7616_sha256_and_md5_examples() {
        for (alg, expected) in [
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ] {
            let c = rfc7616(alg);
            let h = authorization(
                &c,
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                1,
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
                b"",
            );
            assert_eq!(param(&h, "response").unwrap(), expected, "{alg}");
            assert!(h.contains(&format!("algorithm={alg},")), "{h}");
            assert_eq!(param(&h, "nc").unwrap(), "00000001");
            assert_eq!(param(&h, "qop").unwrap(), "auth");
        }
    }

    #[test]
    fn no_qop_rfc2069_form() {
        let c = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"",
        )
        .unwrap();
        assert!(c.qop.is_empty());
        let h = authorization(
            &c,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
            b"",
        );
        assert_eq!(param(&h, "response").unwrap(), "670fd8c2df070c60b045671b8b24ff02");
        assert!(!h.contains("qop"), "{h}");
        assert!(!h.contains("nc="), "{h}");
        assert!(!h.contains("cnonce"), "{h}");
        assert!(!h.contains("opaque"), "{h}");
    }

    #[test]
    fn auth_int_and_sess() {
        // Expected values computed independently with Python's hashlib.
        let mut c = rfc2617();
        c.qop = vec!["auth-int".to_string()];
        let h = authorization(
            &c,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
            b"",
        );
        assert_eq!(param(&h, "response").unwrap(), "5e6610ecf9ba3017a4870ad48e3ad30b");
        assert_eq!(param(&h, "qop").unwrap(), "auth-int");

        let mut c = rfc2617();
        c.algorithm = Algorithm::Md5Sess;
        let h = authorization(
            &c,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
            b"",
        );
        assert_eq!(param(&h, "response").unwrap(), "8e3825c57e897f5a0dec6c2d4e5059d0");
        assert!(h.contains("algorithm=MD5-sess"), "{h}");
    }

    #[test]
    fn nc_is_eight_lowercase_hex_digits() {
        let h = authorization(&rfc2617(), "u", "p", "REGISTER", "sip:x", 0xAB, "c", b"");
        assert_eq!(param(&h, "nc").unwrap(), "000000ab");
    }

    #[test]
    fn escapes_quoted_values() {
        let mut c = rfc2617();
        c.realm = "a \"b\" \\c".to_string();
        let h = authorization(&c, "us\"er", "p", "GET", "/", 1, "c\r\nX: y", b"");
        assert!(h.contains("realm=\"a \\\"b\\\" \\\\c\""), "{h}");
        assert!(h.contains("username=\"us\\\"er\""), "{h}");
        assert!(!h.contains('\r') && !h.contains('\n'), "{h}");
        assert_eq!(param(&h, "username").unwrap(), "us\"er");
        assert_eq!(param(&h, "realm").unwrap(), "a \"b\" \\c");
    }

    #[test]
    fn parses_messy_header() {
        let c = Challenge::parse(
            "  digest   NONCE = abc123 ,realm=\"sip, \\\"the\\\" realm\",, \
             qop=\"auth-int , AUTH\",  algorithm = sha-256 , stale=TRUE, \
             foo=\"bar, baz\", opaque=\"x\\\\y\"  ",
        )
        .unwrap();
        assert_eq!(c.realm, "sip, \"the\" realm");
        assert_eq!(c.nonce, "abc123");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.qop, vec!["auth-int", "auth"]);
        assert!(c.stale);
        assert_eq!(c.opaque.as_deref(), Some("x\\y"));
    }

    #[test]
    fn parses_sess_algorithms_and_defaults() {
        let c = Challenge::parse("Digest realm=r, nonce=n, algorithm=\"SHA-256-sess\"").unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256Sess);
        assert!(!c.stale);
        assert_eq!(c.opaque, None);
        let c = Challenge::parse("DIGEST realm=\"\",nonce=n,algorithm=md5-SESS,stale=false").unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5Sess);
        assert_eq!(c.realm, "");
    }

    #[test]
    fn rejects_bad_challenges() {
        for bad in [
            "",
            "   ",
            "Basic realm=\"x\"",
            "Digest",
            "Digest nonce=\"n\"",
            "Digest realm=\"r\"",
            "Digest realm=\"r\", nonce=\"\"",
            "Digest realm=\"r\", nonce=n, algorithm=SHA-512-256",
            "Digest realm=\"r, nonce=n",
            "Digest realm=\"r\\",
            "Digest realm",
            "Digest realm=",
            "Digest realm=,nonce=n",
            "Digest =x, realm=r, nonce=n",
            "Digest realm=\"r\" nonce=n",
            "Digest realm=r\"x\", nonce=n",
            "Digest realm=\"a\u{0}b\", nonce=n",
            "Digest \u{feff}\u{1F600}=\"\\",
            "Digestrealm=r, nonce=n",
        ] {
            assert!(Challenge::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let samples: [&[u8]; 6] = [
            b"Digest realm=\"\xff\", nonce=",
            b"\"\"\"\\\\,,,===",
            b"Digest ,,,,= \" \\",
            b"Digest realm=\"r\",nonce=\"n\",qop=,",
            b"Digest \t\t realm\t=\t\"r\"\t,\tnonce\t=\tn",
            b"\xc3\xa9Digest",
        ];
        for s in samples {
            let text = String::from_utf8_lossy(s);
            let _ = Challenge::parse(&text);
            for end in 0..=text.len() {
                if let Some(prefix) = text.get(..end) {
                    let _ = Challenge::parse(prefix);
                }
            }
        }
        let tabbed = Challenge::parse("Digest \t\t realm\t=\t\"r\"\t,\tnonce\t=\tn").unwrap();
        assert_eq!((tabbed.realm.as_str(), tabbed.nonce.as_str()), ("r", "n"));
    }

    #[test]
    fn pick_prefers_sha256() {
        let md5 = rfc7616("MD5");
        let sha = rfc7616("SHA-256");
        let sha_sess = rfc7616("SHA-256-sess");
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(std::slice::from_ref(&md5)), Some(&md5));
        assert_eq!(pick(&[md5.clone(), sha.clone()]), Some(&sha));
        assert_eq!(pick(&[sha.clone(), md5.clone()]), Some(&sha));
        assert_eq!(pick(&[md5.clone(), sha_sess.clone(), sha.clone()]), Some(&sha));
        assert_eq!(pick(&[md5.clone(), sha_sess.clone()]), Some(&sha_sess));
        // Ties keep the first.
        let mut md5b = md5.clone();
        md5b.realm = "other".to_string();
        assert_eq!(pick(&[md5.clone(), md5b]), Some(&md5));
    }
}
