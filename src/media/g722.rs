//! ITU-T G.722 wideband codec at 64 kbit/s (mode 1): sub-band ADPCM (SB-ADPCM).
//!
//! 16 kHz PCM is split by a 24-tap QMF into a lower and a higher sub-band at
//! 8 kHz each; the lower band is coded with 6-bit ADPCM and the higher band
//! with 2-bit ADPCM, giving one octet per pair of input samples (bits 7-6:
//! higher band, bits 5-0: lower band), as carried in RTP (`G722/8000`, whose
//! RTP clock is 8000 although the audio is sampled at 16 kHz, RFC 3551 §4.5.2).
//!
//! The structure follows the G.722 block diagram (blocks 1L…6L, 1H…6H and the
//! shared predictor update "block 4") in the arrangement of the public-domain
//! CMU / Steve Underwood (spandsp) implementation, restricted to 64 kbit/s,
//! unpacked octets, and 16 kHz in and out. All arithmetic is `i32` with
//! explicit 16-bit saturation where the standard saturates; no input can
//! overflow it or index out of bounds (every table index is masked).

use super::codec::{Codec, check_frame};
use super::plc::WaveformPlc;

const QMF_COEFFS: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];
/// Lower-band quantizer decision levels (×det >> 12), QUANTL.
const Q6: [i32; 32] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940, 1023, 1121,
    1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0, 0,
];
/// Lower-band 6-bit codes for negative / positive differences.
const ILN: [i32; 32] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8,
    7, 6, 5, 4, 0,
];
const ILP: [i32; 32] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37,
    36, 35, 34, 33, 32, 0,
];
/// Lower-band log-scale factor multipliers (LOGSCL).
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RL42: [i32; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
/// Inverse log table (SCALEL/SCALEH).
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834, 2896,
    2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// 4-bit inverse quantizer (INVQAL, used for prediction).
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584, 1200, 0,
];
/// 6-bit inverse quantizer (INVQBL, used for the decoder's output in mode 1).
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232, -9360,
    -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776, -2400, -2032, -1688,
    -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192, 10232, 9360, 8576, 7856,
    7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032, 1688, 1360, 1040, 728, 432, 136,
    -432, -136,
];
/// Higher band: 2-bit codes, inverse quantizer and log-scale factors.
const IHN: [i32; 3] = [0, 1, 0];
const IHP: [i32; 3] = [0, 3, 2];
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
const WH: [i32; 3] = [0, -214, 798];
const RH2: [i32; 4] = [2, 1, 2, 1];

fn sat16(x: i32) -> i32 {
    x.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
}

/// ADPCM state of one sub-band (pole-zero predictor and scale factor).
#[derive(Debug, Clone, Default)]
struct Band {
    /// Predicted signal.
    s: i32,
    sp: i32,
    sz: i32,
    r: [i32; 3],
    a: [i32; 3],
    ap: [i32; 3],
    p: [i32; 3],
    d: [i32; 7],
    b: [i32; 7],
    bp: [i32; 7],
    sg: [i32; 7],
    /// Log scale factor.
    nb: i32,
    /// Scale factor (step size).
    det: i32,
}

impl Band {
    fn new(det: i32) -> Self {
        Self {
            det,
            ..Self::default()
        }
    }

    /// Blocks 3L/3H: log-scale factor adaptation (LOGSCL/LOGSCH) and
    /// conversion to the linear scale factor (SCALEL/SCALEH).
    fn scale(&mut self, wl: i32, nb_max: i32, shift_base: i32) {
        let nb = ((self.nb * 127) >> 7) + wl;
        self.nb = nb.clamp(0, nb_max);
        let wd1 = (self.nb >> 6) & 31;
        let wd2 = shift_base - (self.nb >> 11);
        let wd3 = if wd2 < 0 {
            ILB[wd1 as usize] << (-wd2)
        } else {
            ILB[wd1 as usize] >> wd2
        };
        self.det = wd3 << 2;
    }

