//! The receive half of a call's audio: the jitter buffer and the decoder driven together, once
//! per 20 ms, so that a missing frame is recovered from the next packet's in-band FEC when the
//! codec carries one (Opus) and concealed by the codec's PLC otherwise. The media session and
//! `ctiphone bench audio`'s in-process receiver both play through this, so the bench measures
//! the code a call runs.

use super::codec::Codec;
use super::jitter::{JitterBuffer, JitterStats, Playout};

/// Counters of the receive path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub jitter: JitterStats,
    /// Frames filled by the codec's concealment (lost, late, or inserted to grow the buffer).
    pub concealed: u64,
    /// Frames rebuilt from the next packet's in-band FEC instead.
    pub fec_recovered: u64,
    /// Payloads the decoder refused (concealed instead).
    pub undecodable: u64,
}

/// Jitter buffer + decoder; see the module documentation.
#[derive(Debug)]
pub struct AudioReceiver {
    jitter: JitterBuffer,
    concealed: u64,
    fec_recovered: u64,
    undecodable: u64,
    level: Level,
    /// Frames until the FEC lookahead is dropped (no FEC used for that long).
    fec_fresh: u32,
}

/// A frame rebuilt from FEC keeps the one-frame lookahead for 30 s.
const FEC_MEMORY: u32 = 1500;

/// Is the audio just played a pause? Its RMS below an absolute floor (-46 dBFS) or 20 dB
/// under the running level of the talk (so steady background noise still has pauses).
#[derive(Debug, Clone, Copy)]
struct Level {
    last_rms: f64,
    talk_rms: f64,
    /// Frames in a row that were quiet.
    quiet_frames: u32,
}

impl Level {
    const FLOOR: f64 = 160.0;

    fn frame(&mut self, pcm: &[i16]) {
        if pcm.is_empty() {
            self.last_rms = 0.0;
            self.quiet_frames = self.quiet_frames.saturating_add(1);
            return;
        }
        let sum: f64 = pcm.iter().map(|s| f64::from(*s) * f64::from(*s)).sum();
        self.last_rms = (sum / pcm.len() as f64).sqrt();
        if self.last_rms > Self::FLOOR {
            // ~1 s memory of the talk level
            self.talk_rms += (self.last_rms - self.talk_rms) / 50.0;
        }
        let quiet = self.last_rms < Self::FLOOR || self.last_rms < self.talk_rms / 10.0;
        self.quiet_frames = if quiet {
            self.quiet_frames.saturating_add(1)
        } else {
            0
        };
    }
}

impl AudioReceiver {
    /// `frame_ticks`: RTP timestamp units per 20 ms frame of the codec.
    pub fn new(frame_ticks: u32) -> Self {
        Self {
            jitter: JitterBuffer::new(frame_ticks),
            concealed: 0,
            fec_recovered: 0,
            undecodable: 0,
            level: Level {
                last_rms: 0.0,
                talk_rms: 0.0,
                quiet_frames: 0,
            },
            fec_fresh: 0,
        }
    }

    /// A packet arrived (arrival in ms on a monotonic clock).
    pub fn push(&mut self, seq: u16, ts: u32, payload: Vec<u8>, arrival_ms: u64) {
        self.jitter.push(seq, ts, payload, arrival_ms);
    }

    /// Appends the next 20 ms to `out` (nothing before the stream starts or after it drained;
    /// the caller pads with silence). `now_ms`: the clock of `push`'s arrival times.
    pub fn play(&mut self, codec: &mut dyn Codec, out: &mut Vec<i16>, now_ms: u64) {
        let start = out.len();
        let quiet = self.level.quiet_frames;
        match self.jitter.pop(now_ms, quiet) {
            Playout::Frame(payload) => {
                if codec.decode(&payload, out).is_err() {
                    self.undecodable = self.undecodable.saturating_add(1);
                    self.conceal(codec, out);
                }
            }
            Playout::Conceal => {
                if let Some(next) = self.jitter.next_payload()
                    && codec.recover(next, out)
                {
                    self.fec_recovered = self.fec_recovered.saturating_add(1);
                    self.fec_fresh = FEC_MEMORY;
                    self.jitter.set_lookahead(1);
                } else {
                    out.truncate(start);
                    self.conceal(codec, out);
                }
            }
            Playout::Hold => self.conceal(codec, out),
            Playout::Silence => {}
        }
        self.level.frame(out.get(start..).unwrap_or_default());
        if self.fec_fresh > 0 {
            self.fec_fresh -= 1;
            if self.fec_fresh == 0 {
                self.jitter.set_lookahead(0);
            }
        }
    }

    fn conceal(&mut self, codec: &mut dyn Codec, out: &mut Vec<i16>) {
        self.concealed = self.concealed.saturating_add(1);
        codec.conceal(out);
    }

    pub fn stats(&self) -> ReceiverStats {
        ReceiverStats {
            jitter: self.jitter.stats(),
            concealed: self.concealed,
            fec_recovered: self.fec_recovered,
            undecodable: self.undecodable,
        }
    }

    /// Forget the stream (new SSRC, after hold); counters included.
    pub fn reset(&mut self) {
        self.jitter.reset();
        self.concealed = 0;
        self.fec_recovered = 0;
        self.undecodable = 0;
        self.fec_fresh = 0;
        self.level = Level {
            last_rms: 0.0,
            talk_rms: 0.0,
            quiet_frames: 0,
        };
    }
}
