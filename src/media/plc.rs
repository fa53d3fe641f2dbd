//! Packet-loss concealment by pitch-based waveform substitution, after the algorithm described
//! in ITU-T G.711 Appendix I (written from its description, not from the reference code), for
//! codecs without a concealment of their own: G.711 at 8 kHz and G.722 at 16 kHz (the same
//! algorithm on a time axis scaled by `rate / 8000`).
//!
//! * The output is delayed by 3.75 ms, so the last quarter pitch period before a loss is still
//!   held back and can be overlap-added into the substitute signal.
//! * A history of 48.75 ms is kept. At the first lost 10 ms the pitch period is estimated as the
//!   lag, between 5 and 15 ms (40-120 samples at 8 kHz), that maximizes the normalized
//!   cross-correlation of the last 20 ms with the signal one lag earlier.
//! * The gap is filled by looping the last pitch period (its end blended over a quarter period
//!   into what preceded it, so the loop has no seam); after 10 ms of loss the loop grows to the
//!   last two periods, after 20 ms to three (switches cross-faded over a quarter period), so a
//!   long gap does not buzz on one period.
//! * After the first 10 ms the substitute fades linearly by 50 % per 10 ms: silence after 30 ms
//!   (Appendix I: 20 %, silence after 60 ms; see `FADE_PER_UNIT` for why).
//! * The first good frame after a loss is cross-faded from the continued substitute over 2 ms
//!   per 10 ms lost (at most 10 ms; Appendix I: 4 ms per 10 ms).
//!
//! Any sample count per call works (the 10 ms steps are counted in samples); no input can panic.

/// 10 ms at 8 kHz: the algorithm's unit, scaled by the rate.
const UNIT_8K: usize = 80;
/// Pitch search range and correlation window at 8 kHz.
const PITCH_MIN_8K: usize = 40;
const PITCH_MAX_8K: usize = 120;
const CORR_LEN_8K: usize = 160;
/// Output delay and the longest quarter period: 3.75 ms.
const DELAY_8K: usize = PITCH_MAX_8K / 4;
/// History: three periods of the longest pitch and its quarter (48.75 ms).
const HIST_8K: usize = 3 * PITCH_MAX_8K + DELAY_8K;
/// Samples (at 8 kHz) of the end-of-loss cross-fade: 2 ms per 10 ms lost (Appendix I: 4 ms), at
/// most 10 ms.
const MERGE_STEP_8K: usize = 16;
const MERGE_MAX_8K: usize = 80;
/// Attenuation per 10 ms after the first 10 ms of a loss, and the 10 ms units after which
/// the output is silent. G.711 Appendix I fades by 20 % (silent at 60 ms); a faster fade and
/// a shorter merge scored better with PESQ on `ctiphone bench audio` (5 % loss: 3.03 → 3.14,
/// 10 %: 2.65 → 2.81, mean of three seeds, perfect buffer): a long loop of one pitch period
/// buzzes.
const FADE_PER_UNIT: f32 = 0.5;
const FADE_UNITS: usize = 3;

/// The concealment state of one decoder; see the module documentation.
#[derive(Debug, Clone)]
pub struct WaveformPlc {
    /// Rate / 8000 (1 for G.711, 2 for G.722 at 16 kHz).
    scale: usize,
    /// The signal up to now, newest last; its last `delay` samples are not yet played.
    hist: Vec<f32>,
    /// During a loss: the history when it began, the loop length and read position in it.
    lost: Option<Loss>,
}

#[derive(Debug, Clone)]
struct Loss {
    /// History when the loss began (the loop's source).
    src: Vec<f32>,
    pitch: usize,
    /// Periods in the loop now.
    periods: usize,
    /// Read position in `src` (within the loop: `src.len() - pitch * periods ..`).
    pos: usize,
    /// Substitute samples produced so far (the held-back tail included).
    produced: usize,
}

impl WaveformPlc {
    /// A concealer for PCM at `rate` Hz (8000 or 16000; other rates round to a multiple of 8 kHz).
    pub fn new(rate: u32) -> Self {
        let scale = usize::try_from(rate / 8000).unwrap_or(1).clamp(1, 6);
        Self {
            scale,
            hist: vec![0.0; HIST_8K * scale],
            lost: None,
        }
    }

