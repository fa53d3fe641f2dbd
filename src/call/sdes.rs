//! SDES-SRTP in SDP (RFC 4568): a call's SRTP policy, the `a=crypto` lines of an audio stream
//! (the peer's read strictly, ours written with keys from the OS generator), and the choice of
//! a suite — in an answer, the first offered line we can use; from an answer, the line that
//! matches one of ours by tag and suite. The keys of the chosen line go to the media session
//! as [`CallKeys`].

use serde::{Deserialize, Serialize};

use crate::media::srtp::{CallKeys, MasterKey, Suite};

use super::sdp::{Attribute, Media};

/// `[media] srtp`: whether calls are encrypted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpMode {
    /// Plain RTP; offers with crypto are answered plain, `RTP/SAVP` offers refused.
    #[default]
    Off,
    /// Best effort: offers `RTP/AVP` with `a=crypto` lines (the common PBX practice) and takes
    /// SRTP or plain RTP, whichever the peer does.
    Optional,
    /// Offers `RTP/SAVP`; a call without crypto is refused (488) or fails.
    Mandatory,
}

impl SrtpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SrtpMode::Off => "off",
            SrtpMode::Optional => "optional",
            SrtpMode::Mandatory => "mandatory",
        }
    }
}

/// A secure RTP profile (`RTP/SAVP`, `RTP/SAVPF`).
pub fn is_secure_proto(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/SAVP") || proto.eq_ignore_ascii_case("RTP/SAVPF")
}

/// One `a=crypto` line we can use: its tag, suite and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub key: MasterKey,
}

/// The `a=crypto` lines of `m` we can use, in order. A line is skipped when its suite is not
/// ours, its key parameters are not one inline key of the right length (an MKI, several keys),
/// it carries session parameters (`KDR=`, `UNENCRYPTED_SRTP`, … which we do not implement:
/// RFC 4568 §6.3 says to treat the line as unusable), or its tag is not a 1–9 digit number.
pub fn usable(m: &Media) -> Vec<Crypto> {
    m.attributes
        .iter()
        .filter(|a| a.name.eq_ignore_ascii_case("crypto"))
        .filter_map(|a| parse_line(a.value.as_deref()?))
        .collect()
}

/// Any `a=crypto` line at all (usable or not).
pub fn has_crypto(m: &Media) -> bool {
    m.attributes.iter().any(|a| a.name.eq_ignore_ascii_case("crypto"))
}

fn parse_line(value: &str) -> Option<Crypto> {
    let mut fields = value.split_ascii_whitespace();
    let tag = fields.next()?;
    if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let suite = Suite::from_name(fields.next()?)?;
    let key = MasterKey::from_key_params(suite, fields.next()?).ok()?;
    if fields.next().is_some() {
        return None;
    }
    Some(Crypto {
        tag: tag.parse().ok()?,
        key,
    })
}

/// Our `a=crypto` line.
pub fn attribute(tag: u32, key: &MasterKey) -> Attribute {
    Attribute {
        name: "crypto".into(),
        value: Some(format!("{tag} {} {}", key.suite().name(), key.key_params())),
    }
}

/// Our keys for one dialog: one per suite, drawn at the first offer or answer and kept for
/// re-offers (RFC 4568 §7.1.4 lets them stay).
#[derive(Clone, Debug, Default)]
pub struct LocalKeys {
    keys: Vec<MasterKey>,
}

impl LocalKeys {
    /// Our key for `suite`, drawn now if it is the first time.
    pub fn get(&mut self, suite: Suite) -> Result<MasterKey, String> {
        if let Some(k) = self.keys.iter().find(|k| k.suite() == suite) {
            return Ok(k.clone());
        }
        let k = MasterKey::generate(suite)?;
        self.keys.push(k.clone());
        Ok(k)
    }

    /// Our offer's lines: every suite, tags 1, 2, 3 in [`Suite::ALL`]'s order.
    pub fn offer(&mut self) -> Result<Vec<Attribute>, String> {
        Suite::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| Ok(attribute(i as u32 + 1, &self.get(*s)?)))
            .collect()
    }
}

