//! WAV file source and sink (`DeviceSpec::File`), using hound.
//!
//! [`WavSource`] reads a whole WAV at open (any rate; mono, stereo or more
//! channels; 8/16/24/32-bit integer or 32-bit float), mixes it to mono,
//! resamples it to the wanted rate and then loops it forever. It does no
//! pacing of its own: it runs at real time only because the caller pulls one
//! 20 ms frame per 20 ms tick.
//!
//! [`WavSink`] writes a mono 16-bit WAV at the wanted rate. hound writes the
//! RIFF header with the final sizes only when the header is updated, so:
//! [`Sink::finish`] finalizes the file (the caller calls it on hangup);
//! dropping the sink also finalizes it (errors ignored); and every second of
//! audio the sink flushes and rewrites the header, so if the process is
//! killed (SIGKILL, power loss) the file is still a valid WAV holding all but
//! at most the last second. Before the first flush a killed recording is a
//! WAV header with zero data length.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::device::{Sink, Source};
use super::resample::Resampler;

/// What [`decode_mono`] does with a file cut short (its writer killed mid-write).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CutShort {
    /// An error: a microphone file must be whole.
    Refuse,
    /// The samples before the cut (a recording read back after its process died).
    KeepBefore,
}

/// Reads a WAV file (any rate, any channels, 8–32-bit integer or 32-bit float) and mixes it
/// to mono in [-1, 1): its sample rate and its samples.
pub fn decode_mono(path: &Path, cut: CutShort) -> Result<(u32, Vec<f32>), String> {
    let err = |e: hound::Error| format!("{}: {e}", path.display());
    let reader = hound::WavReader::open(path).map_err(err)?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(err)?,
        hound::SampleFormat::Int => {
            let bits = spec.bits_per_sample.clamp(1, 32);
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            let samples = reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| (f64::from(v) * scale) as f32));
            match cut {
                CutShort::Refuse => samples.collect::<Result<_, _>>().map_err(err)?,
                CutShort::KeepBefore => samples.map_while(Result::ok).collect(),
            }
        }
    };
    let mono = interleaved
        .chunks(channels)
        .map(|fr| fr.iter().sum::<f32>() / fr.len() as f32)
        .collect();
    Ok((spec.sample_rate, mono))
}

/// Loops a WAV file as a microphone.
pub struct WavSource {
    path: PathBuf,
    samples: Vec<i16>,
    pos: usize,
}

impl WavSource {
    /// Reads, downmixes and resamples `path` to `rate` Hz mono.
    pub fn open(path: &Path, rate: u32) -> Result<Self, String> {
        let (from, mono) = decode_mono(path, CutShort::Refuse)?;
        if mono.is_empty() {
            return Err(format!("{}: WAV has no samples", path.display()));
        }
        let resampled = Resampler::convert_all(from, rate, &mono)?;
        let samples: Vec<i16> = resampled.into_iter().map(super::resample::f32_to_i16).collect();
        if samples.is_empty() {
            return Err(format!("{}: WAV too short", path.display()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            samples,
            pos: 0,
        })
    }

    /// Length of one loop in samples at the opened rate.
    pub fn loop_len(&self) -> usize {
        self.samples.len()
    }
}

impl Source for WavSource {
    fn pull(&mut self, frame: &mut [i16]) {
        for s in frame.iter_mut() {
            // `samples` is never empty (checked at open).
            *s = self.samples.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            if self.pos >= self.samples.len() {
                self.pos = 0;
            }
        }
    }

    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }
}

/// Records the speaker signal into a mono 16-bit WAV.
pub struct WavSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    rate: u32,
    since_flush: usize,
    error: Option<String>,
}

impl WavSink {
    /// Creates (truncates) `path` as a mono 16-bit WAV at `rate` Hz.
    pub fn create(path: &Path, rate: u32) -> Result<Self, String> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        // What the speaker plays is the customer's voice: mode 0600.
        let writer = crate::private::create_file(path, false)
            .map_err(hound::Error::from)
            .and_then(|f| hound::WavWriter::new(std::io::BufWriter::new(f), spec))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: Some(writer),
            rate,
            since_flush: 0,
            error: None,
        })
    }
}