    /// Block 4: reconstruction, pole and zero predictor adaptation and prediction.
    fn block4(&mut self, d: i32) {
        // RECONS / PARREC
        self.d[0] = d;
        self.r[0] = sat16(self.s + d);
        self.p[0] = sat16(self.sz + d);

        // UPPOL2
        for i in 0..3 {
            self.sg[i] = self.p[i] >> 15;
        }
        let wd1 = sat16(self.a[1] << 2);
        let wd2 = if self.sg[0] == self.sg[1] { -wd1 } else { wd1 }.min(32767);
        let mut wd3 = (wd2 >> 7) + if self.sg[0] == self.sg[2] { 128 } else { -128 };
        wd3 += (self.a[2] * 32512) >> 15;
        self.ap[2] = wd3.clamp(-12288, 12288);

        // UPPOL1
        self.sg[0] = self.p[0] >> 15;
        self.sg[1] = self.p[1] >> 15;
        let wd1 = if self.sg[0] == self.sg[1] { 192 } else { -192 };
        let wd2 = (self.a[1] * 32640) >> 15;
        let lim = sat16(15360 - self.ap[2]);
        self.ap[1] = sat16(wd1 + wd2).clamp(-lim, lim);

        // UPZERO
        let wd1 = if d == 0 { 0 } else { 128 };
        self.sg[0] = d >> 15;
        for i in 1..7 {
            self.sg[i] = self.d[i] >> 15;
            let wd2 = if self.sg[i] == self.sg[0] { wd1 } else { -wd1 };
            let wd3 = (self.b[i] * 32640) >> 15;
            self.bp[i] = sat16(wd2 + wd3);
        }

        // DELAYZ / DELAYA
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
            self.b[i] = self.bp[i];
        }
        for i in (1..3).rev() {
            self.r[i] = self.r[i - 1];
            self.p[i] = self.p[i - 1];
            self.a[i] = self.ap[i];
        }

        // FILTEP
        let wd1 = (self.a[1] * sat16(self.r[1] + self.r[1])) >> 15;
        let wd2 = (self.a[2] * sat16(self.r[2] + self.r[2])) >> 15;
        self.sp = sat16(wd1 + wd2);

        // FILTEZ
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * sat16(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat16(sz);

        // PREDIC
        self.s = sat16(self.sp + self.sz);
    }
}

/// G.722 64 kbit/s encoder: 16 kHz PCM in, one octet per two samples out.
#[derive(Debug, Clone)]
pub struct G722Encoder {
    /// QMF history.
    x: [i32; 24],
    low: Band,
    high: Band,
    /// An odd trailing sample kept for the next call.
    pending: Option<i16>,
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    /// A new encoder in the reset state.
    pub fn new() -> Self {
        Self {
            x: [0; 24],
            low: Band::new(32),
            high: Band::new(8),
            pending: None,
        }
    }

    /// Encodes 16 kHz samples, appending one octet per pair. With an odd
    /// number of samples the last one is kept and paired with the first
    /// sample of the next call.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        let mut rest = pcm;
        if let Some(first) = self.pending.take() {
            match rest.split_first() {
                Some((&second, tail)) => {
                    out.push(self.encode_pair(first, second));
                    rest = tail;
                }
                None => {
                    self.pending = Some(first);
                    return;
                }
            }
        }
        let mut pairs = rest.chunks_exact(2);
        for pair in &mut pairs {
            out.push(self.encode_pair(pair[0], pair[1]));
        }
        if let [last] = pairs.remainder() {
            self.pending = Some(*last);
        }
    }

    fn encode_pair(&mut self, s0: i16, s1: i16) -> u8 {
        // Transmit QMF.
        self.x.copy_within(2.., 0);
        self.x[22] = i32::from(s0);
        self.x[23] = i32::from(s1);
        let mut sumodd = 0;
        let mut sumeven = 0;
        for i in 0..12 {
            sumodd += self.x[2 * i] * QMF_COEFFS[i];
            sumeven += self.x[2 * i + 1] * QMF_COEFFS[11 - i];
        }
        let xlow = (sumeven + sumodd) >> 14;
        let xhigh = (sumeven - sumodd) >> 14;

        // Block 1L: SUBTRA, QUANTL.
        let el = sat16(xlow - self.low.s);
        let wd = if el >= 0 { el } else { -(el + 1) };
        let mut i = 1;
        while i < 30 && wd >= (Q6[i] * self.low.det) >> 12 {
            i += 1;
        }
        let ilow = if el < 0 { ILN[i] } else { ILP[i] };

        // Block 2L: INVQAL.
        let ril = (ilow >> 2) as usize & 15;
        let dlow = (self.low.det * QM4[ril]) >> 15;

        // Blocks 3L, 4L.
        self.low.scale(WL[RL42[ril] as usize], 18432, 8);
        self.low.block4(dlow);

        // Block 1H: SUBTRA, QUANTH.
        let eh = sat16(xhigh - self.high.s);
        let wd = if eh >= 0 { eh } else { -(eh + 1) };
        let mih = if wd >= (564 * self.high.det) >> 12 { 2 } else { 1 };
        let ihigh = if eh < 0 { IHN[mih] } else { IHP[mih] };

        // Block 2H: INVQAH.
        let ih = ihigh as usize & 3;
        let dhigh = (self.high.det * QM2[ih]) >> 15;

        // Blocks 3H, 4H.
        self.high.scale(WH[RH2[ih] as usize], 22528, 10);
        self.high.block4(dhigh);

        (((ihigh << 6) | ilow) & 0xFF) as u8
    }
}

