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
    /// Frames played since the stream started (decoded, concealed or held).
    pub played: u64,
    /// Slots that had no packet to play (lost or late) and no FEC: the loss the listener
    /// hears, and the runs they came in.
    pub missing: u64,
    pub missing_runs: u64,
}

impl ReceiverStats {
    /// Missing frames, percent of the frames played.
    pub fn missing_percent(&self) -> f64 {
        if self.played == 0 {
            0.0
        } else {
            self.missing as f64 * 100.0 / self.played as f64
        }
    }

    /// G.107's burst ratio of the missing frames: their mean run length over the one random
    /// loss at the same rate would give (`1 / (1 - p)`); 1 when there is no loss.
    pub fn burst_ratio(&self) -> f64 {
        if self.missing_runs == 0 || self.played == 0 {
            return 1.0;
        }
        let p = (self.missing as f64 / self.played as f64).min(0.99);
        let mean_run = self.missing as f64 / self.missing_runs as f64;
        (mean_run * (1.0 - p)).max(1.0)
    }
}

/// Jitter buffer + decoder; see the module documentation.
#[derive(Debug)]
pub struct AudioReceiver {
    jitter: JitterBuffer,
    concealed: u64,
    fec_recovered: u64,
    undecodable: u64,
    played: u64,
    missing: u64,
    missing_runs: u64,
    /// The last slot was missing (a run continues).
    in_run: bool,
    level: Level,
    /// Frames until the FEC lookahead is dropped (no FEC used for that long).
    fec_fresh: u32,
}

/// A packet carrying FEC (or a frame rebuilt from it) keeps the one-frame lookahead for 30 s.
const FEC_MEMORY: u32 = 1500;

