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
//!   that has not arrived yet): conceal it, or rebuild it from the next
//!   packet's FEC;
//! * [`Playout::Hold`]: a frame inserted to let the buffer grow (the playout
//!   point does not move): conceal it;
//! * [`Playout::Silence`]: not started (prebuffering) or drained (no packet for
//!   ~5 s, e.g. the far end stopped sending or put us on hold).
//!
//! Rules:
//! * **Duplicates** (same `(seq, ts)` as one of the last 64 accepted packets, or
//!   a slot that is already buffered) are dropped and counted.
//! * **Late** packets (slot already played) are dropped and counted. Packets
//!   discarded because the playout fell more than ~2 s behind are also counted
//!   as late.
//! * **Delay that follows the network** (after the relative-delay estimators of
//!   adaptive playout, e.g. Ramjee et al. and WebRTC's NetEq): every packet's
//!   transit time (arrival minus its timestamp) is taken relative to the
//!   fastest transit of the last ~10 s (the *base*); these relative delays go
//!   into a histogram (5 ms bins, 0-1 s) that forgets with a ~4 s memory, and
//!   the *target* is its 97th percentile plus a 4 ms margin (clamped to
//!   20-300 ms): the buffer delay at which 97 % of packets arrive in time. The
//!   histogram starts with the weight of 10 packets at the initial 40 ms, and
//!   for the first 2 s of a stream the target also gets up to half the largest
//!   relative delay seen (at most 40 ms, fading out): few samples underestimate
//!   the spread. While Opus FEC is in use the target is one frame longer. The
//!   *buffer delay* is measured at every pop: how long after the base transit
//!   of its slot the frame being played comes out. Every packet that arrives
//!   with a relative delay above it is late.
//! * **Growing fast, shrinking slowly and in pauses**: when the buffer delay is
//!   below the target a [`Playout::Hold`] is inserted at once in a pause (the
//!   last 2 frames played were quiet: the caller counts them) or when nothing
//!   is buffered; in speech only when the delay is 10 ms short of the target
//!   (less the FEC lookahead), at most one every 60 ms (a held frame is the
//!   codec's concealment, which continues the waveform). When it has exceeded
//!   the target by more than a frame plus 8 ms for 25 pops (0.5 s), one frame
//!   is dropped, only inside a pause (5 quiet frames); after 4 s of continuous
//!   speech one frame per second is dropped anyway.
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
//! No input (sequence number, timestamp, payload, arrival time, pop time) can
//! panic.

use std::collections::{BTreeMap, VecDeque};

/// Duration of one frame.
const FRAME_MS: u32 = 20;
const MIN_TARGET_MS: u32 = 20;
const MAX_TARGET_MS: u32 = 300;
const INITIAL_TARGET_MS: u32 = 40;
/// Never hold more than this many frames (2 s).
const MAX_FRAMES: i64 = 100;
/// Pops without any packet before the buffer is considered drained (5 s).
const IDLE_POPS: u32 = 250;
/// Timestamp jump (in frames) that restarts the buffer (10 s).
const JUMP_FRAMES: i64 = 500;
/// How many recently accepted `(seq, ts)` pairs are remembered for dedup.
const RECENT: usize = 64;
/// Relative-delay histogram: bin width and count (0..=1000 ms).
const BIN_MS: f64 = 5.0;
const BINS: usize = 201;
/// Per-packet forgetting of the histogram (memory ~1/(1-f) = 200 packets, 4 s).
const FORGET: f64 = 0.995;
/// The share of packets the target delay lets arrive in time.
const QUANTILE: f64 = 0.97;
/// Added to the quantile: pops are not exactly 20 ms apart.
const MARGIN_MS: f64 = 4.0;
/// Shrink only when the delay exceeds the target by a frame and this.
const SHRINK_SLACK_MS: f64 = 8.0;
/// Quiet frames in a row before a hold or a skip counts as being in a pause.
const HOLD_QUIET: u32 = 2;
const SKIP_QUIET: u32 = 5;
/// Packets over which the startup margin fades out.
const YOUNG_PACKETS: u32 = 100;
/// In speech, hold only when the delay is this far below the target.
const HOLD_SLACK_MS: f64 = 10.0;
/// Pops the delay must stay too long before a frame is dropped.
const SHRINK_AFTER: u32 = 25;
/// Pops between two holds while speech plays.
const HOLD_COOLDOWN: u32 = 3;
/// Pops of continuous speech after which a frame is dropped anyway, and then every so many.
const FORCED_SKIP_AFTER: u32 = 200;
const FORCED_SKIP_EVERY: u32 = 50;
/// The base transit is the minimum over this many buckets of this length.
const BASE_BUCKET_MS: u64 = 1000;
const BASE_BUCKETS: usize = 10;

