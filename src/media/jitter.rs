//! Adaptive jitter buffer for 20 ms audio frames.
//!
//! Packets are ordered by RTP timestamp, unwrapped to 64 bits relative to the
//! highest timestamp seen (so 2^32 timestamp wrap-around and 2^16 sequence
//! wrap-around are transparent), and mapped to 20 ms *slots*
//! (`round(ts_offset / frame_ticks)`). The playout side calls
//! [`JitterBuffer::pop`] every 20 ms; each call consumes one slot:
//!
//! * [`Playout::Frame`]: the packet for this slot;
//! * [`Playout::Conceal`]: the slot is empty while playing (loss, or a packet
//!   that has not arrived yet); also used for the single frames inserted to
//!   grow the buffer;
//! * [`Playout::Silence`]: not started (prebuffering) or drained (no packet for
//!   ~5 s, e.g. the far end stopped sending or put us on hold).
//!
//! Rules:
//! * **Duplicates** (same `(seq, ts)` as one of the last 64 accepted packets, or
//!   a slot that is already buffered) are dropped and counted.
//! * **Late** packets (slot already played) are dropped and counted. Packets
//!   discarded because the playout fell more than ~2 s behind are also counted
//!   as late.
//! * **Adaptive delay**: an RFC 3550 interarrival jitter estimate `J`
//!   (`J += (|D| - J) / 16`, D from arrival time vs. timestamp) plus a decaying
//!   peak of `|D|` give a wanted delay `max(3·J, peak) + 20 ms`, rounded up to a
//!   whole frame and clamped to 20-200 ms. The target starts at 40 ms, grows
//!   immediately when the wanted delay is higher (spikes) and shrinks by one
//!   frame only after 25 consecutive packets wanting less (slow decay). The
//!   buffered depth follows the target one frame at a time, at most every
//!   100 ms: one frame is skipped when the smoothed depth exceeds the target by
//!   ≥ 2 frames, one `Conceal` is inserted (playout held) when it is more than
//!   one frame below. The codec payload is opaque here, so every frame
//!   boundary is treated as a safe point; the rate limit keeps it inaudible-ish.
//! * **Bounded memory**: at most 100 frames (2 s) are held; a packet more than
//!   2 s ahead of the playout point resynchronises the playout point (older
//!   packets are dropped), and the oldest packet is evicted as a last resort.
//! * **Idle**: after 250 pops (~5 s) without any packet the buffer drains to
//!   `Silence`; the next packet restarts the prebuffer.
//! * **Jumps**: a timestamp jump of more than 10 s (either way) from the
//!   highest timestamp seen (new talkspurt after a long pause, SSRC change)
//!   restarts the buffer at the new packet (statistics are kept).
//! * [`JitterBuffer::reset`] forgets everything, statistics included.
//!
//! The prebuffer starts at the first packet: playout begins `target` ms after
//! it (in pops), so a packet reordered before the first one can still play.
//! No input (sequence number, timestamp, payload, arrival time) can panic.

use std::collections::{BTreeMap, VecDeque};

/// Duration of one frame.
const FRAME_MS: u32 = 20;
const MIN_TARGET_MS: u32 = 20;
const MAX_TARGET_MS: u32 = 200;
const INITIAL_TARGET_MS: u32 = 40;
/// Never hold more than this many frames (2 s).
const MAX_FRAMES: i64 = 100;
/// Pops without any packet before the buffer is considered drained (5 s).
const IDLE_POPS: u32 = 250;
/// Timestamp jump (in frames) that restarts the buffer (10 s).
const JUMP_FRAMES: i64 = 500;
/// How many recently accepted `(seq, ts)` pairs are remembered for dedup.
const RECENT: usize = 64;
/// Pops between two depth adjustments (skip / insert).
const ADJUST_COOLDOWN: u32 = 5;
/// Consecutive packets wanting a smaller target before it shrinks one frame.
const SHRINK_AFTER: u32 = 25;
/// Cap on a single |D| sample, so one absurd arrival can't dominate.
const MAX_D_MS: f64 = 1000.0;
/// Per-packet decay of the |D| peak tracker.
const PEAK_DECAY: f64 = 0.98;

