//! RTP and RTCP bookkeeping for one stream (RFC 3550): the receive statistics of §A.1/A.3/A.8
//! (extended sequence numbers, loss, interarrival jitter), sender and receiver reports built
//! and read with `rtcp-types`, and round-trip time from LSR/DLSR. rtp-rs reads an RTCP packet
//! as RTP, so packets are told apart by payload type (RFC 5761: 64–95 after the marker bit).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtcp_types::{
    Compound, CompoundBuilder, Packet, ReceiverReport, ReportBlock, RtcpPacketWriter, RtcpPacketWriterExt,
    SenderReport,
};

/// Is this datagram RTCP rather than RTP? (Second byte: packet types 192–223 map to 64–95.)
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 2 && (64..96).contains(&(packet[1] & 0x7f))
}

/// The current time as a 64-bit NTP timestamp.
pub fn ntp_now() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = d.as_secs() + 2_208_988_800;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Middle 32 bits of an NTP timestamp (the LSR / DLSR unit: 1/65536 s).
fn mid32(ntp: u64) -> u32 {
    ((ntp >> 16) & 0xffff_ffff) as u32
}

/// Receive statistics of one source.
#[derive(Clone, Debug, Default)]
pub struct RecvStats {
    pub ssrc: Option<u32>,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    pub received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter in timestamp units (scaled by 16 as in §A.8).
    jitter_q4: u64,
    transit: Option<i64>,
    /// The last SR: its NTP middle bits and when it arrived.
    last_sr: Option<(u32, Instant)>,
    started: bool,
}

impl RecvStats {
    /// Accounts one RTP packet (`arrival_ts`: arrival time in the stream's clock units).
    pub fn packet(&mut self, ssrc: u32, seq: u16, rtp_ts: u32, arrival_ts: u64) {
        if self.ssrc != Some(ssrc) {
            *self = RecvStats {
                ssrc: Some(ssrc),
                last_sr: self.last_sr,
                ..RecvStats::default()
            };
        }
        if !self.started {
            self.started = true;
            self.base_seq = u32::from(seq);
            self.max_seq = seq;
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta != 0 && delta < 0x8000 {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(1 << 16);
                }
                self.max_seq = seq;
            }
        }
        self.received += 1;
        // §A.8: transit difference, smoothed with gain 1/16.
        let transit = arrival_ts as i64 - i64::from(rtp_ts);
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs();
            self.jitter_q4 = self.jitter_q4 + d - self.jitter_q4 / 16;
        }
        self.transit = Some(transit);
    }

    pub fn sender_report(&mut self, ntp: u64) {
        self.last_sr = Some((mid32(ntp), Instant::now()));
    }

    fn extended_max(&self) -> u64 {
        u64::from(self.cycles) + u64::from(self.max_seq)
    }

    /// Packets expected so far.
    pub fn expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        (self.extended_max() + 1).saturating_sub(u64::from(self.base_seq))
    }

    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_q4 / 16).unwrap_or(u32::MAX)
    }

    /// A report block for our next SR/RR; advances the "prior" counters (fraction lost).
    pub fn report_block(&mut self) -> Option<rtcp_types::ReportBlockBuilder> {
        let ssrc = self.ssrc?;
        let expected = self.expected();
        let interval_expected = expected.saturating_sub(self.expected_prior);
        let interval_received = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = interval_expected.saturating_sub(interval_received);
        let fraction = (lost_interval << 8)
            .checked_div(interval_expected)
            .map_or(0, |f| f.min(255) as u8);
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => (lsr, (at.elapsed().as_secs_f64() * 65536.0) as u32),
            None => (0, 0),
        };
        Some(
            ReportBlock::builder(ssrc)
                .fraction_lost(fraction)
                .cumulative_lost(u32::try_from(self.lost()).unwrap_or(0x7f_ffff).min(0x7f_ffff))
                .extended_sequence_number(u32::try_from(self.extended_max()).unwrap_or(u32::MAX))
                .interarrival_jitter(self.jitter())
                .last_sender_report_timestamp(lsr)
                .delay_since_last_sender_report_timestamp(dlsr),
        )
    }
}

/// What we sent, for the sender report.
#[derive(Clone, Copy, Debug, Default)]
pub struct SendStats {
    pub packets: u32,
    pub octets: u32,
    pub last_rtp_ts: u32,
}

