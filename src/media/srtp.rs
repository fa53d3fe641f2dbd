//! SRTP for one call (RFC 3711): the SDES crypto suites we speak (RFC 4568's
//! `AES_CM_128_HMAC_SHA1_80` and `_32`, RFC 7714's `AEAD_AES_128_GCM`), master keys drawn from
//! the OS random generator and written as `inline:` key parameters, and the two directions of
//! a call's crypto: [`Outbound`] protects our RTP and RTCP, [`Inbound`] checks and decrypts the
//! peer's, with replay protection and the rollover counter kept per SSRC by webrtc-srtp
//! (docs/decisions.md D7). A packet that fails is reported as a [`Rejected`] reason so the
//! session can count it; it is never played.
//!
//! Keys never reach a log: their `Debug` says only the suite, and they are wiped when dropped.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use webrtc_srtp::Error as SrtpError;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;
use zeroize::Zeroize;

/// The replay window, in packets (libsrtp's default is 128 too).
const REPLAY_WINDOW: usize = 128;

/// The most SSRCs the peer may use at once: a flood of forged SSRCs cannot grow our state.
const MAX_STREAMS: usize = 4;

/// An SDES crypto suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AeadAes128Gcm,
}

impl Suite {
    /// Every suite we speak, in the order we offer them (the widely deployed one first).
    pub const ALL: [Suite; 3] = [
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
        Suite::AeadAes128Gcm,
    ];

    /// The SDP name (`a=crypto:<tag> <name> …`).
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    /// The suite of an SDP name (case-sensitive, as RFC 4568's grammar).
    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    fn key_len(self) -> usize {
        16
    }

    fn salt_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            Suite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A master key and salt for one suite.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    suite: Suite,
    /// Key, then salt.
    bytes: Vec<u8>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, ..)", self.suite)
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl MasterKey {
    /// A fresh key and salt from the operating system's random generator.
    pub fn generate(suite: Suite) -> Result<MasterKey, String> {
        use rand::TryRngCore as _;
        let mut bytes = vec![0u8; suite.key_len() + suite.salt_len()];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| format!("the OS random generator failed: {e}"))?;
        Ok(MasterKey { suite, bytes })
    }

    /// The suite this key is for.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Reads the key parameters of an `a=crypto` line (`inline:<key||salt>[|lifetime][|MKI:len]`,
    /// one of them). Lifetimes are accepted (ours are far shorter than any); an MKI is not
    /// supported, nor are several keys.
    pub fn from_key_params(suite: Suite, params: &str) -> Result<MasterKey, String> {
        if params.contains(';') {
            return Err("more than one key".into());
        }
        let rest = params
            .strip_prefix("inline:")
            .ok_or("the key method is not inline")?;
        let mut parts = rest.split('|');
        let b64 = parts.next().unwrap_or_default();
        for extra in parts {
            if extra.contains(':') {
                return Err("an MKI is not supported".into());
            }
            // A lifetime: a decimal number of packets or `2^n`.
            let ok = match extra.strip_prefix("2^") {
                Some(n) => n.parse::<u8>().is_ok(),
                None => !extra.is_empty() && extra.bytes().all(|b| b.is_ascii_digit()),
            };
            if !ok {
                return Err(format!("bad key lifetime {extra:?}"));
            }
        }
        let bytes = B64.decode(b64).map_err(|_| "the key is not base64".to_string())?;
        let want = suite.key_len() + suite.salt_len();
        if bytes.len() != want {
            return Err(format!(
                "the key is {} bytes, {} needs {want}",
                bytes.len(),
                suite.name()
            ));
        }
        Ok(MasterKey { suite, bytes })
    }

    /// The key parameter we send: `inline:<base64 key||salt>`.
    pub fn key_params(&self) -> String {
        format!("inline:{}", B64.encode(&self.bytes))
    }

    fn context(&self, replay: bool) -> Result<Context, String> {
        let (key, salt) = self.bytes.split_at(self.suite.key_len());
        let (rtp, rtcp) = if replay {
            (
                Some(srtp_replay_protection(REPLAY_WINDOW)),
                Some(srtcp_replay_protection(REPLAY_WINDOW)),
            )
        } else {
            (None, None)
        };
        Context::new(key, salt, self.suite.profile(), rtp, rtcp).map_err(|e| format!("SRTP: {e}"))
    }
}

/// The keys of one call: ours (what we send with) and the peer's (what it sends with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallKeys {
    pub ours: MasterKey,
    pub theirs: MasterKey,
}

impl CallKeys {
    pub fn suite(&self) -> Suite {
        self.ours.suite
    }
}

/// Why a received packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The authentication tag did not match (tampered, another key, or not SRTP at all).
    Auth,
    /// Seen before, or older than the replay window.
    Replay,
    /// Too short to be SRTP/SRTCP.
    Malformed,
}