    fn delay(&self) -> usize {
        DELAY_8K * self.scale
    }

    fn unit(&self) -> usize {
        UNIT_8K * self.scale
    }

    /// A good frame was decoded: `frame` is replaced in place by what to play (the same
    /// number of samples, delayed by 3.75 ms, cross-faded after a loss).
    pub fn good(&mut self, frame: &mut [i16]) {
        if frame.is_empty() {
            return;
        }
        let mut x: Vec<f32> = frame.iter().map(|&s| f32::from(s)).collect();
        if let Some(loss) = self.lost.take() {
            // The held-back tail was substitute already; continue it into the merge.
            let units = loss
                .produced
                .saturating_sub(self.delay())
                .div_ceil(self.unit())
                .max(1);
            let merge = (MERGE_STEP_8K * units).min(MERGE_MAX_8K) * self.scale;
            let merge = merge.min(x.len());
            let mut loss = loss;
            for (i, v) in x.iter_mut().take(merge).enumerate() {
                let s = self.next_substitute(&mut loss);
                let w = (i as f32 + 1.0) / (merge as f32 + 1.0);
                *v = s * (1.0 - w) + *v * w;
            }
        }
        self.push_and_play(&x, frame);
    }

    /// A frame of `n` samples was lost: appends `n` samples of substitute to `out`.
    pub fn conceal(&mut self, n: usize, out: &mut Vec<i16>) {
        if n == 0 {
            return;
        }
        let mut loss = match self.lost.take() {
            Some(l) => l,
            None => self.begin(),
        };
        let mut x = Vec::with_capacity(n);
        if loss.produced == 0 {
            // The held-back tail is re-made from the loop (it is unchanged but for the blend
            // of its last quarter period).
            let d = self.delay();
            self.hist.truncate(self.hist.len() - d);
            let mut tail = Vec::with_capacity(d);
            for _ in 0..d {
                tail.push(self.next_substitute(&mut loss));
            }
            self.hist.extend_from_slice(&tail);
        }
        for _ in 0..n {
            x.push(self.next_substitute(&mut loss));
        }
        self.lost = Some(loss);
        let start = out.len();
        out.resize(start + n, 0);
        self.push_and_play(&x, &mut out[start..]);
    }

    /// Appends `x` to the history and writes the `x.len()` samples due now to `play`.
    fn push_and_play(&mut self, x: &[f32], play: &mut [i16]) {
        self.hist.extend_from_slice(x);
        let len = self.hist.len();
        let n = x.len().min(play.len());
        let from = len - self.delay() - n;
        for (o, &v) in play.iter_mut().zip(&self.hist[from..from + n]) {
            *o = v.round().clamp(-32768.0, 32767.0) as i16;
        }
        let keep = HIST_8K * self.scale;
        if len > keep {
            self.hist.drain(..len - keep);
        }
    }

    /// Starts a loss: estimates the pitch and sets the loop on the last period.
    fn begin(&self) -> Loss {
        let src = self.hist.clone();
        let pitch = estimate_pitch(
            &src,
            PITCH_MIN_8K * self.scale,
            PITCH_MAX_8K * self.scale,
            CORR_LEN_8K * self.scale,
        );
        // Reading starts at the held-back tail, inside the last period (pitch > delay).
        let pos = src.len() - self.delay();
        Loss {
            src,
            pitch,
            periods: 1,
            pos,
            produced: 0,
        }
    }

    /// The next substitute sample (attenuated), advancing the loop.
    fn next_substitute(&self, loss: &mut Loss) -> f32 {
        let unit = self.unit();
        let k = loss.produced;
        loss.produced = k.saturating_add(1);
        if k >= unit * FADE_UNITS {
            return 0.0;
        }
        // Grow the loop to 2 then 3 periods at 10 and 20 ms, cross-fading a quarter period.
        let want = (k / unit + 1).min(3);
        let quarter = (loss.pitch / 4).max(1);
        let mut v = loop_value(&loss.src, loss.pitch * loss.periods, quarter, loss.pos);
        if want > loss.periods && (k % unit) < quarter {
            // Same phase in the longer loop: whole periods further back.
            let len2 = loss.pitch * want;
            let start2 = loss.src.len() - len2;
            let mut pos2 = loss.pos;
            while pos2 >= start2 + loss.pitch {
                pos2 -= loss.pitch;
            }
            let v2 = loop_value(&loss.src, len2, quarter, pos2);
            let w = ((k % unit) as f32 + 1.0) / (quarter as f32 + 1.0);
            v = v * (1.0 - w) + v2 * w;
            if k % unit + 1 == quarter {
                loss.periods = want;
                loss.pos = pos2;
            }
        } else if want > loss.periods {
            // (pitch / 4 > unit cannot happen: pitch <= 15 ms)
            loss.periods = want;
        }
        advance(loss);
        // 1.0 during the first 10 ms, then -50 % per 10 ms (Appendix I: -20 %).
        let gain = if k < unit {
            1.0
        } else {
            (1.0 - FADE_PER_UNIT * (k - unit) as f32 / unit as f32).max(0.0)
        };
        v * gain
    }
}

