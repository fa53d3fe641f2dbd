//! Sound-card source and sink through cpal (PulseAudio host, else ALSA).
//!
//! The cpal data callback runs on cpal's own thread. Audio crosses threads
//! through a [`Ring`]: a mutex-protected `VecDeque<f32>` of mono samples at
//! the device rate, bounded to 200 ms (the lock is held only to copy a
//! callback's worth of samples). Resampling between the device rate and the
//! caller's rate happens on the caller's side (in `pull` / `push`), so the
//! real-time callback only copies and up/down-mixes.
//!
//! * Source: the callback downmixes (averages channels) into the ring,
//!   dropping the oldest samples when it is full (overrun). `pull` waits for
//!   a 40 ms pre-buffer after start or after an underrun (giving silence
//!   meanwhile), then takes one resampler chunk at a time; when the ring
//!   runs short the frame is padded with silence and an underrun counted.
//! * Sink: `push` resamples to the device rate and appends to the ring,
//!   dropping the oldest samples when full (overrun). The callback plays
//!   silence until 40 ms are buffered, then copies the mono signal into
//!   every channel; running dry pads with silence and counts an underrun.
//!
//! Starting: cpal's PulseAudio `play()` on a capture stream blocks until the
//! server reports the stream started (about 2 s on a freshly loaded null
//! sink, without bound on a hung server). So each stream is owned by a small
//! thread that calls `play()` and then keeps the stream alive until the
//! source/sink is dropped; `open` waits at most 500 ms for `play()`: an error
//! within that time fails the open, a slower start continues in the
//! background (the source gives silence meanwhile, a later failure is
//! counted in `errors`).
//!
//! Latency is bounded: whenever more than 120 ms is queued (after a burst
//! from the device, a stall, or clock drift between the caller's 20 ms tick
//! and the device clock) the oldest audio is dropped down to 60 ms, counted
//! as an overrun.
//!
//! The stream's error callback only counts errors (never prints). A stream that reported an
//! error and whose callback has not run for [`DEAD_AFTER`] is dead (the sound server went
//! away, the device was unplugged): [`CpalSource::alive`] / [`CpalSink::alive`] say so, and
//! `media::resilient` replaces it. The device
//! config chosen is the supported one nearest to the wanted rate, preferring
//! mono over stereo and f32 over i16 over i32, with a 10 ms buffer if the
//! device allows it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{
    BufferSize, FromSample, SampleFormat, SizedSample, StreamConfig, SupportedBufferSize,
    SupportedStreamConfig,
};

use super::device::{DeviceStats, Sink, Source};
use super::resample::{Resampler, f32_to_i16, i16_to_f32};

/// Ring capacity, in milliseconds of audio.
const RING_MS: u32 = 200;
/// Audio buffered before playback / capture delivery (re)starts.
const PREBUFFER_MS: u32 = 40;
/// Queued audio above this is latency that `pull` / `push` cut back...
const HIGH_WATER_MS: u32 = 120;
/// ...to this level (dropping the oldest samples, counted as an overrun).
const TRIM_TO_MS: u32 = 60;
/// How long cpal may take to open a stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `open` waits for `play()` before letting it finish in the background.
const START_WAIT: Duration = Duration::from_millis(500);
/// A stream that reported an error and has been silent this long is gone. Longer than a
/// callback period by far, shorter than anyone would wait in a call.
pub const DEAD_AFTER: Duration = Duration::from_millis(300);

/// Bounded mono sample queue shared with the cpal callback, plus counters.
pub struct Ring {
    buf: Mutex<VecDeque<f32>>,
    cap: usize,
    underruns: AtomicU64,
    overruns: AtomicU64,
    errors: AtomicU64,
    streaming: AtomicBool,
    /// When the callback last ran: milliseconds since `epoch`.
    last_callback_ms: AtomicU64,
    epoch: Instant,
}