/// The keys of a session from our `local` stream and the peer's `remote` one, whoever
/// offered: the peer's line must answer ours (same tag and suite). `None`: plain RTP.
pub fn keys(local: &Media, remote: &Media, we_offered: bool) -> Option<CallKeys> {
    let ours = usable(local);
    let theirs = usable(remote);
    // The answer carries exactly one line; its tag picks the offer's line.
    let answer_line = if we_offered { theirs.first() } else { ours.first() }?;
    let (mine, peer) = if we_offered {
        (ours.iter().find(|c| c.tag == answer_line.tag)?, answer_line)
    } else {
        (answer_line, theirs.iter().find(|c| c.tag == answer_line.tag)?)
    };
    (mine.key.suite() == peer.key.suite()).then(|| CallKeys {
        ours: mine.key.clone(),
        theirs: peer.key.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::sdp::Sdp;

    const KEY: &str = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

    fn media(lines: &str) -> Media {
        let text = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\n{lines}"
        );
        Sdp::parse(&text).unwrap().media.remove(0)
    }

    #[test]
    fn unusable_lines_are_skipped_not_fatal() {
        let m = media(&format!(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY} KDR=1\r\n\
             a=crypto:2 F8_128_HMAC_SHA1_80 {KEY}\r\n\
             a=crypto:x AES_CM_128_HMAC_SHA1_80 {KEY}\r\n\
             a=crypto:3 AES_CM_128_HMAC_SHA1_80 {KEY}|2^20|1:4\r\n\
             a=crypto:4 AES_CM_128_HMAC_SHA1_32\r\n\
             a=crypto:5 AES_CM_128_HMAC_SHA1_32 {KEY}|2^31\r\n\
             a=crypto:6 AES_CM_128_HMAC_SHA1_80 {KEY}\r\n"
        ));
        let tags: Vec<u32> = usable(&m).iter().map(|c| c.tag).collect();
        assert_eq!(tags, [5, 6]);
        assert!(has_crypto(&media("a=crypto:9 NULL\r\n")));
        assert!(usable(&media("a=crypto:9 NULL\r\n")).is_empty());
    }

    #[test]
    fn the_answer_picks_the_offer_line_by_tag_and_suite() {
        let mut ours = LocalKeys::default();
        let mut offer = media("");
        offer.attributes = ours.offer().unwrap();
        assert_eq!(usable(&offer).len(), 3);
        // The peer answers tag 2 (_32) with its key.
        let peer = MasterKey::generate(Suite::AesCm128HmacSha1_32).unwrap();
        let mut answer = media("");
        answer.attributes = vec![attribute(2, &peer)];
        let k = keys(&offer, &answer, true).unwrap();
        assert_eq!(k.suite(), Suite::AesCm128HmacSha1_32);
        assert_eq!(k.theirs, peer);
        assert_eq!(k.ours, ours.get(Suite::AesCm128HmacSha1_32).unwrap());
        // A tag we did not offer, or a suite that is not the tag's: no keys.
        answer.attributes = vec![attribute(7, &peer)];
        assert_eq!(keys(&offer, &answer, true), None);
        answer.attributes = vec![attribute(1, &peer)];
        assert_eq!(keys(&offer, &answer, true), None);
        // The same from the answerer's side.
        assert!(keys(&media(""), &offer, false).is_none());
        let mut mine = media("");
        mine.attributes = vec![attribute(3, &ours.get(Suite::AeadAes128Gcm).unwrap())];
        let mut theirs = media("");
        theirs.attributes = LocalKeys::default().offer().unwrap();
        assert_eq!(keys(&mine, &theirs, false).unwrap().suite(), Suite::AeadAes128Gcm);
    }

    #[test]
    fn keys_are_stable_per_dialog_and_fresh_per_dialog() {
        let mut a = LocalKeys::default();
        let first = a.offer().unwrap();
        assert_eq!(a.offer().unwrap(), first);
        assert_ne!(LocalKeys::default().offer().unwrap(), first);
    }
}
