//! Audio device layer: microphone sources and speaker sinks for the softphone.
//!
//! Everything is mono 16-bit PCM exchanged in 20 ms frames at the rate the
//! caller asks for when opening. A device is chosen with a [`DeviceSpec`]:
//!
//! * `Default` / `Named` — a sound device through cpal (PulseAudio host when a
//!   PulseAudio server is reachable, else ALSA); see `cpal_io.rs`.
//!   Named devices match the cpal device id (PulseAudio: the sink/source
//!   name such as `ctinull.monitor`; ALSA: the PCM id) or the display name.
//! * `Null` — the source gives silence, the sink discards.
//! * `File` — a WAV file (see `wav_io.rs`): the source loops it, the sink
//!   records into it.
//!
//! Opening never panics: a missing sound card or device gives `Err`, and the
//! caller is expected to warn and fall back to [`DeviceSpec::Null`].
//! ALSA library error lines are silenced (see [`silence_alsa_errors`]) before
//! any cpal call so they never reach the terminal UI.

use std::path::PathBuf;
use std::sync::Once;

/// Which device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The system default device.
    Default,
    /// A device by id or display name (see [`list_inputs`] / [`list_outputs`]).
    Named(String),
    /// Silence / discard.
    Null,
    /// A WAV file.
    File(PathBuf),
}

