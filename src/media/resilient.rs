//! Sound devices that come back. A cpal stream whose sound server goes away (the SSH forward
//! to the agent's PulseAudio dropped, the server restarted) never recovers: its error callback
//! fires in a loop and no audio moves again. Wrapped here, such a device is closed at the
//! first burst of errors (a warning for the call: it goes on in silence), then opened again
//! every [`RETRY`] on a thread of its own — never in the call's media loop — and used again as
//! soon as it opens (a second notice says so).

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use super::device::{DeviceStats, Sink, Source};

/// How often a lost device is tried again.
pub const RETRY: Duration = Duration::from_secs(1);
/// Stream errors within one frame that mean the device is gone (a dead server gives tens of
/// thousands a second; an xrun a few).
const LOST_AFTER: u64 = 50;

type Opener<D> = Arc<dyn Fn() -> Result<D, String> + Send + Sync>;

/// A device opened again by `open` whenever it fails.
pub struct Resilient<D> {
    dev: Option<D>,
    open: Opener<D>,
    /// `microphone` or `speaker`, for the notices.
    what: &'static str,
    /// The device's error count when last looked at.
    errors: u64,
    /// An open under way on its thread.
    pending: Option<Receiver<Result<D, String>>>,
    next_try: Instant,
    /// A change to report (lost, back).
    notice: Option<String>,
    /// Counters of devices given up, so `stats` stays monotonic.
    past: DeviceStats,
}

impl<D: Send + 'static> Resilient<D> {
    /// Wraps an opened device; `open` opens another like it.
    pub fn new(
        dev: D,
        what: &'static str,
        open: impl Fn() -> Result<D, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            dev: Some(dev),
            open: Arc::new(open),
            what,
            errors: 0,
            pending: None,
            next_try: Instant::now(),
            notice: None,
            past: DeviceStats::default(),
        }
    }

    /// Checks the device's health (a burst of stream errors, or a stream that stopped:
    /// `alive`) and, while it is lost, its reopening; returns the device to use now, if any.
    fn device(
        &mut self,
        errors: impl Fn(&D) -> u64,
        alive: impl Fn(&D) -> bool,
        stats: impl Fn(&D) -> DeviceStats,
    ) -> Option<&mut D> {
        if let Some(d) = &self.dev {
            let now = errors(d);
            if now.saturating_sub(self.errors) >= LOST_AFTER || !alive(d) {
                let s = stats(d);
                self.past.underruns += s.underruns;
                self.past.overruns += s.overruns;
                self.past.errors += s.errors;
                // Dropping it stops its stream (and the error loop).
                self.dev = None;
                self.next_try = Instant::now() + RETRY;
                self.notice = Some(format!(
                    "{}: the sound server went away; the call goes on in silence and the {} is tried again every {} s",
                    self.what,
                    self.what,
                    RETRY.as_secs()
                ));
                tracing::warn!("{}: stream errors, device closed", self.what);
            } else {
                self.errors = now;
            }
        }
        if self.dev.is_none() {
            self.retry();
        }
        self.dev.as_mut()
    }

    /// Starts an open when one is due, and takes the device when one has opened.
    fn retry(&mut self) {
        if let Some(rx) = &self.pending {
            match rx.try_recv() {
                Ok(Ok(d)) => {
                    self.pending = None;
                    self.dev = Some(d);
                    self.errors = 0;
                    self.notice = Some(format!("{}: the sound server is back; sound again", self.what));
                    tracing::warn!("{}: device open again", self.what);
                }
                Ok(Err(e)) => {
                    self.pending = None;
                    self.next_try = Instant::now() + RETRY;
                    tracing::debug!("{}: still no device: {e}", self.what);
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    self.pending = None;
                    self.next_try = Instant::now() + RETRY;
                }
            }
            return;
        }
        if Instant::now() < self.next_try {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let open = self.open.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{}-reopen", self.what))
            .spawn(move || {
                let _ = tx.send(open());
            });
        match spawned {
            Ok(_) => self.pending = Some(rx),
            Err(_) => self.next_try = Instant::now() + RETRY,
        }
    }

    /// A change since the last call, once.
    fn take_notice(&mut self) -> Option<String> {
        self.notice.take()
    }

    fn stats_with(&self, stats: impl Fn(&D) -> DeviceStats) -> DeviceStats {
        let mut s = self.dev.as_ref().map(&stats).unwrap_or_default();
        s.underruns += self.past.underruns;
        s.overruns += self.past.overruns;
        s.errors += self.past.errors;
        s
    }
}

impl<D: Source + 'static> Source for Resilient<D> {
    fn pull(&mut self, frame: &mut [i16]) {
        match self.device(|d| d.stats().errors, |d| d.alive(), |d| d.stats()) {
            Some(d) => d.pull(frame),
            None => frame.fill(0),
        }
    }

    fn name(&self) -> String {
        self.dev
            .as_ref()
            .map_or_else(|| format!("{} (lost)", self.what), |d| d.name())
    }

    fn stats(&self) -> DeviceStats {
        self.stats_with(|d| d.stats())
    }

    fn notice(&mut self) -> Option<String> {
        self.take_notice()
    }
}

