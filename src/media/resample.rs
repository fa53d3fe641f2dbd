//! Streaming mono sample-rate conversion for 20 ms real-time chunks.
//!
//! [`Resampler`] wraps rubato's synchronous FFT resampler ([`rubato::Fft`],
//! `FixedSync::Both`) behind a push/pop interface that accepts and yields any
//! number of samples: input is queued until a whole rubato chunk (about 10 ms
//! of input) is there, each processed chunk is appended to an output queue.
//! The FFT resampler is band-limited (anti-aliased), allocation-free while
//! running, and exact for any pair of integer rates (8k/16k/48k ↔ 44.1k/48k
//! in practice). Its delay is [`Resampler::delay`] output samples (about
//! 5 ms). Equal rates are a zero-delay pass-through.

use std::collections::VecDeque;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

/// A mono streaming resampler from `from` Hz to `to` Hz.
pub struct Resampler {
    from: u32,
    to: u32,
    inner: Option<Fft<f32>>,
    chunk_in: usize,
    chunk_out: usize,
    pending: Vec<f32>,
    out: VecDeque<f32>,
    scratch_out: Vec<f32>,
    errors: u64,
}

impl Resampler {
    /// Creates a resampler; `Err` if a rate is zero or rubato refuses the pair.
    pub fn new(from: u32, to: u32) -> Result<Self, String> {
        if from == 0 || to == 0 {
            return Err(format!("invalid sample rates {from} -> {to}"));
        }
        if from == to {
            return Ok(Self {
                from,
                to,
                inner: None,
                chunk_in: 0,
                chunk_out: 0,
                pending: Vec::new(),
                out: VecDeque::new(),
                scratch_out: Vec::new(),
                errors: 0,
            });
        }
        let hint = (from as usize / 100).max(1);
        let fft = Fft::<f32>::new(from as usize, to as usize, hint, 1, FixedSync::Both)
            .map_err(|e| format!("resampler {from} -> {to}: {e}"))?;
        let chunk_in = fft.input_frames_next();
        let chunk_out = fft.output_frames_next();
        let out_max = fft.output_frames_max().max(chunk_out);
        Ok(Self {
            from,
            to,
            inner: Some(fft),
            chunk_in,
            chunk_out,
            pending: Vec::with_capacity(chunk_in * 2),
            out: VecDeque::with_capacity(out_max * 4),
            scratch_out: vec![0.0; out_max],
            errors: 0,
        })
    }

    /// Input rate in Hz.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// Output rate in Hz.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Input samples consumed per internal chunk (10 ms for pass-through,
    /// which takes any length).
    pub fn input_chunk(&self) -> usize {
        if self.inner.is_none() {
            return (self.from as usize / 100).max(1);
        }
        self.chunk_in.max(1)
    }

    /// Output samples produced per internal chunk (10 ms for pass-through).
    pub fn output_chunk(&self) -> usize {
        if self.inner.is_none() {
            return (self.to as usize / 100).max(1);
        }
        self.chunk_out.max(1)
    }

    /// Delay added by the filter, in output samples.
    pub fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Number of chunks rubato failed to process (replaced by silence).
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Output samples ready to be popped.
    pub fn available(&self) -> usize {
        self.out.len()
    }

    /// Input samples still needed before `n` output samples are available
    /// (rounded up to whole chunks).
    pub fn input_needed_for(&self, n: usize) -> usize {
        if self.out.len() >= n {
            return 0;
        }
        let missing = n - self.out.len();
        let chunks = missing.div_ceil(self.output_chunk());
        (chunks * self.input_chunk()).saturating_sub(self.pending.len())
    }

    /// Feeds input samples; every completed chunk is converted at once.
    pub fn push(&mut self, input: &[f32]) {
        let Some(fft) = self.inner.as_mut() else {
            self.out.extend(input.iter().copied());
            return;
        };
        let mut rest = input;
        while !rest.is_empty() {
            let take = (self.chunk_in - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() < self.chunk_in {
                break;
            }
            let produced = match (
                InterleavedSlice::new(&self.pending[..], 1, self.chunk_in),
                InterleavedSlice::new_mut(&mut self.scratch_out[..], 1, self.chunk_out),
            ) {
                (Ok(inp), Ok(mut outp)) => match fft.process_into_buffer(&inp, &mut outp, None) {
                    Ok((_, n_out)) => n_out,
                    Err(_) => 0,
                },
                _ => 0,
            };
            if produced == 0 {
                // Keep the timing: a failed chunk becomes silence.
                self.errors += 1;
                self.out.extend(std::iter::repeat_n(0.0, self.chunk_out));
            } else {
                self.out.extend(self.scratch_out[..produced].iter().copied());
            }
            self.pending.clear();
        }
    }

    /// Pops up to `out.len()` samples; returns how many were written.
    pub fn pop_into(&mut self, out: &mut [f32]) -> usize {
        let n = out.len().min(self.out.len());
        for (dst, src) in out.iter_mut().zip(self.out.drain(..n)) {
            *dst = src;
        }
        n
    }

    /// Converts a whole clip (offline): the filter delay is removed and the
    /// result has `len * to / from` samples (rounded).
    pub fn convert_all(from: u32, to: u32, input: &[f32]) -> Result<Vec<f32>, String> {
        let mut rs = Self::new(from, to)?;
        let want = ((input.len() as u64 * to as u64 + from as u64 / 2) / from as u64) as usize;
        let delay = rs.delay();
        rs.push(input);
        let flush = rs.input_needed_for(delay + want);
        rs.push(&vec![0.0; flush]);
        let mut all = vec![0.0; rs.available()];
        let n = rs.pop_into(&mut all);
        all.truncate(n);
        let start = delay.min(all.len());
        let end = (delay + want).min(all.len());
        Ok(all[start..end].to_vec())
    }
}

/// Converts i16 PCM to f32 in [-1, 1).
pub fn i16_to_f32(s: i16) -> f32 {
    f32::from(s) / 32768.0
}

/// Converts f32 to i16 PCM with rounding and saturation.
pub fn f32_to_i16(s: f32) -> i16 {
    let v = (s * 32768.0).round();
    if v.is_nan() {
        0
    } else {
        v.clamp(-32768.0, 32767.0) as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::tone_ratio;

    fn sine(rate: u32, freq: f64, n: usize, amp: f64) -> Vec<f32> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as f32)
            .collect()
    }