impl Ring {
    /// A ring holding at most `cap` samples.
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Mutex::new(VecDeque::with_capacity(cap)),
            cap: cap.max(1),
            underruns: AtomicU64::new(0),
            overruns: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            streaming: AtomicBool::new(false),
            last_callback_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Marks the stream as flowing (called from the callback).
    fn mark_streaming(&self) {
        self.streaming.store(true, Ordering::Relaxed);
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_callback_ms.store(ms, Ordering::Relaxed);
    }

    /// The stream reported an error and its callback has not run for `quiet` (or never ran):
    /// it will not deliver again.
    pub fn dead(&self, quiet: Duration) -> bool {
        if self.errors.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let last = Duration::from_millis(self.last_callback_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last) >= quiet
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<f32>> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends samples, dropping the oldest ones if it would exceed the
    /// capacity (counted as one overrun per call).
    pub fn push_iter(&self, samples: impl ExactSizeIterator<Item = f32>) {
        let mut q = self.lock();
        let n = samples.len();
        if q.len() + n > self.cap {
            let drop = (q.len() + n - self.cap).min(q.len());
            q.drain(..drop);
            self.overruns.fetch_add(1, Ordering::Relaxed);
        }
        let skip = n.saturating_sub(self.cap);
        q.extend(samples.skip(skip));
    }

    /// If more than `high` samples are queued, drops the oldest down to
    /// `target` (one overrun). Bounds latency after bursts or clock drift.
    pub fn trim(&self, high: usize, target: usize) -> bool {
        let mut q = self.lock();
        if q.len() <= high {
            return false;
        }
        let drop = q.len() - target.min(q.len());
        q.drain(..drop);
        self.overruns.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Samples currently queued.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pops up to `out.len()` samples; returns how many.
    pub fn pop_into(&self, out: &mut [f32]) -> usize {
        let mut q = self.lock();
        let n = out.len().min(q.len());
        for (d, s) in out.iter_mut().zip(q.drain(..n)) {
            *d = s;
        }
        n
    }

    /// Current counters.
    pub fn stats(&self) -> DeviceStats {
        DeviceStats {
            underruns: self.underruns.load(Ordering::Relaxed),
            overruns: self.overruns.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            streaming: self.streaming.load(Ordering::Relaxed),
        }
    }
}

/// Names of the default host's input (or output) devices: their cpal ids
/// (PulseAudio sink/source names, ALSA PCM ids).
pub fn list_devices(input: bool) -> Vec<String> {
    let Ok(host) = host() else {
        return Vec::new();
    };
    let devices = if input {
        host.input_devices().map(|d| d.collect::<Vec<_>>())
    } else {
        host.output_devices().map(|d| d.collect::<Vec<_>>())
    };
    let mut names: Vec<String> = devices
        .unwrap_or_default()
        .iter()
        .filter_map(device_name)
        .collect();
    names.dedup();
    names
}

fn device_name(d: &cpal::Device) -> Option<String> {
    d.id()
        .ok()
        .map(|id| id.id().to_string())
        .or_else(|| d.description().ok().map(|x| x.name().to_string()))
}

/// The host to look in. `PULSE_SERVER` naming a socket (set by the user, or by
/// `pulse_server::apply` for its relay) means that server or nothing: cpal's default host
/// would fall back to ALSA when the server is unreachable, and so play the call on the
/// speaker of the machine the phone runs on (a jump host) while the agent's PC is away.
fn host() -> Result<cpal::Host, String> {
    match std::env::var("PULSE_SERVER") {
        Ok(s) if s.starts_with("unix:") => {
            cpal::host_from_id(cpal::HostId::PulseAudio).map_err(|e| format!("PulseAudio server {s}: {e}"))
        }
        _ => Ok(cpal::default_host()),
    }
}

fn find_device(name: Option<&str>, input: bool) -> Result<cpal::Device, String> {
    let host = host()?;
    let kind = if input { "input" } else { "output" };
    let Some(name) = name else {
        let dev = if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        };
        return dev.ok_or_else(|| format!("no default {kind} device ({:?})", host.id()));
    };
    // Look on the default host first, then on ALSA (e.g. "hw:1,0" while
    // PulseAudio is the default host).
    let is_alsa = host.id() == cpal::HostId::Alsa;
    let mut hosts = vec![host];
    if !is_alsa && let Ok(alsa) = cpal::host_from_id(cpal::HostId::Alsa) {
        hosts.push(alsa);
    }
    for host in &hosts {
        let devices: Vec<cpal::Device> = if input {
            host.input_devices().map(|d| d.collect()).unwrap_or_default()
        } else {
            host.output_devices().map(|d| d.collect()).unwrap_or_default()
        };
        let by_id = |d: &&cpal::Device| d.id().is_ok_and(|id| id.id() == name);
        let by_desc = |d: &&cpal::Device| d.description().is_ok_and(|x| x.name().eq_ignore_ascii_case(name));
        if let Some(d) = devices
            .iter()
            .find(by_id)
            .or_else(|| devices.iter().find(by_desc))
        {
            return Ok(d.clone());
        }
    }
    Err(format!("{kind} device {name:?} not found"))
}

fn format_rank(f: SampleFormat) -> Option<u32> {
    match f {
        SampleFormat::F32 => Some(0),
        SampleFormat::I16 => Some(1),
        SampleFormat::I32 => Some(2),
        _ => None,
    }
}

/// The supported config nearest to `rate` (then mono, then f32/i16/i32).
fn choose_config(
    ranges: impl Iterator<Item = cpal::SupportedStreamConfigRange>,
    rate: u32,
) -> Option<SupportedStreamConfig> {
    ranges
        .filter(|r| r.channels() > 0 && format_rank(r.sample_format()).is_some())
        .map(|r| {
            let sr = rate.clamp(r.min_sample_rate(), r.max_sample_rate());
            let ch_rank = match r.channels() {
                1 => 0,
                2 => 1,
                n => u32::from(n),
            };
            let key = (
                sr.abs_diff(rate),
                ch_rank,
                format_rank(r.sample_format()).unwrap_or(9),
            );
            (key, r.with_sample_rate(sr))
        })
        .min_by_key(|(key, _)| *key)
        .map(|(_, c)| c)
}

fn stream_config(sc: &SupportedStreamConfig) -> StreamConfig {
    let mut cfg = sc.config();
    let period = (sc.sample_rate() / 100).max(1);
    cfg.buffer_size = match sc.buffer_size() {
        SupportedBufferSize::Range { min, max } if (*min..=*max).contains(&period) => {
            BufferSize::Fixed(period)
        }
        _ => BufferSize::Default,
    };
    cfg
}

fn err_string(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Keeps a started stream alive on its own thread; dropping it stops and
/// drops the stream.
struct StreamGuard {
    _stop: mpsc::Sender<()>,
}

/// Plays `stream` on a keeper thread (see the module doc).
fn start_stream(stream: cpal::Stream, ring: &Arc<Ring>) -> Result<StreamGuard, String> {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (res_tx, res_rx) = mpsc::channel::<Result<(), String>>();
    let ring = Arc::clone(ring);
    std::thread::Builder::new()
        .name("audio-stream".into())
        .spawn(move || {
            let result = stream.play().map_err(err_string);
            let failed = result.is_err();
            if res_tx.send(result).is_err() && failed {
                // `open` already returned: count the late failure.
                ring.errors.fetch_add(1, Ordering::Relaxed);
            }
            if !failed {
                // Blocks until the guard (and so its sender) is dropped.
                let _ = stop_rx.recv();
            }
            drop(stream);
        })
        .map_err(|e| format!("cannot start audio thread: {e}"))?;
    match res_rx.recv_timeout(START_WAIT) {
        Ok(Ok(())) | Err(RecvTimeoutError::Timeout) => Ok(StreamGuard { _stop: stop_tx }),
        Ok(Err(e)) => Err(e),
        Err(RecvTimeoutError::Disconnected) => Err("audio stream thread ended".into()),
    }
}

/// Microphone through cpal.
pub struct CpalSource {
    _stream: StreamGuard,
    name: String,
    ring: Arc<Ring>,
    rs: Resampler,
    primed: bool,
    prebuffer: usize,
    high_water: usize,
    trim_to: usize,
    chunk: Vec<f32>,
    out: Vec<f32>,
    device_rate: u32,
}

impl CpalSource {
    /// Opens the named (or default) input device for mono `rate` Hz frames.
    pub fn open(name: Option<&str>, rate: u32) -> Result<Self, String> {
        let device = find_device(name, true)?;
        let dev_name = device_name(&device).unwrap_or_else(|| "input".into());
        let ranges = device
            .supported_input_configs()
            .map_err(|e| format!("{dev_name}: {e}"))?;
        let sc = choose_config(ranges, rate).ok_or_else(|| format!("{dev_name}: no usable input format"))?;
        let cfg = stream_config(&sc);
        let device_rate = cfg.sample_rate;
        let ring = Arc::new(Ring::new((device_rate * RING_MS / 1000) as usize));
        let stream = match sc.sample_format() {
            SampleFormat::F32 => build_input::<f32>(&device, &cfg, &ring),
            SampleFormat::I16 => build_input::<i16>(&device, &cfg, &ring),
            SampleFormat::I32 => build_input::<i32>(&device, &cfg, &ring),
            f => Err(format!("unsupported sample format {f}")),
        }
        .map_err(|e| format!("{dev_name}: {e}"))?;
        let rs = Resampler::new(device_rate, rate)?;
        let guard = start_stream(stream, &ring).map_err(|e| format!("{dev_name}: {e}"))?;
        let chunk = vec![0.0; rs.input_chunk()];
        Ok(Self {
            _stream: guard,
            name: dev_name,
            prebuffer: (device_rate * PREBUFFER_MS / 1000) as usize,
            high_water: (device_rate * HIGH_WATER_MS / 1000) as usize,
            trim_to: (device_rate * TRIM_TO_MS / 1000) as usize,
            ring,
            rs,
            primed: false,
            chunk,
            out: Vec::new(),
            device_rate,
        })
    }

    /// The rate the device actually runs at.
    pub fn device_rate(&self) -> u32 {
        self.device_rate
    }

    /// False once the stream is dead (see the module doc).
    pub fn alive(&self) -> bool {
        !self.ring.dead(DEAD_AFTER)
    }

    fn feed_chunk(&mut self) {
        let need = self.chunk.len();
        if !self.primed {
            if self.ring.len() >= self.prebuffer.max(need) {
                self.primed = true;
            } else {
                self.chunk.fill(0.0);
                self.rs.push(&self.chunk);
                return;
            }
        }
        self.ring.trim(self.high_water, self.trim_to);
        let got = self.ring.pop_into(&mut self.chunk);
        if got < need {
            self.chunk[got..].fill(0.0);
            self.ring.underruns.fetch_add(1, Ordering::Relaxed);
            self.primed = false;
        }
        self.rs.push(&self.chunk);
    }
}

fn build_input<T>(device: &cpal::Device, cfg: &StreamConfig, ring: &Arc<Ring>) -> Result<cpal::Stream, String>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let channels = usize::from(cfg.channels.max(1));
    let data_ring = Arc::clone(ring);
    let err_ring = Arc::clone(ring);
    device
        .build_input_stream::<T, _, _>(
            *cfg,
            move |data: &[T], _| {
                data_ring.mark_streaming();
                let frames = data.chunks_exact(channels);
                let mono =
                    frames.map(|fr| fr.iter().map(|s| s.to_sample::<f32>()).sum::<f32>() / channels as f32);
                data_ring.push_iter(mono);
            },
            move |_e| {
                err_ring.errors.fetch_add(1, Ordering::Relaxed);
            },
            Some(OPEN_TIMEOUT),
        )
        .map_err(err_string)
}

impl Source for CpalSource {
    fn pull(&mut self, frame: &mut [i16]) {
        while self.rs.available() < frame.len() {
            self.feed_chunk();
        }
        self.out.resize(frame.len(), 0.0);
        let n = self.rs.pop_into(&mut self.out);
        for (d, s) in frame.iter_mut().zip(self.out[..n].iter()) {
            *d = f32_to_i16(*s);
        }
        frame[n..].fill(0);
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn alive(&self) -> bool {
        CpalSource::alive(self)
    }

    fn stats(&self) -> DeviceStats {
        let mut s = self.ring.stats();
        s.errors += self.rs.errors();
        s
    }
}

/// Speaker through cpal.
pub struct CpalSink {
    _stream: StreamGuard,
    name: String,
    ring: Arc<Ring>,
    rs: Resampler,
    tmp_in: Vec<f32>,
    tmp_out: Vec<f32>,
    device_rate: u32,
    high_water: usize,
    trim_to: usize,
}

impl CpalSink {
    /// Opens the named (or default) output device for mono `rate` Hz frames.
    pub fn open(name: Option<&str>, rate: u32) -> Result<Self, String> {
        let device = find_device(name, false)?;
        let dev_name = device_name(&device).unwrap_or_else(|| "output".into());
        let ranges = device
            .supported_output_configs()
            .map_err(|e| format!("{dev_name}: {e}"))?;
        let sc = choose_config(ranges, rate).ok_or_else(|| format!("{dev_name}: no usable output format"))?;
        let cfg = stream_config(&sc);
        let device_rate = cfg.sample_rate;
        let ring = Arc::new(Ring::new((device_rate * RING_MS / 1000) as usize));
        let prebuffer = (device_rate * PREBUFFER_MS / 1000) as usize;
        let stream = match sc.sample_format() {
            SampleFormat::F32 => build_output::<f32>(&device, &cfg, &ring, prebuffer),
            SampleFormat::I16 => build_output::<i16>(&device, &cfg, &ring, prebuffer),
            SampleFormat::I32 => build_output::<i32>(&device, &cfg, &ring, prebuffer),
            f => Err(format!("unsupported sample format {f}")),
        }
        .map_err(|e| format!("{dev_name}: {e}"))?;
        let rs = Resampler::new(rate, device_rate)?;
        let guard = start_stream(stream, &ring).map_err(|e| format!("{dev_name}: {e}"))?;
        Ok(Self {
            _stream: guard,
            name: dev_name,
            ring,
            rs,
            tmp_in: Vec::new(),
            tmp_out: Vec::new(),
            device_rate,
            high_water: (device_rate * HIGH_WATER_MS / 1000) as usize,
            trim_to: (device_rate * TRIM_TO_MS / 1000) as usize,
        })
    }

