//! Ring tone generation and single-frequency (Goertzel) measurement.
//!
//! [`RingTone`] produces 20 ms (or any length) frames of a call-progress
//! tone for the speaker while a call rings. The default is the CEPT/ETSI
//! ring-back tone used in most of Europe: 425 Hz, 1 s on, 4 s off.
//! [`RingTone::north_american`] gives 440 + 480 Hz, 2 s on, 4 s off, and
//! [`RingTone::with_cadence`] any other pair and cadence (e.g. 1 s on, 2 s
//! off). Each burst is faded in and out over 5 ms so it does not click.
//! The level is about -12 dBFS per tone.
//!
//! [`goertzel_power`] and [`tone_ratio`] measure how much of a block's energy
//! is at one frequency (used by the tests, usable for tone detection).

use super::device::Source;

/// Generator of a cadenced call-progress tone at a fixed sample rate.
#[derive(Clone, Debug)]
pub struct RingTone {
    rate: u32,
    freqs: Vec<f64>,
    on_samples: u64,
    period_samples: u64,
    fade_samples: u64,
    amplitude: f64,
    pos: u64,
}

impl RingTone {
    /// CEPT ring-back: 425 Hz, 1 s on, 4 s off, at `rate` Hz.
    pub fn new(rate: u32) -> Self {
        Self::with_cadence(rate, &[425.0], 1000, 4000)
    }

    /// North American ring-back: 440 + 480 Hz, 2 s on, 4 s off.
    pub fn north_american(rate: u32) -> Self {
        Self::with_cadence(rate, &[440.0, 480.0], 2000, 4000)
    }

    /// Any mix of frequencies with `on_ms` of tone then `off_ms` of silence.
    /// A zero rate is treated as 8000 Hz.
    pub fn with_cadence(rate: u32, freqs: &[f64], on_ms: u32, off_ms: u32) -> Self {
        let rate = if rate == 0 { 8000 } else { rate };
        let on_samples = u64::from(rate) * u64::from(on_ms) / 1000;
        let period_samples = (on_samples + u64::from(rate) * u64::from(off_ms) / 1000).max(1);
        Self {
            rate,
            freqs: freqs.to_vec(),
            on_samples,
            period_samples,
            fade_samples: (u64::from(rate) / 200).max(1),
            amplitude: 8000.0 / (freqs.len().max(1) as f64),
            pos: 0,
        }
    }

    /// The same tone at `level` (0–1) of its loudness.
    pub fn with_level(mut self, level: f64) -> Self {
        self.amplitude *= level.clamp(0.0, 1.0);
        self
    }

    /// The sample rate the tone is generated at.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Samples in one 20 ms frame at this rate.
    pub fn frame_len(&self) -> usize {
        (self.rate / 50) as usize
    }

    /// Restarts the cadence at the beginning of a burst.
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Fills `frame` with the next samples of the tone.
    pub fn next_frame(&mut self, frame: &mut [i16]) {
        for s in frame.iter_mut() {
            let in_period = self.pos % self.period_samples;
            *s = if in_period < self.on_samples {
                let t = self.pos as f64 / f64::from(self.rate);
                let v: f64 = self
                    .freqs
                    .iter()
                    .map(|f| (2.0 * std::f64::consts::PI * f * t).sin())
                    .sum();
                let edge = in_period.min(self.on_samples - 1 - in_period);
                let gain = if edge < self.fade_samples {
                    edge as f64 / self.fade_samples as f64
                } else {
                    1.0
                };
                (v * self.amplitude * gain).round().clamp(-32768.0, 32767.0) as i16
            } else {
                0
            };
            self.pos = self.pos.wrapping_add(1);
        }
    }
}

impl Source for RingTone {
    fn pull(&mut self, frame: &mut [i16]) {
        self.next_frame(frame);
    }

    fn name(&self) -> String {
        format!("ringtone {:?} Hz", self.freqs)
    }
}

/// Goertzel |X(f)|² of `samples` at `freq` Hz.
pub fn goertzel_power(samples: &[i16], rate: u32, freq: f64) -> f64 {
    if rate == 0 {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Fraction (0..=1) of the block's energy that is a sine at `freq`.
/// A clean tone spanning a whole number of cycles gives ≈1.
pub fn tone_ratio(samples: &[i16], rate: u32, freq: f64) -> f64 {
    let energy: f64 = samples.iter().map(|&x| f64::from(x).powi(2)).sum();
    if energy <= 0.0 || samples.is_empty() {
        return 0.0;
    }
    let p = goertzel_power(samples, rate, freq);
    (2.0 * p / (samples.len() as f64 * energy)).min(1.0)
}

/// Signal-to-rest ratio in dB of the tone at `freq` (energy at `freq`
/// against all other energy in the block).
pub fn tone_snr_db(samples: &[i16], rate: u32, freq: f64) -> f64 {
    let r = tone_ratio(samples, rate, freq);
    10.0 * (r.max(1e-12) / (1.0 - r).max(1e-12)).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cadence_on_then_off() {
        let mut t = RingTone::new(8000);
        let mut frame = vec![0i16; t.frame_len()];
        let mut on = Vec::new();
        for _ in 0..50 {
            t.next_frame(&mut frame);
            on.extend_from_slice(&frame);
        }
        assert!(tone_ratio(&on, 8000, 425.0) > 0.95);
        // The next 4 s are silent.
        for _ in 0..200 {
            t.next_frame(&mut frame);
            assert!(frame.iter().all(|&s| s == 0));
        }
        // Then it rings again.
        t.next_frame(&mut frame);
        t.next_frame(&mut frame);
        assert!(frame.iter().any(|&s| s != 0));
    }

    #[test]
    fn dual_tone_and_custom_cadence() {
        let mut t = RingTone::north_american(16000);
        let mut buf = vec![0i16; 16000];
        t.next_frame(&mut buf);
        assert!(tone_ratio(&buf, 16000, 440.0) > 0.4);
        assert!(tone_ratio(&buf, 16000, 480.0) > 0.4);
        let mut c = RingTone::with_cadence(8000, &[425.0], 1000, 2000);
        let mut three = vec![0i16; 24000];
        c.next_frame(&mut three);
        assert!(three[8100..23900].iter().all(|&s| s == 0));
        assert!(three[..8000].iter().any(|&s| s != 0));
    }

    #[test]
    fn snr_of_silence_is_low() {
        assert_eq!(tone_ratio(&[0; 100], 8000, 440.0), 0.0);
        assert!(tone_snr_db(&[0; 100], 8000, 440.0) < -100.0);
        assert_eq!(goertzel_power(&[1, 2], 0, 440.0), 0.0);
    }
}
