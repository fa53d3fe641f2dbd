//! G.711 µ-law (PCMU) and A-law (PCMA), bit-exact with the ITU-T G.191
//! Software Tool Library `g711.c` (`ulaw_compress`/`ulaw_expand`,
//! `alaw_compress`/`alaw_expand`).
//!
//! The conversions work on 16-bit linear PCM:
//! * µ-law compresses the 14-bit value `x >> 2`; negative inputs use the one's
//!   complement `!x` (= `-x - 1`), so the magnitude of `x < 0` is
//!   `(-x - 1) >> 2`. Expansion gives the 14-bit mid-point of the step,
//!   re-scaled to 16 bits (×4): codes decode to
//!   `±((128 << e) + (8 << e)·m + (4 << e) - 132)`, from 0 to ±32124.
//! * A-law compresses the 13-bit value `x >> 3` (only its 12-bit magnitude,
//!   `x >> 4` or `!x >> 4`, reaches the quantizer); expansion gives the
//!   mid-point re-scaled to 16 bits: ±8 … ±32256.
//!
//! Both encoders truncate (pick the step whose interval contains the input);
//! they never round to the nearest reconstruction level by other means.
//! Note that G.191 encodes 0 as the positive-zero µ-law code `0xFF` and
//! -1…-4 as the negative-zero code `0x7F`, which decodes to 0, so
//! `ulaw_encode(ulaw_decode(0x7F)) == 0xFF`; every other code of both laws
//! survives `encode(decode(c))`.
//!
//! The widely copied Sun `g711.c` `linear2ulaw` (`BIAS` 0x84, `CLIP`,
//! negatives as `-(x >> 2)`) encodes 508 negative inputs one step further
//! from zero than G.191: see the tests.

use super::codec::{Codec, check_frame};
use super::plc::WaveformPlc;

/// Encodes one 16-bit sample to µ-law exactly as G.191 `ulaw_compress`.
pub fn ulaw_encode(s: i16) -> u8 {
    let x = i32::from(s);
    // One's complement for negatives; 14-bit magnitude biased by 33.
    let absno = (if x < 0 { (!x) >> 2 } else { x >> 2 } + 33).min(0x1FFF);
    // Segment number 1..=8: 1 + bit length of absno >> 6.
    let segno = 1 + (32 - ((absno >> 6) as u32).leading_zeros()) as i32;
    let high_nibble = 8 - segno;
    let low_nibble = 0x0F - ((absno >> segno) & 0x0F);
    let code = (high_nibble << 4) | low_nibble;
    let code = if x >= 0 { code | 0x80 } else { code };
    (code & 0xFF) as u8
}

/// Decodes one µ-law code exactly as G.191 `ulaw_expand` (16-bit scale).
pub fn ulaw_decode(c: u8) -> i16 {
    let sign: i32 = if c < 0x80 { -1 } else { 1 };
    let m = i32::from(!c);
    let exponent = (m >> 4) & 0x07;
    let segment = exponent + 1;
    let mantissa = m & 0x0F;
    let step = 4 << segment;
    let v = sign * ((0x80 << exponent) + step * mantissa + step / 2 - 4 * 33);
    // |v| <= 32124.
    v as i16
}

/// Encodes one 16-bit sample to A-law exactly as G.191 `alaw_compress`.
pub fn alaw_encode(s: i16) -> u8 {
    let x = i32::from(s);
    // 0 <= ix < 2048: one's complement for negatives.
    let mut ix = if x < 0 { (!x) >> 4 } else { x >> 4 };
    if ix > 15 {
        let mut iexp = 1;
        while ix > 16 + 15 {
            ix >>= 1;
            iexp += 1;
        }
        ix -= 16; // remove the leading '1'
        ix += iexp << 4;
    }
    if x >= 0 {
        ix |= 0x80;
    }
    ((ix ^ 0x55) & 0xFF) as u8
}

