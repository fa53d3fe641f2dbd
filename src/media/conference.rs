//! The local conference's audio paths: every leg's session sends what its far end said to
//! every other leg, and adds what the other legs' far ends said to the agent's microphone
//! before it sends. So each party hears the others and the agent; the agent hears every leg
//! on the speaker (each session plays its own far end). Legs may run at different sample
//! rates (G.711 at 8 kHz, G.722 at 16 kHz, Opus at 48 kHz): a link resamples on the way in.
//! Frames travel on small bounded channels between the sessions' threads; a full channel
//! drops the frame (a leg that stalled is not waited for) and a backlog is trimmed to keep the
//! delay to a few frames.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

use super::resample::{Resampler, f32_to_i16, i16_to_f32};

/// Frames a link holds before it drops (each 20 ms).
const CHANNEL_FRAMES: usize = 8;
/// The most samples kept waiting from one leg, in frames: older audio is dropped.
const MAX_BACKLOG_FRAMES: usize = 3;

/// One leg's ends of the links with the other legs.
pub struct ConfLink {
    outs: Vec<SyncSender<Vec<i16>>>,
    ins: Vec<Inlet>,
}

impl std::fmt::Debug for ConfLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfLink({} legs)", self.ins.len() + 1)
    }
}

/// What one other leg sends, converted to this leg's rate.
struct Inlet {
    rx: Receiver<Vec<i16>>,
    resampler: Option<Resampler>,
    pending: VecDeque<i16>,
    scratch: Vec<f32>,
    gone: bool,
}

/// The links of a conference of legs at these sample rates (one `ConfLink` per leg, in
/// order; every leg linked with every other).
pub fn links(rates: &[u32]) -> Vec<ConfLink> {
    let n = rates.len();
    let mut legs: Vec<ConfLink> = (0..n)
        .map(|_| ConfLink {
            outs: Vec::new(),
            ins: Vec::new(),
        })
        .collect();
    for from in 0..n {
        for to in 0..n {
            if from == to {
                continue;
            }
            let (tx, rx) = sync_channel(CHANNEL_FRAMES);
            legs[from].outs.push(tx);
            let resampler = (rates[from] != rates[to])
                .then(|| Resampler::new(rates[from], rates[to]).ok())
                .flatten();
            legs[to].ins.push(Inlet {
                rx,
                resampler,
                pending: VecDeque::new(),
                scratch: Vec::new(),
                gone: false,
            });
        }
    }
    legs
}

impl ConfLink {
    /// Hands this leg's far end's frame to the other legs.
    pub fn send(&mut self, frame: &[i16]) {
        for out in &self.outs {
            // Full: that leg is behind; the frame is dropped rather than waited for.
            let _ = out.try_send(frame.to_vec());
        }
    }

    /// Adds the other legs' audio to `frame` (the agent's microphone), sample by sample.
    pub fn mix_into(&mut self, frame: &mut [i16]) {
        for inlet in &mut self.ins {
            inlet.take(frame.len());
            let n = frame.len().min(inlet.pending.len());
            for (s, o) in frame.iter_mut().zip(inlet.pending.drain(..n)) {
                *s = s.saturating_add(o);
            }
        }
    }

    /// Every other leg has left (its session ended).
    pub fn is_alone(&self) -> bool {
        self.ins.iter().all(|i| i.gone)
    }
}

impl Inlet {
    /// Reads what arrived, converted, keeping at most a few frames of `frame_len`.
    fn take(&mut self, frame_len: usize) {
        loop {
            match self.rx.try_recv() {
                Ok(f) => match self.resampler.as_mut() {
                    None => self.pending.extend(f),
                    Some(r) => {
                        let input: Vec<f32> = f.iter().map(|&s| i16_to_f32(s)).collect();
                        r.push(&input);
                        self.scratch.resize(r.available(), 0.0);
                        let n = r.pop_into(&mut self.scratch);
                        self.pending
                            .extend(self.scratch[..n].iter().map(|&s| f32_to_i16(s)));
                    }
                },
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.gone = true;
                    break;
                }
            }
        }
        let max = frame_len * MAX_BACKLOG_FRAMES;
        if self.pending.len() > max {
            let extra = self.pending.len() - max;
            self.pending.drain(..extra);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::tone_ratio;

    fn sine(freq: f64, rate: u32, start: usize, n: usize) -> Vec<i16> {
        (start..start + n)
            .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin()) as i16)
            .collect()
    }

    #[test]
    fn each_leg_gets_the_others_far_ends_mixed_with_the_agent() {
        // Leg 0 at 8 kHz hears 600 Hz from its far end; leg 1 at 16 kHz hears 1400 Hz.
        let mut l = links(&[8000, 16000]);
        let (mut out0, mut out1) = (Vec::new(), Vec::new());
        for t in 0..50 {
            let far0 = sine(600.0, 8000, t * 160, 160);
            let far1 = sine(1400.0, 16000, t * 320, 320);
            l[0].send(&far0);
            l[1].send(&far1);
            // The agent says nothing: what each leg sends is the other's far end.
            let mut mic0 = vec![0i16; 160];
            let mut mic1 = vec![0i16; 320];
            l[0].mix_into(&mut mic0);
            l[1].mix_into(&mut mic1);
            out0.extend(mic0);
            out1.extend(mic1);
        }
        let tail0 = &out0[out0.len() - 1600..];
        let tail1 = &out1[out1.len() - 3200..];
        assert!(tone_ratio(tail0, 8000, 1400.0) > 0.5, "leg 0 hears leg 1's party");
        assert!(tone_ratio(tail0, 8000, 600.0) < 0.05, "not its own far end");
        assert!(tone_ratio(tail1, 16000, 600.0) > 0.5, "leg 1 hears leg 0's party");
        assert!(tone_ratio(tail1, 16000, 1400.0) < 0.05);
    }

    #[test]
    fn a_leg_that_left_is_noticed_and_a_stalled_one_does_not_grow_the_delay() {
        let mut l = links(&[8000, 8000]);
        for _ in 0..100 {
            l[1].send(&[100; 160]);
        }
        let mut mic = vec![0i16; 160];
        l[0].mix_into(&mut mic);
        assert!(l[0].ins[0].pending.len() <= 160 * MAX_BACKLOG_FRAMES);
        assert!(!l[0].is_alone());
        l.truncate(1);
        l[0].mix_into(&mut mic);
        assert!(l[0].is_alone());
    }
}