/// The histogram starts as if this many packets had needed the initial target, so the first
/// packets of a call do not decide alone (the prior fades with the forgetting).
const PRIOR_WEIGHT: f64 = 10.0;

fn prior_histogram() -> Vec<f64> {
    let mut h = vec![0.0; BINS];
    let bin = ((f64::from(INITIAL_TARGET_MS) - MARGIN_MS) / BIN_MS).floor() as usize;
    if let Some(b) = h.get_mut(bin) {
        *b = PRIOR_WEIGHT;
    }
    h
}

/// What the playout side gets every 20 ms.
#[derive(Debug, PartialEq, Eq)]
pub enum Playout {
    /// The payload to decode.
    Frame(Vec<u8>),
    /// The frame of this slot is missing (lost, or not arrived in time): conceal it, or
    /// recover it from the next packet's in-band FEC.
    Conceal,
    /// A frame inserted to let the buffer grow (playout held): conceal, never FEC.
    Hold,
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
    /// `Conceal` and `Hold` results returned by `pop`.
    pub concealed: u64,
    /// Frames inserted (`Hold`) and dropped to follow the target.
    pub held: u64,
    pub skipped: u64,
    /// Current target delay.
    pub target_ms: u32,
    /// Audio currently buffered ahead of the playout point (gaps included).
    pub depth_ms: u32,
    /// The buffer delay: how long after the fastest packets' transit frames are played.
    pub delay_ms: u32,
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
    /// Minimum transit (arrival ms minus slot time) per bucket, newest last.
    base: VecDeque<(u64, f64)>,
    hist: Vec<f64>,
    hist_total: f64,
    target_ms: f64,
    /// Smoothed buffer delay (ms), `None` until the first pop while playing.
    delay: Option<f64>,
    cooldown: u32,
    /// Pops since the last quiet frame.
    loud_run: u32,
    /// Pops in a row with the delay above the target (and its slack).
    over_run: u32,
    /// Packets observed since the stream (re)started, and their largest relative delay.
    observed: u32,
    max_rel: f64,
    /// Added to the target so the packet after a lost one is here in time for its FEC.
    lookahead_ms: u32,
    received: u64,
    late: u64,
    duplicate: u64,
    concealed: u64,
    held: u64,
    skipped: u64,
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
            base: VecDeque::with_capacity(BASE_BUCKETS + 1),
            hist: prior_histogram(),
            hist_total: PRIOR_WEIGHT,
            target_ms: f64::from(INITIAL_TARGET_MS),
            delay: None,
            cooldown: 0,
            loud_run: 0,
            over_run: 0,
            lookahead_ms: 0,
            observed: 0,
            max_rel: 0.0,
            received: 0,
            late: 0,
            duplicate: 0,
            concealed: 0,
            held: 0,
            skipped: 0,
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
        self.observe(ext, arrival_ms);
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
            self.delay = None;
        }
        self.frames.insert(slot, payload);
        self.remember(seq, ts);
        while self.frames.len() > MAX_FRAMES as usize {
            self.frames.pop_first();
        }
    }

    /// Called every 20 ms by the playout clock, at `now_ms` on the clock of `push`'s arrival
    /// times. `quiet`: how many frames played last in a row were (near) silence: inside a
    /// pause, changing the delay is not heard.
    pub fn pop(&mut self, now_ms: u64, quiet: u32) -> Playout {
        if self.state == State::Idle {
            return Playout::Silence;
        }
        self.pops_since_push = self.pops_since_push.saturating_add(1);
        if self.pops_since_push > IDLE_POPS {
            self.go_idle();
            return Playout::Silence;
        }
        self.loud_run = if quiet > 0 {
            0
        } else {
            self.loud_run.saturating_add(1)
        };
        if self.state == State::Playing
            && let Some(out) = self.adjust_delay(now_ms, quiet)
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

    /// Wait `frames` more frames than the network needs, so that the packet after a lost one
    /// has arrived when the lost one is due (in-band FEC rebuilds it from that packet). Takes
    /// effect with the next packet.
    pub fn set_lookahead(&mut self, frames: u32) {
        self.lookahead_ms = frames.min(2).saturating_mul(FRAME_MS);
    }

    /// The payload that plays next, if it is here (after a `Conceal`, the packet following the
    /// missing one: its in-band FEC may rebuild it).
    pub fn next_payload(&self) -> Option<&[u8]> {
        self.frames.get(&self.cursor).map(Vec::as_slice)
    }

    pub fn stats(&self) -> JitterStats {
        JitterStats {
            received: self.received,
            late: self.late,
            duplicate: self.duplicate,
            concealed: self.concealed,
            held: self.held,
            skipped: self.skipped,
            target_ms: self.target_ms.round().clamp(0.0, f64::from(MAX_TARGET_MS)) as u32,
            depth_ms: self.depth_frames().saturating_mul(FRAME_MS),
            delay_ms: self
                .delay
                .filter(|_| self.state == State::Playing)
                .map_or(0, |d| d.round().clamp(0.0, 10_000.0) as u32),
        }
    }

    /// RTP timestamp units per 20 ms frame, as given to [`JitterBuffer::new`] (zero made 1).
    pub fn frame_ticks(&self) -> u32 {
        self.frame_ticks
    }

    /// Forget everything (new SSRC, or after hold), statistics included.
    pub fn reset(&mut self) {
        *self = Self::new(self.frame_ticks);
    }

    fn ticks(&self) -> i64 {
        i64::from(self.frame_ticks)
    }

    /// The target in whole frames, rounded up (the prebuffer).
    fn target_frames(&self) -> u32 {
        (self.target_ms / f64::from(FRAME_MS))
            .ceil()
            .clamp(1.0, f64::from(MAX_TARGET_MS / FRAME_MS)) as u32
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
        self.base.clear();
        self.observed = 0;
        self.max_rel = 0.0;
        self.high_ts = ts;
        self.high_ext = 0;
        self.observe(0, arrival_ms);
        self.cursor = -i64::from(self.target_frames());
        self.frames.insert(0, payload);
        self.remember(seq, ts);
        self.state = State::Prebuffering;
        self.delay = None;
        self.cooldown = 0;
    }

    fn go_idle(&mut self) {
        self.frames.clear();
        self.recent.clear();
        self.base.clear();
        self.state = State::Idle;
        self.delay = None;
        self.cooldown = 0;
        self.pops_since_push = 0;
    }

    fn remember(&mut self, seq: u16, ts: u32) {
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((seq, ts));
    }

    /// The slot's nominal time (ms) on the stream's own clock.
    fn slot_ms(&self, ext_ticks: f64) -> f64 {
        ext_ticks * f64::from(FRAME_MS) / f64::from(self.frame_ticks)
    }

    /// The fastest transit of the window.
    fn base_transit(&self) -> Option<f64> {
        self.base.iter().map(|(_, t)| *t).reduce(f64::min)
    }

    /// A packet of extended timestamp `ext` arrived: update the base transit, the histogram
    /// of relative delays and the target.
    fn observe(&mut self, ext: i64, arrival_ms: u64) {
        let transit = arrival_ms as f64 - self.slot_ms(ext as f64);
        if !transit.is_finite() {
            return;
        }
        let bucket = arrival_ms / BASE_BUCKET_MS;
        match self.base.back_mut() {
            Some((b, t)) if *b == bucket => *t = t.min(transit),
            _ => {
                self.base.push_back((bucket, transit));
                while self
                    .base
                    .front()
                    .is_some_and(|(b, _)| bucket.saturating_sub(*b) >= BASE_BUCKETS as u64)
                {
                    self.base.pop_front();
                }
            }
        }
        let Some(base) = self.base_transit() else {
            return;
        };
        let rel = (transit - base).clamp(0.0, BIN_MS * (BINS - 1) as f64);
        let bin = ((rel / BIN_MS).ceil() as usize).min(BINS - 1);
        for h in &mut self.hist {
            *h *= FORGET;
        }
        self.hist_total = self.hist_total * FORGET + 1.0;
        if let Some(h) = self.hist.get_mut(bin) {
            *h += 1.0;
        }
        let want = self.hist_total * QUANTILE;
        let mut sum = 0.0;
        let mut q = BINS - 1;
        for (i, h) in self.hist.iter().enumerate() {
            sum += h;
            if sum >= want {
                q = i;
                break;
            }
        }
        // Few samples underestimate the spread: half the largest relative delay seen (at most
        // two frames) more at first, fading over 2 s; nothing when there is no jitter.
        self.observed = self.observed.saturating_add(1);
        self.max_rel = self.max_rel.max(rel);
        let fading = (1.0 - f64::from(self.observed) / f64::from(YOUNG_PACKETS)).max(0.0);
        let young = (0.5 * self.max_rel).min(2.0 * f64::from(FRAME_MS)) * fading;
        self.target_ms = (q as f64 * BIN_MS + MARGIN_MS + young + f64::from(self.lookahead_ms))
            .clamp(f64::from(MIN_TARGET_MS), f64::from(MAX_TARGET_MS));
    }

    /// Moves the buffer delay toward the target: `Some(Hold)` when a frame is inserted (the
    /// playout point stays), a frame dropped when it is too long (the caller plays the next).
    fn adjust_delay(&mut self, now_ms: u64, quiet: u32) -> Option<Playout> {
        let base = self.base_transit()?;
        let measured = now_ms as f64 - base - self.cursor as f64 * f64::from(FRAME_MS);
        if !measured.is_finite() {
            return None;
        }
        let delay = match self.delay {
            Some(d) => d + (measured - d) / 4.0,
            None => measured,
        };
        self.delay = Some(delay);
        self.cooldown = self.cooldown.saturating_sub(1);
        let over = delay > self.target_ms + f64::from(FRAME_MS) + SHRINK_SLACK_MS;
        self.over_run = if over { self.over_run.saturating_add(1) } else { 0 };
        if delay < self.target_ms {
            // In a pause, or when starved (nothing buffered: the packets come too late), at
            // once; in speech (a held frame is heard) only when clearly short for the network
            // (the FEC lookahead waits for a pause), at most every 60 ms.
            if quiet >= HOLD_QUIET
                || self.frames.is_empty()
                || (self.cooldown == 0
                    && delay < self.target_ms - f64::from(self.lookahead_ms) - HOLD_SLACK_MS)
            {
                self.held = self.held.saturating_add(1);
                self.concealed = self.concealed.saturating_add(1);
                self.cooldown = HOLD_COOLDOWN;
                self.delay = Some(delay + f64::from(FRAME_MS));
                return Some(Playout::Hold);
            }
        } else if over && self.over_run >= SHRINK_AFTER && self.frames.len() > 1 {
            let forced = self.loud_run >= FORCED_SKIP_AFTER
                && (self.loud_run - FORCED_SKIP_AFTER).is_multiple_of(FORCED_SKIP_EVERY);
            if quiet >= SKIP_QUIET || forced {
                self.frames.remove(&self.cursor);
                self.cursor += 1;
                self.skipped = self.skipped.saturating_add(1);
                self.delay = Some(delay - f64::from(FRAME_MS));
            }
        }
        None
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
            out.push(jb.pop(now, 0));
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
        let (_, stats) = simulate(&mut jb, pkts, 120);
        // one delayed packet is a spike; three (3 % of the memory) move the 97th percentile
        assert!(stats[105].target_ms <= 60, "{}", stats[105].target_ms);
        assert!(stats[109].target_ms >= 120, "{}", stats[109].target_ms);
        // and the buffer delay follows (a held frame every 60 ms at most, in speech)
        let caught_up = stats.iter().skip(109).position(|s| s.delay_ms >= 110);
        assert!(
            caught_up.is_some_and(|p| p <= 16),
            "{caught_up:?} {:?}",
            stats[119]
        );
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
        // the second burst prebuffers again (at most the initial 40 ms) then plays fully
        assert_eq!(out[400], Playout::Silence);
        let first = out[400..].iter().position(|p| matches!(p, Playout::Frame(_)));
        assert!(matches!(first, Some(1 | 2)), "{first:?}");
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
        assert_eq!(jb.pop(0, 0), Playout::Silence);
        assert_eq!(jb.frames.len(), 0);
    }

    #[test]
    fn zero_frame_ticks_does_not_panic() {
        let mut jb = JitterBuffer::new(0);
        for i in 0..100u32 {
            jb.push(i as u16, i, vec![], u64::from(i));
            let _ = jb.pop(u64::from(i), 0);
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
                    let _ = jb.pop(now, (r >> 8) as u32 % 8);
                }
            }
            assert_eq!(jb.stats().received, 10_000);
        }
    }
}