/// G.722 64 kbit/s decoder: one octet in, two 16 kHz samples out.
#[derive(Debug, Clone)]
pub struct G722Decoder {
    x: [i32; 24],
    low: Band,
    high: Band,
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    /// A new decoder in the reset state.
    pub fn new() -> Self {
        Self {
            x: [0; 24],
            low: Band::new(32),
            high: Band::new(8),
        }
    }

    /// Decodes octets, appending two 16 kHz samples per octet. Any byte
    /// sequence is valid input.
    pub fn decode(&mut self, data: &[u8], out: &mut Vec<i16>) {
        out.reserve(data.len() * 2);
        for &code in data {
            let (a, b) = self.decode_octet(code);
            out.push(a);
            out.push(b);
        }
    }

    fn decode_octet(&mut self, code: u8) -> (i16, i16) {
        let code = i32::from(code);
        let ilow = (code & 0x3F) as usize;
        let ihigh = ((code >> 6) & 0x03) as usize;
        let ril = ilow >> 2;

        // Block 5L: INVQBL, RECONS; block 6L: LIMIT.
        let wd2 = (self.low.det * QM6[ilow]) >> 15;
        let rlow = (self.low.s + wd2).clamp(-16384, 16383);

        // Block 2L: INVQAL; blocks 3L, 4L.
        let dlow = (self.low.det * QM4[ril]) >> 15;
        self.low.scale(WL[RL42[ril] as usize], 18432, 8);
        self.low.block4(dlow);

        // Block 2H: INVQAH; block 5H: RECONS; block 6H: LIMIT.
        let dhigh = (self.high.det * QM2[ihigh]) >> 15;
        let rhigh = (dhigh + self.high.s).clamp(-16384, 16383);

        // Blocks 3H, 4H.
        self.high.scale(WH[RH2[ihigh] as usize], 22528, 10);
        self.high.block4(dhigh);

        // Receive QMF.
        self.x.copy_within(2.., 0);
        self.x[22] = rlow + rhigh;
        self.x[23] = rlow - rhigh;
        let mut xout1 = 0;
        let mut xout2 = 0;
        for i in 0..12 {
            xout2 += self.x[2 * i] * QMF_COEFFS[i];
            xout1 += self.x[2 * i + 1] * QMF_COEFFS[11 - i];
        }
        (sat16(xout1 >> 11) as i16, sat16(xout2 >> 11) as i16)
    }
}

/// The G.722 codec (`G722/8000` in SDP, 16 kHz audio, RTP payload type 9).
/// Losses are concealed in the 16 kHz output by [`WaveformPlc`] (the decoder has no concealment
/// of its own; its ADPCM state simply continues from the last good packet).
#[derive(Debug, Clone)]
pub struct G722 {
    enc: G722Encoder,
    dec: G722Decoder,
    plc: WaveformPlc,
}

impl Default for G722 {
    fn default() -> Self {
        Self {
            enc: G722Encoder::default(),
            dec: G722Decoder::default(),
            plc: WaveformPlc::new(16000),
        }
    }
}

impl G722 {
    /// A new G.722 codec (64 kbit/s).
    pub fn new() -> Self {
        Self::default()
    }
}

