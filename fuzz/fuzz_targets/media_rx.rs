//! The receive path of a call's audio (`ctiphone::media::receiver`): hostile RTP packets
//! (any sequence number, timestamp, arrival time, payload) into the jitter buffer and the
//! decoder, with concealment and Opus in-band FEC recovery from whatever packet comes next.
//!
//! Checks, besides "never panics" (libopus is C: a read past a packet would crash here):
//! - every `play` gives at most one 20 ms frame (the codec's frame size), nothing else;
//! - the counters stay consistent: missing frames never exceed frames played, the jitter
//!   buffer's late + duplicate never exceed what was received;
//! - `has_fec` on the raw input agrees with itself (no state) and never crashes.
//!
//! The first byte picks the codec (PCMU, G.722, Opus); then records of 8 header bytes
//! (seq 2, ts 4, arrival step 1, payload length 1) and the payload, with a `play` after each.
#![no_main]

use ctiphone::media::codec::by_name;
use ctiphone::media::opus_codec::has_fec;
use ctiphone::media::receiver::AudioReceiver;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let _ = has_fec(rest);
    let (name, clock) = match pick % 3 {
        0 => ("PCMU", 8000),
        1 => ("G722", 8000),
        _ => ("opus", 48000),
    };
    let Some(mut codec) = by_name(name, clock) else {
        return;
    };
    let frame = codec.frame_samples();
    let mut rx = AudioReceiver::new(codec.frame_ticks());
    let mut now = 0u64;
    let mut out = Vec::new();
    while rest.len() >= 8 {
        let (h, tail) = rest.split_at(8);
        let seq = u16::from_be_bytes([h[0], h[1]]);
        let ts = u32::from_be_bytes([h[2], h[3], h[4], h[5]]);
        now += u64::from(h[6]);
        let len = usize::from(h[7]).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        rx.push(seq, ts, payload.to_vec(), now);
        out.clear();
        rx.play(codec.as_mut(), &mut out, now);
        // Opus may decode a longer packet (up to 120 ms) in one go; never more than that.
        assert!(out.len() <= frame.max(5760), "{} samples from one play", out.len());
        let s = rx.stats();
        assert!(s.missing <= s.played);
        assert!(s.jitter.late + s.jitter.duplicate <= s.jitter.received);
    }
});