impl<D: Sink + 'static> Sink for Resilient<D> {
    fn push(&mut self, frame: &[i16]) {
        if let Some(d) = self.device(|d| d.stats().errors, |d| d.alive(), |d| d.stats()) {
            d.push(frame);
        }
    }

    fn name(&self) -> String {
        self.dev
            .as_ref()
            .map_or_else(|| format!("{} (lost)", self.what), |d| d.name())
    }

    fn finish(&mut self) -> Result<(), String> {
        self.dev.as_mut().map_or(Ok(()), |d| d.finish())
    }

    fn stats(&self) -> DeviceStats {
        self.stats_with(|d| d.stats())
    }

    fn notice(&mut self) -> Option<String> {
        self.take_notice()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use super::*;

    /// A source whose error count (and life) the test drives.
    struct Flaky {
        errors: Arc<AtomicU64>,
        dead: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Source for Flaky {
        fn pull(&mut self, frame: &mut [i16]) {
            frame.fill(7);
        }
        fn name(&self) -> String {
            "flaky".into()
        }
        fn stats(&self) -> DeviceStats {
            DeviceStats {
                errors: self.errors.load(Ordering::Relaxed),
                ..DeviceStats::default()
            }
        }
        fn alive(&self) -> bool {
            !self.dead.load(Ordering::Relaxed)
        }
    }

    /// A stream that stopped without a burst of errors (PulseAudio's connection closed: one
    /// error, then no callback) is lost too, and replaced by a new one.
    #[test]
    fn a_device_that_stops_is_replaced() {
        let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let (e2, d2) = (errors.clone(), dead.clone());
        let mut r = Resilient::new(
            Flaky {
                errors: errors.clone(),
                dead: dead.clone(),
            },
            "speaker",
            move || {
                Ok(Flaky {
                    errors: e2.clone(),
                    dead: Arc::new(std::sync::atomic::AtomicBool::new(false)),
                })
            },
        );
        let mut frame = [0i16; 160];
        r.pull(&mut frame);
        assert_eq!((frame[0], r.notice()), (7, None));
        d2.store(true, Ordering::Relaxed);
        r.pull(&mut frame);
        assert_eq!(frame[0], 0);
        assert!(r.notice().is_some_and(|n| n.contains("went away")));
        let end = Instant::now() + RETRY * 3;
        while frame[0] != 7 && Instant::now() < end {
            r.pull(&mut frame);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(frame[0], 7, "the stopped device was not replaced");
        assert!(r.notice().is_some_and(|n| n.contains("back")));
    }

    #[test]
    fn a_device_that_fails_is_silent_then_opened_again() {
        let errors = Arc::new(AtomicU64::new(0));
        let opens = Arc::new(AtomicUsize::new(0));
        let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (e2, o2, u2) = (errors.clone(), opens.clone(), up.clone());
        let mut r = Resilient::new(
            Flaky {
                errors: errors.clone(),
                dead: Arc::default(),
            },
            "microphone",
            move || {
                o2.fetch_add(1, Ordering::Relaxed);
                if u2.load(Ordering::Relaxed) {
                    e2.store(0, Ordering::Relaxed);
                    Ok(Flaky {
                        errors: e2.clone(),
                        dead: Arc::default(),
                    })
                } else {
                    Err("connection refused".into())
                }
            },
        );
        let mut frame = [0i16; 160];
        r.pull(&mut frame);
        assert_eq!(frame[0], 7);
        assert_eq!(r.notice(), None);
        // A few errors (an xrun) are not a lost device.
        errors.store(3, Ordering::Relaxed);
        r.pull(&mut frame);
        assert_eq!((frame[0], r.notice()), (7, None));
        // A burst is.
        errors.store(100_000, Ordering::Relaxed);
        r.pull(&mut frame);
        assert_eq!(frame[0], 0, "silence once lost");
        assert!(r.notice().is_some_and(|n| n.contains("went away")));
        assert!(r.name().contains("lost"));
        // Retried every RETRY while the server is down, without blocking a pull.
        let end = Instant::now() + RETRY * 3 + Duration::from_millis(500);
        while Instant::now() < end {
            let t = Instant::now();
            r.pull(&mut frame);
            assert!(t.elapsed() < Duration::from_millis(50));
            assert_eq!(frame[0], 0);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            (2..=4).contains(&opens.load(Ordering::Relaxed)),
            "{} tries",
            opens.load(Ordering::Relaxed)
        );
        // Back: used again, said once.
        up.store(true, Ordering::Relaxed);
        let end = Instant::now() + RETRY * 3;
        while frame[0] != 7 && Instant::now() < end {
            r.pull(&mut frame);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(frame[0], 7, "the device was not used again");
        assert!(r.notice().is_some_and(|n| n.contains("back")));
        assert_eq!(r.notice(), None);
        assert!(
            r.stats().errors >= 100_000,
            "the lost device's errors stay counted"
        );
    }
}