impl Codec for G722 {
    fn name(&self) -> &'static str {
        "G722"
    }
    fn clock_rate(&self) -> u32 {
        8000
    }
    fn sample_rate(&self) -> u32 {
        16000
    }
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), String> {
        check_frame("G722", pcm, 320)?;
        self.enc.encode(pcm, out);
        Ok(())
    }
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), String> {
        let start = out.len();
        self.dec.decode(payload, out);
        self.plc.good(&mut out[start..]);
        Ok(())
    }
    fn conceal(&mut self, out: &mut Vec<i16>) {
        self.plc.conceal(320, out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::goertzel::power;
    use super::*;

    fn sine(freq: f64, amp: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 16000.0).sin()) as i16)
            .collect()
    }

    fn round_trip(pcm: &[i16]) -> Vec<i16> {
        let mut c = G722::new();
        let mut out = Vec::new();
        for frame in pcm.chunks_exact(320) {
            let mut payload = Vec::new();
            assert!(c.encode(frame, &mut payload).is_ok());
            assert_eq!(payload.len(), 160);
            assert!(c.decode(&payload, &mut out).is_ok());
        }
        out
    }

    fn db(x: f64) -> f64 {
        10.0 * x.max(1e-30).log10()
    }

    #[test]
    fn sine_1khz_keeps_frequency_and_amplitude() {
        for amp in [3000.0, 10000.0, 25000.0] {
            let pcm = sine(1000.0, amp, 16000);
            let out = round_trip(&pcm);
            assert_eq!(out.len(), pcm.len());
            // Skip the adaptation transient (100 ms).
            let tail = &out[1600..];
            let p1k = power(tail, 16000, 1000.0);
            for f in [300.0, 2500.0, 3400.0] {
                let pf = power(tail, 16000, f);
                assert!(db(p1k) - db(pf) >= 20.0, "amp {amp}: 1 kHz vs {f} Hz");
            }
            let gain = db(p1k) - db(power(&pcm[1600..], 16000, 1000.0));
            assert!(gain.abs() <= 3.0, "amp {amp}: gain {gain} dB");
        }
    }

    #[test]
    fn high_band_tone_survives() {
        // 6 kHz lies in the upper sub-band (2-bit ADPCM).
        let pcm = sine(6000.0, 8000.0, 16000);
        let out = round_trip(&pcm);
        let tail = &out[1600..];
        let p = power(tail, 16000, 6000.0);
        assert!(db(p) - db(power(tail, 16000, 1000.0)) >= 20.0);
        let gain = db(p) - db(power(&pcm[1600..], 16000, 6000.0));
        assert!(gain.abs() <= 3.0, "gain {gain} dB");
    }

    #[test]
    fn silence_stays_near_silence() {
        let out = round_trip(&[0; 16000]);
        assert!(out.iter().all(|&s| s.abs() <= 16), "max {:?}", out.iter().max());
        // After a loud burst it settles back to near silence.
        let mut pcm = sine(1000.0, 30000.0, 3200);
        pcm.extend(std::iter::repeat_n(0, 16000));
        let out = round_trip(&pcm);
        assert!(out[9600..].iter().all(|&s| s.abs() <= 16));
    }

    #[test]
    fn arbitrary_bytes_and_extreme_input_never_panic() {
        let mut dec = G722Decoder::new();
        let mut out = Vec::new();
        let mut x: u32 = 0x1234_5678;
        let bytes: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        dec.decode(&bytes, &mut out);
        assert_eq!(out.len(), 400_000);
        for b in 0..=255u8 {
            dec.decode(&[b; 1000], &mut out);
        }
        // Full-scale square waves and noise through the encoder.
        let mut enc = G722Encoder::new();
        let mut payload = Vec::new();
        let square: Vec<i16> = (0..32000)
            .map(|i| if (i / 3) % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        enc.encode(&square, &mut payload);
        let noise: Vec<i16> = bytes.iter().map(|&b| (i16::from(b) - 128) << 8).collect();
        enc.encode(&noise, &mut payload);
        dec.decode(&payload, &mut out);
    }

    #[test]
    fn odd_lengths_are_paired_across_calls() {
        let pcm = sine(1000.0, 8000.0, 640);
        let mut a = G722Encoder::new();
        let mut whole = Vec::new();
        a.encode(&pcm, &mut whole);
        let mut b = G722Encoder::new();
        let mut parts = Vec::new();
        b.encode(&pcm[..101], &mut parts);
        b.encode(&[], &mut parts);
        b.encode(&pcm[101..102], &mut parts);
        b.encode(&pcm[102..], &mut parts);
        assert_eq!(whole, parts);
        assert_eq!(whole.len(), 320);
    }

    #[test]
    fn conceal_continues_then_fades() {
        let mut c = G722::new();
        let pcm = sine(1000.0, 10000.0, 320);
        let mut payload = Vec::new();
        assert!(c.encode(&pcm, &mut payload).is_ok());
        let mut out = Vec::new();
        assert!(c.decode(&payload, &mut out).is_ok());
        let mut plc = Vec::new();
        for _ in 0..5 {
            c.conceal(&mut plc);
        }
        assert_eq!(plc.len(), 5 * 320);
        assert!(plc[..320].iter().any(|&s| s != 0));
        assert!(plc[3 * 320..].iter().all(|&s| s == 0));
    }
}
