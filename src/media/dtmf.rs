//! RFC 4733 telephone-events (DTMF over RTP).
//!
//! * [`event_code`] / [`digit`] map between keypad characters and event codes
//!   (`'0'`-`'9'` → 0-9, `'*'` → 10, `'#'` → 11, `'A'`-`'D'` → 12-15).
//! * [`encode`] / [`decode`] handle the 4-byte event payload
//!   (event, E bit, R bit, 6-bit volume, 16-bit duration in timestamp units).
//! * [`DtmfSender`] produces the packet train for one digit: 5 tone packets
//!   (100 ms at 20 ms pacing, marker bit on the first, duration growing by one
//!   frame per packet) followed by 3 identical end packets (E bit set), all
//!   carrying the same RTP timestamp (the event start).
//! * [`DtmfReceiver`] turns received event packets into digits.
//!
//! Receiver policy: a digit is reported **when the first packet of a new event
//! arrives** (whatever packet that is: a tone packet, or an end packet if all
//! tone packets were lost), which gives the lowest latency. Events are keyed by
//! their RTP timestamp, so repeated end packets, retransmissions and reordered
//! packets of the same event never report it twice. Stragglers from an event
//! older than the most recent one (within a window of 2^18 timestamp units) are
//! ignored rather than reported out of order. A long-duration event split into
//! segments (RFC 4733 §2.5.2.3: previous segment reached ~0xFFFF without the E
//! bit, next segment starts 0xFFFF later with the same code) is reported once.
//!
//! Everything here is total over its inputs: any payload bytes, any timestamp.

/// Volume (−dBm0, 0-63) we put in the events we send.
pub const DEFAULT_VOLUME: u8 = 10;

/// Tone packets per digit: 100 ms at 20 ms pacing.
const TONE_PACKETS: u32 = 5;
/// Number of (identical) end packets sent for robustness.
const END_PACKETS: u32 = 3;
/// How far back (timestamp units) a packet's timestamp may be relative to the
/// newest event and still be treated as a straggler of an old event.
const STALE_WINDOW: i64 = 1 << 18;
/// A segment whose observed duration reached this is treated as a possibly
/// segmented long-duration event.
const LONG_SEGMENT_MIN: u16 = 0xF000;

/// Digit → event code: `'0'`-`'9'` → 0-9, `'*'` → 10, `'#'` → 11,
/// `'A'`-`'D'` → 12-15 (lower case `'a'`-`'d'` accepted too).
pub fn event_code(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => u8::try_from(u32::from(digit) - u32::from('0')).ok(),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => u8::try_from(u32::from(digit) - u32::from('A') + 12).ok(),
        'a'..='d' => u8::try_from(u32::from(digit) - u32::from('a') + 12).ok(),
        _ => None,
    }
}

/// Event code → digit; `None` for codes other than 0-15.
pub fn digit(code: u8) -> Option<char> {
    const DIGITS: [char; 16] = [
        '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
    ];
    DIGITS.get(usize::from(code)).copied()
}

/// Builds the 4-byte RFC 4733 payload: event, E bit, volume (only the low 6
/// bits are used; values above 63 are masked), duration (timestamp units).
pub fn encode(code: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let [d_hi, d_lo] = duration.to_be_bytes();
    let e = if end { 0x80 } else { 0x00 };
    [code, e | (volume & 0x3F), d_hi, d_lo]
}

/// Parses an RFC 4733 payload into `(event, end, volume, duration)`.
///
/// Returns `None` for payloads shorter than 4 bytes. Longer payloads (e.g.
/// several packed event blocks) are parsed from their first 4-byte block; the
/// reserved R bit is ignored.
pub fn decode(payload: &[u8]) -> Option<(u8, bool, u8, u16)> {
    match payload {
        [code, flags, d_hi, d_lo, ..] => Some((
            *code,
            flags & 0x80 != 0,
            flags & 0x3F,
            u16::from_be_bytes([*d_hi, *d_lo]),
        )),
        _ => None,
    }
}

