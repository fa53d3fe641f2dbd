//! Opus (RFC 6716 / RFC 7587) through the `opus` crate: mono, 48 kHz,
//! `Application::Voip`, 20 ms frames. Packet loss is concealed with the
//! decoder's own PLC.
//!
//! SDP always says `opus/48000/2`; we send mono and decode to mono whatever
//! the peer sends (libopus down-mixes stereo packets).

use super::codec::{Codec, check_frame};
use opus::{Application, Channels, Decoder, Encoder};

/// Largest opus packet (RFC 6716 §3.4).
const MAX_PACKET: usize = 1275;
/// Longest opus packet duration: 120 ms at 48 kHz.
const MAX_SAMPLES: usize = 5760;
/// 20 ms at 48 kHz.
const FRAME: usize = 960;

/// An opus encoder/decoder pair (`opus/48000/2` in SDP).
pub struct Opus {
    enc: Encoder,
    dec: Decoder,
    /// Samples in the last decoded packet: the length of a PLC frame.
    last_samples: usize,
    /// The far end asked for in-band FEC (`useinbandfec=1`).
    fec: bool,
    buf: Vec<i16>,
}

impl Opus {
    /// Creates the codec; fails only if libopus refuses the configuration.
    pub fn new() -> Result<Self, String> {
        let enc = Encoder::new(48000, Channels::Mono, Application::Voip)
            .map_err(|e| format!("opus encoder: {e}"))?;
        let dec = Decoder::new(48000, Channels::Mono).map_err(|e| format!("opus decoder: {e}"))?;
        Ok(Self {
            enc,
            dec,
            last_samples: FRAME,
            fec: false,
            buf: vec![0; MAX_SAMPLES],
        })
    }

    /// Sets the encoder's target bitrate in bit/s (libopus default is "auto").
    pub fn set_bitrate(&mut self, bits_per_second: i32) -> Result<(), String> {
        self.enc
            .set_bitrate(opus::Bitrate::Bits(bits_per_second))
            .map_err(|e| format!("opus bitrate: {e}"))
    }

    /// Enables in-band FEC and tells the encoder the expected loss percentage.
    pub fn set_inband_fec(&mut self, enabled: bool, loss_percent: i32) -> Result<(), String> {
        self.enc
            .set_inband_fec(enabled)
            .and_then(|()| self.enc.set_packet_loss_perc(loss_percent))
            .map_err(|e| format!("opus fec: {e}"))
    }
}

/// Whether `packet` carries in-band FEC (LBRR) data for the frame before it.
pub fn has_fec(packet: &[u8]) -> bool {
    // libopus reads the TOC byte before it looks at the length: never call it on nothing.
    if packet.is_empty() {
        return false;
    }
    let Ok(len) = i32::try_from(packet.len()) else {
        return false;
    };
    // SAFETY: `packet` is not empty (the TOC byte is read unchecked) and libopus's parser
    // reads at most `len` bytes of it; the slice outlives the call. It returns 1, 0, or a
    // negative error code for a malformed packet.
    unsafe { opusic_sys::opus_packet_has_lbrr(packet.as_ptr(), len) == 1 }
}

