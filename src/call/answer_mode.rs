//! What an INVITE asks of the way it is answered: a PBX's request to answer without the
//! agent (intercom, supervisor barge, "auto-accept" agents). Read from `Call-Info: …;
//! answer-after=N`, `Alert-Info: …;info=alert-autoanswer` (with `delay=N`), and RFC 5373's
//! `Answer-Mode` / `Priv-Answer-Mode: Auto[;require]`. Whether the request is honoured (the
//! setting and the sender's host) is the call layer's decision.

use std::time::Duration;

use crate::sip::message::Message;

/// The longest answer-after honoured; a larger one is taken as this.
const MAX_AFTER: Duration = Duration::from_secs(600);

/// A request to answer automatically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteAnswer {
    /// After how long (0: at once).
    pub after: Duration,
    /// `Answer-Mode: Auto;require`: the caller wants a refusal (403) rather than a ring.
    pub require: bool,
    /// Which header asked, for the log.
    pub header: &'static str,
}

/// The auto-answer request of `invite`, if it makes one. `Answer-Mode: Manual` (or nothing)
/// is none. The first header that asks wins, in the order: Answer-Mode, Priv-Answer-Mode,
/// Call-Info, Alert-Info.
pub fn requested(invite: &Message) -> Option<RemoteAnswer> {
    for header in ["Answer-Mode", "Priv-Answer-Mode"] {
        for v in invite.get_all(header) {
            let mut parts = v.split(';').map(str::trim);
            let mode = parts.next().unwrap_or("");
            if mode.eq_ignore_ascii_case("auto") {
                let require = parts.any(|p| p.eq_ignore_ascii_case("require"));
                return Some(RemoteAnswer {
                    after: Duration::ZERO,
                    require,
                    header: if header == "Answer-Mode" {
                        "Answer-Mode"
                    } else {
                        "Priv-Answer-Mode"
                    },
                });
            }
        }
    }
    for v in invite.get_all("Call-Info") {
        for value in split_values(v) {
            if let Some(after) = param(value, "answer-after").and_then(seconds) {
                return Some(RemoteAnswer {
                    after,
                    require: false,
                    header: "Call-Info",
                });
            }
        }
    }
    for v in invite.get_all("Alert-Info") {
        for value in split_values(v) {
            let auto = param(value, "info").is_some_and(|i| i.eq_ignore_ascii_case("alert-autoanswer"));
            if auto {
                let after = param(value, "delay").and_then(seconds).unwrap_or(Duration::ZERO);
                return Some(RemoteAnswer {
                    after,
                    require: false,
                    header: "Alert-Info",
                });
            }
        }
    }
    None
}

/// The values of a header that may hold several, split at commas outside `<…>` and quotes.
fn split_values(v: &str) -> Vec<&str> {
    let (mut out, mut start, mut depth, mut quoted) = (Vec::new(), 0, 0i32, false);
    for (i, c) in v.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                out.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&v[start..]);
    out
}

/// A header parameter's value (after the `<uri>`, if any), case-insensitive name.
fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    params.split(';').find_map(|p| {
        let (n, v) = p.split_once('=')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

fn seconds(v: &str) -> Option<Duration> {
    let n: u64 = v.parse().ok()?;
    Some(Duration::from_secs(n).min(MAX_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(headers: &str) -> Message {
        let text = format!(
            "INVITE sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
             From: <sip:pbx@127.0.0.1>;tag=1\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: c1\r\n\
             CSeq: 1 INVITE\r\n{headers}Content-Length: 0\r\n\r\n"
        );
        Message::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn each_header_variant_asks() {
        type Want = Option<(u64, bool, &'static str)>;
        let cases: [(&str, Want); 12] = [
            ("", None),
            (
                "Call-Info: <sip:pbx>;answer-after=0\r\n",
                Some((0, false, "Call-Info")),
            ),
            (
                "Call-Info: <sip:pbx>;Answer-After=3\r\n",
                Some((3, false, "Call-Info")),
            ),
            (
                "Call-Info: <http://x/a;answer-after=9>;purpose=icon, <sip:p>;answer-after=2\r\n",
                Some((2, false, "Call-Info")),
            ),
            ("Call-Info: <sip:pbx>;answer-after=x\r\n", None),
            (
                "Alert-Info: <http://127.0.0.1>;info=alert-autoanswer\r\n",
                Some((0, false, "Alert-Info")),
            ),
            (
                "Alert-Info: info=alert-autoanswer;delay=2\r\n",
                Some((2, false, "Alert-Info")),
            ),
            ("Alert-Info: <http://127.0.0.1>;info=alert-group\r\n", None),
            ("Answer-Mode: Auto\r\n", Some((0, false, "Answer-Mode"))),
            ("Answer-Mode: auto;require\r\n", Some((0, true, "Answer-Mode"))),
            ("Answer-Mode: Manual\r\n", None),
            ("Priv-Answer-Mode: Auto\r\n", Some((0, false, "Priv-Answer-Mode"))),
        ];
        for (headers, want) in cases {
            let got = requested(&invite(headers)).map(|r| (r.after.as_secs(), r.require, r.header));
            assert_eq!(got, want, "{headers:?}");
        }
    }

    #[test]
    fn a_huge_delay_is_capped() {
        let r = requested(&invite("Call-Info: <sip:p>;answer-after=99999999999\r\n")).unwrap();
        assert_eq!(r.after, MAX_AFTER);
    }
}