/// One RTP packet of a telephone-event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPacket {
    /// The 4-byte RFC 4733 payload.
    pub payload: [u8; 4],
    /// RTP marker bit (set only on the first packet of the event).
    pub marker: bool,
    /// RTP timestamp: the event start, identical on every packet.
    pub start_ts: u32,
}

/// Sends one digit as RTP event packets paced every 20 ms.
///
/// Call [`DtmfSender::next`] once per 20 ms slot: 5 tone packets (durations
/// `frame_ticks`, `2*frame_ticks`, …, `5*frame_ticks`; marker on the first),
/// then 3 end packets with the E bit and the final duration, then `None`.
/// Durations saturate at `u16::MAX`.
#[derive(Clone, Debug)]
pub struct DtmfSender {
    code: u8,
    start_ts: u32,
    frame_ticks: u32,
    sent: u32,
}

impl DtmfSender {
    /// `code`: event code (see [`event_code`]); `start_ts`: RTP timestamp of
    /// the event start; `frame_ticks`: timestamp units per 20 ms.
    pub fn new(code: u8, start_ts: u32, frame_ticks: u32) -> Self {
        Self {
            code,
            start_ts,
            frame_ticks,
            sent: 0,
        }
    }

    /// The next packet to send in this 20 ms slot, or `None` when done.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<EventPacket> {
        let index = self.sent;
        if index >= TONE_PACKETS + END_PACKETS {
            return None;
        }
        self.sent += 1;
        let end = index >= TONE_PACKETS;
        let frames = if end { TONE_PACKETS } else { index + 1 };
        let ticks = u64::from(self.frame_ticks) * u64::from(frames);
        let duration = u16::try_from(ticks).unwrap_or(u16::MAX);
        Some(EventPacket {
            payload: encode(self.code, end, DEFAULT_VOLUME, duration),
            marker: index == 0,
            start_ts: self.start_ts,
        })
    }
}

impl Iterator for DtmfSender {
    type Item = EventPacket;

    fn next(&mut self) -> Option<EventPacket> {
        DtmfSender::next(self)
    }
}

#[derive(Clone, Copy, Debug)]
struct SeenEvent {
    ts: u32,
    code: u8,
    duration: u16,
    ended: bool,
}

/// Turns received event packets into digits, once per event (keyed by RTP
/// timestamp), tolerating lost start packets, repeated end packets and
/// reordering. The digit is reported on the first packet seen of a new event.
#[derive(Clone, Debug, Default)]
pub struct DtmfReceiver {
    last: Option<SeenEvent>,
}

