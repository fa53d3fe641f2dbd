//! Which far-end addresses a call's media talks to and listens to. By default only the ones
//! the peer's SDP names count: RTP goes to the SDP address, RTCP to the given RTCP address
//! (else the RTP port + 1), and a packet from any other source is foreign — dropped by the
//! session, never decoded, played or counted in the statistics. Latching onto whatever sends
//! first would let anyone who reaches the port take the call's audio (CVE-2017-14099, "RTP
//! bleed").
//!
//! With symmetric RTP on (a peer behind NAT that cannot name its public address), the filter
//! learns, like Asterisk's `strictrtp` learning mode: ONE switch at most, to a source that sent
//! [`LEARN_PACKETS`] consecutive in-sequence packets of one SSRC within [`LEARN_WINDOW`] of the
//! start (or of an address change), and never once the SDP address itself has been heard (it
//! works, so there is nothing to learn). A source interleaved with another never completes its
//! run. RTCP follows the RTP decision: the latched IP with its port + 1 until RTCP arrives from
//! the latched IP, whose source it then keeps. A new SDP address resets all of it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Consecutive in-sequence packets of one SSRC a new source must send to be latched onto.
pub const LEARN_PACKETS: u32 = 5;
/// How long after the start, or after the SDP address changed, a source may be learned.
pub const LEARN_WINDOW: Duration = Duration::from_secs(10);

/// A source being watched during learning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Candidate {
    from: SocketAddr,
    ssrc: u32,
    seq: u16,
    run: u32,
}

/// The accepted sources and the destinations of one call's media.
#[derive(Clone, Debug)]
pub struct SourceFilter {
    /// The addresses the SDP names.
    sdp_rtp: SocketAddr,
    sdp_rtcp: SocketAddr,
    /// Where RTP and RTCP go, and where they are accepted from.
    rtp: SocketAddr,
    rtcp: SocketAddr,
    symmetric: bool,
    learn_until: Instant,
    /// The one switch has happened.
    switched: bool,
    /// After the switch, the RTCP source of the latched IP is known.
    rtcp_learned: bool,
    /// Something came from the SDP address: it works, nothing is learned.
    sdp_heard: bool,
    candidate: Option<Candidate>,
}

/// The RTCP address when the SDP gives none: the RTP port + 1 (RFC 3550 §11).
fn next_port(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port().wrapping_add(1))
}

impl SourceFilter {
    /// A filter for the SDP's RTP address and RTCP address (`None`: RTP port + 1); learning
    /// only when `symmetric`, from `now` on.
    pub fn new(rtp: SocketAddr, rtcp: Option<SocketAddr>, symmetric: bool, now: Instant) -> Self {
        let rtcp = rtcp.unwrap_or_else(|| next_port(rtp));
        Self {
            sdp_rtp: rtp,
            sdp_rtcp: rtcp,
            rtp,
            rtcp,
            symmetric,
            learn_until: now + LEARN_WINDOW,
            switched: false,
            rtcp_learned: false,
            sdp_heard: false,
            candidate: None,
        }
    }

    /// The SDP's addresses again (a re-INVITE). A change goes back to them and learning starts
    /// over; the same addresses keep what was learned. Returns whether they changed.
    pub fn update(&mut self, rtp: SocketAddr, rtcp: Option<SocketAddr>, now: Instant) -> bool {
        let rtcp = rtcp.unwrap_or_else(|| next_port(rtp));
        if rtp == self.sdp_rtp && rtcp == self.sdp_rtcp {
            return false;
        }
        *self = Self::new(rtp, Some(rtcp), self.symmetric, now);
        true
    }

    /// Where RTP goes.
    pub fn rtp_target(&self) -> SocketAddr {
        self.rtp
    }

    /// Where RTCP goes (on the separate RTCP port).
    pub fn rtcp_target(&self) -> SocketAddr {
        self.rtcp
    }

    /// The one switch away from the SDP address has happened.
    pub fn latched(&self) -> bool {
        self.switched
    }

    fn learning(&self, now: Instant) -> bool {
        self.symmetric && !self.switched && !self.sdp_heard && now < self.learn_until
    }

    /// A datagram on the RTP port from `from`; `rtp`: its SSRC and sequence number when it is
    /// RTP the session can use. True when it comes from the accepted source (which may be
    /// `from` from now on, learned with this packet).
    pub fn rtp(&mut self, from: SocketAddr, rtp: Option<(u32, u16)>, now: Instant) -> bool {
        if from == self.sdp_rtp {
            self.sdp_heard = true;
            self.candidate = None;
        }
        if from == self.rtp {
            return true;
        }
        let Some((ssrc, seq)) = rtp else {
            return false;
        };
        if !self.learning(now) {
            return false;
        }
        let run = match &mut self.candidate {
            Some(c) if c.from == from && c.ssrc == ssrc && seq == c.seq.wrapping_add(1) => {
                c.seq = seq;
                c.run += 1;
                c.run
            }
            other => {
                *other = Some(Candidate {
                    from,
                    ssrc,
                    seq,
                    run: 1,
                });
                1
            }
        };
        if run < LEARN_PACKETS {
            return false;
        }
        self.rtp = from;
        self.rtcp = next_port(from);
        self.switched = true;
        self.candidate = None;
        true
    }