    fn to_i16(v: &[f32]) -> Vec<i16> {
        v.iter().map(|&s| f32_to_i16(s)).collect()
    }

    /// Runs `input` through `rs` in 20 ms pieces like the real-time path.
    fn stream(rs: &mut Resampler, input: &[f32], from: u32, to: u32) -> Vec<f32> {
        let in_frame = (from / 50) as usize;
        let out_frame = (to / 50) as usize;
        let mut out = Vec::new();
        let mut buf = vec![0.0; out_frame];
        for chunk in input.chunks(in_frame) {
            rs.push(chunk);
            while rs.available() >= out_frame {
                let n = rs.pop_into(&mut buf);
                out.extend_from_slice(&buf[..n]);
            }
        }
        out
    }

    #[test]
    fn tone_survives_8k_48k_8k() {
        let x = sine(8000, 1000.0, 16000, 0.5);
        let mut up = Resampler::new(8000, 48000).unwrap();
        let mut down = Resampler::new(48000, 8000).unwrap();
        let y = stream(&mut up, &x, 8000, 48000);
        assert!(y.len() >= 90_000, "upsampled {}", y.len());
        let z = stream(&mut down, &y, 48000, 8000);
        assert!(z.len() >= 15_000, "downsampled {}", z.len());
        // Skip the start-up transient, measure one second.
        let mid = to_i16(&z[2000..10000]);
        let r1k = tone_ratio(&mid, 8000, 1000.0);
        assert!(r1k > 0.98, "1 kHz energy ratio {r1k}");
        let r900 = tone_ratio(&mid, 8000, 900.0);
        assert!(r900 < 0.01, "900 Hz energy ratio {r900}");
        let y48 = to_i16(&y[12000..60000]);
        assert!(tone_ratio(&y48, 48000, 1000.0) > 0.98);
        // Amplitude is preserved (within 1 dB).
        let rms = (z[2000..10000].iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / 8000.0).sqrt();
        assert!((rms - 0.5 / 2f64.sqrt()).abs() < 0.04, "rms {rms}");
    }

    #[test]
    fn chunk_sizes_for_telephony_ratios() {
        for (from, to) in [
            (8000, 44100),
            (44100, 8000),
            (16000, 44100),
            (44100, 16000),
            (8000, 48000),
            (48000, 16000),
            (48000, 44100),
        ] {
            let rs = Resampler::new(from, to).unwrap();
            // chunk_out / chunk_in is the exact ratio.
            assert_eq!(
                rs.output_chunk() as u64 * u64::from(from),
                rs.input_chunk() as u64 * u64::from(to),
                "{from}->{to}"
            );
            assert!(
                rs.delay() <= (to / 100) as usize,
                "{from}->{to} delay {}",
                rs.delay()
            );
        }
    }

    #[test]
    fn passthrough_and_bad_rates() {
        let mut rs = Resampler::new(8000, 8000).unwrap();
        assert_eq!((rs.input_chunk(), rs.output_chunk(), rs.delay()), (80, 80, 0));
        assert_eq!(rs.input_needed_for(100), 160);
        rs.push(&[0.1, 0.2, 0.3]);
        let mut out = [0.0; 4];
        assert_eq!(rs.pop_into(&mut out), 3);
        assert_eq!(&out[..3], &[0.1, 0.2, 0.3]);
        assert!(Resampler::new(0, 8000).is_err());
    }

    #[test]
    fn convert_all_length_and_tone() {
        let x = sine(44100, 1000.0, 44100, 0.5);
        let y = Resampler::convert_all(44100, 8000, &x).unwrap();
        assert_eq!(y.len(), 8000);
        assert!(tone_ratio(&to_i16(&y[400..7600]), 8000, 1000.0) > 0.98);
        // Start is aligned: first samples are near the original phase (≈0).
        assert!(y[1].abs() < 0.45);
    }

    #[test]
    fn sample_conversion_saturates() {
        assert_eq!(f32_to_i16(2.0), 32767);
        assert_eq!(f32_to_i16(-2.0), -32768);
        assert_eq!(f32_to_i16(f32::NAN), 0);
        assert_eq!(f32_to_i16(i16_to_f32(1234)), 1234);
    }
}
