//! The links `ctiphone open` is handed (by a browser, through the desktop's URL handler):
//! `tel:` and `callto:` numbers, `sip:` and `sips:` addresses. A link comes from a web page,
//! so it is checked like any caller value: what is dialled is a plain number or a plain SIP
//! address, never headers or anything a shell, the terminal or the INVITE would read as more.

/// The longest link taken.
const MAX_LEN: usize = 512;
/// The most digits of a number.
const MAX_DIGITS: usize = 32;

/// What a link dials: a number (`+81312345678`) or a SIP URI (`sip:1002@pbx.example`).
pub fn target(link: &str) -> Result<String, String> {
    let link = link.trim();
    if link.len() > MAX_LEN {
        return Err(format!("the link is longer than {MAX_LEN} bytes"));
    }
    if link.chars().any(|c| c.is_control()) {
        return Err("the link has control characters".into());
    }
    let (scheme, rest) = link
        .split_once(':')
        .ok_or_else(|| "expected a tel:, callto:, sip: or sips: link".to_owned())?;
    match scheme.to_ascii_lowercase().as_str() {
        "tel" | "callto" => number(rest.trim_start_matches("//")),
        "sip" | "sips" => sip(&scheme.to_ascii_lowercase(), rest),
        other => Err(format!(
            "`{}:` links are not dialled (tel:, callto:, sip: or sips:)",
            other.escape_debug()
        )),
    }
}

/// Decodes `%XX` escapes; a malformed one is an error.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a malformed %-escape in the link".to_owned())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the link is not UTF-8 once decoded".to_owned())
}

/// A `tel:` number (RFC 3966): its parameters dropped, visual separators removed; digits,
/// `*`, `#` and one leading `+` remain.
fn number(rest: &str) -> Result<String, String> {
    let main = rest.split([';', '?']).next().unwrap_or_default();
    let decoded = percent_decode(main)?;
    let mut out = String::new();
    for c in decoded.chars() {
        match c {
            '0'..='9' | '*' | '#' => out.push(c),
            '+' if out.is_empty() => out.push('+'),
            '-' | '.' | '(' | ')' | ' ' | '/' => {}
            other => {
                return Err(format!(
                    "`{}` in a telephone number (digits, *, #, a leading + and - . ( ) only)",
                    other.escape_debug()
                ));
            }
        }
    }
    let digits = out.chars().filter(char::is_ascii_digit).count();
    if digits == 0 {
        return Err("no digits in the telephone number".into());
    }
    if digits > MAX_DIGITS {
        return Err(format!("more than {MAX_DIGITS} digits in the telephone number"));
    }
    Ok(out)
}

/// A `sip:` address: its `?headers` dropped (a web page does not choose the INVITE's
/// headers), user and host checked for what a URI may hold.
fn sip(scheme: &str, rest: &str) -> Result<String, String> {
    let uri = rest.split('?').next().unwrap_or_default();
    let (user_host, params) = match uri.split_once(';') {
        Some((a, b)) => (a, Some(b)),
        None => (uri, None),
    };
    let (user, host) = match user_host.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, user_host),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !host_ok {
        return Err("the SIP address has no valid host".into());
    }
    // Narrower than RFC 3261 allows: a link from a web page names an extension or a number,
    // and what is dialled is shown, logged and expanded into CTI templates; quotes, `$`, `&`,
    // parentheses and the like have no business there.
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.!~*+%".contains(c);
    if let Some(u) = user
        && (u.is_empty() || !u.chars().all(plain))
    {
        return Err("the SIP address's user part may hold letters, digits and - _ . ! ~ * + % only".into());
    }
    if let Some(p) = params
        && !p.chars().all(|c| plain(c) || "=;:".contains(c))
    {
        return Err(
            "the SIP address's parameters may hold letters, digits and - _ . ! ~ * + % = ; : only".into(),
        );
    }
    // The user part may be a telephone number written for people.
    let user = match user {
        Some(u) if u.starts_with('+') || u.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
            number(u).unwrap_or_else(|_| u.to_owned())
        }
        Some(u) => u.to_owned(),
        None => String::new(),
    };
    let mut out = format!("{scheme}:");
    if !user.is_empty() {
        out.push_str(&user);
        out.push('@');
    }
    out.push_str(host);
    if let Some(p) = params {
        out.push(';');
        out.push_str(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telephone_links_dial_their_number() {
        for (link, want) in [
            ("tel:+81-3-1234-5678", "+81312345678"),
            ("TEL:+81 (3) 1234.5678", "+81312345678"),
            ("tel:03-1234-5678;phone-context=+81", "0312345678"),
            ("tel:%2B81312345678", "+81312345678"),
            ("callto://+81312345678", "+81312345678"),
            ("tel:*21#", "*21#"),
            ("  tel:1002\n", "1002"),
            // Parameters are never dialled, whatever they hold.
            ("tel:12345;$(reboot)", "12345"),
        ] {
            assert_eq!(target(link), Ok(want.to_owned()), "{link:?}");
        }
    }

    #[test]
    fn sip_links_dial_the_address_and_never_its_headers() {
        assert_eq!(target("sip:1002@pbx.example"), Ok("sip:1002@pbx.example".into()));
        assert_eq!(
            target("sips:+81-3-1234-5678@pbx.example:5061;transport=tls"),
            Ok("sips:+81312345678@pbx.example:5061;transport=tls".into())
        );
        assert_eq!(
            target("sip:1002@pbx.example?Subject=x&Call-Info=%3Chttp://evil%3E"),
            Ok("sip:1002@pbx.example".into())
        );
    }

    #[test]
    fn hostile_links_are_refused() {
        for link in [
            "tel:",
            "tel:;x",
            "tel:+81+3",
            "tel:1234`id`",
            "tel:12%0d%0aBYE",
            "tel:%zz",
            "tel:%ff%fe",
            "tel:\u{1b}[2J1234",
            "tel:1\u{202e}234",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "sip:",
            "sip:@",
            "sip:1002@pbx example",
            "sip:10 02@pbx",
            "sip:1002@pbx;x=\"a\"",
            "sip:1002@<evil>",
            "sip:10$02@p",
            "sip:1'02@p",
            "sip:1002@p;x=$(id)",
            "1002",
        ] {
            assert!(target(link).is_err(), "{link:?} was taken: {:?}", target(link));
        }
        assert!(target(&format!("tel:{}", "1".repeat(33))).is_err());
        assert!(target(&format!("sip:{}@pbx", "a".repeat(600))).is_err());
    }
}