/// Our direction: protects every RTP and RTCP packet we send.
pub struct Outbound {
    ctx: Context,
}

impl Outbound {
    pub fn new(key: &MasterKey) -> Result<Outbound, String> {
        Ok(Outbound {
            ctx: key.context(false)?,
        })
    }

    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, String> {
        self.ctx
            .encrypt_rtp(packet)
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }

    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, String> {
        self.ctx
            .encrypt_rtcp(packet)
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }
}

/// The peer's direction: one crypto context per SSRC (replay window and rollover counter),
/// created only for an SSRC whose first packet authenticates, at most [`MAX_STREAMS`] of them.
pub struct Inbound {
    key: MasterKey,
    streams: Vec<(u32, Context)>,
}

impl Inbound {
    pub fn new(key: &MasterKey) -> Result<Inbound, String> {
        // Fail now on a bad key rather than at the first packet.
        key.context(true)?;
        Ok(Inbound {
            key: key.clone(),
            streams: Vec::new(),
        })
    }

    /// The plain RTP packet, or why it was dropped.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, Rejected> {
        // Header (12) and the shortest tag (4, _32).
        if packet.len() < 16 || packet[0] >> 6 != 2 {
            return Err(Rejected::Malformed);
        }
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        self.with_stream(ssrc, |ctx| ctx.decrypt_rtp(packet))
    }

    /// The plain RTCP compound packet, or why it was dropped.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, Rejected> {
        // Header with sender SSRC (8), E+index (4), the shortest tag (4).
        if packet.len() < 16 || packet[0] >> 6 != 2 {
            return Err(Rejected::Malformed);
        }
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        self.with_stream(ssrc, |ctx| ctx.decrypt_rtcp(packet))
    }

    fn with_stream(
        &mut self,
        ssrc: u32,
        op: impl FnOnce(&mut Context) -> Result<bytes::Bytes, SrtpError>,
    ) -> Result<Vec<u8>, Rejected> {
        if let Some((_, ctx)) = self.streams.iter_mut().find(|(s, _)| *s == ssrc) {
            return op(ctx).map(|b| b.to_vec()).map_err(reason);
        }
        // A new SSRC: a context of its own, kept only when the packet authenticates.
        let mut ctx = self.key.context(true).map_err(|_| Rejected::Auth)?;
        let plain = op(&mut ctx).map_err(reason)?;
        if self.streams.len() == MAX_STREAMS {
            self.streams.remove(0);
        }
        self.streams.push((ssrc, ctx));
        Ok(plain.to_vec())
    }
}