/// Builds our RTCP compound packet: an SR when we sent media since the last report, else an RR.
pub fn build_report(ssrc: u32, sent: Option<SendStats>, recv: &mut RecvStats) -> Option<Vec<u8>> {
    let block = recv.report_block();
    let compound = match sent {
        Some(s) => {
            let mut sr = SenderReport::builder(ssrc)
                .ntp_timestamp(ntp_now())
                .rtp_timestamp(s.last_rtp_ts)
                .packet_count(s.packets)
                .octet_count(s.octets);
            if let Some(b) = block {
                sr = sr.add_report_block(b);
            }
            CompoundBuilder::default().add_packet(sr)
        }
        None => {
            let mut rr = ReceiverReport::builder(ssrc);
            if let Some(b) = block {
                rr = rr.add_report_block(b);
            }
            CompoundBuilder::default().add_packet(rr)
        }
    };
    let mut buf = vec![0u8; compound.calculate_size().ok()?];
    let n = compound.write_into(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// What a received RTCP packet tells us.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteReport {
    /// The far end's view of our stream: fraction lost (0–1), cumulative lost, jitter (units).
    pub fraction_lost: Option<f64>,
    pub cumulative_lost: Option<u32>,
    pub jitter: Option<u32>,
    /// Round-trip time from LSR/DLSR.
    pub rtt: Option<Duration>,
}

/// Reads a compound RTCP packet: SR timing into `recv`, report blocks about `our_ssrc`.
pub fn read_report(data: &[u8], our_ssrc: u32, recv: &mut RecvStats) -> Option<RemoteReport> {
    let compound = Compound::parse(data).ok()?;
    let mut out = RemoteReport::default();
    let now = mid32(ntp_now());
    let take = |b: ReportBlock<'_>, out: &mut RemoteReport| {
        if b.ssrc() != our_ssrc {
            return;
        }
        out.fraction_lost = Some(f64::from(b.fraction_lost()) / 256.0);
        out.cumulative_lost = Some(b.cumulative_lost());
        out.jitter = Some(b.interarrival_jitter());
        let (lsr, dlsr) = (
            b.last_sender_report_timestamp(),
            b.delay_since_last_sender_report_timestamp(),
        );
        if lsr != 0 {
            let rtt = now.wrapping_sub(lsr).wrapping_sub(dlsr);
            if rtt < 0x8000_0000 {
                out.rtt = Some(Duration::from_secs_f64(f64::from(rtt) / 65536.0));
            }
        }
    };
    for p in compound.flatten() {
        match p {
            Packet::Sr(sr) => {
                recv.sender_report(sr.ntp_timestamp());
                for b in sr.report_blocks() {
                    take(b, &mut out);
                }
            }
            Packet::Rr(rr) => {
                for b in rr.report_blocks() {
                    take(b, &mut out);
                }
            }
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtcp_is_told_apart_by_payload_type() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 201, 0, 7]));
        assert!(!is_rtcp(&[0x80, 0, 0, 1]));
        assert!(!is_rtcp(&[0x80, 0x80 | 101, 0, 1]));
        assert!(!is_rtcp(&[0x80]));
    }

    #[test]
    fn loss_and_wraparound_are_counted() {
        let mut r = RecvStats::default();
        let mut seq: u16 = 65530;
        for i in 0..20u32 {
            if i != 7 && i != 12 {
                r.packet(1, seq, i * 160, u64::from(i) * 160);
            }
            seq = seq.wrapping_add(1);
        }
        assert_eq!(r.expected(), 20);
        assert_eq!(r.received, 18);
        assert_eq!(r.lost(), 2);
        assert_eq!(r.jitter(), 0, "perfectly paced stream has no jitter");
    }

    #[test]
    fn reports_round_trip_through_rtcp_types() {
        let mut ours = RecvStats::default();
        for i in 0..50u32 {
            if i % 10 != 3 {
                ours.packet(
                    0xBEEF,
                    i as u16,
                    i * 160,
                    u64::from(i) * 160 + u64::from(i % 3) * 8,
                );
            }
        }
        let sent = SendStats {
            packets: 50,
            octets: 8000,
            last_rtp_ts: 8000,
        };
        let bytes = build_report(0x1234, Some(sent), &mut ours).expect("SR");
        assert!(is_rtcp(&bytes));
        // The far end reads our SR: its report block is about its own stream 0xBEEF.
        let mut theirs = RecvStats::default();
        let rep = read_report(&bytes, 0xBEEF, &mut theirs).expect("parse");
        assert_eq!(rep.cumulative_lost, Some(5));
        assert!(
            rep.fraction_lost.is_some_and(|f| (f - 0.1).abs() < 0.01),
            "{rep:?}"
        );
        assert!(theirs.last_sr.is_some(), "SR timing kept for LSR");
        // Their RR now answers with LSR/DLSR: an RTT comes out, small on one machine.
        theirs.packet(0x1234, 1, 160, 160);
        let rr = build_report(0xBEEF, None, &mut theirs).expect("RR");
        let back = read_report(&rr, 0x1234, &mut RecvStats::default()).expect("parse RR");
        assert!(back.rtt.is_some_and(|r| r < Duration::from_secs(1)), "{back:?}");
        assert!(read_report(b"\x80\xc8\x00", 1, &mut RecvStats::default()).is_none());
    }
}