/// What the playout side gets every 20 ms.
#[derive(Debug, PartialEq, Eq)]
pub enum Playout {
    /// The payload to decode.
    Frame(Vec<u8>),
    /// A frame is missing: run PLC.
    Conceal,
    /// Not started yet or drained (e.g. the far end stopped sending, on hold).
    Silence,
}

/// Counters and current delay figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Every packet passed to `push`.
    pub received: u64,
    /// Packets dropped because their slot had already been played.
    pub late: u64,
    /// Packets dropped as duplicates.
    pub duplicate: u64,
    /// `Conceal` results returned by `pop`.
    pub concealed: u64,
    /// Current target delay.
    pub target_ms: u32,
    /// Audio currently buffered ahead of the playout point (gaps included).
    pub depth_ms: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No stream: `pop` returns `Silence`, the next packet starts a prebuffer.
    Idle,
    /// Waiting for the first frame's playout time: `pop` returns `Silence`.
    Prebuffering,
    /// Playing: empty slots give `Conceal`.
    Playing,
}

/// Adaptive jitter buffer; see the module documentation.
#[derive(Debug)]
pub struct JitterBuffer {
    frame_ticks: u32,
    state: State,
    /// Highest RTP timestamp seen and its extended (unwrapped) value.
    high_ts: u32,
    high_ext: i64,
    /// Next slot to play.
    cursor: i64,
    frames: BTreeMap<i64, Vec<u8>>,
    recent: VecDeque<(u16, u32)>,
    pops_since_push: u32,
    jitter_ms: f64,
    peak_ms: f64,
    last_transit: Option<f64>,
    target_ms: u32,
    shrink_count: u32,
    avg_level: Option<f64>,
    cooldown: u32,
    received: u64,
    late: u64,
    duplicate: u64,
    concealed: u64,
}

impl JitterBuffer {
    /// `frame_ticks`: RTP timestamp units per 20 ms frame (160 at 8 kHz, 960
    /// at 48 kHz). Zero is treated as 1.
    pub fn new(frame_ticks: u32) -> Self {
        Self {
            frame_ticks: frame_ticks.max(1),
            state: State::Idle,
            high_ts: 0,
            high_ext: 0,
            cursor: 0,
            frames: BTreeMap::new(),
            recent: VecDeque::with_capacity(RECENT),
            pops_since_push: 0,
            jitter_ms: 0.0,
            peak_ms: 0.0,
            last_transit: None,
            target_ms: INITIAL_TARGET_MS,
            shrink_count: 0,
            avg_level: None,
            cooldown: 0,
            received: 0,
            late: 0,
            duplicate: 0,
            concealed: 0,
        }
    }

    /// A packet arrived (sequence number, RTP timestamp, payload, arrival time
    /// in ms on a monotonic clock).
    pub fn push(&mut self, seq: u16, ts: u32, payload: Vec<u8>, arrival_ms: u64) {
        self.received = self.received.saturating_add(1);
        self.pops_since_push = 0;
        if self.state == State::Idle {
            self.start(seq, ts, payload, arrival_ms);
            return;
        }
        if self.recent.contains(&(seq, ts)) {
            self.duplicate = self.duplicate.saturating_add(1);
            return;
        }
        let delta = i64::from(ts.wrapping_sub(self.high_ts) as i32);
        if delta.abs() > JUMP_FRAMES * self.ticks() {
            self.start(seq, ts, payload, arrival_ms);
            return;
        }
        let ext = self.high_ext + delta;
        if delta > 0 {
            self.high_ext = ext;
            self.high_ts = ts;
        }
        self.update_jitter(ext, arrival_ms);
        let slot = self.slot_of(ext);
        if slot < self.cursor {
            self.late = self.late.saturating_add(1);
            return;
        }
        if self.frames.contains_key(&slot) {
            self.duplicate = self.duplicate.saturating_add(1);
            return;
        }
        if slot - self.cursor >= MAX_FRAMES {
            // Playout fell more than 2 s behind the stream: jump forward to
            // `target` before this packet, dropping what would be too old.
            let new_cursor = slot - i64::from(self.target_frames());
            let kept = self.frames.split_off(&new_cursor);
            let dropped = u64::try_from(self.frames.len()).unwrap_or(u64::MAX);
            self.late = self.late.saturating_add(dropped);
            self.frames = kept;
            self.cursor = new_cursor;
            self.avg_level = None;
        }
        self.frames.insert(slot, payload);
        self.remember(seq, ts);
        while self.frames.len() > MAX_FRAMES as usize {
            self.frames.pop_first();
        }
    }