fn reason(e: SrtpError) -> Rejected {
    match e {
        SrtpError::SrtpSsrcDuplicated(..) | SrtpError::SrtcpSsrcDuplicated(..) | SrtpError::ErrDuplicated => {
            Rejected::Replay
        }
        SrtpError::ErrTooShortRtp
        | SrtpError::ErrTooShortRtcp
        | SrtpError::SrtpTooSmall(..)
        | SrtpError::SrtcpTooSmall(..) => Rejected::Malformed,
        _ => Rejected::Auth,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn pair(suite: Suite) -> (Outbound, Inbound) {
        let key = MasterKey::generate(suite).unwrap();
        (Outbound::new(&key).unwrap(), Inbound::new(&key).unwrap())
    }

    #[test]
    fn every_suite_round_trips_rtp_and_rtcp_and_hides_the_payload() {
        for suite in Suite::ALL {
            let (mut tx, mut rx) = pair(suite);
            let plain = rtp(7, 1, &[0x55; 160]);
            let sealed = tx.protect_rtp(&plain).unwrap();
            let tag = match suite {
                Suite::AesCm128HmacSha1_80 => 10,
                Suite::AesCm128HmacSha1_32 => 4,
                Suite::AeadAes128Gcm => 16,
            };
            assert_eq!(sealed.len(), plain.len() + tag, "{suite}");
            assert_eq!(sealed[..12], plain[..12], "{suite}: the header stays clear");
            assert!(
                !sealed.windows(16).any(|w| w == [0x55; 16]),
                "{suite}: payload in clear"
            );
            assert_eq!(rx.unprotect_rtp(&sealed).unwrap(), plain, "{suite}");
            // An RTCP receiver report from SSRC 7.
            let rr = [0x80, 201, 0, 1, 0, 0, 0, 7];
            let sealed = tx.protect_rtcp(&rr).unwrap();
            assert_eq!(rx.unprotect_rtcp(&sealed).unwrap(), rr, "{suite}");
        }
    }

    #[test]
    fn a_flipped_bit_and_a_replay_are_rejected_for_their_own_reason() {
        for suite in Suite::ALL {
            let (mut tx, mut rx) = pair(suite);
            let first = tx.protect_rtp(&rtp(9, 100, &[1; 160])).unwrap();
            let second = tx.protect_rtp(&rtp(9, 101, &[2; 160])).unwrap();
            // Tampered before the stream is known, and after.
            for at in [20, first.len() - 1, 3] {
                let mut bad = first.clone();
                bad[at] ^= 0x01;
                assert_eq!(rx.unprotect_rtp(&bad), Err(Rejected::Auth), "{suite} bit at {at}");
            }
            assert!(rx.unprotect_rtp(&first).is_ok());
            let mut bad = second.clone();
            bad[40] ^= 0x80;
            assert_eq!(rx.unprotect_rtp(&bad), Err(Rejected::Auth), "{suite}");
            assert!(
                rx.unprotect_rtp(&second).is_ok(),
                "{suite}: the genuine one still passes"
            );
            assert_eq!(rx.unprotect_rtp(&first), Err(Rejected::Replay), "{suite}");
            assert_eq!(rx.unprotect_rtp(&second), Err(Rejected::Replay), "{suite}");
            assert_eq!(rx.unprotect_rtp(&[0x80; 10]), Err(Rejected::Malformed));
            // SRTCP: replayed and tampered.
            let rr = tx.protect_rtcp(&[0x80, 201, 0, 1, 0, 0, 0, 9]).unwrap();
            assert!(rx.unprotect_rtcp(&rr).is_ok());
            assert_eq!(rx.unprotect_rtcp(&rr), Err(Rejected::Replay), "{suite}");
            let mut bad = tx.protect_rtcp(&[0x80, 201, 0, 1, 0, 0, 0, 9]).unwrap();
            bad[9] ^= 4;
            assert_eq!(rx.unprotect_rtcp(&bad), Err(Rejected::Auth), "{suite}");
        }
    }

    #[test]
    fn another_key_or_plain_rtp_never_authenticates() {
        let (mut tx, _) = pair(Suite::AesCm128HmacSha1_80);
        let (_, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let sealed = tx.protect_rtp(&rtp(1, 1, &[0; 160])).unwrap();
        assert_eq!(rx.unprotect_rtp(&sealed), Err(Rejected::Auth));
        assert_eq!(rx.unprotect_rtp(&rtp(1, 2, &[0; 160])), Err(Rejected::Auth));
    }

    #[test]
    fn the_rollover_counter_follows_a_sequence_wrap() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        for i in 0..200u32 {
            let seq = (65_500 + i) as u16;
            let sealed = tx.protect_rtp(&rtp(3, seq, &[i as u8; 160])).unwrap();
            let plain = rx.unprotect_rtp(&sealed).unwrap();
            assert_eq!(plain[12], i as u8, "packet {i} (seq {seq})");
        }
    }

    #[test]
    fn forged_ssrcs_cannot_grow_the_state() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        for ssrc in 0..1000 {
            let _ = rx.unprotect_rtp(&rtp(ssrc, 1, &[0; 160]));
        }
        assert!(rx.streams.is_empty());
        for ssrc in 0..10 {
            let sealed = tx.protect_rtp(&rtp(ssrc, 1, &[0; 160])).unwrap();
            assert!(rx.unprotect_rtp(&sealed).is_ok());
        }
        assert_eq!(rx.streams.len(), MAX_STREAMS);
    }

    #[test]
    fn key_params_are_read_strictly_and_never_shown() {
        let key = MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap();
        let params = key.key_params();
        assert_eq!(params.len(), "inline:".len() + 40);
        assert_eq!(
            MasterKey::from_key_params(Suite::AesCm128HmacSha1_80, &params).unwrap(),
            key
        );
        // RFC 4568's example, with a lifetime; with an MKI it is refused.
        let ex = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20";
        assert!(MasterKey::from_key_params(Suite::AesCm128HmacSha1_80, ex).is_ok());
        for bad in [
            "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
            "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|lots",
            "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0m",
            "inline:!!!!",
            "uri:https://keys.example/1",
            "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR;inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
        ] {
            assert!(
                MasterKey::from_key_params(Suite::AesCm128HmacSha1_80, bad).is_err(),
                "{bad}"
            );
        }
        // GCM: 16 + 12 bytes.
        let gcm = MasterKey::generate(Suite::AeadAes128Gcm).unwrap();
        assert!(MasterKey::from_key_params(Suite::AeadAes128Gcm, &gcm.key_params()).is_ok());
        assert!(MasterKey::from_key_params(Suite::AesCm128HmacSha1_80, &gcm.key_params()).is_err());
        let shown = format!(
            "{key:?} {:?}",
            CallKeys {
                ours: key.clone(),
                theirs: gcm
            }
        );
        assert!(!shown.contains(&params[7..17]), "{shown}");
        assert_eq!(
            Suite::from_name("AES_CM_128_HMAC_SHA1_32"),
            Some(Suite::AesCm128HmacSha1_32)
        );
        assert_eq!(Suite::from_name("aes_cm_128_hmac_sha1_32"), None);
    }
}