impl Codec for Opus {
    fn name(&self) -> &'static str {
        "opus"
    }
    fn clock_rate(&self) -> u32 {
        48000
    }
    fn sample_rate(&self) -> u32 {
        48000
    }
    fn lookahead_ms(&self) -> f64 {
        // libopus's look-ahead at 48 kHz: 2.5 ms plus 4 ms of delay compensation.
        6.5
    }
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), String> {
        check_frame("opus", pcm, FRAME)?;
        let mut packet = [0u8; MAX_PACKET];
        let n = self
            .enc
            .encode(pcm, &mut packet)
            .map_err(|e| format!("opus encode: {e}"))?;
        out.extend_from_slice(packet.get(..n).ok_or("opus encode: bad length")?);
        Ok(())
    }
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), String> {
        if payload.is_empty() {
            return Err("opus decode: empty payload".into());
        }
        let n = self
            .dec
            .decode(payload, &mut self.buf, false)
            .map_err(|e| format!("opus decode: {e}"))?;
        let pcm = self.buf.get(..n).ok_or("opus decode: bad length")?;
        out.extend_from_slice(pcm);
        if n > 0 {
            self.last_samples = n;
        }
        Ok(())
    }
    fn recover(&mut self, next: &[u8], out: &mut Vec<i16>) -> bool {
        // The lost frame is as long as the last one decoded; libopus rebuilds it from the
        // LBRR data of `next` (or conceals, returning the same length, when there is none).
        if next.is_empty() || !has_fec(next) {
            return false;
        }
        let n = self.last_samples.clamp(1, MAX_SAMPLES);
        let Some(buf) = self.buf.get_mut(..n) else {
            return false;
        };
        match self.dec.decode(next, buf, true) {
            Ok(k) if k > 0 => {
                out.extend_from_slice(self.buf.get(..k).unwrap_or_default());
                true
            }
            _ => false,
        }
    }
    fn carries_fec(&self, payload: &[u8]) -> bool {
        has_fec(payload)
    }
    fn apply_fmtp(&mut self, fmtp: &str) {
        // RFC 7587 §6.1: `useinbandfec=1` says the receiver decodes in-band FEC, so the
        // sender should send it. libopus adds it only for a non-zero expected loss: 1 % until
        // RTCP says more.
        let wants = fmtp.split(';').any(|p| {
            p.split_once('=')
                .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("useinbandfec") && v.trim() == "1")
        });
        if wants && !self.fec {
            self.fec = self.set_inband_fec(true, 1).is_ok();
        }
    }
    fn loss_hint(&mut self, percent: f64) {
        if self.fec && percent.is_finite() {
            let p = percent.round().clamp(1.0, 50.0) as i32;
            let _ = self.enc.set_packet_loss_perc(p);
        }
    }
    fn conceal(&mut self, out: &mut Vec<i16>) {
        let n = self.last_samples.clamp(1, MAX_SAMPLES);
        let decoded = match self.buf.get_mut(..n) {
            Some(buf) => self.dec.decode(&[], buf, false).ok(),
            None => None,
        };
        match decoded.and_then(|k| self.buf.get(..k)) {
            Some(pcm) if !pcm.is_empty() => out.extend_from_slice(pcm),
            _ => out.resize(out.len() + n, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::goertzel::{power, tone_snr_db};
    use super::*;

    fn sine(freq: f64, amp: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 48000.0).sin()) as i16)
            .collect()
    }

    fn db(x: f64) -> f64 {
        10.0 * x.max(1e-30).log10()
    }

    fn codec() -> Opus {
        match Opus::new() {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn sine_440_survives() {
        let mut c = codec();
        let pcm = sine(440.0, 10000.0, 48000);
        let mut out = Vec::new();
        for frame in pcm.chunks_exact(FRAME) {
            let mut payload = Vec::new();
            assert!(c.encode(frame, &mut payload).is_ok());
            assert!(!payload.is_empty() && payload.len() <= MAX_PACKET);
            assert!(c.decode(&payload, &mut out).is_ok());
        }
        assert_eq!(out.len(), pcm.len());
        let tail = &out[9600..];
        let p = power(tail, 48000, 440.0);
        for f in [300.0, 1000.0, 2500.0, 3400.0] {
            assert!(db(p) - db(power(tail, 48000, f)) >= 20.0, "440 vs {f}");
        }
        let gain = db(p) - db(power(&pcm[9600..], 48000, 440.0));
        assert!(gain.abs() <= 3.0, "gain {gain} dB");
        assert!(tone_snr_db(tail, 48000, 440.0) > 15.0);
    }

    #[test]
    fn plc_continues_the_tone() {
        let mut c = codec();
        let pcm = sine(440.0, 10000.0, 48000);
        let mut out = Vec::new();
        for frame in pcm.chunks_exact(FRAME).take(25) {
            let mut payload = Vec::new();
            assert!(c.encode(frame, &mut payload).is_ok());
            assert!(c.decode(&payload, &mut out).is_ok());
        }
        let mut plc = Vec::new();
        c.conceal(&mut plc);
        assert_eq!(plc.len(), FRAME);
        assert!(tone_snr_db(&plc, 48000, 440.0) > 5.0);
        // Repeated losses keep giving frames (fading out).
        for _ in 0..10 {
            c.conceal(&mut plc);
        }
        assert_eq!(plc.len(), 11 * FRAME);
    }

    /// A voiced, speech-like test signal: a 140 Hz buzz with formant-ish harmonics, its
    /// loudness moving like syllables.
    fn voiced(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / 48000.0;
                let env = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
                let v: f64 = [1.0, 0.6, 0.5, 0.3, 0.2]
                    .iter()
                    .enumerate()
                    .map(|(k, a)| a * (2.0 * std::f64::consts::PI * 140.0 * (k + 1) as f64 * t).sin())
                    .sum();
                (6000.0 * env * v) as i16
            })
            .collect()
    }

    fn packets(c: &mut Opus, pcm: &[i16]) -> Vec<Vec<u8>> {
        pcm.chunks_exact(FRAME)
            .map(|f| {
                let mut p = Vec::new();
                assert!(c.encode(f, &mut p).is_ok());
                p
            })
            .collect()
    }

    #[test]
    fn fec_only_when_the_far_end_asks_and_it_rebuilds_a_lost_frame() {
        let pcm = voiced(48000);
        // Without `useinbandfec=1` there is no FEC to recover from.
        let mut plain = codec();
        plain.apply_fmtp("minptime=10");
        plain.loss_hint(10.0);
        let sent = packets(&mut plain, &pcm);
        assert!(sent.iter().all(|p| !has_fec(p)));
        let mut out = Vec::new();
        assert!(!plain.recover(&sent[10], &mut out));
        assert!(out.is_empty());
        // The far end asks for it and reports 10 % loss: LBRR in the packets.
        let mut fec = codec();
        fec.apply_fmtp("minptime=10; useinbandfec=1");
        fec.loss_hint(10.0);
        let sent = packets(&mut fec, &pcm);
        let with = sent.iter().filter(|p| has_fec(p)).count();
        assert!(
            with > sent.len() / 2,
            "{with} of {} packets carry FEC",
            sent.len()
        );
        // Packet 20 is lost: rebuilt from packet 21, it is the tone, not a fade.
        let mut rx = codec();
        let mut heard = Vec::new();
        for p in &sent[..20] {
            assert!(rx.decode(p, &mut heard).is_ok());
        }
        let mut rebuilt = Vec::new();
        assert!(rx.recover(&sent[21], &mut rebuilt));
        assert_eq!(rebuilt.len(), FRAME);
        // What packet 20 itself decodes to, by a decoder that got it.
        let mut whole = codec();
        let mut truth = Vec::new();
        for p in &sent[..=20] {
            assert!(whole.decode(p, &mut truth).is_ok());
        }
        let truth = &truth[20 * FRAME..];
        let dot: f64 = truth
            .iter()
            .zip(&rebuilt)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        let e = |x: &[i16]| x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
        let corr = dot / (e(truth) * e(&rebuilt)).sqrt();
        assert!(
            corr > 0.5,
            "FEC frame against the real one: correlation {corr:.2}"
        );
        // Garbage as the next packet: no FEC, no panic.
        assert!(!rx.recover(&[0xff; 3], &mut rebuilt));
        assert!(!rx.recover(&[], &mut rebuilt));
        assert!(!has_fec(&[]));
    }

    #[test]
    fn lookahead_is_libopus_own() {
        let mut c = codec();
        let samples = c.enc.get_lookahead().expect("OPUS_GET_LOOKAHEAD");
        assert_eq!(f64::from(samples) * 1000.0 / 48000.0, c.lookahead_ms());
    }

    #[test]
    fn conceal_before_any_packet_and_bad_input() {
        let mut c = codec();
        let mut out = Vec::new();
        c.conceal(&mut out);
        assert_eq!(out.len(), FRAME);
        assert!(c.decode(&[], &mut out).is_err());
        // Garbage must give Err or audio, never a panic.
        let mut x: u32 = 0xDEAD_BEEF;
        for len in [1usize, 2, 3, 10, 100, 400, 1275, 2000] {
            for _ in 0..50 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        (x >> 24) as u8
                    })
                    .collect();
                let _ = c.decode(&bytes, &mut out);
            }
        }
        let mut p = Vec::new();
        assert!(c.encode(&[0; 480], &mut p).is_err());
        assert!(c.set_bitrate(32000).is_ok());
        assert!(c.set_inband_fec(true, 10).is_ok());
        assert!(c.encode(&[0; FRAME], &mut p).is_ok());
    }
}