/// Decodes one A-law code exactly as G.191 `alaw_expand` (16-bit scale).
pub fn alaw_decode(c: u8) -> i16 {
    let ix = i32::from((c ^ 0x55) & 0x7F);
    let iexp = ix >> 4;
    let mut mant = ix & 0x0F;
    if iexp > 0 {
        mant += 16;
    }
    mant = (mant << 4) + 8;
    if iexp > 1 {
        mant <<= iexp - 1;
    }
    // |mant| <= 32256.
    (if c > 127 { mant } else { -mant }) as i16
}

/// Shared state of the two G.711 codecs: the decoder's concealment (G.711 Appendix I style
/// waveform substitution, which delays what is played by 3.75 ms).
#[derive(Debug, Clone)]
struct G711State {
    plc: WaveformPlc,
}

impl Default for G711State {
    fn default() -> Self {
        Self {
            plc: WaveformPlc::new(8000),
        }
    }
}

impl G711State {
    fn encode(&self, name: &str, pcm: &[i16], out: &mut Vec<u8>, f: fn(i16) -> u8) -> Result<(), String> {
        check_frame(name, pcm, 160)?;
        out.extend(pcm.iter().map(|&s| f(s)));
        Ok(())
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>, f: fn(u8) -> i16) {
        let start = out.len();
        out.extend(payload.iter().map(|&c| f(c)));
        self.plc.good(&mut out[start..]);
    }
}

/// G.711 µ-law, RTP payload type 0, `PCMU/8000`.
#[derive(Debug, Clone, Default)]
pub struct Pcmu {
    state: G711State,
}

impl Pcmu {
    /// A new PCMU codec.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Codec for Pcmu {
    fn name(&self) -> &'static str {
        "PCMU"
    }
    fn clock_rate(&self) -> u32 {
        8000
    }
    fn sample_rate(&self) -> u32 {
        8000
    }
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), String> {
        self.state.encode("PCMU", pcm, out, ulaw_encode)
    }
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), String> {
        self.state.decode(payload, out, ulaw_decode);
        Ok(())
    }
    fn conceal(&mut self, out: &mut Vec<i16>) {
        self.state.plc.conceal(160, out);
    }
}

/// G.711 A-law, RTP payload type 8, `PCMA/8000`.
#[derive(Debug, Clone, Default)]
pub struct Pcma {
    state: G711State,
}

