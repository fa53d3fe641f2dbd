//! The [`Codec`] trait shared by all audio codecs and the SDP-name factory [`by_name`]. Codecs
//! without a concealment of their own (G.711, G.722) use [`super::plc::WaveformPlc`].

use super::g711::{Pcma, Pcmu};
use super::g722::G722;
use super::opus_codec::Opus;

/// One audio codec instance (an encoder and a decoder state).
pub trait Codec: Send {
    /// SDP encoding name as in rtpmap: "PCMU", "PCMA", "G722", "opus".
    fn name(&self) -> &'static str;
    /// RTP clock rate as written in SDP (8000 for G.722, 48000 for opus).
    fn clock_rate(&self) -> u32;
    /// PCM sample rate the codec takes and gives (8000, 16000 for G.722, 48000 for opus).
    fn sample_rate(&self) -> u32;
    /// Samples (mono) in one 20 ms frame at `sample_rate`.
    fn frame_samples(&self) -> usize {
        (self.sample_rate() / 50) as usize
    }
    /// RTP timestamp increment of one 20 ms frame (at `clock_rate`).
    fn frame_ticks(&self) -> u32 {
        self.clock_rate() / 50
    }
    /// The encoder's look-ahead (ms): delay it adds beyond the frame itself (the E-model's
    /// one-way delay counts it). 0 for G.711 and G.722 here.
    fn lookahead_ms(&self) -> f64 {
        0.0
    }
    /// Encodes one frame of mono PCM (exactly frame_samples()) and appends the payload to `out`.
    ///
    /// Every implementation here returns `Err` (and appends nothing) when
    /// `pcm.len() != self.frame_samples()`.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), String>;
    /// Decodes one payload, appending mono PCM to `out`.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), String>;
    /// Appends one frame of concealment audio for a lost packet (opus: its PLC; G.711/G.722: pitch-based waveform substitution, silent after 30 ms).
    fn conceal(&mut self, out: &mut Vec<i16>);
    /// Rebuilds the frame before `next` from `next`'s in-band FEC, appending it to `out`;
    /// false (nothing appended) when the codec or the packet carries none.
    fn recover(&mut self, _next: &[u8], _out: &mut Vec<i16>) -> bool {
        false
    }
    /// Whether `payload` carries in-band FEC for the frame before it (only Opus has any).
    fn carries_fec(&self, _payload: &[u8]) -> bool {
        false
    }
    /// The far end's `a=fmtp` parameters for the codec (what it wants to receive); codecs
    /// without parameters ignore them.
    fn apply_fmtp(&mut self, _fmtp: &str) {}
    /// The far end reports this share of our packets lost (RTCP): codecs with in-band
    /// redundancy spend more on it.
    fn loss_hint(&mut self, _percent: f64) {}
}

/// A codec by SDP name (case-insensitive) and clock rate: PCMU/8000, PCMA/8000, G722/8000, opus/48000 (channels from SDP ignored: we send mono; opus decodes to mono).
pub fn by_name(name: &str, clock_rate: u32) -> Option<Box<dyn Codec>> {
    match (name.to_ascii_lowercase().as_str(), clock_rate) {
        ("pcmu", 8000) => Some(Box::new(Pcmu::new())),
        ("pcma", 8000) => Some(Box::new(Pcma::new())),
        ("g722", 8000) => Some(Box::new(G722::new())),
        ("opus", 48000) => Opus::new().ok().map(|c| Box::new(c) as Box<dyn Codec>),
        _ => None,
    }
}

/// Returns `Err` unless `pcm` holds exactly `expected` samples.
pub(crate) fn check_frame(codec: &str, pcm: &[i16], expected: usize) -> Result<(), String> {
    if pcm.len() == expected {
        Ok(())
    } else {
        Err(format!(
            "{codec}: encode takes exactly {expected} samples (20 ms), got {}",
            pcm.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f64, amp: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin()) as i16)
            .collect()
    }

    #[test]
    fn by_name_knows_the_four_codecs() {
        let cases = [
            ("PCMU", 8000, 8000, 8000, 160, 160),
            ("pcma", 8000, 8000, 8000, 160, 160),
            ("G722", 8000, 8000, 16000, 320, 160),
            ("OPUS", 48000, 48000, 48000, 960, 960),
        ];
        for (name, clock, want_clock, want_rate, samples, ticks) in cases {
            let c = by_name(name, clock);
            assert!(c.is_some(), "{name}");
            if let Some(c) = c {
                assert!(c.name().eq_ignore_ascii_case(name));
                assert_eq!(c.clock_rate(), want_clock);
                assert_eq!(c.sample_rate(), want_rate);
                assert_eq!(c.frame_samples(), samples);
                assert_eq!(c.frame_ticks(), ticks);
            }
        }
        assert_eq!(by_name("PCMU", 8000).map(|c| c.name()), Some("PCMU"));
        assert_eq!(by_name("opus", 48000).map(|c| c.name()), Some("opus"));
    }

    #[test]
    fn by_name_rejects_unknown_or_wrong_rate() {
        assert!(by_name("PCMU", 16000).is_none());
        assert!(by_name("G722", 16000).is_none());
        assert!(by_name("opus", 16000).is_none());
        assert!(by_name("G729", 8000).is_none());
        assert!(by_name("", 8000).is_none());
    }

    #[test]
    fn every_codec_round_trips_a_frame_and_conceals() {
        for (name, clock) in [("PCMU", 8000), ("PCMA", 8000), ("G722", 8000), ("opus", 48000)] {
            let Some(mut c) = by_name(name, clock) else {
                panic!("{name} missing");
            };
            let n = c.frame_samples();
            let pcm = sine(c.sample_rate(), 440.0, 8000.0, n);
            let mut payload = Vec::new();
            assert!(c.encode(&pcm, &mut payload).is_ok(), "{name}");
            assert!(!payload.is_empty());
            let mut out = Vec::new();
            assert!(c.decode(&payload, &mut out).is_ok(), "{name}");
            assert_eq!(out.len(), n, "{name}");
            let mut plc = Vec::new();
            c.conceal(&mut plc);
            assert_eq!(plc.len(), n, "{name}");
            // Wrong frame sizes are errors, not panics.
            let mut p = Vec::new();
            assert!(c.encode(&pcm[..n - 1], &mut p).is_err(), "{name}");
            assert!(c.encode(&[], &mut p).is_err(), "{name}");
            assert!(p.is_empty());
        }
    }
}
