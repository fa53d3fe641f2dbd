//! The `Replaces` header (RFC 3891): reading one from an INVITE, and writing one into a
//! `Refer-To` URI for an attended transfer (RFC 5589 §7), escaped as a URI header.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// A dialog named by a `Replaces` header, from the point of view of the UA receiving it:
/// `to_tag` is its own tag, `from_tag` the peer's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
    /// `early-only`: replace the dialog only while it is early (486 otherwise).
    pub early_only: bool,
}

impl Replaces {
    /// Reads a header value: `callid;to-tag=T;from-tag=F[;early-only]`. Both tags are
    /// required (RFC 3891 §6.1).
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut parts = value.trim().split(';');
        let call_id = parts.next().unwrap_or("").trim();
        if call_id.is_empty() || call_id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("Replaces has no valid Call-ID".into());
        }
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for p in parts {
            let (name, val) = match p.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (p.trim(), None),
            };
            match (name.to_ascii_lowercase().as_str(), val) {
                ("to-tag", Some(v)) if !v.is_empty() => to_tag = Some(v.to_owned()),
                ("from-tag", Some(v)) if !v.is_empty() => from_tag = Some(v.to_owned()),
                ("early-only", None) => early_only = true,
                ("to-tag" | "from-tag", _) => return Err(format!("Replaces: empty `{name}`")),
                _ => {} // unknown parameters are ignored (generic-param)
            }
        }
        Ok(Self {
            call_id: call_id.to_owned(),
            to_tag: to_tag.ok_or("Replaces has no to-tag")?,
            from_tag: from_tag.ok_or("Replaces has no from-tag")?,
            early_only,
        })
    }

    /// The header's value.
    pub fn to_value(&self) -> String {
        let mut v = format!(
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        );
        if self.early_only {
            v.push_str(";early-only");
        }
        v
    }
}

/// What must be escaped in a URI header value (RFC 3261 §25.1 `hvalue`: unreserved and
/// `[ ] / ? : + $` stay; `;`, `=`, `@`, `%`, `&` and the rest do not).
const HVALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'<')
    .add(b'>')
    .add(b',')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The `Refer-To` URI of an attended transfer: `target` with `?Replaces=` naming the dialog
/// the transfer target has with us (its tag as `to-tag`, ours as `from-tag`: the target
/// receives it). Headers already on `target` are dropped; URI parameters stay.
pub fn refer_to_with_replaces(target: &str, replaces: &Replaces) -> String {
    let base = target.split('?').next().unwrap_or(target);
    format!(
        "{base}?Replaces={}",
        utf8_percent_encode(&replaces.to_value(), HVALUE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaces_header_parses_and_prints() {
        let r = Replaces::parse("425928@bobster.example.org;to-tag=7743;from-tag=6472").unwrap();
        assert_eq!(r.call_id, "425928@bobster.example.org");
        assert_eq!((r.to_tag.as_str(), r.from_tag.as_str()), ("7743", "6472"));
        assert!(!r.early_only);
        let r = Replaces::parse(" abc ; From-Tag = f ;to-tag=t;early-only;x=1").unwrap();
        assert!(r.early_only);
        assert_eq!(r.to_value(), "abc;to-tag=t;from-tag=f;early-only");
    }

    #[test]
    fn a_replaces_header_without_both_tags_is_refused() {
        for bad in [
            "",
            ";to-tag=a;from-tag=b",
            "abc;to-tag=a",
            "abc;from-tag=b",
            "abc;to-tag=;from-tag=b",
            "a b;to-tag=a;from-tag=b",
        ] {
            assert!(Replaces::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refer_to_escapes_the_dialog_as_a_uri_header() {
        let r = Replaces {
            call_id: "12345@192.168.118.3".into(),
            to_tag: "12345".into(),
            from_tag: "5FFE-3994".into(),
            early_only: false,
        };
        // RFC 3891 §7's example.
        assert_eq!(
            refer_to_with_replaces("sip:bob@bobster.example.org?Subject=x", &r),
            "sip:bob@bobster.example.org?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994"
        );
        // And it reads back, once unescaped.
        let uri = refer_to_with_replaces("sip:bob@h;transport=udp", &r);
        let v = uri.split_once("?Replaces=").unwrap().1;
        let back = percent_encoding::percent_decode_str(v).decode_utf8().unwrap();
        assert_eq!(Replaces::parse(&back).unwrap(), r);
    }
}
