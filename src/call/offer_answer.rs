//! The offer/answer negotiator of one dialog (RFC 3264), as a state machine that knows no SIP.
//!
//! It owns the dialog's SDP state: whose offer is outstanding, the active local and remote
//! descriptions once a negotiation succeeded, our `o=` line (one session id, the version
//! raised only when what we send changes, RFC 3264 §8) and what the media should do
//! ([`Negotiated`]). Initial offers, late offers (an INVITE without SDP: we offer in the 2xx,
//! the answer comes in the ACK), re-offers, refused re-offers (rolled back, the previous
//! session stays) and glare are transitions of it, not special cases for the call code:
//!
//! ```text
//!               create_offer                receive_answer
//!   Idle/Done ───────────────▶ LocalOffer  ───────────────▶ Done
//!               receive_offer               create_answer
//!   Idle/Done ───────────────▶ RemoteOffer ───────────────▶ Done
//!   LocalOffer/RemoteOffer ── rollback, or a refused answer/offer ──▶ back to Idle/Done
//! ```

use std::fmt;
use std::mem;
use std::net::{IpAddr, SocketAddr};

use super::sdes::{self, LocalKeys, SrtpMode};
use super::sdp::{self, Codec, Direction, Media, NotAcceptable, Sdp};
use crate::media::srtp::CallKeys;

/// What our side puts in the SDP it sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalParams {
    /// The `o=` user name.
    pub user: String,
    /// Our media address (`c=`, `o=`).
    pub addr: IpAddr,
    /// Our RTP port.
    pub port: u16,
    /// Our RTCP port when it is not RTP's + 1 (a NAT mapped it elsewhere): an `a=rtcp` line
    /// (RFC 3605).
    pub rtcp: Option<u16>,
    /// Our codecs in preference order, telephone-event included when we do RFC 4733.
    pub codecs: Vec<Codec>,
    /// We put the call on hold: sendonly (inactive when the peer holds us too).
    pub hold: bool,
    /// SRTP for this call (already `Off` when the signalling would show the keys).
    pub srtp: SrtpMode,
}

/// Where the negotiation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Nothing negotiated yet, no offer outstanding.
    Idle,
    /// We sent an offer and wait for its answer.
    LocalOffer,
    /// We received an offer and owe its answer.
    RemoteOffer,
    /// A session is active, no offer outstanding.
    Done,
}

/// The active session: the last offer and answer that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub local: Sdp,
    pub remote: Sdp,
    /// The position of the audio stream among the m-lines (the same in both).
    pub audio: usize,
    /// We made the offer (the remote SDP is the answer).
    pub we_offered: bool,
}

/// What the media should do, from the active session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The answerer's first codec that both sides listed, as the remote side numbers it (the
    /// payload type we send).
    pub codec: Codec,
    /// The payload type our side listed the codec under (the one we receive).
    pub local_pt: u8,
    /// The remote side's telephone-event payload type, when both sides listed one (the one at
    /// the codec's clock rate preferred).
    pub telephone_event: Option<u8>,
    /// Where to send RTP.
    pub remote_rtp: SocketAddr,
    /// Where to send RTCP: `a=rtcp`, else the RTP port + 1.
    pub remote_rtcp: SocketAddr,
    /// We may send: our direction sends, theirs receives, and their address is not a hold.
    pub send: bool,
    /// We may receive: our direction receives and theirs sends.
    pub recv: bool,
    /// The remote side put us on hold (sendonly, inactive, or `c=0.0.0.0`).
    pub remote_hold: bool,
    /// The packetization time the remote side asks for.
    pub ptime: Option<u32>,
    /// SRTP keys when the session is encrypted (SDES, RFC 4568).
    pub srtp: Option<CallKeys>,
}

/// Why an operation of the negotiator was refused. An offer refused this way is answered
/// with [`Refusal::status`] (and a Warning with [`Refusal::warn_code`] when there is one);
/// an answer refused this way ends the offer/answer exchange it belonged to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An offer is already outstanding (ours or theirs): glare, 491 Request Pending.
    OfferPending,
    /// There is no offer to answer, or no offer of ours waiting for this answer.
    NoOffer,
    /// The m-lines do not match: an answer that does not mirror our offer, or a re-offer that
    /// removes or retypes the session's m-lines (RFC 3264 §6, §8).
    Mismatch(String),
    /// The offer cannot be answered, or the answer leaves no audio.
    NotAcceptable(NotAcceptable),
}

impl Refusal {
    /// The SIP status that refuses an offer for this reason: 491 for glare, 500 for an
    /// operation out of order, 488 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::OfferPending => 491,
            Refusal::NoOffer => 500,
            Refusal::Mismatch(_) | Refusal::NotAcceptable(_) => 488,
        }
    }

    /// The SIP Warning code (RFC 3261 §20.43) that goes with a 488.
    pub fn warn_code(&self) -> Option<u16> {
        match self {
            Refusal::NotAcceptable(n) => Some(n.warn_code()),
            Refusal::Mismatch(_) => Some(399),
            Refusal::OfferPending | Refusal::NoOffer => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::OfferPending => f.write_str("an offer is already outstanding"),
            Refusal::NoOffer => f.write_str("no offer outstanding"),
            Refusal::Mismatch(why) => f.write_str(why),
            Refusal::NotAcceptable(n) => n.fmt(f),
        }
    }
}

impl std::error::Error for Refusal {}

/// The outstanding offer, if any.
#[derive(Clone, Debug)]
enum Pending {
    None,
    /// Ours, with the position of its audio stream.
    Local {
        offer: Sdp,
        audio: usize,
    },
    Remote(Sdp),
}

/// One dialog's offer/answer state.
#[derive(Clone, Debug)]
pub struct Negotiator {
    session_id: u64,
    /// The `o=` version of the last SDP we sent; 0 before the first.
    version: u64,
    last_sent: Option<Sdp>,
    active: Option<Session>,
    pending: Pending,
    /// Our SRTP keys, one per suite, for every offer and answer of the dialog.
    keys: LocalKeys,
}