impl Sink for WavSink {
    fn push(&mut self, frame: &[i16]) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        for &s in frame {
            if let Err(e) = w.write_sample(s) {
                self.error.get_or_insert_with(|| e.to_string());
                return;
            }
        }
        self.since_flush += frame.len();
        if self.since_flush >= self.rate as usize {
            self.since_flush = 0;
            if let Err(e) = w.flush() {
                self.error.get_or_insert_with(|| e.to_string());
            }
        }
    }

    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn finish(&mut self) -> Result<(), String> {
        let result = match self.writer.take() {
            Some(w) => w.finalize().map_err(|e| e.to_string()),
            None => Ok(()),
        };
        match self.error.take() {
            Some(e) => Err(format!("{}: {e}", self.path.display())),
            None => result.map_err(|e| format!("{}: {e}", self.path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::tone_ratio;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("devices-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn file_source_loops_and_resamples_stereo_44k1() {
        let path = tmp("in.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        // 0.5 s: left 1 kHz tone, right the same tone (mono mix = tone).
        for i in 0..22050 {
            let v = (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 44100.0).sin()) as i16;
            w.write_sample(v).unwrap();
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();

        let mut src = WavSource::open(&path, 8000).unwrap();
        assert_eq!(src.loop_len(), 4000);
        let mut all = Vec::new();
        let mut frame = [0i16; 160];
        for _ in 0..60 {
            // 1.2 s: more than two loops
            src.pull(&mut frame);
            all.extend_from_slice(&frame);
        }
        assert!(tone_ratio(&all[200..3800], 8000, 1000.0) > 0.95);
        // Second loop repeats the first exactly.
        assert_eq!(&all[0..4000], &all[4000..8000]);
        assert!(tone_ratio(&all[4200..7800], 8000, 1000.0) > 0.95);
        assert!(src.name().starts_with("file:"));
    }

    #[test]
    fn file_source_float_mono() {
        let path = tmp("float.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..16000 {
            w.write_sample((0.25 * (2.0 * std::f64::consts::PI * 500.0 * i as f64 / 16000.0).sin()) as f32)
                .unwrap();
        }
        w.finalize().unwrap();
        let mut src = WavSource::open(&path, 48000).unwrap();
        let mut buf = vec![0i16; 48000];
        src.pull(&mut buf);
        assert!(tone_ratio(&buf[4800..43200], 48000, 500.0) > 0.95);
    }

    #[test]
    fn file_source_errors() {
        assert!(WavSource::open(Path::new("/nonexistent/x.wav"), 8000).is_err());
        let junk = tmp("junk.wav");
        std::fs::write(&junk, b"not a wav file at all").unwrap();
        assert!(WavSource::open(&junk, 8000).is_err());
        let empty = tmp("empty.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        hound::WavWriter::create(&empty, spec)
            .unwrap()
            .finalize()
            .unwrap();
        assert!(WavSource::open(&empty, 8000).is_err());
    }

    #[test]
    fn file_sink_writes_valid_wav() {
        let path = tmp("out.wav");
        let mut sink = WavSink::create(&path, 16000).unwrap();
        let frame: Vec<i16> = (0..320).map(|i| (i * 50) as i16).collect();
        for _ in 0..75 {
            sink.push(&frame);
        }
        // After one second the header is already valid (flushed).
        let r = hound::WavReader::open(&path).unwrap();
        assert!(r.len() >= 16000);
        drop(r);
        sink.finish().unwrap();
        sink.finish().unwrap(); // idempotent
        sink.push(&frame); // ignored after finish
        let mut r = hound::WavReader::open(&path).unwrap();
        let spec = r.spec();
        assert_eq!(spec.channels, 1);
        assert_eq!(spec.sample_rate, 16000);
        assert_eq!(spec.bits_per_sample, 16);
        let samples: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(samples.len(), 75 * 320);
        assert_eq!(&samples[320..640], &frame[..]);
    }

    #[test]
    fn file_sink_bad_path() {
        assert!(WavSink::create(Path::new("/nonexistent-dir/x.wav"), 8000).is_err());
    }
}