    /// The rate the device actually runs at.
    pub fn device_rate(&self) -> u32 {
        self.device_rate
    }

    /// False once the stream is dead (see the module doc).
    pub fn alive(&self) -> bool {
        !self.ring.dead(DEAD_AFTER)
    }
}

fn build_output<T>(
    device: &cpal::Device,
    cfg: &StreamConfig,
    ring: &Arc<Ring>,
    prebuffer: usize,
) -> Result<cpal::Stream, String>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
{
    let channels = usize::from(cfg.channels.max(1));
    let data_ring = Arc::clone(ring);
    let err_ring = Arc::clone(ring);
    let primed = AtomicBool::new(false);
    let mut mono: Vec<f32> = Vec::new();
    device
        .build_output_stream::<T, _, _>(
            *cfg,
            move |data: &mut [T], _| {
                data_ring.mark_streaming();
                let frames = data.len() / channels;
                if !primed.load(Ordering::Relaxed) {
                    if data_ring.len() < prebuffer.max(frames) {
                        data.fill(T::EQUILIBRIUM);
                        return;
                    }
                    primed.store(true, Ordering::Relaxed);
                }
                if mono.len() < frames {
                    mono.resize(frames, 0.0);
                }
                let got = data_ring.pop_into(&mut mono[..frames]);
                if got < frames {
                    mono[got..frames].fill(0.0);
                    data_ring.underruns.fetch_add(1, Ordering::Relaxed);
                    primed.store(false, Ordering::Relaxed);
                }
                for (fr, s) in data.chunks_exact_mut(channels).zip(mono.iter()) {
                    fr.fill(T::from_sample(*s));
                }
            },
            move |_e| {
                err_ring.errors.fetch_add(1, Ordering::Relaxed);
            },
            Some(OPEN_TIMEOUT),
        )
        .map_err(err_string)
}

impl Sink for CpalSink {
    fn push(&mut self, frame: &[i16]) {
        self.tmp_in.clear();
        self.tmp_in.extend(frame.iter().map(|&s| i16_to_f32(s)));
        self.rs.push(&self.tmp_in);
        self.tmp_out.resize(self.rs.available(), 0.0);
        let n = self.rs.pop_into(&mut self.tmp_out);
        self.ring.push_iter(self.tmp_out[..n].iter().copied());
        self.ring.trim(self.high_water, self.trim_to);
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn alive(&self) -> bool {
        CpalSink::alive(self)
    }

    /// Waits (at most the ring length, 200 ms) for queued audio to play out.
    fn finish(&mut self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_millis(u64::from(RING_MS) + 50);
        while !self.ring.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn stats(&self) -> DeviceStats {
        let mut s = self.ring.stats();
        s.errors += self.rs.errors();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_drops_oldest() {
        let r = Ring::new(4);
        r.push_iter([1.0, 2.0, 3.0].into_iter());
        r.push_iter([4.0, 5.0].into_iter());
        assert_eq!(r.len(), 4);
        assert_eq!(r.stats().overruns, 1);
        let mut out = [0.0; 8];
        assert_eq!(r.pop_into(&mut out), 4);
        assert_eq!(&out[..4], &[2.0, 3.0, 4.0, 5.0]);
        r.push_iter((0..10).map(|i| i as f32));
        assert_eq!(r.pop_into(&mut out), 4);
        assert_eq!(&out[..4], &[6.0, 7.0, 8.0, 9.0]);
        assert!(r.is_empty());
        assert!(!r.stats().streaming);
        r.push_iter((0..10).map(|i| i as f32));
        assert!(!r.trim(4, 2));
        assert!(r.trim(3, 2));
        assert_eq!(r.len(), 2);
        assert_eq!(r.pop_into(&mut out), 2);
        assert_eq!(&out[..2], &[8.0, 9.0]);
        r.mark_streaming();
        assert!(r.stats().streaming);
    }

    #[test]
    fn a_stream_is_dead_after_an_error_and_a_silent_callback() {
        let r = Ring::new(4);
        // Never ran, no error: starting (a PulseAudio capture takes seconds to start).
        assert!(!r.dead(Duration::ZERO));
        r.mark_streaming();
        r.errors.fetch_add(1, Ordering::Relaxed);
        // An error while the callback still runs (an xrun the backend recovered from).
        assert!(!r.dead(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(20));
        assert!(r.dead(Duration::from_millis(10)));
        r.mark_streaming();
        assert!(!r.dead(Duration::from_millis(10)));
    }

    #[test]
    fn config_choice_prefers_wanted_rate_then_mono_f32() {
        let mk = |ch, min, max, f| {
            cpal::SupportedStreamConfigRange::new(
                ch,
                min,
                max,
                SupportedBufferSize::Range { min: 64, max: 8192 },
                f,
            )
        };
        let ranges = vec![
            mk(2, 44100, 44100, SampleFormat::F32),
            mk(2, 8000, 48000, SampleFormat::I16),
            mk(1, 8000, 48000, SampleFormat::I16),
            mk(1, 8000, 48000, SampleFormat::U8),
        ];
        let c = choose_config(ranges.clone().into_iter(), 16000).unwrap();
        assert_eq!((c.channels(), c.sample_rate()), (1, 16000));
        assert_eq!(c.sample_format(), SampleFormat::I16);
        let only44 = vec![mk(2, 44100, 44100, SampleFormat::F32)];
        let c = choose_config(only44.into_iter(), 8000).unwrap();
        assert_eq!(c.sample_rate(), 44100);
        assert_eq!(stream_config(&c).buffer_size, BufferSize::Fixed(441));
        assert!(choose_config(std::iter::empty(), 8000).is_none());
    }
}