impl Negotiator {
    /// A negotiator whose SDPs carry `o=… session_id …`.
    pub fn new(session_id: u64) -> Negotiator {
        Negotiator {
            session_id,
            version: 0,
            last_sent: None,
            active: None,
            pending: Pending::None,
            keys: LocalKeys::default(),
        }
    }

    /// Where the negotiation stands.
    pub fn state(&self) -> State {
        match (&self.pending, &self.active) {
            (Pending::Local { .. }, _) => State::LocalOffer,
            (Pending::Remote(_), _) => State::RemoteOffer,
            (Pending::None, Some(_)) => State::Done,
            (Pending::None, None) => State::Idle,
        }
    }

    /// The active session, once a negotiation succeeded.
    pub fn active(&self) -> Option<&Session> {
        self.active.as_ref()
    }

    /// What the media should do in the active session.
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.active.as_ref().and_then(negotiate)
    }

    /// Our offer: the initial one (one RTP/AVP audio stream), or a re-offer of the active
    /// session (its m-lines in order, the audio stream with `params`, the others still
    /// refused; also what a re-INVITE without SDP gets). Sendrecv, or on hold sendonly, or
    /// inactive when the peer holds us too. Refused while an offer is outstanding.
    pub fn create_offer(&mut self, params: &LocalParams) -> Result<Sdp, Refusal> {
        if !matches!(self.pending, Pending::None) {
            return Err(Refusal::OfferPending);
        }
        let peer_holds = self.negotiated().is_some_and(|n| n.remote_hold);
        let direction = match (params.hold, peer_holds) {
            (false, _) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (true, true) => Direction::Inactive,
        };
        let mut audio_stream = Media::audio(params.addr, params.port, &params.codecs, direction);
        audio_stream.rtcp = params.rtcp.map(|port| sdp::Rtcp { port, addr: None });
        if params.srtp != SrtpMode::Off {
            // Mandatory: RTP/SAVP; optional: RTP/AVP with crypto lines (RFC 4568 §5.1 allows
            // both; the second is what PBXs do for best-effort SRTP).
            if params.srtp == SrtpMode::Mandatory {
                audio_stream.proto = "RTP/SAVP".into();
            }
            audio_stream.attributes = self
                .keys
                .offer()
                .map_err(|_| Refusal::NotAcceptable(NotAcceptable::NoCrypto))?;
        }
        let (media, audio) = match &self.active {
            None => (vec![audio_stream], 0),
            Some(active) => {
                let media = active
                    .local
                    .media
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        if i == active.audio {
                            Media {
                                proto: m.proto.clone(),
                                ..audio_stream.clone()
                            }
                        } else {
                            Media::refused(m, params.addr)
                        }
                    })
                    .collect();
                (media, active.audio)
            }
        };
        let offer = self.stamp(Sdp {
            media,
            ..sdp::offer(&params.user, self.session_id, 0, params.addr, 0, &[], direction)
        });
        self.pending = Pending::Local {
            offer: offer.clone(),
            audio,
        };
        Ok(offer)
    }

    /// Takes the peer's offer. Refused while an offer is outstanding (glare: 491), and when a
    /// re-offer has fewer m-lines than the session or changes the media type of a stream
    /// that is not disabled.
    pub fn receive_offer(&mut self, offer: Sdp) -> Result<(), Refusal> {
        if !matches!(self.pending, Pending::None) {
            return Err(Refusal::OfferPending);
        }
        if let Some(active) = &self.active {
            let old = &active.remote.media;
            if offer.media.len() < old.len() {
                return Err(Refusal::Mismatch(format!(
                    "the offer has {} m-lines, the session {}: m-lines cannot be removed",
                    offer.media.len(),
                    old.len()
                )));
            }
            for (i, (before, now)) in old.iter().zip(&offer.media).enumerate() {
                let in_use = before.is_enabled() && active.local.media.get(i).is_some_and(Media::is_enabled);
                if in_use && before.kind != now.kind {
                    return Err(Refusal::Mismatch(format!(
                        "m-line {} changes from {} to {}",
                        i + 1,
                        before.kind,
                        now.kind
                    )));
                }
            }
        }
        self.pending = Pending::Remote(offer);
        Ok(())
    }

    /// Our answer to the outstanding remote offer ([`sdp::answer`]: its m-lines mirrored, one
    /// audio stream taken), which becomes the active session. We want sendrecv, or sendonly
    /// on hold (inactive when the offer holds us too). When the offer cannot be answered the
    /// offer is dropped and the previous session, if any, stays active.
    pub fn create_answer(&mut self, params: &LocalParams) -> Result<Sdp, Refusal> {
        let offer = match mem::replace(&mut self.pending, Pending::None) {
            Pending::Remote(offer) => offer,
            other => {
                self.pending = other;
                return Err(Refusal::NoOffer);
            }
        };
        let want = if params.hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        let (audio, _) = sdp::select_audio(&offer, params.addr, &params.codecs, params.srtp)
            .map_err(Refusal::NotAcceptable)?;
        let answer = sdp::answer(
            &offer,
            &params.user,
            self.session_id,
            0,
            params.addr,
            params.port,
            &params.codecs,
            want,
            params.srtp,
            &mut self.keys,
        )
        .map_err(Refusal::NotAcceptable)?;
        let mut answer = self.stamp(answer);
        if let Some(port) = params.rtcp
            && let Some(m) = answer.media.get_mut(audio)
        {
            m.rtcp = Some(sdp::Rtcp { port, addr: None });
        }
        self.active = Some(Session {
            local: answer.clone(),
            remote: offer,
            audio,
            we_offered: false,
        });
        Ok(answer)
    }

    /// Takes the peer's answer to our outstanding offer; it becomes the active session. The
    /// answer must mirror the offer (same m-line count, media types and protos in order, a
    /// stream we offered with port 0 left at 0) and keep our audio stream with a codec we
    /// offered. A refused answer ends the exchange: the previous session, if any, stays.
    pub fn receive_answer(&mut self, answer: Sdp) -> Result<(), Refusal> {
        let (offer, audio) = match mem::replace(&mut self.pending, Pending::None) {
            Pending::Local { offer, audio } => (offer, audio),
            other => {
                self.pending = other;
                return Err(Refusal::NoOffer);
            }
        };
        check_mirror(&offer, &answer)?;
        if !answer.media.get(audio).is_some_and(Media::is_enabled) {
            return Err(Refusal::NotAcceptable(NotAcceptable::AudioDisabled));
        }
        // SRTP: an answer to RTP/SAVP must take one of our crypto lines, and crypto lines in
        // any answer must answer ours (tag and suite); without them an optional offer is plain.
        if let (Some(ours), Some(theirs)) = (offer.media.get(audio), answer.media.get(audio))
            && sdes::keys(ours, theirs, true).is_none()
        {
            if sdes::is_secure_proto(&ours.proto) {
                return Err(Refusal::NotAcceptable(if sdes::has_crypto(theirs) {
                    NotAcceptable::NoCrypto
                } else {
                    NotAcceptable::SrtpRequired
                }));
            }
            if sdes::has_crypto(theirs) && !sdes::usable(ours).is_empty() {
                return Err(Refusal::NotAcceptable(NotAcceptable::NoCrypto));
            }
        }
        let session = Session {
            local: offer,
            remote: answer,
            audio,
            we_offered: true,
        };
        if negotiate(&session).is_none() {
            return Err(Refusal::NotAcceptable(NotAcceptable::NoCommonCodec));
        }
        self.active = Some(session);
        Ok(())
    }

    /// Drops the outstanding offer, ours (refused with 488/491, timed out, an ACK without the
    /// late offer's answer) or theirs (refused by the signalling without an answer). The
    /// active session, if any, stays. Returns whether an offer was outstanding.
    pub fn rollback(&mut self) -> bool {
        !matches!(mem::replace(&mut self.pending, Pending::None), Pending::None)
    }

    /// `sdp` with our session id, and the version of the last SDP we sent if nothing else
    /// changed, else the next one (RFC 3264 §8). Versions never repeat for different
    /// content, even across a rolled-back offer.
    fn stamp(&mut self, mut sdp: Sdp) -> Sdp {
        sdp.origin.session_id = self.session_id;
        let unchanged = self.last_sent.as_ref().is_some_and(|last| {
            sdp.origin.version = last.origin.version;
            *last == sdp
        });
        if !unchanged {
            self.version = self.version.saturating_add(1);
            sdp.origin.version = self.version;
            self.last_sent = Some(sdp.clone());
        }
        sdp
    }
}