    /// Called every 20 ms by the playout clock.
    pub fn pop(&mut self) -> Playout {
        if self.state == State::Idle {
            return Playout::Silence;
        }
        self.pops_since_push = self.pops_since_push.saturating_add(1);
        if self.pops_since_push > IDLE_POPS {
            self.go_idle();
            return Playout::Silence;
        }
        if self.state == State::Playing
            && let Some(out) = self.adjust_depth()
        {
            return out;
        }
        let frame = self.frames.remove(&self.cursor);
        self.cursor += 1;
        match frame {
            Some(payload) => {
                self.state = State::Playing;
                Playout::Frame(payload)
            }
            None if self.state == State::Playing => {
                self.concealed = self.concealed.saturating_add(1);
                Playout::Conceal
            }
            None => Playout::Silence,
        }
    }

    pub fn stats(&self) -> JitterStats {
        JitterStats {
            received: self.received,
            late: self.late,
            duplicate: self.duplicate,
            concealed: self.concealed,
            target_ms: self.target_ms,
            depth_ms: self.depth_frames().saturating_mul(FRAME_MS),
        }
    }

    /// Forget everything (new SSRC, or after hold), statistics included.
    pub fn reset(&mut self) {
        *self = Self::new(self.frame_ticks);
    }

    fn ticks(&self) -> i64 {
        i64::from(self.frame_ticks)
    }

    fn target_frames(&self) -> u32 {
        self.target_ms / FRAME_MS
    }

    fn slot_of(&self, ext: i64) -> i64 {
        let ft = self.ticks();
        (ext + ft / 2).div_euclid(ft)
    }

    /// Frames from the playout point to the newest buffered packet.
    fn depth_frames(&self) -> u32 {
        match self.frames.last_key_value() {
            Some((&last, _)) if self.state != State::Idle => {
                u32::try_from((last + 1 - self.cursor).max(0)).unwrap_or(u32::MAX)
            }
            _ => 0,
        }
    }

    /// (Re)start the stream at this packet: it becomes slot 0, and playout
    /// begins `target` after it.
    fn start(&mut self, seq: u16, ts: u32, payload: Vec<u8>, arrival_ms: u64) {
        self.frames.clear();
        self.recent.clear();
        self.high_ts = ts;
        self.high_ext = 0;
        self.last_transit = None;
        self.update_jitter(0, arrival_ms);
        self.cursor = -i64::from(self.target_frames());
        self.frames.insert(0, payload);
        self.remember(seq, ts);
        self.state = State::Prebuffering;
        self.avg_level = None;
        self.cooldown = 0;
    }

    fn go_idle(&mut self) {
        self.frames.clear();
        self.recent.clear();
        self.state = State::Idle;
        self.last_transit = None;
        self.avg_level = None;
        self.cooldown = 0;
        self.pops_since_push = 0;
    }

    fn remember(&mut self, seq: u16, ts: u32) {
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((seq, ts));
    }

