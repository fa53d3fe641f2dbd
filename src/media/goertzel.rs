//! Goertzel single-frequency power measurement, used by tests to check that a
//! tone crossed a codec or a call ("a 440 Hz tone arrived").
//!
//! Samples are normalized to full scale (`i16` / 32768). [`power`] is scaled
//! so that a sine of amplitude `A` (full scale = 1.0) at exactly `freq` gives
//! `A² / 2`, i.e. the mean-square power of that component, which makes it
//! directly comparable to the mean-square power of the whole signal.

use std::f64::consts::PI;

/// Power of `samples` at `freq` Hz (generalized Goertzel, `freq` need not fall
/// on a DFT bin), normalized: a full-scale sine at `freq` gives 0.5, silence 0.
/// Returns 0.0 for an empty input or a zero sample rate.
pub fn power(samples: &[i16], sample_rate: u32, freq: f64) -> f64 {
    if samples.is_empty() || sample_rate == 0 || !freq.is_finite() {
        return 0.0;
    }
    let w = 2.0 * PI * freq / f64::from(sample_rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) / 32768.0 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let mag2 = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    let n = samples.len() as f64;
    2.0 * mag2 / (n * n)
}

/// Mean-square power of `samples`, normalized to full scale (a full-scale
/// square wave gives 1.0).
pub fn mean_square(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples
        .iter()
        .map(|&x| {
            let v = f64::from(x) / 32768.0;
            v * v
        })
        .sum();
    sum / samples.len() as f64
}

/// Tone-to-rest ratio in dB: `10·log10(P(freq) / (P_total - P(freq)))`, where
/// `P(freq)` is [`power`] at `freq` and `P_total` is [`mean_square`] of the
/// whole signal (DC, noise, distortion and other tones all count as "rest").
///
/// The rest is floored at `1e-12 · P_total` (so a perfect tone reads about
/// +120 dB instead of infinity). Silence, or no energy at `freq`, gives
/// `f64::NEG_INFINITY`. Use windows of many periods of `freq` (≥ 100 ms for
/// voice-band tones) so that the rectangular window's leakage is negligible.
pub fn tone_snr_db(samples: &[i16], sample_rate: u32, freq: f64) -> f64 {
    let total = mean_square(samples);
    let tone = power(samples, sample_rate, freq).min(total);
    if total <= 0.0 || tone <= 0.0 {
        return f64::NEG_INFINITY;
    }
    let rest = (total - tone).max(total * 1e-12);
    10.0 * (tone / rest).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f64, amp: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()).round() as i16)
            .collect()
    }

    #[test]
    fn full_scale_sine_power_is_one_half() {
        let s = sine(48000, 440.0, 32767.0, 48000);
        let p = power(&s, 48000, 440.0);
        assert!((p - 0.5).abs() < 0.005, "{p}");
        assert!((mean_square(&s) - 0.5).abs() < 0.005);
        // Off-frequency bins see almost nothing.
        assert!(power(&s, 48000, 1000.0) < 1e-6);
        assert!(power(&s, 48000, 300.0) < 1e-6);
    }

    #[test]
    fn power_scales_with_amplitude_squared() {
        let a = power(&sine(8000, 1000.0, 1000.0, 8000), 8000, 1000.0);
        let b = power(&sine(8000, 1000.0, 10000.0, 8000), 8000, 1000.0);
        assert!(((b / a) - 100.0).abs() < 1.0, "{}", b / a);
    }

    #[test]
    fn snr_of_clean_and_noisy_tones() {
        let clean = sine(8000, 440.0, 10000.0, 8000);
        assert!(tone_snr_db(&clean, 8000, 440.0) > 50.0);
        // Add an equal-power tone elsewhere: about 0 dB.
        let other = sine(8000, 1300.0, 10000.0, 8000);
        let mixed: Vec<i16> = clean.iter().zip(&other).map(|(a, b)| a / 2 + b / 2).collect();
        let snr = tone_snr_db(&mixed, 8000, 440.0);
        assert!(snr.abs() < 0.5, "{snr}");
        // Measuring the wrong frequency gives a very low ratio.
        assert!(tone_snr_db(&clean, 8000, 1000.0) < -40.0);
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(power(&[], 8000, 440.0), 0.0);
        assert_eq!(power(&[1, 2, 3], 0, 440.0), 0.0);
        assert_eq!(power(&[1, 2, 3], 8000, f64::NAN), 0.0);
        assert_eq!(power(&[0; 100], 8000, 440.0), 0.0);
        assert_eq!(tone_snr_db(&[0; 100], 8000, 440.0), f64::NEG_INFINITY);
        assert_eq!(tone_snr_db(&[], 8000, 440.0), f64::NEG_INFINITY);
    }
}