    /// An RTCP packet from `from` (on the RTCP port, or multiplexed on the RTP port). True
    /// when it comes from the accepted RTCP source, or from the accepted RTP source.
    pub fn rtcp(&mut self, from: SocketAddr) -> bool {
        if from == self.sdp_rtcp || from == self.sdp_rtp {
            self.sdp_heard = true;
            self.candidate = None;
        }
        if from == self.rtp {
            return true;
        }
        if self.switched && !self.rtcp_learned && from.ip() == self.rtp.ip() {
            self.rtcp = from;
            self.rtcp_learned = true;
            return true;
        }
        from == self.rtcp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const SDP: &str = "192.0.2.10:40000";
    const NAT: &str = "198.51.100.7:61000";
    const STRANGER: &str = "203.0.113.66:5004";

    /// `n` in-sequence packets of `ssrc` from `from`, starting at `seq`: how many were accepted.
    fn send(f: &mut SourceFilter, from: &str, ssrc: u32, seq: u16, n: u16, now: Instant) -> usize {
        (0..n)
            .filter(|i| f.rtp(addr(from), Some((ssrc, seq.wrapping_add(*i))), now))
            .count()
    }

    #[test]
    fn without_symmetric_rtp_only_the_sdp_address_counts() {
        let now = Instant::now();
        let mut f = SourceFilter::new(addr(SDP), None, false, now);
        assert_eq!(f.rtp_target(), addr(SDP));
        assert_eq!(f.rtcp_target(), addr("192.0.2.10:40001"));
        assert_eq!(send(&mut f, STRANGER, 7, 100, 50, now), 0);
        assert_eq!(f.rtp_target(), addr(SDP));
        assert!(!f.latched());
        assert_eq!(send(&mut f, SDP, 8, 1, 3, now), 3);
        // Unusable datagrams from the peer are its own; from anyone else, foreign.
        assert!(f.rtp(addr(SDP), None, now));
        assert!(!f.rtp(addr(STRANGER), None, now));
    }

    #[test]
    fn a_given_rtcp_address_is_used_and_others_are_foreign() {
        let now = Instant::now();
        let mut f = SourceFilter::new(addr(SDP), Some(addr("192.0.2.11:50001")), false, now);
        assert_eq!(f.rtcp_target(), addr("192.0.2.11:50001"));
        assert!(f.rtcp(addr("192.0.2.11:50001")));
        // Multiplexed on the RTP port.
        assert!(f.rtcp(addr(SDP)));
        assert!(!f.rtcp(addr("192.0.2.10:40001")));
        assert!(!f.rtcp(addr(STRANGER)));
    }

    #[test]
    fn a_natted_peer_is_latched_once_after_a_run_of_packets() {
        let now = Instant::now();
        let mut f = SourceFilter::new(addr(SDP), None, true, now);
        // Four packets are not enough; the fifth switches, and is accepted.
        assert_eq!(send(&mut f, NAT, 42, 65533, 4, now), 0);
        assert_eq!(f.rtp_target(), addr(SDP));
        assert!(f.rtp(addr(NAT), Some((42, 1)), now));
        assert!(f.latched());
        assert_eq!(f.rtp_target(), addr(NAT));
        assert_eq!(f.rtcp_target(), addr("198.51.100.7:61001"));
        assert_eq!(send(&mut f, NAT, 42, 2, 10, now), 10);
        // A stranger's run afterwards changes nothing: there is no second switch, not even
        // back to the SDP address.
        assert_eq!(send(&mut f, STRANGER, 9, 0, 50, now), 0);
        assert_eq!(send(&mut f, SDP, 9, 0, 50, now), 0);
        assert_eq!(f.rtp_target(), addr(NAT));
    }

    #[test]
    fn out_of_order_other_ssrcs_and_interleaved_sources_break_the_run() {
        let now = Instant::now();
        let mut f = SourceFilter::new(addr(SDP), None, true, now);
        for seq in [1, 2, 3, 4, 6, 7, 8, 9] {
            assert!(!f.rtp(addr(NAT), Some((42, seq)), now));
        }
        for (ssrc, seq) in [(1, 20), (2, 21), (1, 22), (2, 23), (1, 24), (2, 25)] {
            assert!(!f.rtp(addr(NAT), Some((ssrc, seq)), now));
        }
        for seq in 30..40 {
            assert!(!f.rtp(addr(NAT), Some((42, seq)), now));
            assert!(!f.rtp(addr(STRANGER), Some((42, seq)), now));
        }
        // A repeated packet is not in sequence either.
        for seq in [50, 51, 51, 52, 53] {
            assert!(!f.rtp(addr(NAT), Some((42, seq)), now));
        }
        assert_eq!(f.rtp_target(), addr(SDP));
        assert_eq!(send(&mut f, NAT, 42, 100, 5, now), 1);
    }

    #[test]
    fn nothing_is_learned_once_the_sdp_address_was_heard() {
        let now = Instant::now();
        let mut f = SourceFilter::new(addr(SDP), None, true, now);
        assert!(f.rtp(addr(SDP), Some((1, 1)), now));
        assert_eq!(send(&mut f, STRANGER, 9, 0, 100, now), 0);
        assert_eq!(f.rtp_target(), addr(SDP));
        // Its RTCP counts as hearing it too.
        let mut f = SourceFilter::new(addr(SDP), None, true, now);
        assert!(f.rtcp(addr("192.0.2.10:40001")));
        assert_eq!(send(&mut f, STRANGER, 9, 0, 100, now), 0);
        // A packet from the SDP address in the middle of a run ends the run.
        let mut f = SourceFilter::new(addr(SDP), None, true, now);
        assert_eq!(send(&mut f, NAT, 42, 1, 4, now), 0);
        assert!(f.rtp(addr(SDP), None, now));
        assert_eq!(send(&mut f, NAT, 42, 5, 10, now), 0);
        assert!(!f.latched());
    }

    #[test]
    fn learning_ends_after_its_window_and_starts_over_on_a_new_address() {
        let start = Instant::now();
        let late = start + LEARN_WINDOW;
        let mut f = SourceFilter::new(addr(SDP), None, true, start);
        assert_eq!(send(&mut f, NAT, 42, 1, 20, late), 0);
        assert_eq!(f.rtp_target(), addr(SDP));
        // The same addresses again: nothing changes.
        assert!(!f.update(addr(SDP), None, late));
        assert!(!f.update(addr(SDP), Some(addr("192.0.2.10:40001")), late));
        assert_eq!(send(&mut f, NAT, 42, 21, 20, late), 0);
        // A new address: it is the target, and one switch may happen again.
        let moved = addr("192.0.2.20:30000");
        assert!(f.update(moved, None, late));
        assert_eq!(f.rtp_target(), moved);
        assert_eq!(f.rtcp_target(), addr("192.0.2.20:30001"));
        assert_eq!(send(&mut f, NAT, 42, 41, 5, late), 1);
        assert_eq!(f.rtp_target(), addr(NAT));
        // A re-INVITE with the same address keeps the latch.
        assert!(!f.update(moved, None, late));
        assert_eq!(f.rtp_target(), addr(NAT));
        assert!(f.update(addr(SDP), None, late));
        assert_eq!(f.rtp_target(), addr(SDP));
        assert!(!f.latched());
    }

    #[test]
    fn rtcp_follows_the_latched_ip() {
        let now = Instant::now();
        let mut f = SourceFilter::new(addr(SDP), None, true, now);
        // Before the switch, RTCP from the would-be source is foreign.
        assert!(!f.rtcp(addr("198.51.100.7:61001")));
        assert_eq!(send(&mut f, NAT, 42, 1, 5, now), 1);
        // A stranger's RTCP is foreign; the latched IP's first RTCP source is kept.
        assert!(!f.rtcp(addr(STRANGER)));
        assert!(f.rtcp(addr("198.51.100.7:61999")));
        assert_eq!(f.rtcp_target(), addr("198.51.100.7:61999"));
        assert!(!f.rtcp(addr("198.51.100.7:62000")));
        assert!(f.rtcp(addr("198.51.100.7:61999")));
        // Multiplexed RTCP from the latched source.
        assert!(f.rtcp(addr(NAT)));
        // The SDP's RTCP address no longer counts after the switch.
        assert!(!f.rtcp(addr("192.0.2.10:40001")));
        // RTCP from the latched port + 1 is kept as well.
        let mut f = SourceFilter::new(addr(SDP), None, true, now);
        assert_eq!(send(&mut f, NAT, 42, 1, 5, now), 1);
        assert!(f.rtcp(addr("198.51.100.7:61001")));
        assert!(!f.rtcp(addr("198.51.100.7:61999")));
        assert_eq!(f.rtcp_target(), addr("198.51.100.7:61001"));
    }
}