/// An answer mirrors its offer: same m-line count, media types and protos in order; a stream
/// offered with port 0 stays at port 0.
fn check_mirror(offer: &Sdp, answer: &Sdp) -> Result<(), Refusal> {
    if offer.media.len() != answer.media.len() {
        return Err(Refusal::Mismatch(format!(
            "the answer has {} m-lines, the offer {}",
            answer.media.len(),
            offer.media.len()
        )));
    }
    for (i, (o, a)) in offer.media.iter().zip(&answer.media).enumerate() {
        let n = i + 1;
        if o.kind != a.kind {
            return Err(Refusal::Mismatch(format!(
                "m-line {n}: {} answered as {}",
                o.kind, a.kind
            )));
        }
        if !a.is_enabled() {
            continue;
        }
        if !o.is_enabled() {
            return Err(Refusal::Mismatch(format!(
                "m-line {n}: refused in the offer, enabled in the answer"
            )));
        }
        if !o.proto.eq_ignore_ascii_case(&a.proto) {
            return Err(Refusal::Mismatch(format!(
                "m-line {n}: {} answered as {}",
                o.proto, a.proto
            )));
        }
    }
    Ok(())
}

/// What the media should do in `s`, or `None` when the two sides have no codec in common.
fn negotiate(s: &Session) -> Option<Negotiated> {
    let local = s.local.media.get(s.audio)?;
    let remote = s.remote.media.get(s.audio)?;
    let (answerer, offerer) = if s.we_offered {
        (remote, local)
    } else {
        (local, remote)
    };
    let chosen = answerer
        .codecs
        .iter()
        .filter(|c| !c.is_telephone_event())
        .find(|c| offerer.codecs.iter().any(|o| o.same_format(c)))?;
    let codec = remote.codecs.iter().find(|c| c.same_format(chosen))?.clone();
    let local_pt = local.codecs.iter().find(|c| c.same_format(chosen))?.pt;
    let telephone_event = remote
        .codecs
        .iter()
        .filter(|c| c.is_telephone_event())
        .filter(|c| {
            local
                .codecs
                .iter()
                .any(|l| l.is_telephone_event() && l.rate == c.rate)
        })
        .min_by_key(|c| c.rate != codec.rate)
        .map(|c| c.pt);
    let (rtcp_ip, rtcp_port) = remote.rtcp_addr();
    Some(Negotiated {
        codec,
        local_pt,
        telephone_event,
        remote_rtp: SocketAddr::new(remote.addr, remote.port),
        remote_rtcp: SocketAddr::new(rtcp_ip, rtcp_port),
        send: local.direction.sends()
            && remote.direction.receives()
            && remote.is_enabled()
            && !remote.addr.is_unspecified(),
        recv: local.direction.receives() && remote.direction.sends(),
        remote_hold: remote.holds(),
        ptime: remote.ptime,
        srtp: sdes::keys(local, remote, s.we_offered),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sock(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Alice prefers PCMU, Bob PCMA; both do telephone-event (on different payload types).
    fn alice() -> LocalParams {
        LocalParams {
            user: "alice".into(),
            addr: ip("10.0.0.1"),
            port: 4000,
            rtcp: None,
            codecs: vec![Codec::pcmu(), Codec::pcma(), Codec::telephone_event(101)],
            hold: false,
            srtp: SrtpMode::Off,
        }
    }

    fn bob() -> LocalParams {
        LocalParams {
            user: "bob".into(),
            addr: ip("10.0.0.2"),
            port: 6000,
            rtcp: None,
            codecs: vec![Codec::pcma(), Codec::pcmu(), Codec::telephone_event(96)],
            hold: false,
            srtp: SrtpMode::Off,
        }
    }

    /// As it travels: written and parsed again.
    fn wire(s: &Sdp) -> Sdp {
        Sdp::parse(&s.to_text()).unwrap()
    }

    /// `from` offers, `to` answers, both with these params.
    fn exchange(
        from: &mut Negotiator,
        fp: &LocalParams,
        to: &mut Negotiator,
        tp: &LocalParams,
    ) -> (Sdp, Sdp) {
        let offer = from.create_offer(fp).unwrap();
        to.receive_offer(wire(&offer)).unwrap();
        let answer = to.create_answer(tp).unwrap();
        from.receive_answer(wire(&answer)).unwrap();
        (offer, answer)
    }

    /// A call set up by Alice's offer.
    fn call() -> (Negotiator, Negotiator) {
        let (mut a, mut b) = (Negotiator::new(11), Negotiator::new(22));
        exchange(&mut a, &alice(), &mut b, &bob());
        (a, b)
    }

    fn offer_text(media: &str) -> Sdp {
        Sdp::parse(&format!(
            "v=0\r\no=peer 5 5 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\n{media}"
        ))
        .unwrap()
    }

    #[test]
    fn initial_offer_and_answer_both_ways() {
        let (mut a, mut b) = (Negotiator::new(11), Negotiator::new(22));
        assert_eq!((a.state(), a.negotiated()), (State::Idle, None));
        let offer = a.create_offer(&alice()).unwrap();
        assert_eq!(a.state(), State::LocalOffer);
        assert_eq!((offer.origin.session_id, offer.origin.version), (11, 1));
        assert_eq!(offer.media.len(), 1);
        b.receive_offer(wire(&offer)).unwrap();
        assert_eq!(b.state(), State::RemoteOffer);
        let answer = b.create_answer(&bob()).unwrap();
        assert_eq!((answer.origin.session_id, answer.origin.version), (22, 1));
        assert_eq!(b.state(), State::Done);
        a.receive_answer(wire(&answer)).unwrap();
        assert_eq!(a.state(), State::Done);

        // The answerer's (Bob's) first common codec, under the offer's numbers; each side's
        // own telephone-event numbering for the other one.
        let na = a.negotiated().unwrap();
        assert_eq!((na.codec.clone(), na.local_pt), (Codec::pcma(), 8));
        assert_eq!(na.telephone_event, Some(101), "Bob answered with Alice's 101");
        assert_eq!(na.remote_rtp, sock("10.0.0.2:6000"));
        assert_eq!(na.remote_rtcp, sock("10.0.0.2:6001"));
        assert!(na.send && na.recv && !na.remote_hold);
        let nb = b.negotiated().unwrap();
        assert_eq!(nb.codec.name, "PCMA");
        assert_eq!(nb.telephone_event, Some(101));
        assert_eq!(nb.remote_rtp, sock("10.0.0.1:4000"));
        assert!(nb.send && nb.recv && !nb.remote_hold);
        let active = a.active().unwrap();
        assert!(active.we_offered && !b.active().unwrap().we_offered);
        assert_eq!(active.audio, 0);

        // The other way round: Bob offers, Alice's preference decides.
        let (mut a, mut b) = (Negotiator::new(11), Negotiator::new(22));
        exchange(&mut b, &bob(), &mut a, &alice());
        assert_eq!(b.negotiated().unwrap().codec, Codec::pcmu());
        assert_eq!(b.negotiated().unwrap().telephone_event, Some(96));
        assert_eq!(a.negotiated().unwrap().codec, Codec::pcmu());
    }

    #[test]
    fn late_offer() {
        // INVITE without SDP: Bob offers in his 200, Alice answers in the ACK.
        let (mut a, mut b) = (Negotiator::new(11), Negotiator::new(22));
        let offer = b.create_offer(&bob()).unwrap();
        a.receive_offer(wire(&offer)).unwrap();
        let answer = a.create_answer(&alice()).unwrap();
        b.receive_answer(wire(&answer)).unwrap();
        assert_eq!((a.state(), b.state()), (State::Done, State::Done));
        assert_eq!(b.negotiated().unwrap().codec, Codec::pcmu());

        // An ACK without the answer: the offer is dropped, nothing was negotiated.
        let mut b = Negotiator::new(22);
        b.create_offer(&bob()).unwrap();
        assert!(b.rollback());
        assert_eq!((b.state(), b.negotiated()), (State::Idle, None));
        assert!(!b.rollback());
    }

    #[test]
    fn reoffer_without_sdp_offers_the_current_session() {
        let (mut a, mut b) = call();
        // A re-INVITE without SDP: Bob offers (all his codecs: new content, new version).
        let (offer, _) = exchange(&mut b, &bob(), &mut a, &alice());
        assert_eq!((offer.origin.session_id, offer.origin.version), (22, 2));
        // Alice's answer carries Bob's telephone-event number: new content for her too.
        assert_eq!(a.active().unwrap().local.origin.version, 2);
        // Once more: nothing changed, same version (RFC 3264 §8).
        let (offer2, answer2) = exchange(&mut b, &bob(), &mut a, &alice());
        assert_eq!(offer2, offer);
        assert_eq!(answer2.origin.version, 2);
        // Alice answered this time: her preference decides now.
        assert_eq!(a.negotiated().unwrap().codec, Codec::pcmu());
        assert_eq!(b.negotiated().unwrap().codec, Codec::pcmu());
    }

    #[test]
    fn refused_reoffer_rolls_back() {
        let (mut a, mut b) = call();
        let before = a.negotiated().unwrap();
        let held = LocalParams {
            hold: true,
            ..alice()
        };
        let offer = a.create_offer(&held).unwrap();
        assert_eq!(offer.origin.version, 2);
        assert_eq!(offer.media[0].direction, Direction::SendOnly);
        // 491 (or 488, or a timeout): the old session stays.
        assert!(a.rollback());
        assert_eq!(a.state(), State::Done);
        assert_eq!(a.negotiated().unwrap(), before);
        // The same offer again keeps its version; another content takes the next one.
        assert_eq!(a.create_offer(&held).unwrap().origin.version, 2);
        a.rollback();
        let other = LocalParams {
            port: 4002,
            ..alice()
        };
        assert_eq!(a.create_offer(&other).unwrap().origin.version, 3);
        a.rollback();

        // Their re-offer we cannot answer: 488 with the reason, the old session stays.
        let g729 = LocalParams {
            codecs: vec![Codec::from_static(18).unwrap()],
            ..bob()
        };
        let offer = b.create_offer(&g729).unwrap();
        a.receive_offer(wire(&offer)).unwrap();
        let err = a.create_answer(&alice()).unwrap_err();
        assert_eq!(err, Refusal::NotAcceptable(NotAcceptable::NoCommonCodec));
        assert_eq!((err.status(), err.warn_code()), (488, Some(305)));
        assert_eq!(a.state(), State::Done);
        assert_eq!(a.negotiated().unwrap(), before);
        b.rollback();
        assert_eq!(b.state(), State::Done);
        assert_eq!(b.negotiated().unwrap().codec, Codec::pcma());
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        let mut a = Negotiator::new(1);
        assert_eq!(a.create_answer(&alice()), Err(Refusal::NoOffer));
        assert_eq!(
            a.receive_answer(offer_text("m=audio 5000 RTP/AVP 0\r\n")),
            Err(Refusal::NoOffer)
        );
        assert_eq!(Refusal::NoOffer.status(), 500);

        // An offer while ours is outstanding (glare): 491, our offer still outstanding.
        let ours = a.create_offer(&alice()).unwrap();
        assert_eq!(a.create_offer(&alice()), Err(Refusal::OfferPending));
        let theirs = offer_text("m=audio 5000 RTP/AVP 0\r\n");
        let err = a.receive_offer(theirs.clone()).unwrap_err();
        assert_eq!(
            (err.clone(), err.status(), err.warn_code()),
            (Refusal::OfferPending, 491, None)
        );
        assert_eq!(a.create_answer(&alice()), Err(Refusal::NoOffer));
        assert_eq!(a.state(), State::LocalOffer);
        let answer = sdp::answer(
            &ours,
            "b",
            2,
            1,
            ip("10.0.0.2"),
            6000,
            &bob().codecs,
            Direction::SendRecv,
            SrtpMode::Off,
            &mut LocalKeys::default(),
        )
        .unwrap();
        a.receive_answer(answer).unwrap();
        assert_eq!(a.state(), State::Done);

        // While theirs is outstanding, neither our offer nor another of theirs.
        a.receive_offer(theirs.clone()).unwrap();
        assert_eq!(a.create_offer(&alice()), Err(Refusal::OfferPending));
        assert_eq!(a.receive_offer(theirs), Err(Refusal::OfferPending));
        assert_eq!(
            a.receive_answer(offer_text("m=audio 5000 RTP/AVP 0\r\n")),
            Err(Refusal::NoOffer)
        );
        assert_eq!(a.state(), State::RemoteOffer);
        assert!(a.create_answer(&alice()).is_ok());
    }

    #[test]
    fn answer_not_mirroring_the_offer_is_refused() {
        let mut a = Negotiator::new(1);
        let offer = a.create_offer(&alice()).unwrap();
        let good = sdp::answer(
            &offer,
            "b",
            2,
            1,
            ip("10.0.0.2"),
            6000,
            &bob().codecs,
            Direction::SendRecv,
            SrtpMode::Off,
            &mut LocalKeys::default(),
        )
        .unwrap();

        let mut two = good.clone();
        two.media.push(Media::refused(&good.media[0], ip("10.0.0.2")));
        let err = a.receive_answer(two).unwrap_err();
        assert_eq!(
            err,
            Refusal::Mismatch("the answer has 2 m-lines, the offer 1".into())
        );
        assert_eq!(a.state(), State::Idle, "the initial offer is over");

        type Spoil = fn(&mut Sdp);
        let cases: [(&str, Spoil); 4] = [
            ("no m-line", |s| s.media.clear()),
            ("video", |s| s.media[0].kind = "video".into()),
            ("RTP/SAVP", |s| s.media[0].proto = "RTP/SAVP".into()),
            ("unknown codec", |s| {
                s.media[0].codecs = vec![Codec::from_static(18).unwrap()];
                s.media[0].formats = vec!["18".into()];
            }),
        ];
        for (what, spoil) in cases {
            let (mut a, _) = call();
            let before = a.active().cloned();
            let offer = a.create_offer(&alice()).unwrap();
            let mut bad = sdp::answer(
                &offer,
                "b",
                2,
                2,
                ip("10.0.0.2"),
                6000,
                &bob().codecs,
                Direction::SendRecv,
                SrtpMode::Off,
                &mut LocalKeys::default(),
            )
            .unwrap();
            spoil(&mut bad);
            assert!(a.receive_answer(wire(&bad)).is_err(), "{what}");
            assert_eq!(a.state(), State::Done, "{what}");
            assert_eq!(a.active().cloned(), before, "{what}: the previous session stays");
        }

        // Our audio refused with port 0.
        let mut a = Negotiator::new(1);
        let offer = a.create_offer(&alice()).unwrap();
        let mut refused = good;
        refused.media[0] = Media::refused(&offer.media[0], ip("10.0.0.2"));
        let err = a.receive_answer(wire(&refused)).unwrap_err();
        assert_eq!(err, Refusal::NotAcceptable(NotAcceptable::AudioDisabled));
    }

    #[test]
    fn video_and_audio_offer() {
        let mut a = Negotiator::new(1);
        let offer = offer_text(
            "m=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
             m=audio 5000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp:5009\r\n",
        );
        a.receive_offer(offer).unwrap();
        let answer = a.create_answer(&alice()).unwrap();
        assert!(
            answer
                .to_text()
                .contains("m=video 0 RTP/AVP 96\r\nm=audio 4000 RTP/AVP 0 8 101\r\n"),
            "{}",
            answer.to_text()
        );
        let n = a.negotiated().unwrap();
        assert_eq!(a.active().unwrap().audio, 1);
        assert_eq!(
            (n.remote_rtp, n.remote_rtcp),
            (sock("10.0.0.7:5000"), sock("10.0.0.7:5009"))
        );

        // Our re-offer keeps both m-lines, video still refused; the peer's answer mirrors it.
        let held = LocalParams {
            hold: true,
            ..alice()
        };
        let reoffer = a.create_offer(&held).unwrap();
        assert_eq!(reoffer.media.len(), 2);
        assert_eq!(
            (reoffer.media[0].kind.as_str(), reoffer.media[0].port),
            ("video", 0)
        );
        assert_eq!(
            (reoffer.media[1].port, reoffer.media[1].direction),
            (4000, Direction::SendOnly)
        );
        let reply = sdp::answer(
            &wire(&reoffer),
            "p",
            5,
            6,
            ip("10.0.0.7"),
            5000,
            &[Codec::pcmu()],
            Direction::SendRecv,
            SrtpMode::Off,
            &mut LocalKeys::default(),
        )
        .unwrap();
        assert_eq!(reply.media[1].direction, Direction::RecvOnly);
        a.receive_answer(wire(&reply)).unwrap();
        let n = a.negotiated().unwrap();
        assert!(n.send && !n.recv && !n.remote_hold);

        // A re-offer that drops the video m-line, or turns the audio one into video.
        let mut b = Negotiator::new(1);
        b.receive_offer(offer_text(
            "m=video 5002 RTP/AVP 96\r\nm=audio 5000 RTP/AVP 0\r\n",
        ))
        .unwrap();
        b.create_answer(&alice()).unwrap();
        let err = b
            .receive_offer(offer_text("m=audio 5000 RTP/AVP 0\r\n"))
            .unwrap_err();
        assert!(matches!(err, Refusal::Mismatch(_)), "{err}");
        let err = b
            .receive_offer(offer_text(
                "m=video 5002 RTP/AVP 96\r\nm=video 5000 RTP/AVP 0\r\n",
            ))
            .unwrap_err();
        assert_eq!(err.to_string(), "m-line 2 changes from audio to video");
        // The refused video slot may be reused for another type, and streams added after.
        b.receive_offer(offer_text(
            "m=text 5002 RTP/AVP 98\r\nm=audio 5000 RTP/AVP 0\r\nm=video 5004 RTP/AVP 96\r\n",
        ))
        .unwrap();
        assert_eq!(b.create_answer(&alice()).unwrap().media.len(), 3);
    }

    #[test]
    fn srtp_and_disabled_audio_refused() {
        let mut a = Negotiator::new(1);
        a.receive_offer(offer_text(
            "m=audio 5000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n",
        ))
        .unwrap();
        let err = a.create_answer(&alice()).unwrap_err();
        assert_eq!(
            err,
            Refusal::NotAcceptable(NotAcceptable::Proto("RTP/SAVP".into()))
        );
        assert_eq!((err.status(), err.warn_code()), (488, Some(302)));
        assert_eq!((a.state(), a.active()), (State::Idle, None));

        a.receive_offer(offer_text("m=audio 0 RTP/AVP 0\r\n")).unwrap();
        let err = a.create_answer(&alice()).unwrap_err();
        assert_eq!(err, Refusal::NotAcceptable(NotAcceptable::AudioDisabled));
        assert_eq!(err.warn_code(), Some(304));
        assert_eq!(a.state(), State::Idle);
    }

    #[test]
    fn hold_and_unhold() {
        use Direction::*;
        let (mut a, mut b) = call();
        let held = LocalParams {
            hold: true,
            ..alice()
        };
        // Alice holds: sendonly, Bob answers recvonly and knows he is held.
        let (offer, answer) = exchange(&mut a, &held, &mut b, &bob());
        assert_eq!(
            (offer.media[0].direction, answer.media[0].direction),
            (SendOnly, RecvOnly)
        );
        let (na, nb) = (a.negotiated().unwrap(), b.negotiated().unwrap());
        assert!(na.send && !na.recv && !na.remote_hold);
        assert!(!nb.send && nb.recv && nb.remote_hold);

        // Bob holds too: he is held, so inactive; Alice (holding) answers inactive.
        let bob_held = LocalParams { hold: true, ..bob() };
        let (offer, answer) = exchange(&mut b, &bob_held, &mut a, &held);
        assert_eq!(
            (offer.media[0].direction, answer.media[0].direction),
            (Inactive, Inactive)
        );
        let na = a.negotiated().unwrap();
        assert!(!na.send && !na.recv && na.remote_hold);

        // Alice takes the call back while Bob still holds: she offers sendrecv, Bob (holding,
        // not held any more) answers sendonly.
        let (offer, answer) = exchange(&mut a, &alice(), &mut b, &bob_held);
        assert_eq!(
            (offer.media[0].direction, answer.media[0].direction),
            (SendRecv, SendOnly)
        );
        let na = a.negotiated().unwrap();
        assert!(!na.send && na.recv && na.remote_hold);
        // Bob takes it back: sendrecv both ways.
        let (offer, answer) = exchange(&mut b, &bob(), &mut a, &alice());
        assert_eq!(
            (offer.media[0].direction, answer.media[0].direction),
            (SendRecv, SendRecv)
        );
        assert!(!a.negotiated().unwrap().remote_hold);

        // The old hold: c=0.0.0.0.
        let mut c = Negotiator::new(1);
        c.receive_offer(
            Sdp::parse("v=0\r\no=p 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(c.create_answer(&alice()).unwrap().media[0].direction, RecvOnly);
        let n = c.negotiated().unwrap();
        assert!(!n.send && n.remote_hold);
    }

    #[test]
    fn versions_and_session_id() {
        let (mut a, mut b) = call();
        let mut seen = vec![a.active().unwrap().local.origin.version];
        let held = LocalParams {
            hold: true,
            ..alice()
        };
        for p in [&held, &held, &alice(), &alice()] {
            let (offer, _) = exchange(&mut a, p, &mut b, &bob());
            assert_eq!(offer.origin.session_id, 11);
            seen.push(offer.origin.version);
        }
        // Initial offer 1; hold 2; the same hold again 2; unhold 3 (as the initial offer, but
        // versions do not go back); again 3.
        assert_eq!(seen, vec![1, 2, 2, 3, 3]);
        // Bob's answers change with them: recvonly, recvonly, sendrecv, sendrecv.
        assert_eq!(b.active().unwrap().local.origin.version, 3);
        assert_eq!(b.active().unwrap().local.origin.session_id, 22);
    }

    #[test]
    fn ipv6_both_ways() {
        let v6 = |p: LocalParams, last: &str| LocalParams {
            addr: ip(&format!("2001:db8::{last}")),
            ..p
        };
        let (mut a, mut b) = (Negotiator::new(1), Negotiator::new(2));
        let (offer, answer) = exchange(&mut a, &v6(alice(), "1"), &mut b, &v6(bob(), "2"));
        assert!(offer.to_text().contains("c=IN IP6 2001:db8::1\r\n"));
        assert!(answer.to_text().contains("o=bob 2 1 IN IP6 2001:db8::2\r\n"));
        assert_eq!(a.negotiated().unwrap().remote_rtp, sock("[2001:db8::2]:6000"));
        assert_eq!(b.negotiated().unwrap().remote_rtcp, sock("[2001:db8::1]:4001"));

        // An IPv4 phone cannot answer an IPv6 offer (301).
        let mut c = Negotiator::new(3);
        c.receive_offer(wire(&offer)).unwrap();
        let err = c.create_answer(&alice()).unwrap_err();
        assert_eq!(err.warn_code(), Some(301));
    }

    #[test]
    fn telephone_event_at_the_codec_rate() {
        let mut a = Negotiator::new(1);
        a.receive_offer(offer_text(
            "m=audio 5000 RTP/AVPF 0 101 97\r\na=rtpmap:101 telephone-event/48000\r\n\
             a=rtpmap:97 telephone-event/8000\r\na=ptime:30\r\n",
        ))
        .unwrap();
        let answer = a.create_answer(&alice()).unwrap();
        assert_eq!(answer.media[0].proto, "RTP/AVPF");
        let n = a.negotiated().unwrap();
        assert_eq!((n.codec.pt, n.telephone_event, n.ptime), (0, Some(97), Some(30)));
    }

    fn with_srtp(p: LocalParams, srtp: SrtpMode) -> LocalParams {
        LocalParams { srtp, ..p }
    }

    fn crypto_lines(sdp: &Sdp) -> Vec<String> {
        sdp.media[0]
            .attributes
            .iter()
            .filter(|a| a.name == "crypto")
            .filter_map(|a| a.value.clone())
            .collect()
    }

    #[test]
    fn srtp_offers_mandatory_as_savp_and_optional_as_avp_with_crypto() {
        use crate::media::srtp::Suite;
        let mut a = Negotiator::new(1);
        let offer = a.create_offer(&with_srtp(alice(), SrtpMode::Mandatory)).unwrap();
        assert_eq!(offer.media[0].proto, "RTP/SAVP");
        let lines = crypto_lines(&offer);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{lines:?}"
        );
        assert!(lines[2].starts_with("3 AEAD_AES_128_GCM inline:"), "{lines:?}");
        let mut b = Negotiator::new(2);
        let offer = b.create_offer(&with_srtp(bob(), SrtpMode::Optional)).unwrap();
        assert_eq!(
            (offer.media[0].proto.as_str(), crypto_lines(&offer).len()),
            ("RTP/AVP", 3)
        );
        // Both ways, each side's key is the other's.
        for (x, y) in [
            (SrtpMode::Mandatory, SrtpMode::Optional),
            (SrtpMode::Optional, SrtpMode::Mandatory),
            (SrtpMode::Optional, SrtpMode::Optional),
        ] {
            let (mut a, mut b) = (Negotiator::new(1), Negotiator::new(2));
            let (_, answer) = exchange(&mut a, &with_srtp(alice(), x), &mut b, &with_srtp(bob(), y));
            assert_eq!(crypto_lines(&answer).len(), 1, "the answer takes one line");
            let (ka, kb) = (
                a.negotiated().unwrap().srtp.unwrap(),
                b.negotiated().unwrap().srtp.unwrap(),
            );
            assert_eq!((ka.ours.clone(), ka.theirs.clone()), (kb.theirs, kb.ours));
            assert_eq!(ka.suite(), Suite::AesCm128HmacSha1_80);
            // A re-offer keeps the keys and the profile.
            let before = ka;
            let (reoffer, _) = exchange(&mut a, &with_srtp(alice(), x), &mut b, &with_srtp(bob(), y));
            assert_eq!(
                reoffer.media[0].proto,
                if x == SrtpMode::Mandatory {
                    "RTP/SAVP"
                } else {
                    "RTP/AVP"
                }
            );
            assert_eq!(a.negotiated().unwrap().srtp, Some(before));
        }
    }

    #[test]
    fn srtp_answer_takes_the_first_usable_line_gcm_included() {
        use crate::media::srtp::{MasterKey, Suite};
        let gcm = MasterKey::generate(Suite::AeadAes128Gcm).unwrap();
        let cm32 = MasterKey::generate(Suite::AesCm128HmacSha1_32).unwrap();
        let offer = offer_text(&format!(
            "m=audio 5000 RTP/SAVP 0\r\na=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:short\r\n\
             a=crypto:8 {} {}\r\na=crypto:9 {} {}\r\n",
            gcm.suite(),
            gcm.key_params(),
            cm32.suite(),
            cm32.key_params()
        ));
        let mut b = Negotiator::new(2);
        b.receive_offer(offer).unwrap();
        let answer = b.create_answer(&with_srtp(bob(), SrtpMode::Mandatory)).unwrap();
        let lines = crypto_lines(&answer);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("8 AEAD_AES_128_GCM inline:"), "{lines:?}");
        let keys = b.negotiated().unwrap().srtp.unwrap();
        assert_eq!((keys.suite(), keys.theirs), (Suite::AeadAes128Gcm, gcm));
    }

    #[test]
    fn srtp_refusals_follow_the_policy() {
        let plain = || offer_text("m=audio 5000 RTP/AVP 0\r\n");
        let savp_without_crypto = || offer_text("m=audio 5000 RTP/SAVP 0\r\n");
        let savp_unusable =
            || offer_text("m=audio 5000 RTP/SAVP 0\r\na=crypto:1 F8_128_HMAC_SHA1_80 inline:x\r\n");
        let answer = |offer: Sdp, srtp| {
            let mut b = Negotiator::new(2);
            b.receive_offer(offer).unwrap();
            let r = b.create_answer(&with_srtp(bob(), srtp));
            (r.map(|_| b.negotiated().unwrap().srtp.is_some()), b)
        };
        // Mandatory: a plain offer is refused (488, 302).
        let (r, b) = answer(plain(), SrtpMode::Mandatory);
        let e = r.unwrap_err();
        assert_eq!((e.status(), e.warn_code()), (488, Some(302)));
        assert!(e.to_string().contains("SRTP is required"), "{e}");
        assert_eq!(b.state(), State::Idle);
        // Optional takes it plain; off refuses RTP/SAVP; nobody takes SAVP without usable crypto.
        assert_eq!(answer(plain(), SrtpMode::Optional).0, Ok(false));
        assert!(
            answer(savp_without_crypto(), SrtpMode::Off)
                .0
                .unwrap_err()
                .to_string()
                .contains("SRTP")
        );
        for srtp in [SrtpMode::Optional, SrtpMode::Mandatory] {
            for offer in [savp_without_crypto(), savp_unusable()] {
                let e = answer(offer, srtp).0.unwrap_err();
                assert_eq!((e.status(), e.warn_code()), (488, Some(302)), "{e}");
            }
        }
        // Off: an offer with crypto over RTP/AVP is answered plain, without crypto.
        let mut a = Negotiator::new(1);
        let offer = a.create_offer(&with_srtp(alice(), SrtpMode::Optional)).unwrap();
        let mut b = Negotiator::new(2);
        b.receive_offer(wire(&offer)).unwrap();
        let ans = b.create_answer(&bob()).unwrap();
        assert!(crypto_lines(&ans).is_empty());
        a.receive_answer(wire(&ans)).unwrap();
        assert_eq!(a.negotiated().unwrap().srtp, None, "optional: plain is fine");
        // Mandatory: a plain answer to our RTP/SAVP offer (a peer that ignores SRTP) fails.
        let mut a = Negotiator::new(1);
        let offer = a.create_offer(&with_srtp(alice(), SrtpMode::Mandatory)).unwrap();
        let mut forged = sdp::answer(
            &wire(&offer),
            "p",
            5,
            1,
            ip("10.0.0.9"),
            7000,
            &[Codec::pcmu()],
            Direction::SendRecv,
            SrtpMode::Off,
            &mut LocalKeys::default(),
        );
        assert!(forged.is_err(), "an SRTP-less answerer refuses RTP/SAVP");
        let mut answer = sdp::answer(
            &wire(&offer),
            "p",
            5,
            1,
            ip("10.0.0.9"),
            7000,
            &[Codec::pcmu()],
            Direction::SendRecv,
            SrtpMode::Optional,
            &mut LocalKeys::default(),
        )
        .unwrap();
        answer.media[0].attributes.retain(|a| a.name != "crypto");
        let e = a.receive_answer(wire(&answer)).unwrap_err();
        assert!(e.to_string().contains("SRTP is required"), "{e}");
        // An answer whose line names a tag we never offered.
        let mut a = Negotiator::new(1);
        let offer = a.create_offer(&with_srtp(alice(), SrtpMode::Optional)).unwrap();
        forged = sdp::answer(
            &wire(&offer),
            "p",
            5,
            1,
            ip("10.0.0.9"),
            7000,
            &[Codec::pcmu()],
            Direction::SendRecv,
            SrtpMode::Optional,
            &mut LocalKeys::default(),
        );
        let mut bad = forged.unwrap();
        let v = bad.media[0].attributes[0].value.take().unwrap();
        bad.media[0].attributes[0].value = Some(v.replacen('1', "5", 1));
        assert!(a.receive_answer(wire(&bad)).is_err());
    }
}