    /// RFC 3550 §6.4.1 interarrival jitter, plus a decaying peak of |D|.
    fn update_jitter(&mut self, ext: i64, arrival_ms: u64) {
        let ticks_per_ms = f64::from(self.frame_ticks) / f64::from(FRAME_MS);
        let transit = arrival_ms as f64 - ext as f64 / ticks_per_ms;
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).abs().min(MAX_D_MS);
            if d.is_finite() {
                self.jitter_ms += (d - self.jitter_ms) / 16.0;
                self.peak_ms = (self.peak_ms * PEAK_DECAY).max(d);
                self.adapt_target();
            }
        }
        self.last_transit = Some(transit);
    }

    fn adapt_target(&mut self) {
        // (the 1 ms slack lets the decaying estimates fall back to 20 ms)
        let want = (3.0 * self.jitter_ms).max(self.peak_ms) + f64::from(FRAME_MS) - 1.0;
        let frames = (want / f64::from(FRAME_MS)).ceil().clamp(
            f64::from(MIN_TARGET_MS / FRAME_MS),
            f64::from(MAX_TARGET_MS / FRAME_MS),
        );
        let want_ms = (frames as u32).saturating_mul(FRAME_MS);
        if want_ms > self.target_ms {
            self.target_ms = want_ms.min(MAX_TARGET_MS);
            self.shrink_count = 0;
        } else if want_ms < self.target_ms {
            self.shrink_count += 1;
            if self.shrink_count >= SHRINK_AFTER {
                self.target_ms = (self.target_ms - FRAME_MS).max(MIN_TARGET_MS);
                self.shrink_count = 0;
            }
        } else {
            self.shrink_count = 0;
        }
    }

    /// Moves the buffered depth toward the target, one frame at a time.
    /// Returns `Some(Conceal)` when a frame is inserted (playout held).
    fn adjust_depth(&mut self) -> Option<Playout> {
        // Frames that remain buffered after this pop.
        let level = match self.frames.last_key_value() {
            Some((&last, _)) => (last - self.cursor).clamp(0, MAX_FRAMES) as f64,
            None => 0.0,
        };
        let avg = match self.avg_level {
            Some(a) => a + (level - a) / 8.0,
            None => level,
        };
        self.avg_level = Some(avg);
        if self.cooldown > 0 {
            self.cooldown -= 1;
            return None;
        }
        let target = f64::from(self.target_frames());
        if avg >= target + 2.0 && level >= 1.0 {
            // Skip one frame; the caller plays the next slot.
            self.frames.remove(&self.cursor);
            self.cursor += 1;
            self.avg_level = Some(avg - 1.0);
            self.cooldown = ADJUST_COOLDOWN;
            None
        } else if avg + 1.0 < target && !self.frames.is_empty() {
            // Insert one concealed frame without advancing the playout point.
            self.avg_level = Some(avg + 1.0);
            self.cooldown = ADJUST_COOLDOWN;
            self.concealed = self.concealed.saturating_add(1);
            Some(Playout::Conceal)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::media::test_rng::Rng;

    struct Pkt {
        arrival: u64,
        seq: u16,
        ts: u32,
        id: u32,
    }

    /// Regular stream: packet `i` sent at `20*i` ms.
    fn stream(n: u32, seq0: u16, ts0: u32, ft: u32) -> Vec<Pkt> {
        (0..n)
            .map(|i| Pkt {
                arrival: u64::from(i) * 20,
                seq: seq0.wrapping_add(i as u16),
                ts: ts0.wrapping_add(i.wrapping_mul(ft)),
                id: i,
            })
            .collect()
    }

    /// Every 20 ms: push what has arrived by then, then pop once.
    fn simulate(jb: &mut JitterBuffer, mut pkts: Vec<Pkt>, pops: u64) -> (Vec<Playout>, Vec<JitterStats>) {
        pkts.sort_by_key(|p| p.arrival);
        let mut it = pkts.into_iter().peekable();
        let mut out = Vec::new();
        let mut stats = Vec::new();
        for k in 0..pops {
            let now = k * 20;
            while let Some(p) = it.next_if(|p| p.arrival <= now) {
                jb.push(p.seq, p.ts, p.id.to_le_bytes().to_vec(), p.arrival);
            }
            out.push(jb.pop());
            stats.push(jb.stats());
        }
        (out, stats)
    }

    fn ids(out: &[Playout]) -> Vec<u32> {
        out.iter()
            .filter_map(|p| match p {
                Playout::Frame(b) => Some(u32::from_le_bytes(b.as_slice().try_into().ok()?)),
                _ => None,
            })
            .collect()
    }

    /// Output up to and including the last frame.
    fn until_last_frame(out: &[Playout]) -> &[Playout] {
        let end = out
            .iter()
            .rposition(|p| matches!(p, Playout::Frame(_)))
            .map_or(0, |i| i + 1);
        &out[..end]
    }

    fn count(out: &[Playout], what: &Playout) -> usize {
        out.iter().filter(|p| *p == what).count()
    }

    #[test]
    fn in_order_stream_plays_every_frame() {
        let mut jb = JitterBuffer::new(160);
        let (out, _) = simulate(&mut jb, stream(200, 0, 1234, 160), 220);
        assert_eq!(ids(&out), (0..200).collect::<Vec<_>>());
        let played = until_last_frame(&out);
        assert_eq!(count(played, &Playout::Conceal), 0);
        // 40 ms prebuffer
        assert_eq!(&out[..2], &[Playout::Silence, Playout::Silence]);
        assert!(matches!(out[2], Playout::Frame(_)));
        let s = jb.stats();
        assert_eq!((s.received, s.late, s.duplicate), (200, 0, 0));
    }

    #[test]
    fn swapped_pairs_play_in_order() {
        let mut pkts = stream(300, 100, 0, 960);
        for pair in pkts.chunks_mut(2) {
            if let [a, b] = pair {
                std::mem::swap(&mut a.arrival, &mut b.arrival);
            }
        }
        let mut jb = JitterBuffer::new(960);
        let (out, _) = simulate(&mut jb, pkts, 330);
        assert_eq!(ids(&out), (0..300).collect::<Vec<_>>());
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn lost_packet_gives_one_conceal_in_its_slot() {
        let pkts: Vec<Pkt> = stream(100, 0, 0, 160)
            .into_iter()
            .filter(|p| p.id != 50)
            .collect();
        let mut jb = JitterBuffer::new(160);
        let (out, _) = simulate(&mut jb, pkts, 110);
        let played = until_last_frame(&out);
        assert_eq!(count(played, &Playout::Conceal), 1);
        let pos = played.iter().position(|p| *p == Playout::Conceal).unwrap_or(0);
        assert_eq!(played[pos - 1], Playout::Frame(49u32.to_le_bytes().to_vec()));
        assert_eq!(played[pos + 1], Playout::Frame(51u32.to_le_bytes().to_vec()));
        let expected: Vec<u32> = (0..100).filter(|&i| i != 50).collect();
        assert_eq!(ids(&out), expected);
    }

    #[test]
    fn late_packet_dropped_and_counted() {
        let mut pkts = stream(100, 0, 0, 160);
        pkts[50].arrival += 200; // well after its slot (~40 ms after sending)
        let mut jb = JitterBuffer::new(160);
        // (the spike raises the target, so playout of the tail is delayed)
        let (out, _) = simulate(&mut jb, pkts, 150);
        let expected: Vec<u32> = (0..100).filter(|&i| i != 50).collect();
        assert_eq!(ids(&out), expected);
        let s = jb.stats();
        assert_eq!(s.late, 1);
        assert!(s.concealed >= 1);
    }

    #[test]
    fn duplicates_dropped_and_counted() {
        let mut pkts = stream(100, 0, 0, 160);
        let mut dups = Vec::new();
        for p in pkts.iter().filter(|p| p.id % 10 == 3) {
            // a copy arriving at the same time, and a copy after playout
            dups.push(Pkt { ..*p });
            dups.push(Pkt {
                arrival: p.arrival + 100,
                ..*p
            });
        }
        pkts.extend(dups);
        let mut jb = JitterBuffer::new(160);
        let (out, _) = simulate(&mut jb, pkts, 110);
        assert_eq!(ids(&out), (0..100).collect::<Vec<_>>());
        let s = jb.stats();
        assert_eq!(s.duplicate, 20);
        assert_eq!(s.late, 0);
        assert_eq!(s.received, 120);
    }

    #[test]
    fn duplicate_with_new_seq_same_timestamp_is_dropped() {
        let mut jb = JitterBuffer::new(160);
        jb.push(1, 0, vec![1], 0);
        jb.push(2, 160, vec![2], 20);
        jb.push(99, 160, vec![9], 20);
        assert_eq!(jb.stats().duplicate, 1);
    }

    #[test]
    fn sequence_wraps_at_65535() {
        let mut jb = JitterBuffer::new(160);
        let (out, _) = simulate(&mut jb, stream(100, 65_500, 0, 160), 110);
        assert_eq!(ids(&out), (0..100).collect::<Vec<_>>());
        assert_eq!(count(until_last_frame(&out), &Playout::Conceal), 0);
    }

    #[test]
    fn timestamp_wraps_at_u32_max() {
        for ft in [160u32, 960] {
            let ts0 = u32::MAX - 20 * ft + 7;
            let mut pkts = stream(100, 7, ts0, ft);
            for pair in pkts.chunks_mut(2) {
                if let [a, b] = pair {
                    std::mem::swap(&mut a.arrival, &mut b.arrival);
                }
            }
            let mut jb = JitterBuffer::new(ft);
            let (out, _) = simulate(&mut jb, pkts, 120);
            assert_eq!(ids(&out), (0..100).collect::<Vec<_>>());
            assert_eq!(jb.stats().late, 0);
        }
    }

    #[test]
    fn target_adapts_to_jitter_and_recovers() {
        let mut rng = Rng(42);
        let mut pkts = stream(2000, 0, 0, 160);
        for p in pkts.iter_mut() {
            let jitter = if p.id < 500 { rng.range(-30, 30) } else { 0 };
            p.arrival = (p.arrival as i64 + 30 + jitter) as u64;
        }
        let mut jb = JitterBuffer::new(160);
        let (out, stats) = simulate(&mut jb, pkts, 2010);
        assert_eq!(stats[0].target_ms, INITIAL_TARGET_MS);
        let during = stats[480].target_ms;
        assert!(during > 40, "target during jitter: {during}");
        assert!(during <= MAX_TARGET_MS);
        let after = stats[1990].target_ms;
        assert!(after <= 40, "target after jitter: {after}");
        assert!(stats[1990].depth_ms <= 80, "depth {}", stats[1990].depth_ms);
        // frames still come out strictly in order
        let got = ids(&out);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        assert!(got.len() > 1900, "played {}", got.len());
    }

    #[test]
    fn spike_grows_target_fast() {
        let mut pkts = stream(200, 0, 0, 160);
        for p in pkts.iter_mut().filter(|p| p.id >= 100) {
            p.arrival += 120; // sudden 120 ms delay step
        }
        let mut jb = JitterBuffer::new(160);
        let (_, stats) = simulate(&mut jb, pkts, 110);
        assert!(stats[106].target_ms >= 140, "{}", stats[106].target_ms);
    }

    #[test]
    fn drains_to_silence_and_restarts() {
        let mut jb = JitterBuffer::new(160);
        let mut pkts = stream(50, 0, 0, 160);
        // the far end resumes 8 s later (timestamps continue, < 10 s jump)
        for i in 0..50u32 {
            pkts.push(Pkt {
                arrival: 8_000 + u64::from(i) * 20,
                seq: 50 + i as u16,
                ts: (400 + i) * 160,
                id: 1000 + i,
            });
        }
        let (out, _) = simulate(&mut jb, pkts, 500);
        // silence well before the restart
        assert!(out[320..400].iter().all(|p| *p == Playout::Silence));
        // no more than ~5 s of concealment after the stream stopped
        let conceals = count(&out[..400], &Playout::Conceal);
        assert!((240..=260).contains(&conceals), "{conceals}");
        // the second burst prebuffers again (target has shrunk to 20 ms on the
        // clean stream) then plays fully
        assert_eq!(out[400], Playout::Silence);
        assert!(matches!(out[401], Playout::Frame(_)));
        let got = ids(&out);
        let expected: Vec<u32> = (0..50).chain(1000..1050).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn large_timestamp_jump_restarts() {
        let mut jb = JitterBuffer::new(160);
        let mut pkts = stream(50, 0, 0, 160);
        for i in 0..50u32 {
            pkts.push(Pkt {
                arrival: 1_000 + u64::from(i) * 20,
                seq: 9_000 + i as u16,
                ts: 3_000_000_000u32.wrapping_add(i * 160),
                id: 1000 + i,
            });
        }
        let (out, _) = simulate(&mut jb, pkts, 120);
        let got = ids(&out);
        let second: Vec<u32> = got.iter().copied().filter(|&i| i >= 1000).collect();
        assert_eq!(second, (1000..1050).collect::<Vec<_>>());
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn far_ahead_packet_keeps_memory_bounded() {
        let mut jb = JitterBuffer::new(160);
        for i in 0..10u32 {
            jb.push(i as u16, i * 160, vec![0; 10], u64::from(i) * 20);
        }
        // 5 s ahead, below the 10 s reset threshold
        jb.push(10, 260 * 160, vec![1], 200);
        assert!(jb.frames.len() <= MAX_FRAMES as usize);
        assert!(jb.stats().depth_ms <= MAX_TARGET_MS + 2 * FRAME_MS);
        assert_eq!(jb.stats().late, 10);
    }

    #[test]
    fn reset_forgets_everything() {
        let mut jb = JitterBuffer::new(160);
        let _ = simulate(&mut jb, stream(20, 0, 0, 160), 10);
        jb.reset();
        assert_eq!(
            jb.stats(),
            JitterStats {
                target_ms: INITIAL_TARGET_MS,
                ..JitterStats::default()
            }
        );
        assert_eq!(jb.pop(), Playout::Silence);
        assert_eq!(jb.frames.len(), 0);
    }

    #[test]
    fn zero_frame_ticks_does_not_panic() {
        let mut jb = JitterBuffer::new(0);
        for i in 0..100u32 {
            jb.push(i as u16, i, vec![], u64::from(i));
            let _ = jb.pop();
        }
    }

    #[test]
    fn random_flood_is_bounded_and_never_panics() {
        for ft in [160u32, 960, 1] {
            let mut rng = Rng(0xDEAD_BEEF ^ u64::from(ft));
            let mut jb = JitterBuffer::new(ft);
            let mut now = 0u64;
            for n in 0..10_000u32 {
                let r = rng.next_u64();
                // half fully random, half near a plausible stream
                let ts = if r & 1 == 0 {
                    (r >> 32) as u32
                } else {
                    n.wrapping_mul(ft)
                        .wrapping_add((rng.range(-300, 300) * i64::from(ft)) as u32)
                };
                let seq = (rng.next_u64() >> 7) as u16;
                let len = (rng.next_u64() % 300) as usize;
                let arrival = match r % 50 {
                    0 => rng.next_u64(),
                    _ => {
                        now += rng.next_u64() % 40;
                        now
                    }
                };
                jb.push(seq, ts, vec![n as u8; len], arrival);
                assert!(jb.frames.len() <= MAX_FRAMES as usize);
                assert!(jb.recent.len() <= RECENT);
                let s = jb.stats();
                assert!((MIN_TARGET_MS..=MAX_TARGET_MS).contains(&s.target_ms));
                assert!(s.depth_ms <= (MAX_FRAMES as u32 + 1) * FRAME_MS);
                for _ in 0..(r >> 60) % 3 {
                    let _ = jb.pop();
                }
            }
            assert_eq!(jb.stats().received, 10_000);
        }
    }
}