impl Pcma {
    /// A new PCMA codec.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Codec for Pcma {
    fn name(&self) -> &'static str {
        "PCMA"
    }
    fn clock_rate(&self) -> u32 {
        8000
    }
    fn sample_rate(&self) -> u32 {
        8000
    }
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), String> {
        self.state.encode("PCMA", pcm, out, alaw_encode)
    }
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), String> {
        self.state.decode(payload, out, alaw_decode);
        Ok(())
    }
    fn conceal(&mut self, out: &mut Vec<i16>) {
        self.state.plc.conceal(160, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_inputs() -> impl Iterator<Item = i16> {
        i16::MIN..=i16::MAX
    }

    /// Decision interval `[lo, lo + step)` of the magnitude part (low 7 bits,
    /// un-inverted) of a code, on the 16-bit scale, from the segment/step
    /// arithmetic of G.711 Tables 1 and 2 (independent of the encoders).
    fn ulaw_interval(mag_code: u8) -> (i32, i32) {
        // µ-law codes are transmitted inverted: magnitude index 0 = code 0x7F.
        let idx = i32::from(0x7F - mag_code);
        let (e, m) = (idx >> 4, idx & 0x0F);
        let step = 8 << e;
        ((128 << e) + step * m - 132, step)
    }
    fn alaw_interval(mag_code: u8) -> (i32, i32) {
        let idx = i32::from((mag_code ^ 0x55) & 0x7F);
        let (e, m) = (idx >> 4, idx & 0x0F);
        if e == 0 {
            (m << 4, 16)
        } else {
            ((m + 16) << (e + 3), 16 << (e - 1))
        }
    }

    /// The code G.191 must give for `x`: find the magnitude interval that
    /// contains `x` (or, for negatives, its one's complement `-x - 1`),
    /// clamping overload to the outermost step.
    fn expected(x: i16, interval: fn(u8) -> (i32, i32), sign_bit_set_positive: u8) -> u8 {
        let x = i32::from(x);
        let mag = if x < 0 { -x - 1 } else { x };
        let mut found = None;
        let mut top = (i32::MIN, 0u8);
        for c in 0u8..=0x7F {
            let (lo, step) = interval(c);
            if lo.max(0) <= mag && mag < lo + step {
                assert!(found.is_none(), "intervals overlap at {x}");
                found = Some(c);
            }
            if lo > top.0 {
                top = (lo, c);
            }
        }
        let c = found.unwrap_or(top.1);
        if x >= 0 { c | sign_bit_set_positive } else { c }
    }

    #[test]
    fn table_values() {
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0x7E), -8);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn decoded_values_follow_the_g711_tables() {
        for c in 0u8..=255 {
            let (lo, step) = ulaw_interval(c & 0x7F);
            let mid = (lo + step / 2).max(0);
            let want = if c & 0x80 != 0 { mid } else { -mid };
            assert_eq!(i32::from(ulaw_decode(c)), want, "ulaw {c:#04x}");
            let (lo, step) = alaw_interval(c & 0x7F);
            let mid = lo + step / 2;
            let want = if c & 0x80 != 0 { mid } else { -mid };
            assert_eq!(i32::from(alaw_decode(c)), want, "alaw {c:#04x}");
        }
    }

    #[test]
    fn encode_decode_round_trips_every_code() {
        for c in 0u8..=255 {
            let want = if c == 0x7F { 0xFF } else { c };
            assert_eq!(ulaw_encode(ulaw_decode(c)), want, "ulaw {c:#04x}");
            assert_eq!(alaw_encode(alaw_decode(c)), c, "alaw {c:#04x}");
        }
        // Distinct decoded values: 255 for µ-law (two zeros), 256 for A-law.
        let mut u: Vec<i16> = (0u8..=255).map(ulaw_decode).collect();
        u.sort_unstable();
        u.dedup();
        assert_eq!(u.len(), 255);
        let mut a: Vec<i16> = (0u8..=255).map(alaw_decode).collect();
        a.sort_unstable();
        a.dedup();
        assert_eq!(a.len(), 256);
    }

    #[test]
    fn encode_is_monotonic_over_all_inputs() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for x in all_inputs() {
            let u = ulaw_decode(ulaw_encode(x));
            let a = alaw_decode(alaw_encode(x));
            assert!(u >= prev_u, "ulaw at {x}");
            assert!(a >= prev_a, "alaw at {x}");
            prev_u = u;
            prev_a = a;
        }
    }

    #[test]
    fn encode_truncates_into_the_containing_step_for_all_inputs() {
        for x in all_inputs() {
            assert_eq!(ulaw_encode(x), expected(x, ulaw_interval, 0x80), "ulaw {x}");
            assert_eq!(alaw_encode(x), expected(x, alaw_interval, 0x80), "alaw {x}");
            // And the reconstruction is within half a step of the input
            // (measured on the one's complement for negatives), except in
            // µ-law overload above 32636.
            let xi = i32::from(x);
            let mag = if xi < 0 { -xi - 1 } else { xi };
            let c = ulaw_encode(x);
            let (lo, step) = ulaw_interval(c & 0x7F);
            let rec = (lo + step / 2).max(0);
            if mag < 32636 {
                assert!((mag - rec).abs() <= step / 2, "ulaw {x}");
            }
            let c = alaw_encode(x);
            let (lo, step) = alaw_interval(c & 0x7F);
            assert!((mag - (lo + step / 2)).abs() <= step / 2, "alaw {x}");
        }
    }

    /// The Sun Microsystems `linear2ulaw` found in many code bases
    /// (pjsip, Asterisk forks, …): 14-bit value `x >> 2`, negatives as
    /// `-(x >> 2)` (two's complement negation of a floored value),
    /// `CLIP` 8159, `BIAS` 0x84 (`>> 2`), segment search on `seg_uend`.
    fn sun_linear2ulaw(pcm: i16) -> u8 {
        const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
        let mut v = i32::from(pcm) >> 2;
        let mask = if v < 0 {
            v = -v;
            0x7F
        } else {
            0xFF
        };
        v = v.min(8159) + (0x84 >> 2);
        let seg = SEG_UEND.iter().position(|&e| v <= e).unwrap_or(8) as i32;
        if seg >= 8 {
            return (0x7F ^ mask) as u8;
        }
        (((seg << 4) | ((v >> (seg + 1)) & 0x0F)) ^ mask) as u8
    }

    /// Sun's magnitude for `x < 0` is `ceil(-x / 4)`, G.191's is
    /// `floor((-x - 1) / 4)`: always exactly one more. The codes differ when
    /// that extra unit crosses one of the 127 decision levels between the 128
    /// negative codes, i.e. for the four inputs `x` in `[-4b, -4b + 3]` for
    /// each 14-bit decision level `b = (32 << e) + (2 << e)·m - 33`,
    /// `(e, m) != (0, 0)` — from `-4..=-1` (Sun: 0x7E = -8, G.191: 0x7F = 0)
    /// to `-31612..=-31609` — where Sun picks the code one step further from
    /// zero. 127 × 4 = 508 inputs; positive inputs agree everywhere.
    #[test]
    fn sun_rule_differs_on_508_negative_inputs() {
        let diffs: Vec<i16> = all_inputs()
            .filter(|&x| sun_linear2ulaw(x) != ulaw_encode(x))
            .collect();
        assert_eq!(diffs.len(), 508);
        let mut predicted = Vec::new();
        for idx in 1..128 {
            let (e, m) = (idx >> 4, idx & 0x0F);
            let b = (32 << e) + (2 << e) * m - 33;
            for k in 0..4 {
                predicted.push((-4 * b + k) as i16);
            }
        }
        predicted.sort_unstable();
        assert_eq!(diffs, predicted);
        for &x in &diffs {
            assert!(x < 0);
            // Sun's code is the next one away from zero.
            assert_eq!(i32::from(sun_linear2ulaw(x)), i32::from(ulaw_encode(x)) - 1);
        }
    }

    #[test]
    fn codecs_encode_decode_and_conceal() {
        let pcm: Vec<i16> = (0..160).map(|i| ((i as i16) - 80) * 300).collect();
        let mut u = Pcmu::new();
        let mut a = Pcma::new();
        for c in [&mut u as &mut dyn Codec, &mut a] {
            let mut payload = Vec::new();
            assert!(c.encode(&pcm, &mut payload).is_ok());
            assert_eq!(payload.len(), 160);
            let mut out = vec![7]; // decode appends
            assert!(c.decode(&payload, &mut out).is_ok());
            assert_eq!(out.len(), 161);
            // Played 3.75 ms (30 samples) late: the concealment holds them back.
            assert!(out[1..31].iter().all(|&s| s == 0));
            for (d, s) in out[31..].iter().zip(&pcm) {
                assert!((i32::from(*d) - i32::from(*s)).abs() <= 1024);
            }
            // Concealment: 30 ms of fading substitute, then silence.
            let mut plc = Vec::new();
            for _ in 0..5 {
                c.conceal(&mut plc);
            }
            assert_eq!(plc.len(), 160 * 5);
            assert!(plc[..160].iter().any(|&s| s != 0));
            assert!(plc[480..].iter().all(|&s| s == 0));
            assert!(c.decode(&[], &mut out).is_ok());
            assert!(c.encode(&pcm[..159], &mut payload).is_err());
        }
    }
}