impl DeviceSpec {
    /// "" or "default" → Default, "null" → Null, "file:PATH" → File, else Named.
    /// Surrounding whitespace is ignored; "default" and "null" ignore case.
    pub fn parse(s: &str) -> DeviceSpec {
        let t = s.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("default") {
            DeviceSpec::Default
        } else if t.eq_ignore_ascii_case("null") {
            DeviceSpec::Null
        } else if let Some(path) = t.strip_prefix("file:") {
            DeviceSpec::File(PathBuf::from(path))
        } else {
            DeviceSpec::Named(t.to_string())
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    /// The inverse of [`DeviceSpec::parse`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Default => f.write_str("default"),
            DeviceSpec::Named(n) => f.write_str(n),
            DeviceSpec::Null => f.write_str("null"),
            DeviceSpec::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// Counters of a device since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames padded with silence because the device had not delivered
    /// enough (source) or the callback found the ring empty (sink).
    pub underruns: u64,
    /// Times the ring was full and the oldest audio was dropped.
    pub overruns: u64,
    /// Errors reported by the stream's error callback (or the resampler).
    pub errors: u64,
    /// The sound device's callback has run at least once: audio is flowing
    /// (capture delivered data / playback asked for data). Always false for
    /// `Null` and `File`.
    pub streaming: bool,
}

/// The microphone side: gives 20 ms frames of mono PCM at the rate asked for at open.
pub trait Source: Send {
    /// Fills `frame` entirely (silence where no audio is available).
    fn pull(&mut self, frame: &mut [i16]);
    /// A human-readable name of the device.
    fn name(&self) -> String;
    /// Underrun/overrun/error counters (zero for devices without any).
    fn stats(&self) -> DeviceStats {
        DeviceStats::default()
    }
    /// A change of the device's state to tell the agent (it was lost, it is back), once.
    fn notice(&mut self) -> Option<String> {
        None
    }
    /// False once the device stopped for good (its sound server went away and its stream
    /// no longer runs); [`Resilient`](super::resilient::Resilient) then replaces it.
    fn alive(&self) -> bool {
        true
    }
}

/// The speaker side: takes 20 ms frames of mono PCM at the rate asked for at open.
pub trait Sink: Send {
    /// Queues `frame` for playback (or writing).
    fn push(&mut self, frame: &[i16]);
    /// A human-readable name of the device.
    fn name(&self) -> String;
    /// Write out what is buffered (file sink: finalize the WAV).
    fn finish(&mut self) -> Result<(), String>;
    /// Underrun/overrun/error counters (zero for devices without any).
    fn stats(&self) -> DeviceStats {
        DeviceStats::default()
    }
    /// A change of the device's state to tell the agent (it was lost, it is back), once.
    fn notice(&mut self) -> Option<String> {
        None
    }
    /// False once the device stopped for good (its sound server went away and its stream
    /// no longer runs); [`Resilient`](super::resilient::Resilient) then replaces it.
    fn alive(&self) -> bool {
        true
    }
}

/// Silent source.
#[derive(Debug, Default)]
pub struct NullSource;

impl Source for NullSource {
    fn pull(&mut self, frame: &mut [i16]) {
        frame.fill(0);
    }
    fn name(&self) -> String {
        "null".to_string()
    }
}

/// Discarding sink.
#[derive(Debug, Default)]
pub struct NullSink;

impl Sink for NullSink {
    fn push(&mut self, _frame: &[i16]) {}
    fn name(&self) -> String {
        "null".to_string()
    }
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Opens a source at `rate` Hz mono. No sound card / device missing → Err (the caller warns and falls back to Null).
pub fn open_source(spec: &DeviceSpec, rate: u32) -> Result<Box<dyn Source>, String> {
    check_rate(rate)?;
    match spec {
        DeviceSpec::Null => Ok(Box::new(NullSource)),
        DeviceSpec::File(path) => Ok(Box::new(super::wav_io::WavSource::open(path, rate)?)),
        DeviceSpec::Default | DeviceSpec::Named(_) => {
            silence_alsa_errors();
            let name = match spec {
                DeviceSpec::Named(n) => Some(n.clone()),
                _ => None,
            };
            let dev = super::cpal_io::CpalSource::open(name.as_deref(), rate)?;
            Ok(Box::new(super::resilient::Resilient::new(
                dev,
                "microphone",
                move || super::cpal_io::CpalSource::open(name.as_deref(), rate),
            )))
        }
    }
}

/// Opens a sink at `rate` Hz mono. No sound card / device missing → Err (the caller warns and falls back to Null).
pub fn open_sink(spec: &DeviceSpec, rate: u32) -> Result<Box<dyn Sink>, String> {
    check_rate(rate)?;
    match spec {
        DeviceSpec::Null => Ok(Box::new(NullSink)),
        DeviceSpec::File(path) => Ok(Box::new(super::wav_io::WavSink::create(path, rate)?)),
        DeviceSpec::Default | DeviceSpec::Named(_) => {
            silence_alsa_errors();
            let name = match spec {
                DeviceSpec::Named(n) => Some(n.clone()),
                _ => None,
            };
            let dev = super::cpal_io::CpalSink::open(name.as_deref(), rate)?;
            Ok(Box::new(super::resilient::Resilient::new(
                dev,
                "speaker",
                move || super::cpal_io::CpalSink::open(name.as_deref(), rate),
            )))
        }
    }
}

/// Names of input devices (for the settings pane); each works with `DeviceSpec::Named`.
pub fn list_inputs() -> Vec<String> {
    silence_alsa_errors();
    super::cpal_io::list_devices(true)
}

/// Names of output devices (for the settings pane); each works with `DeviceSpec::Named`.
pub fn list_outputs() -> Vec<String> {
    silence_alsa_errors();
    super::cpal_io::list_devices(false)
}

fn check_rate(rate: u32) -> Result<(), String> {
    if (1000..=384_000).contains(&rate) {
        Ok(())
    } else {
        Err(format!("unsupported sample rate {rate} Hz"))
    }
}

/// The ALSA error handler we install: ignores everything.
///
/// ALSA declares the handler as variadic (`const char *fmt, ...`). Stable
/// Rust cannot define a variadic function, so this one takes only the fixed
/// arguments; on the System V x86-64 and AAPCS64 (Linux) ABIs the fixed
/// arguments are passed identically for variadic and non-variadic calls, and
/// the function never reads the variadic part, so calling it through the
/// variadic pointer is sound in practice (the same technique other crates
/// use).
unsafe extern "C" fn alsa_quiet_handler(
    _file: *const std::ffi::c_char,
    _line: std::ffi::c_int,
    _function: *const std::ffi::c_char,
    _err: std::ffi::c_int,
    _fmt: *const std::ffi::c_char,
) {
}

/// Installs a no-op ALSA library error handler (once per process), so ALSA
/// never prints "ALSA lib pcm.c:..." lines to stderr while devices are
/// probed. Uses `alsa-sys` 0.4, the same crate (via `alsa` 0.11) that cpal's
/// ALSA host links. Called by `open_*` and `list_*`; calling it earlier
/// (at start-up) is harmless.
pub fn silence_alsa_errors() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        type Fixed = unsafe extern "C" fn(
            *const std::ffi::c_char,
            std::ffi::c_int,
            *const std::ffi::c_char,
            std::ffi::c_int,
            *const std::ffi::c_char,
        );
        type Variadic = unsafe extern "C" fn(
            *const std::ffi::c_char,
            std::ffi::c_int,
            *const std::ffi::c_char,
            std::ffi::c_int,
            *const std::ffi::c_char,
            ...
        );
        let fixed: Fixed = alsa_quiet_handler;
        // SAFETY: see `alsa_quiet_handler`: same fixed-argument ABI, the
        // handler ignores its arguments; ALSA only stores the pointer.
        unsafe {
            let handler = std::mem::transmute::<Fixed, Variadic>(fixed);
            alsa_sys::snd_lib_error_set_handler(Some(handler));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_specs() {
        assert_eq!(DeviceSpec::parse(""), DeviceSpec::Default);
        assert_eq!(DeviceSpec::parse("  "), DeviceSpec::Default);
        assert_eq!(DeviceSpec::parse("default"), DeviceSpec::Default);
        assert_eq!(DeviceSpec::parse("Default"), DeviceSpec::Default);
        assert_eq!(DeviceSpec::parse("null"), DeviceSpec::Null);
        assert_eq!(
            DeviceSpec::parse("file:/tmp/a b.wav"),
            DeviceSpec::File(PathBuf::from("/tmp/a b.wav"))
        );
        assert_eq!(
            DeviceSpec::parse("ctinull.monitor"),
            DeviceSpec::Named("ctinull.monitor".into())
        );
        assert_eq!(DeviceSpec::parse("hw:0,0"), DeviceSpec::Named("hw:0,0".into()));
        for s in ["default", "null", "file:x.wav", "hw:1"] {
            assert_eq!(
                DeviceSpec::parse(&DeviceSpec::parse(s).to_string()),
                DeviceSpec::parse(s)
            );
        }
    }

    #[test]
    fn null_devices() {
        let mut src = open_source(&DeviceSpec::Null, 8000).unwrap();
        let mut f = [7i16; 160];
        src.pull(&mut f);
        assert!(f.iter().all(|&s| s == 0));
        let mut sink = open_sink(&DeviceSpec::Null, 8000).unwrap();
        sink.push(&f);
        assert!(sink.finish().is_ok());
        assert_eq!(sink.stats(), DeviceStats::default());
        assert!(open_source(&DeviceSpec::Null, 0).is_err());
    }

    #[test]
    fn missing_named_device_is_an_error() {
        silence_alsa_errors();
        silence_alsa_errors();
        let name = DeviceSpec::Named("no-such-device-xyz".into());
        assert!(open_source(&name, 8000).is_err());
        assert!(open_sink(&name, 8000).is_err());
        let _ = list_inputs();
        let _ = list_outputs();
    }
}