impl DtmfReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one received telephone-event packet (its RTP timestamp and
    /// payload). Returns the digit if this packet starts a new event whose code
    /// is a keypad digit (0-15); `None` otherwise (same event, straggler,
    /// garbage payload, non-digit event).
    pub fn push(&mut self, rtp_ts: u32, payload: &[u8]) -> Option<char> {
        let (code, end, _volume, duration) = decode(payload)?;
        let new = SeenEvent {
            ts: rtp_ts,
            code,
            duration,
            ended: end,
        };
        let Some(last) = self.last.as_mut() else {
            self.last = Some(new);
            return digit(code);
        };
        if last.ts == rtp_ts {
            // Same event: tone update, repeated end, retransmission, reorder.
            last.ended |= end;
            last.duration = last.duration.max(duration);
            return None;
        }
        let diff = i64::from(rtp_ts.wrapping_sub(last.ts) as i32);
        if diff < 0 && diff > -STALE_WINDOW {
            // Straggler of an event older than the newest one: ignore.
            return None;
        }
        let continuation = diff > 0
            && !last.ended
            && last.code == code
            && last.duration >= LONG_SEGMENT_MIN
            && diff <= i64::from(u16::MAX) + 1;
        *last = new;
        if continuation { None } else { digit(code) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::media::test_rng::Rng;

    #[test]
    fn digit_code_mapping() {
        let all = "0123456789*#ABCD";
        for (i, c) in all.chars().enumerate() {
            assert_eq!(event_code(c), Some(i as u8));
            assert_eq!(digit(i as u8), Some(c));
        }
        assert_eq!(event_code('a'), Some(12));
        assert_eq!(event_code('d'), Some(15));
        for c in ['E', 'e', 'x', ' ', '\0', 'é', '٣'] {
            assert_eq!(event_code(c), None, "{c:?}");
        }
        for code in 16..=255u8 {
            assert_eq!(digit(code), None);
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        for code in [0u8, 1, 9, 11, 15, 16, 255] {
            for end in [false, true] {
                for volume in 0..=63u8 {
                    for duration in [0u16, 1, 160, 800, 0x1234, u16::MAX] {
                        let p = encode(code, end, volume, duration);
                        assert_eq!(decode(&p), Some((code, end, volume, duration)));
                    }
                }
            }
        }
        assert_eq!(encode(5, true, 10, 800), [5, 0x8A, 0x03, 0x20]);
        // volume above 63 is masked to 6 bits
        assert_eq!(decode(&encode(1, false, 0xFF, 1)), Some((1, false, 63, 1)));
        // R bit ignored
        assert_eq!(decode(&[3, 0xC0 | 7, 0, 160]), Some((3, true, 7, 160)));
    }

    #[test]
    fn sender_packet_sequence() {
        let mut s = DtmfSender::new(5, 1000, 160);
        let mut pkts = Vec::new();
        while let Some(p) = s.next() {
            pkts.push(p);
        }
        assert_eq!(pkts.len(), 8);
        assert!(s.next().is_none());
        for (i, p) in pkts.iter().enumerate() {
            assert_eq!(p.marker, i == 0);
            assert_eq!(p.start_ts, 1000);
            let (code, end, vol, dur) = decode(&p.payload).unwrap_or((99, false, 0, 0));
            assert_eq!(code, 5);
            assert_eq!(vol, DEFAULT_VOLUME);
            assert_eq!(end, i >= 5);
            let want = if i < 5 { 160 * (i as u16 + 1) } else { 800 };
            assert_eq!(dur, want, "packet {i}");
        }
        // 48 kHz
        let durs: Vec<u16> = DtmfSender::new(1, 0, 960)
            .filter_map(|p| decode(&p.payload).map(|d| d.3))
            .collect();
        assert_eq!(durs, [960, 1920, 2880, 3840, 4800, 4800, 4800, 4800]);
        // durations saturate instead of overflowing
        let durs: Vec<u16> = DtmfSender::new(1, 0, u32::MAX)
            .filter_map(|p| decode(&p.payload).map(|d| d.3))
            .collect();
        assert!(durs.iter().all(|&d| d == u16::MAX));
    }

    #[test]
    fn sender_to_receiver_exactly_once() {
        for (i, c) in "0123456789*#ABCD".chars().enumerate() {
            let code = event_code(c).unwrap_or(0);
            let ts = (i as u32).wrapping_mul(0x1234_5678);
            let mut rx = DtmfReceiver::new();
            let got: Vec<char> = DtmfSender::new(code, ts, 160)
                .filter_map(|p| rx.push(p.start_ts, &p.payload))
                .collect();
            assert_eq!(got, vec![c]);
        }
    }

    #[test]
    fn lost_first_packet_still_once() {
        let mut rx = DtmfReceiver::new();
        let got: Vec<char> = DtmfSender::new(11, 777, 160)
            .skip(1)
            .filter_map(|p| rx.push(p.start_ts, &p.payload))
            .collect();
        assert_eq!(got, vec!['#']);
        // all tone packets lost: the end packets alone still give the digit once
        let mut rx = DtmfReceiver::new();
        let got: Vec<char> = DtmfSender::new(3, 9, 160)
            .skip(5)
            .filter_map(|p| rx.push(p.start_ts, &p.payload))
            .collect();
        assert_eq!(got, vec!['3']);
    }

    #[test]
    fn reordered_and_repeated_packets_once() {
        let mut pkts: Vec<EventPacket> = DtmfSender::new(7, u32::MAX - 10, 160).collect();
        pkts.reverse();
        let extra = pkts.clone();
        pkts.extend(extra);
        let mut rx = DtmfReceiver::new();
        let got: Vec<char> = pkts
            .iter()
            .filter_map(|p| rx.push(p.start_ts, &p.payload))
            .collect();
        assert_eq!(got, vec!['7']);
    }

    #[test]
    fn consecutive_digits_and_stragglers() {
        // "55" dialled: same digit twice, distinct events; a straggler of the
        // first arrives after the second started; timestamp wraps in between.
        let first: Vec<EventPacket> = DtmfSender::new(5, u32::MAX - 500, 160).collect();
        let second: Vec<EventPacket> = DtmfSender::new(5, 1100, 160).collect();
        let mut rx = DtmfReceiver::new();
        let mut got = Vec::new();
        for p in &first[..6] {
            got.extend(rx.push(p.start_ts, &p.payload));
        }
        got.extend(rx.push(second[0].start_ts, &second[0].payload));
        // late end packets of the first event
        for p in &first[6..] {
            got.extend(rx.push(p.start_ts, &p.payload));
        }
        for p in &second[1..] {
            got.extend(rx.push(p.start_ts, &p.payload));
        }
        assert_eq!(got, vec!['5', '5']);
    }

    #[test]
    fn first_event_end_lost_then_same_digit_again() {
        // End packets of the first event are all lost; a second press of the
        // same digit must still be reported.
        let mut rx = DtmfReceiver::new();
        let mut got = Vec::new();
        for p in DtmfSender::new(2, 0, 160).take(5) {
            got.extend(rx.push(p.start_ts, &p.payload));
        }
        for p in DtmfSender::new(2, 1600, 160) {
            got.extend(rx.push(p.start_ts, &p.payload));
        }
        assert_eq!(got, vec!['2', '2']);
    }

    #[test]
    fn long_event_segments_reported_once() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(rx.push(100, &encode(9, false, 10, 160)), Some('9'));
        assert_eq!(rx.push(100, &encode(9, false, 10, u16::MAX)), None);
        let next = 100u32.wrapping_add(u32::from(u16::MAX));
        assert_eq!(rx.push(next, &encode(9, false, 10, 160)), None);
        assert_eq!(rx.push(next, &encode(9, true, 10, 800)), None);
        // a new, later event is reported
        assert_eq!(rx.push(next + 5000, &encode(9, false, 10, 160)), Some('9'));
    }

    #[test]
    fn non_digit_events_not_reported() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(rx.push(1, &encode(16, false, 10, 160)), None);
        assert_eq!(rx.push(1000, &encode(200, true, 10, 160)), None);
        assert_eq!(rx.push(2000, &encode(4, true, 10, 160)), Some('4'));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rx = DtmfReceiver::new();
        for len in 0..4 {
            assert_eq!(decode(&vec![0xFF; len]), None);
            assert_eq!(rx.push(0, &vec![1; len]), None);
        }
        // long payloads: first block is parsed
        assert_eq!(decode(&[1, 2, 3, 4, 5, 6, 7, 8, 9]), Some((1, false, 2, 0x0304)));
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..100_000 {
            let r = rng.next_u64();
            let len = (r % 24) as usize;
            let payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let ts = rng.next_u64() as u32;
            if let Some(c) = rx.push(ts, &payload) {
                assert!(event_code(c).is_some());
            }
            let _ = decode(&payload);
        }
    }
}
