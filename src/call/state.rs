//! One call: its state (one enum, ending with the reason), its dialog, its parameters as the
//! CTI sees them, and its offer/answer and media bookkeeping.

use std::time::Instant;

use tokio::net::UdpSocket;

use crate::app::{CallParams, EndReason};
use crate::media::session::MediaHandle;
use crate::sip::dialog::DialogId;

use super::offer_answer::Negotiator;

/// Where a call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallState {
    /// Incoming, ringing here.
    Ringing,
    /// Outgoing: being resolved, or the INVITE is out.
    Dialing,
    /// Outgoing: the far end rings (or plays early media).
    Early,
    /// Answered.
    Confirmed,
    /// Over, and why.
    Ended(EndReason),
}

/// One call.
pub struct Call {
    /// The SIP Call-ID: the call's name for front ends, CTI and history.
    pub id: String,
    /// Its dialog (none yet while an outgoing call's target is resolved).
    pub dialog: Option<DialogId>,
    pub incoming: bool,
    pub state: CallState,
    pub params: CallParams,
    /// The ring (or dial) was published; until then the call's events wait (the phonebook
    /// names the caller first).
    pub announced: bool,
    pub held_events: Vec<crate::app::Event>,
    pub neg: Negotiator,
    pub rtp: Option<UdpSocket>,
    pub rtcp: Option<UdpSocket>,
    pub rtp_port: u16,
    /// Where STUN says the NAT shows the RTP and RTCP sockets (`[account] stun_server`).
    pub rtp_public: Option<std::net::SocketAddr>,
    pub rtcp_public: Option<std::net::SocketAddr>,
    pub media: Option<MediaHandle>,
    /// Devices are being opened for this call.
    pub media_opening: bool,
    /// The far end takes RFC 4733 telephone-events on this payload type.
    pub dtmf_pt: Option<u8>,
    pub answered_at: Option<Instant>,
    pub auto_answer_at: Option<Instant>,
    pub held: bool,
    /// A hold (true) or resume (false) re-INVITE waiting for its answer.
    pub pending_hold: Option<bool>,
    pub muted: bool,
    /// Our REFER's target while the transfer is under way.
    pub transfer_to: Option<String>,
    /// An attended transfer under way: the consult call whose dialog the REFER replaces.
    pub transfer_consult: Option<String>,
    /// A consult call: the customer's call it consults for (`consult`, RFC 5589).
    pub consult_for: Option<String>,
    /// Hang up (BYE) at this time if still up: a consult call after its transfer succeeded,
    /// left to the colleague to end first.
    pub bye_at: Option<Instant>,
    /// The PBX asked for this call to be answered (Call-Info answer-after, Alert-Info,
    /// Answer-Mode): a beep on the answer.
    pub remote_answer: bool,
    /// In the local conference (`conference`): its audio is mixed with the others'.
    pub conferenced: bool,
    /// A PBX feature code dialled for the agent's status: no events, no CTI, no history.
    pub feature: bool,
    /// Rings without the ring tone (the agent is not ready, `ring_when_not_ready`).
    pub silent: bool,
    /// SRTP for this call's offers and answers: `[media] srtp`, off when the signalling is
    /// not TLS (unless `srtp_over_udp`).
    pub srtp: super::sdes::SrtpMode,
    /// An outgoing call's targets so far: the one dialled, then each a 3xx sent it to.
    pub targets: Vec<String>,
    /// The identity an outgoing call was placed with (kept for a redirect's new INVITE).
    pub caller: Option<crate::app::CallerId>,
    /// Where an outgoing call goes is settled (a response other than a redirect, or the end):
    /// only then is it announced to CTI and the history, with its final target.
    pub settled: bool,
    /// The call's parties are named (phonebook): it is announced once also settled.
    pub named: bool,
}

impl Call {
    pub fn new(id: String, incoming: bool, params: CallParams) -> Self {
        Self {
            id,
            dialog: None,
            incoming,
            state: if incoming {
                CallState::Ringing
            } else {
                CallState::Dialing
            },
            params,
            announced: false,
            held_events: Vec::new(),
            neg: Negotiator::new(rand::random_range(1..u64::from(u32::MAX))),
            rtp: None,
            rtcp: None,
            rtp_port: 0,
            rtp_public: None,
            rtcp_public: None,
            media: None,
            media_opening: false,
            dtmf_pt: None,
            answered_at: None,
            auto_answer_at: None,
            held: false,
            pending_hold: None,
            muted: false,
            transfer_to: None,
            transfer_consult: None,
            consult_for: None,
            bye_at: None,
            remote_answer: false,
            conferenced: false,
            feature: false,
            silent: false,
            srtp: super::sdes::SrtpMode::Off,
            targets: Vec::new(),
            caller: None,
            settled: incoming,
            named: false,
        }
    }

    /// Reserves the call's RTP/RTCP port pair on `ip`; with a STUN server, asks it where the
    /// NAT shows both sockets (at most [`crate::sip::stun::MEDIA_WAIT`], both at once).
    /// `Some`: why there is no mapping (for a warning; the SDP then uses what it did before).
    pub async fn reserve_rtp(
        &mut self,
        ip: std::net::IpAddr,
        stun: Option<std::net::SocketAddr>,
    ) -> Option<String> {
        use crate::sip::stun::{MEDIA_WAIT, query};
        let (rtp, rtcp) = super::media::bind_rtp(ip).await;
        self.rtp_port = rtp
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map_or(0, |a| a.port());
        (self.rtp, self.rtcp) = (rtp, rtcp);
        (self.rtp_public, self.rtcp_public) = (None, None);
        let server = stun?;
        let rtp = self.rtp.as_ref()?;
        let (got_rtp, got_rtcp) = match &self.rtcp {
            Some(rtcp) => {
                let (a, b) = tokio::join!(query(rtp, server, MEDIA_WAIT), query(rtcp, server, MEDIA_WAIT));
                (a, b.ok())
            }
            None => (query(rtp, server, MEDIA_WAIT).await, None),
        };
        match got_rtp {
            Ok(m) => {
                tracing::info!(call = %self.id, rtp = %m, rtcp = ?got_rtcp, "STUN: the call's media is seen at this address");
                self.rtp_public = Some(m);
                self.rtcp_public = got_rtcp;
                None
            }
            Err(e) => Some(format!(
                "call {}: STUN for its RTP port: {e}; the SDP uses the address the registrar saw",
                self.id
            )),
        }
    }

    /// The SRTP suite of the session in force, `None` for plain RTP.
    pub fn srtp_suite(&self) -> Option<crate::media::srtp::Suite> {
        self.neg.negotiated()?.srtp.map(|k| k.suite())
    }

    /// Answered and not put on hold by us.
    pub fn is_active(&self) -> bool {
        self.state == CallState::Confirmed && !self.held
    }

    pub fn is_ringing_here(&self) -> bool {
        self.incoming && self.state == CallState::Ringing
    }
}