/// Is the audio just played a pause? Its RMS below an absolute floor (-46 dBFS) or 20 dB
/// under the running level of the talk (so steady background noise still has pauses).
#[derive(Debug, Clone, Copy, Default)]
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
            played: 0,
            missing: 0,
            missing_runs: 0,
            in_run: false,
            level: Level::default(),
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
        let playout = self.jitter.pop(now_ms, quiet);
        if playout != Playout::Silence {
            self.played = self.played.saturating_add(1);
        }
        let held = playout == Playout::Hold;
        let mut missing = false;
        match playout {
            Playout::Frame(payload) => {
                // The far end sends FEC: wait one frame more, so that the packet after a lost
                // one is here when the lost one is due.
                if codec.carries_fec(&payload) {
                    self.fec_fresh = FEC_MEMORY;
                    self.jitter.set_lookahead(1);
                }
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
                    missing = true;
                    self.conceal(codec, out);
                }
            }
            Playout::Hold => self.conceal(codec, out),
            Playout::Silence => {}
        }
        if missing {
            self.missing = self.missing.saturating_add(1);
            if !self.in_run {
                self.missing_runs = self.missing_runs.saturating_add(1);
            }
        }
        // A held frame neither ends nor extends a run.
        if !held {
            self.in_run = missing;
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
            played: self.played,
            missing: self.missing,
            missing_runs: self.missing_runs,
        }
    }

    /// Forget the stream (new SSRC, after hold); counters included.
    pub fn reset(&mut self) {
        *self = Self::new(self.jitter.frame_ticks());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::by_name;

    /// Plays `n` pops, 20 ms apart, pushing packet `i` (PCMU, a constant level per packet)
    /// at `arrive(i)` unless it is `None` (lost).
    fn run(n: u64, arrive: impl Fn(u32) -> Option<u64>) -> (Vec<i16>, ReceiverStats) {
        let mut codec = by_name("PCMU", 8000).expect("PCMU");
        let mut rx = AudioReceiver::new(160);
        let mut pkts: Vec<(u64, u32)> = (0..(n as u32))
            .filter_map(|i| arrive(i).map(|t| (t, i)))
            .collect();
        pkts.sort();
        let mut it = pkts.into_iter().peekable();
        let mut out = Vec::new();
        for k in 0..n {
            let now = k * 20 + 3;
            while let Some((t, i)) = it.next_if(|(t, _)| *t <= now) {
                // a loud buzz (not a pause), its level varying a little packet by packet
                let payload: Vec<u8> = (0..160)
                    .map(|j| {
                        crate::media::g711::ulaw_encode(
                            if (j / 10) % 2 == 0 { 8000 } else { -8000 } + i as i16,
                        )
                    })
                    .collect();
                rx.push(i as u16, i * 160, payload, t);
            }
            let start = out.len();
            rx.play(codec.as_mut(), &mut out, now);
            out.resize(start + 160, 0);
        }
        (out, rx.stats())
    }

    #[test]
    fn clean_stream_has_nothing_missing() {
        let (_, s) = run(300, |i| Some(u64::from(i) * 20));
        assert_eq!(
            (s.missing, s.missing_runs, s.concealed, s.fec_recovered),
            (0, 0, 0, 0)
        );
        assert!(s.played >= 290);
        assert_eq!(s.missing_percent(), 0.0);
        assert_eq!(s.burst_ratio(), 1.0);
    }

    #[test]
    fn lost_packets_counted_as_missing_in_runs() {
        // Ten single losses and one run of five.
        let lost = |i: u32| (i % 25 == 7 && i < 250) || (260..265).contains(&i);
        let (_, s) = run(400, |i| (!lost(i)).then_some(u64::from(i) * 20));
        assert_eq!(s.missing, 15, "{s:?}");
        assert_eq!(s.missing_runs, 11, "{s:?}");
        let p = s.missing_percent();
        assert!((3.5..4.0).contains(&p), "{p}");
        // Mean run 15/11 against 1/(1-p) for random loss: bursty.
        assert!(s.burst_ratio() > 1.2, "{}", s.burst_ratio());
        assert_eq!(s.jitter.late, 0);
    }

    #[test]
    fn late_packets_are_missing_too() {
        // Packet 100 comes 200 ms late: its slot is concealed and the packet dropped as late.
        let (_, s) = run(300, |i| Some(u64::from(i) * 20 + if i == 100 { 200 } else { 0 }));
        assert_eq!(s.jitter.late, 1);
        assert!(s.missing >= 1, "{s:?}");
    }

    #[test]
    fn opus_lost_frame_is_rebuilt_from_fec_not_concealed() {
        let mut enc = by_name("opus", 48000).expect("opus");
        enc.apply_fmtp("useinbandfec=1");
        enc.loss_hint(10.0);
        let pcm: Vec<i16> = (0..48000 * 2)
            .map(|i| {
                let t = i as f64 / 48000.0;
                // syllables: the loudness moves at 3 Hz
                let env = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
                let v: f64 = env
                    * (1..6)
                        .map(|k| (2.0 * std::f64::consts::PI * 150.0 * f64::from(k) * t).sin() / f64::from(k))
                        .sum::<f64>();
                (7000.0 * v) as i16
            })
            .collect();
        let packets: Vec<Vec<u8>> = pcm
            .chunks_exact(960)
            .map(|f| {
                let mut p = Vec::new();
                assert!(enc.encode(f, &mut p).is_ok());
                p
            })
            .collect();
        // Two losses whose next packet carries FEC (libopus adds it to active speech only).
        let lost: Vec<usize> = (30..packets.len() - 1)
            .filter(|k| crate::media::opus_codec::has_fec(&packets[k + 1]))
            .step_by(10)
            .take(2)
            .collect();
        assert_eq!(lost.len(), 2, "too few packets carry FEC");
        let mut dec = by_name("opus", 48000).expect("opus");
        let mut rx = AudioReceiver::new(960);
        let mut out = Vec::new();
        for (k, _) in packets.iter().enumerate() {
            // Packets arrive on time, but for the two lost.
            if !lost.contains(&k) {
                rx.push(k as u16, (k * 960) as u32, packets[k].clone(), k as u64 * 20);
            }
            rx.play(dec.as_mut(), &mut out, k as u64 * 20 + 3);
        }
        // Flush the buffer.
        for k in packets.len()..packets.len() + 5 {
            rx.play(dec.as_mut(), &mut out, k as u64 * 20 + 3);
        }
        let s = rx.stats();
        assert_eq!(s.fec_recovered, 2, "{s:?}");
        // Nothing missing but the pops after the stream ended (one run at the end).
        assert!(s.missing <= 5 && s.missing_runs <= 1, "{s:?}");
    }
}