/// Moves the read position one sample along the loop of `loss.periods` periods.
fn advance(loss: &mut Loss) {
    let end = loss.src.len();
    let start = end - loss.pitch * loss.periods;
    loss.pos += 1;
    if loss.pos >= end || loss.pos < start {
        loss.pos = start;
    }
}

/// Sample `pos` of the loop made of the last `len` samples of `src`, its last `quarter` samples
/// blended into the `quarter` samples before the loop start, so it wraps without a seam.
fn loop_value(src: &[f32], len: usize, quarter: usize, pos: usize) -> f32 {
    let end = src.len();
    let v = src.get(pos).copied().unwrap_or(0.0);
    let into = end - quarter;
    if pos < into {
        return v;
    }
    let i = pos - into;
    let before = pos.checked_sub(len).and_then(|p| src.get(p));
    let w = (i as f32 + 1.0) / (quarter as f32 + 1.0);
    match before {
        Some(&b) => v * (1.0 - w) + b * w,
        None => v,
    }
}

/// The lag in `min..=max` maximizing the normalized cross-correlation of the last `win` samples
/// of `h` with the samples `lag` earlier (`min` when `h` is too short or silent). A multiple of
/// the period correlates as well as the period itself: the shortest local peak within 5 % of the
/// best is taken.
pub fn estimate_pitch(h: &[f32], min: usize, max: usize, win: usize) -> usize {
    let n = h.len();
    if n < win + max || min > max {
        return min;
    }
    let cur = &h[n - win..];
    let r: Vec<f64> = (min..=max)
        .map(|lag| {
            let past = &h[n - win - lag..n - lag];
            let (mut c, mut e) = (0.0f64, 0.0f64);
            for (a, b) in cur.iter().zip(past) {
                c += f64::from(*a) * f64::from(*b);
                e += f64::from(*b) * f64::from(*b);
            }
            if e > 0.0 { c / e.sqrt() } else { 0.0 }
        })
        .collect();
    let best = r.iter().copied().fold(0.0f64, f64::max);
    if best <= 0.0 {
        return min;
    }
    for i in 0..r.len() {
        let left = if i == 0 { f64::MIN } else { r[i - 1] };
        let right = r.get(i + 1).copied().unwrap_or(f64::MIN);
        if r[i] >= 0.95 * best && r[i] >= left && r[i] >= right {
            return min + i;
        }
    }
    min
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A voiced-like wave: 150 Hz with harmonics, at `rate`.
    fn voiced(rate: u32, n: usize, amp: f32) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                let w = 2.0 * std::f32::consts::PI * 150.0 * t;
                let v =
                    w.sin() + 0.6 * (2.0 * w).sin() + 0.4 * (3.0 * w + 0.5).sin() + 0.25 * (5.0 * w).sin();
                (amp * v / 2.25) as i16
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        if x.is_empty() {
            return 0.0;
        }
        (x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Plays `sig` in frames of `frame` samples, losing those in `lost`; returns the output.
    fn play(plc: &mut WaveformPlc, sig: &[i16], frame: usize, lost: &[usize]) -> Vec<i16> {
        let mut out = Vec::new();
        for (k, f) in sig.chunks(frame).enumerate() {
            if lost.contains(&k) {
                plc.conceal(f.len(), &mut out);
            } else {
                let mut g = f.to_vec();
                plc.good(&mut g);
                out.extend_from_slice(&g);
            }
        }
        out
    }

    #[test]
    fn pitch_of_a_150hz_wave_is_found() {
        for rate in [8000u32, 16000] {
            let s = (rate / 8000) as usize;
            let x: Vec<f32> = voiced(rate, 400 * s, 8000.0)
                .iter()
                .map(|&v| f32::from(v))
                .collect();
            let p = estimate_pitch(&x, 40 * s, 120 * s, 160 * s);
            let want = rate as f32 / 150.0;
            assert!((p as f32 - want).abs() <= 1.0, "{rate}: {p} vs {want}");
        }
    }

    #[test]
    fn a_20ms_gap_in_voiced_speech_is_filled_smoothly() {
        let sig = voiced(8000, 8000, 10000.0);
        let mut plc = WaveformPlc::new(8000);
        let out = play(&mut plc, &sig, 160, &[20]);
        assert_eq!(out.len(), sig.len());
        // The output is the input delayed by 30 samples, outside the gap and the merge.
        let d = DELAY_8K;
        for i in (d..3200).chain(3600 + 160..8000) {
            assert_eq!(out[i], sig[i - d], "at {i}");
        }
        // The gap (played 30 samples later) has the same pitch and most of the energy (its
        // second 10 ms fades by half).
        let gap = &out[3200 + d..3360 + d];
        let orig = &sig[3200..3360];
        let ratio = rms(gap) / rms(orig);
        assert!((0.7..=1.1).contains(&ratio), "energy ratio {ratio}");
        let hist: Vec<f32> = out[3000..3360 + d].iter().map(|&v| f32::from(v)).collect();
        let p = estimate_pitch(&hist, 40, 120, 160);
        assert!((52..=55).contains(&p), "pitch {p}");
        // No step larger than the wave's own largest step, around both boundaries.
        let max_step = sig.windows(2).map(|w| (w[1] - w[0]).abs()).max().unwrap_or(0);
        for i in (3200 + d - 40..3200 + d + 40).chain(3360 + d - 40..3360 + d + 120) {
            let step = (out[i] - out[i - 1]).abs();
            assert!(
                step <= max_step + max_step / 4,
                "step {step} at {i} (wave {max_step})"
            );
        }
    }

    #[test]
    fn long_loss_fades_to_silence_after_30ms_and_recovers() {
        for rate in [8000u32, 16000] {
            let s = (rate / 8000) as usize;
            let sig = voiced(rate, 8000 * s, 10000.0);
            let mut plc = WaveformPlc::new(rate);
            let f = 160 * s;
            let out = play(&mut plc, &sig, f, &[10, 11, 12, 13, 14, 15]);
            let gap = 10 * f + DELAY_8K * s;
            // The first 10 ms keep the level; then it falls; silence from 30 ms on.
            let first = rms(&out[gap..gap + 80 * s]);
            assert!(first > 0.8 * rms(&sig[..f]), "{rate}: {first}");
            let mid = rms(&out[gap + 120 * s..gap + 200 * s]);
            assert!(mid < first * 0.8 && mid > 0.0, "{rate}: {mid}");
            assert!(out[gap + 240 * s..16 * f].iter().all(|&v| v == 0), "{rate}");
            // Sound again after the loss.
            assert!(rms(&out[17 * f..18 * f]) > 0.8 * rms(&sig[..f]), "{rate}");
        }
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let mut plc = WaveformPlc::new(8000);
        // Loss at the very start (all-zero history): silence.
        let mut out = Vec::new();
        plc.conceal(160, &mut out);
        assert!(out.iter().all(|&v| v == 0));
        // Full-scale square waves, odd sizes, empty frames, loss runs of any length.
        for (k, n) in [1usize, 7, 160, 0, 333, 2000, 5, 160, 160].iter().enumerate() {
            let mut f: Vec<i16> = (0..*n)
                .map(|i| if (i / 3) % 2 == 0 { i16::MAX } else { i16::MIN })
                .collect();
            plc.good(&mut f);
            assert_eq!(f.len(), *n);
            for _ in 0..k {
                plc.conceal(*n, &mut out);
            }
        }
        let mut g = WaveformPlc::new(0);
        g.conceal(1, &mut out);
        let mut big = WaveformPlc::new(u32::MAX);
        big.conceal(960, &mut out);
        let mut f = vec![i16::MIN; 960];
        big.good(&mut f);
    }
}
