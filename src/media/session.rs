//! One call's media: a thread that, every 20 ms from a monotonic clock (no drift), takes a frame
//! from the microphone, encodes and sends it (or a telephone-event, or nothing on hold), and
//! plays the next frame out of the jitter buffer (decoded, or concealed) to the speaker and
//! the recording. Received RTP is checked, demultiplexed from RTCP, fed to the jitter buffer
//! or the DTMF receiver. Only the peer's SDP address is listened to (packets from elsewhere are
//! dropped and counted); with symmetric RTP on, one NAT'd source may be learned early in the
//! call ([`super::source_filter`]). RTCP reports go out every 5 s and the loss, jitter and
//! round-trip figures come back as events; a silence of the far end longer than the RTP
//! timeout is reported once. With SRTP keys ([`super::srtp`]) every packet we send is
//! protected, and every packet received must authenticate before anything else looks at it
//! (a stranger cannot be latched onto either); one that fails is dropped and counted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::net::UdpSocket as StdUdpSocket;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::codec::Codec;
use super::device::{Sink, Source};
use super::dtmf::{DtmfReceiver, DtmfSender};
use super::emodel;
use super::receiver::AudioReceiver;
use super::record::Recorder;
use super::rtp::{self, RecvStats, SendStats};
use super::source_filter::SourceFilter;
use super::srtp::{CallKeys, Inbound, Outbound, Rejected, Suite};

/// What the session is told to do.
#[derive(Debug)]
pub enum MediaCommand {
    /// The far end's address or direction changed (re-INVITE, hold). A new address (RTP, or
    /// RTCP: `None` means the RTP port + 1) is the only one listened to again.
    Update {
        remote: SocketAddr,
        remote_rtcp: Option<SocketAddr>,
        send: bool,
        recv: bool,
        /// The session's SRTP keys now (a re-offer may change them).
        srtp: Option<CallKeys>,
    },
    Mute(bool),
    /// Send these digits as RFC 4733 events.
    Dtmf(String),
    /// Start recording into this directory and file name, or stop (`None`).
    Record(Option<(PathBuf, String)>),
    /// Join the local conference: send what the far end says to the other legs, and mix
    /// theirs into what we send.
    Join(super::conference::ConfLink),
    /// Leave it: a two-party call again.
    Leave,
    Stop,
}

/// What the session reports.
#[derive(Clone, Debug, PartialEq)]
pub enum MediaEvent {
    Dtmf(char),
    /// Every 5 s: receive loss (fraction), jitter (ms), the far end's view of our stream, RTT.
    Stats(MediaStats),
    /// A recording is complete.
    Recorded(PathBuf),
    /// Something failed (a device, the recording); the call goes on.
    Warning(String),
    /// Nothing came from the far end for the RTP timeout while receiving; once, until packets
    /// come again (or the direction changes).
    Timeout {
        silent_for: Duration,
    },
}

/// Call quality figures for the UI.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaStats {
    pub received: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub jitter_ms: f64,
    pub remote_loss_percent: Option<f64>,
    pub rtt_ms: Option<f64>,
    /// Frames concealed (20 ms each): lost, late, or held to grow the buffer.
    pub concealed: u64,
    /// Packets that came after their frame was played.
    pub late: u64,
    /// Frames rebuilt from the next packet's in-band FEC (Opus).
    pub fec_recovered: u64,
    /// The jitter buffer's delay now and its target (ms).
    pub buffer_ms: u32,
    pub buffer_target_ms: u32,
    /// Frames with no packet to play (lost or late, not rebuilt), percent of those played.
    pub missing_percent: f64,
    /// The E-model (ITU-T G.107) estimate from the missing frames, their burstiness and the
    /// one-way delay: R and MOS.
    pub r_factor: f64,
    pub mos: f64,
    /// Datagrams dropped because they came from another source than the peer's.
    pub foreign: u64,
    /// The SRTP suite in use, `None` for plain RTP.
    pub srtp: Option<Suite>,
    /// SRTP/SRTCP packets dropped: failed authentication (tampered, wrong key, not SRTP),
    /// and replayed (seen before, or older than the replay window).
    pub srtp_auth_failed: u64,
    pub srtp_replayed: u64,
}

/// How a session starts.
pub struct MediaSetup {
    pub codec: Box<dyn Codec>,
    /// Our payload type for the codec, and for telephone-event if the far end takes it.
    pub pt: u8,
    pub dtmf_pt: Option<u8>,
    /// The far end's RTP address, from its SDP.
    pub remote: SocketAddr,
    /// Its RTCP address (`a=rtcp`); `None`: the RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// Learn a NAT'd peer's real source, once, early in the call (see `source_filter`).
    pub symmetric_rtp: bool,
    /// Report [`MediaEvent::Timeout`] after this long without RTP while receiving.
    pub rtp_timeout: Option<Duration>,
    pub send: bool,
    pub recv: bool,
    pub source: Box<dyn Source>,
    pub sink: Box<dyn Sink>,
    /// Start recording at once: directory and file name.
    pub record: Option<(PathBuf, String)>,
    /// SRTP keys, when the session is encrypted.
    pub srtp: Option<CallKeys>,
}

/// Handle on a running session.
#[derive(Debug)]
pub struct MediaHandle {
    pub commands: mpsc::Sender<MediaCommand>,
    pub task: JoinHandle<()>,
    /// The codec's sample rate (the conference links convert between legs).
    pub rate: u32,
}

/// Starts the session on the call's RTP socket (and RTCP on the next port when given).
pub fn spawn(
    call_id: String,
    rtp_socket: UdpSocket,
    rtcp_socket: Option<UdpSocket>,
    setup: MediaSetup,
    events: mpsc::Sender<(String, MediaEvent)>,
) -> MediaHandle {
    let (tx, rx) = mpsc::channel(32);
    let rate = setup.codec.sample_rate();
    // Its own thread, sleeping to each 20 ms deadline: one wakeup per period, no reactor.
    let task = tokio::task::spawn_blocking(move || run(call_id, rtp_socket, rtcp_socket, setup, events, rx));
    MediaHandle {
        commands: tx,
        task,
        rate,
    }
}

struct Session {
    codec: Box<dyn Codec>,
    pt: u8,
    dtmf_pt: Option<u8>,
    filter: SourceFilter,
    /// Datagrams from other sources, dropped.
    foreign: u64,
    rtp_timeout: Option<Duration>,
    /// When RTP last came from the peer (or receiving last started).
    last_rtp: Instant,
    /// The timeout was reported and waits for packets again.
    timed_out: bool,
    send: bool,
    recv: bool,
    muted: bool,
    source: Box<dyn Source>,
    sink: Box<dyn Sink>,
    recorder: Option<Recorder>,
    call_id: String,
    events: mpsc::Sender<(String, MediaEvent)>,
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
    sent: SendStats,
    sent_since_report: bool,
    recv_stats: RecvStats,
    rx: AudioReceiver,
    dtmf_rx: DtmfReceiver,
    dtmf_queue: Vec<char>,
    dtmf_tx: Option<DtmfSender>,
    mic: Vec<i16>,
    speaker: Vec<i16>,
    payload: Vec<u8>,
    started: Instant,
    remote_report: rtp::RemoteReport,
    /// In the local conference.
    conf: Option<super::conference::ConfLink>,
    srtp: Option<Crypto>,
    srtp_auth_failed: u64,
    srtp_replayed: u64,
    /// The protected packet being sent.
    sealed: Vec<u8>,
}

/// One session's SRTP: the keys and both directions' contexts. `None` contexts: they could
/// not be made, and nothing is sent or taken (never plain RTP instead).
struct Crypto {
    keys: CallKeys,
    contexts: Option<(Outbound, Inbound)>,
}

impl Crypto {
    fn new(keys: CallKeys) -> (Crypto, Option<String>) {
        match Outbound::new(&keys.ours).and_then(|o| Ok((o, Inbound::new(&keys.theirs)?))) {
            Ok(c) => (
                Crypto {
                    keys,
                    contexts: Some(c),
                },
                None,
            ),
            Err(e) => (
                Crypto { keys, contexts: None },
                Some(format!("SRTP: {e}; the call is silent")),
            ),
        }
    }
}

/// The most RTP packets read per 20 ms tick: a flood cannot starve the rest of the loop.
const MAX_PACKETS_PER_TICK: usize = 64;

fn run(
    call_id: String,
    rtp_socket: UdpSocket,
    rtcp_socket: Option<UdpSocket>,
    setup: MediaSetup,
    events: mpsc::Sender<(String, MediaEvent)>,
    mut commands: mpsc::Receiver<MediaCommand>,
) {
    let frame = setup.codec.frame_samples();
    let now = Instant::now();
    let mut s = Session {
        rx: AudioReceiver::new(setup.codec.frame_ticks()),
        pt: setup.pt,
        dtmf_pt: setup.dtmf_pt,
        filter: SourceFilter::new(setup.remote, setup.remote_rtcp, setup.symmetric_rtp, now),
        foreign: 0,
        rtp_timeout: setup.rtp_timeout,
        last_rtp: now,
        timed_out: false,
        send: setup.send,
        recv: setup.recv,
        muted: false,
        source: setup.source,
        sink: setup.sink,
        recorder: None,
        call_id,
        events,
        ssrc: rand::random(),
        seq: rand::random(),
        ts: rand::random(),
        marker: true,
        sent: SendStats::default(),
        sent_since_report: false,
        recv_stats: RecvStats::default(),
        dtmf_rx: DtmfReceiver::new(),
        dtmf_queue: Vec::new(),
        dtmf_tx: None,
        mic: vec![0; frame],
        speaker: Vec::with_capacity(frame * 2),
        payload: Vec::with_capacity(1500),
        started: now,
        remote_report: rtp::RemoteReport::default(),
        conf: None,
        codec: setup.codec,
        srtp: None,
        srtp_auth_failed: 0,
        srtp_replayed: 0,
        sealed: Vec::with_capacity(1500),
    };
    s.set_keys(setup.srtp);
    if let Some((dir, name)) = setup.record {
        s.start_recording(&dir, &name);
    }
    // The 20 ms clock: deadlines are start + n × period on the monotonic clock (no drift); a
    // late tick runs at once, so the average rate stays exact after a stall, and a stall of
    // over a second starts a new schedule rather than a burst.
    // Plain non-blocking sockets, outside the reactor.
    let (rtp_socket, rtcp_socket) = match (
        rtp_socket.into_std(),
        rtcp_socket.map(UdpSocket::into_std).transpose(),
    ) {
        (Ok(rtp), Ok(rtcp)) => (rtp, rtcp),
        (Err(e), _) | (_, Err(e)) => {
            s.warn(format!("media socket: {e}"));
            return;
        }
    };
    let period = Duration::from_millis(20);
    let mut next = Instant::now();
    let mut next_report = next + Duration::from_secs(5);
    let mut buf = vec![0u8; 2048];
    let mut rbuf = vec![0u8; 2048];
    'run: loop {
        // Commands wait at most one period.
        loop {
            match commands.try_recv() {
                Ok(MediaCommand::Update {
                    remote,
                    remote_rtcp,
                    send,
                    recv,
                    srtp,
                }) => {
                    s.set_keys(srtp);
                    let now = Instant::now();
                    let moved = s.filter.update(remote, remote_rtcp, now);
                    if moved {
                        s.rx.reset();
                    }
                    if moved || recv != s.recv {
                        s.last_rtp = now;
                        s.timed_out = false;
                    }
                    s.send = send;
                    s.recv = recv;
                }
                Ok(MediaCommand::Mute(m)) => s.muted = m,
                Ok(MediaCommand::Dtmf(digits)) => s.dtmf_queue.extend(digits.chars().rev()),
                Ok(MediaCommand::Record(Some((dir, name)))) => {
                    if s.recorder.is_none() {
                        s.start_recording(&dir, &name);
                    }
                }
                Ok(MediaCommand::Record(None)) => s.stop_recording(),
                Ok(MediaCommand::Join(link)) => s.conf = Some(link),
                Ok(MediaCommand::Leave) => s.conf = None,
                Ok(MediaCommand::Stop) | Err(mpsc::error::TryRecvError::Disconnected) => break 'run,
                Err(mpsc::error::TryRecvError::Empty) => break,
            }
        }
        // What arrived since the last tick: read here, never woken for.
        for _ in 0..MAX_PACKETS_PER_TICK {
            match rtp_socket.recv_from(&mut buf) {
                // A late STUN answer (the call's mapping, `[account] stun_server`): not media
                // (RFC 7983 demultiplexing by the first byte and the magic cookie).
                Ok((n, _)) if crate::sip::stun::looks_like_stun(&buf[..n]) => {}
                Ok((n, from)) => s.on_packet(&buf[..n], from),
                // WouldBlock (nothing more), or ICMP port unreachable and the like.
                Err(_) => break,
            }
        }
        if let Some(sock) = &rtcp_socket {
            for _ in 0..MAX_PACKETS_PER_TICK {
                match sock.recv_from(&mut rbuf) {
                    Ok((n, _)) if crate::sip::stun::looks_like_stun(&rbuf[..n]) => {}
                    Ok((n, from)) => s.on_rtcp(&rbuf[..n], from),
                    Err(_) => break,
                }
            }
        }
        s.on_tick(&rtp_socket);
        s.check_timeout(Instant::now());
        let now = Instant::now();
        if now >= next_report {
            next_report += Duration::from_secs(5);
            s.send_report(rtcp_socket.as_ref().unwrap_or(&rtp_socket), rtcp_socket.is_some());
        }
        next += period;
        if now > next + Duration::from_secs(1) {
            next = now;
        }
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    // Close the recording (reported as a `Recorded` event) and the output file.
    s.stop_recording();
    if let Err(e) = s.sink.finish() {
        s.warn(format!("audio output: {e}"));
    }
}

impl Session {
    fn warn(&self, msg: String) {
        let _ = self
            .events
            .try_send((self.call_id.clone(), MediaEvent::Warning(msg)));
    }

    fn event(&self, e: MediaEvent) {
        let _ = self.events.try_send((self.call_id.clone(), e));
    }

    /// Takes the session's SRTP keys; contexts are made again only when they changed.
    fn set_keys(&mut self, keys: Option<CallKeys>) {
        if self.srtp.as_ref().map(|c| &c.keys) == keys.as_ref() {
            return;
        }
        self.srtp = keys.map(|k| {
            let (c, warning) = Crypto::new(k);
            if let Some(w) = warning {
                self.warn(w);
            }
            c
        });
    }

    /// Counts a received packet SRTP refused.
    fn rejected(&mut self, why: Rejected) {
        match why {
            Rejected::Replay => self.srtp_replayed = self.srtp_replayed.wrapping_add(1),
            Rejected::Auth | Rejected::Malformed => {
                self.srtp_auth_failed = self.srtp_auth_failed.wrapping_add(1);
            }
        }
    }

    /// `packet` protected for the wire (SRTP or SRTCP), or as it is without SRTP; `None`:
    /// nothing may be sent.
    fn seal<'a>(&'a mut self, packet: &'a [u8], rtcp: bool) -> Option<&'a [u8]> {
        let Some(c) = self.srtp.as_mut() else {
            return Some(packet);
        };
        let (out, _) = c.contexts.as_mut()?;
        let sealed = if rtcp {
            out.protect_rtcp(packet)
        } else {
            out.protect_rtp(packet)
        };
        self.sealed = sealed.ok()?;
        Some(&self.sealed)
    }

    fn start_recording(&mut self, dir: &std::path::Path, name: &str) {
        match Recorder::create(dir, name, self.codec.sample_rate()) {
            Ok(r) => self.recorder = Some(r),
            Err(e) => self.warn(format!("recording: {e}")),
        }
    }

    fn stop_recording(&mut self) {
        if let Some(r) = self.recorder.take() {
            match r.finish() {
                Ok(path) => self.event(MediaEvent::Recorded(path)),
                Err(e) => self.warn(format!("recording: {e}")),
            }
        }
    }

    /// One 20 ms period.
    fn on_tick(&mut self, sock: &StdUdpSocket) {
        let frame = self.codec.frame_samples();
        self.mic.resize(frame, 0);
        self.source.pull(&mut self.mic);
        if let Some(n) = self.source.notice() {
            self.warn(n);
        }
        if self.muted {
            self.mic.iter_mut().for_each(|s| *s = 0);
        }
        // Jitter buffer → speaker (and, in a conference, the other legs).
        self.speaker.clear();
        let now_ms = self.started.elapsed().as_millis() as u64;
        self.rx.play(self.codec.as_mut(), &mut self.speaker, now_ms);
        self.speaker.resize(frame, 0);
        if let Some(conf) = self.conf.as_mut() {
            conf.send(&self.speaker);
            // The others' parties are heard with the agent.
            conf.mix_into(&mut self.mic);
        }
        // Microphone (and the conference) → RTP.
        if self.send {
            self.send_frame(sock);
        }
        self.ts = self.ts.wrapping_add(self.codec.frame_ticks());
        self.sink.push(&self.speaker);
        if let Some(n) = self.sink.notice() {
            self.warn(n);
        }
        if let Some(r) = self.recorder.as_mut()
            && let Err(e) = r.write(&self.mic, &self.speaker)
        {
            self.recorder = None;
            self.warn(format!("recording stopped: {e}"));
        }
    }

    fn send_frame(&mut self, sock: &StdUdpSocket) {
        // A telephone-event in progress replaces the audio (RFC 4733 §2.5.1.1).
        if self.dtmf_tx.is_none()
            && let (Some(d), Some(_)) = (self.dtmf_queue.pop(), self.dtmf_pt)
            && let Some(code) = super::dtmf::event_code(d)
        {
            self.dtmf_tx = Some(DtmfSender::new(code, self.ts, self.codec.frame_ticks()));
        }
        if let (Some(sender), Some(pt)) = (self.dtmf_tx.as_mut(), self.dtmf_pt) {
            match sender.next() {
                Some(ev) => {
                    let bytes = rtp_rs::RtpPacketBuilder::new()
                        .payload_type(pt)
                        .marked(ev.marker)
                        .sequence(rtp_rs::Seq::from(self.seq))
                        .timestamp(ev.start_ts)
                        .ssrc(self.ssrc)
                        .payload(&ev.payload)
                        .build();
                    if let Ok(b) = bytes {
                        self.transmit(sock, &b, 4, ev.start_ts);
                    }
                    return;
                }
                None => self.dtmf_tx = None,
            }
        }
        self.payload.clear();
        if self.codec.encode(&self.mic, &mut self.payload).is_err() {
            return;
        }
        let bytes = rtp_rs::RtpPacketBuilder::new()
            .payload_type(self.pt)
            .marked(std::mem::take(&mut self.marker))
            .sequence(rtp_rs::Seq::from(self.seq))
            .timestamp(self.ts)
            .ssrc(self.ssrc)
            .payload(&self.payload)
            .build();
        if let Ok(b) = bytes {
            let n = self.payload.len();
            let ts = self.ts;
            self.transmit(sock, &b, n, ts);
        }
    }

    fn transmit(&mut self, sock: &StdUdpSocket, bytes: &[u8], payload_len: usize, ts: u32) {
        // A UDP send on loopback or a LAN never blocks for long; a full buffer drops the packet.
        let to = self.filter.rtp_target();
        if let Some(wire) = self.seal(bytes, false) {
            let _ = sock.send_to(wire, to);
        }
        self.seq = self.seq.wrapping_add(1);
        self.sent.packets = self.sent.packets.wrapping_add(1);
        self.sent.octets = self.sent.octets.wrapping_add(payload_len as u32);
        self.sent.last_rtp_ts = ts;
        self.sent_since_report = true;
    }

    /// Reports the far end's silence once, while receiving.
    fn check_timeout(&mut self, now: Instant) {
        let Some(limit) = self.rtp_timeout else { return };
        let silent_for = now.saturating_duration_since(self.last_rtp);
        if self.recv && !self.timed_out && silent_for >= limit {
            self.timed_out = true;
            self.event(MediaEvent::Timeout { silent_for });
        }
    }

    fn on_packet(&mut self, data: &[u8], from: SocketAddr) {
        if rtp::is_rtcp(data) {
            return self.on_rtcp(data, from);
        }
        // SRTP: authenticated and decrypted before anything else reads it.
        let plain;
        let data = match self.srtp.as_mut().map(|c| c.contexts.as_mut()) {
            None => data,
            Some(None) => return,
            Some(Some((_, inbound))) => match inbound.unprotect_rtp(data) {
                Ok(p) => {
                    plain = p;
                    &plain[..]
                }
                Err(why) => return self.rejected(why),
            },
        };
        let pkt = rtp_rs::RtpReader::new(data).ok().filter(|p| {
            let pt = p.payload_type();
            p.version() == 2 && (pt == self.pt || Some(pt) == self.dtmf_pt)
        });
        let id = pkt.as_ref().map(|p| (p.ssrc(), u16::from(p.sequence_number())));
        if !self.filter.rtp(from, id, Instant::now()) {
            self.foreign = self.foreign.wrapping_add(1);
            return;
        }
        let Some(pkt) = pkt else {
            return;
        };
        let pt = pkt.payload_type();
        if !self.recv {
            return;
        }
        self.last_rtp = Instant::now();
        self.timed_out = false;
        let seq: u16 = pkt.sequence_number().into();
        let arrival = self.started.elapsed();
        let arrival_ts = (arrival.as_secs_f64() * f64::from(self.codec.clock_rate())) as u64;
        if Some(pt) == self.dtmf_pt {
            if let Some(d) = self.dtmf_rx.push(pkt.timestamp(), pkt.payload()) {
                self.event(MediaEvent::Dtmf(d));
            }
            return;
        }
        self.recv_stats
            .packet(pkt.ssrc(), seq, pkt.timestamp(), arrival_ts);
        self.rx.push(
            seq,
            pkt.timestamp(),
            pkt.payload().to_vec(),
            arrival.as_millis() as u64,
        );
    }

    fn on_rtcp(&mut self, data: &[u8], from: SocketAddr) {
        let plain;
        let data = match self.srtp.as_mut().map(|c| c.contexts.as_mut()) {
            None => data,
            Some(None) => return,
            Some(Some((_, inbound))) => match inbound.unprotect_rtcp(data) {
                Ok(p) => {
                    plain = p;
                    &plain[..]
                }
                Err(why) => return self.rejected(why),
            },
        };
        if !self.filter.rtcp(from) {
            self.foreign = self.foreign.wrapping_add(1);
            return;
        }
        if let Some(rep) = rtp::read_report(data, self.ssrc, &mut self.recv_stats)
            && (rep.fraction_lost.is_some() || rep.rtt.is_some())
        {
            if let Some(f) = rep.fraction_lost {
                self.codec.loss_hint(f * 100.0);
            }
            self.remote_report = rep;
        }
    }

    fn send_report(&mut self, sock: &StdUdpSocket, separate: bool) {
        let sent = std::mem::take(&mut self.sent_since_report).then_some(self.sent);
        if let Some(bytes) = rtp::build_report(self.ssrc, sent, &mut self.recv_stats) {
            let to = if separate {
                self.filter.rtcp_target()
            } else {
                self.filter.rtp_target()
            };
            if let Some(wire) = self.seal(&bytes, true) {
                let _ = sock.send_to(wire, to);
            }
        }
        let expected = self.recv_stats.expected();
        let rs = self.rx.stats();
        // One way: the buffer, one packet of audio, the codec's look-ahead, half the round trip.
        let one_way = f64::from(rs.jitter.delay_ms)
            + 20.0
            + self.codec.lookahead_ms()
            + self.remote_report.rtt.map_or(0.0, |r| r.as_secs_f64() * 500.0);
        let r_factor = emodel::rating(
            self.codec.name(),
            &emodel::Conditions {
                delay_ms: one_way,
                loss_percent: rs.missing_percent(),
                burst_ratio: rs.burst_ratio(),
            },
        );
        let stats = MediaStats {
            received: self.recv_stats.received,
            lost: self.recv_stats.lost(),
            loss_percent: if expected == 0 {
                0.0
            } else {
                self.recv_stats.lost() as f64 * 100.0 / expected as f64
            },
            jitter_ms: f64::from(self.recv_stats.jitter()) * 1000.0 / f64::from(self.codec.clock_rate()),
            remote_loss_percent: self.remote_report.fraction_lost.map(|f| f * 100.0),
            rtt_ms: self.remote_report.rtt.map(|r| r.as_secs_f64() * 1000.0),
            concealed: rs.concealed,
            late: rs.jitter.late,
            fec_recovered: rs.fec_recovered,
            buffer_ms: rs.jitter.delay_ms,
            buffer_target_ms: rs.jitter.target_ms,
            missing_percent: rs.missing_percent(),
            r_factor,
            mos: emodel::mos_from_rating(r_factor),
            foreign: self.foreign,
            srtp: self.srtp.as_ref().map(|c| c.keys.suite()),
            srtp_auth_failed: self.srtp_auth_failed,
            srtp_replayed: self.srtp_replayed,
        };
        let _ = self
            .events
            .try_send((self.call_id.clone(), MediaEvent::Stats(stats)));
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket as Udp;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::media::device::NullSource;

    /// μ-law bytes: a loud (±32124) and a quiet (±120) frame.
    const LOUD: u8 = 0x80;
    const QUIET: u8 = 0xf0;
    const DTMF_PT: u8 = 101;

    /// A speaker that keeps the loudest sample it was given.
    struct Loudest(Arc<AtomicU32>);

    impl Sink for Loudest {
        fn push(&mut self, frame: &[i16]) {
            let max = frame
                .iter()
                .map(|s| u32::from(s.unsigned_abs()))
                .max()
                .unwrap_or(0);
            self.0.fetch_max(max, Ordering::Relaxed);
        }
        fn name(&self) -> String {
            "loudest".into()
        }
        fn finish(&mut self) -> Result<(), String> {
            Ok(())
        }
    }

    /// A running session on 127.0.0.1 (the handle first: dropping it stops the session
    /// before the runtime waits for its thread).
    struct Call {
        handle: MediaHandle,
        events: mpsc::Receiver<(String, MediaEvent)>,
        rtp: SocketAddr,
        rtcp: SocketAddr,
        loudest: Arc<AtomicU32>,
        _rt: tokio::runtime::Runtime,
    }

    fn udp() -> Udp {
        let s = Udp::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        s
    }

    fn addr(s: &Udp) -> SocketAddr {
        s.local_addr().unwrap()
    }

    fn start(
        remote: SocketAddr,
        remote_rtcp: Option<SocketAddr>,
        symmetric_rtp: bool,
        rtp_timeout: Option<Duration>,
    ) -> Call {
        start_with(remote, remote_rtcp, symmetric_rtp, rtp_timeout, None)
    }

    fn start_with(
        remote: SocketAddr,
        remote_rtcp: Option<SocketAddr>,
        symmetric_rtp: bool,
        rtp_timeout: Option<Duration>,
        srtp: Option<CallKeys>,
    ) -> Call {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _in = rt.enter();
        let bind = || {
            let s = Udp::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            let a = s.local_addr().unwrap();
            (UdpSocket::from_std(s).unwrap(), a)
        };
        let ((rtp, rtp_addr), (rtcp, rtcp_addr)) = (bind(), bind());
        let loudest = Arc::new(AtomicU32::new(0));
        let setup = MediaSetup {
            codec: super::super::codec::by_name("PCMU", 8000).unwrap(),
            pt: 0,
            dtmf_pt: Some(DTMF_PT),
            remote,
            remote_rtcp,
            symmetric_rtp,
            rtp_timeout,
            send: true,
            recv: true,
            source: Box::new(NullSource),
            sink: Box::new(Loudest(loudest.clone())),
            record: None,
            srtp,
        };
        let (tx, events) = mpsc::channel(256);
        let handle = spawn("c".into(), rtp, Some(rtcp), setup, tx);
        drop(_in);
        Call {
            handle,
            events,
            rtp: rtp_addr,
            rtcp: rtcp_addr,
            loudest,
            _rt: rt,
        }
    }

    impl Call {
        fn command(&self, c: MediaCommand) {
            self.handle.commands.try_send(c).unwrap();
        }

        /// The next event `pick` keeps, within `within`.
        fn wait<T>(&mut self, within: Duration, pick: impl Fn(&MediaEvent) -> Option<T>) -> Option<T> {
            let end = Instant::now() + within;
            while Instant::now() < end {
                match self.events.try_recv() {
                    Ok((_, e)) => {
                        if let Some(t) = pick(&e) {
                            return Some(t);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            None
        }

        fn loudest(&self) -> u32 {
            self.loudest.load(Ordering::Relaxed)
        }
    }

    fn packet(pt: u8, ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        rtp_rs::RtpPacketBuilder::new()
            .payload_type(pt)
            .sequence(rtp_rs::Seq::from(seq))
            .timestamp(ts)
            .ssrc(ssrc)
            .payload(payload)
            .build()
            .unwrap()
    }

    /// `n` frames of `level` paced at 20 ms from `from`, sequence numbers from `seq`.
    fn talk(from: &Udp, to: SocketAddr, ssrc: u32, seq: u16, n: u16, level: u8) {
        for i in 0..n {
            let s = seq.wrapping_add(i);
            from.send_to(&packet(0, ssrc, s, u32::from(s) * 160, &[level; 160]), to)
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One key press as RFC 4733 events (three updates, three ends): six packets.
    fn key(from: &Udp, to: SocketAddr, ssrc: u32, seq: u16, ts: u32, digit: char) {
        let code = super::super::dtmf::event_code(digit).unwrap();
        for i in 0..6u16 {
            let payload = super::super::dtmf::encode(code, i >= 3, 10, 160 * (i.min(3) + 1));
            from.send_to(&packet(DTMF_PT, ssrc, seq.wrapping_add(i), ts, &payload), to)
                .unwrap();
        }
    }

    /// The RTP packets that reach `sock` within `within`, and the last one's SSRC.
    fn heard(sock: &Udp, within: Duration) -> (usize, Option<u32>) {
        let end = Instant::now() + within;
        let (mut n, mut ssrc) = (0, None);
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            if let Ok((len, _)) = sock.recv_from(&mut buf)
                && let Ok(p) = rtp_rs::RtpReader::new(&buf[..len])
                && !rtp::is_rtcp(&buf[..len])
            {
                n += 1;
                ssrc = Some(p.ssrc());
            }
        }
        (n, ssrc)
    }

    /// A receiver report about `ssrc` with `lost` of every 10 packets lost.
    fn receiver_report(from_ssrc: u32, ssrc: u32, lost: u16) -> Vec<u8> {
        let mut stats = RecvStats::default();
        stats.packet(ssrc, 0, 0, 0);
        for seq in (lost + 1)..10 {
            stats.packet(ssrc, seq, 0, 0);
        }
        rtp::build_report(from_ssrc, None, &mut stats).unwrap()
    }

    #[test]
    fn a_stranger_is_ignored_and_the_call_talks_to_the_sdp_address() {
        let (peer, peer_rtcp, stranger) = (udp(), udp(), udp());
        let mut call = start(addr(&peer), Some(addr(&peer_rtcp)), false, None);
        // The stranger speaks first, loud, and presses a key: 25 + 6 datagrams.
        talk(&stranger, call.rtp, 666, 1000, 25, LOUD);
        key(&stranger, call.rtp, 666, 1025, 25 * 160, '9');
        let (to_stranger, _) = heard(&stranger, Duration::from_millis(200));
        let (to_peer, phone_ssrc) = heard(&peer, Duration::from_millis(200));
        assert_eq!(to_stranger, 0, "the call's audio went to the stranger");
        assert!(to_peer >= 5, "{to_peer} packets reached the peer");
        assert_eq!(call.loudest(), 0, "the stranger's audio was played");
        assert_eq!(
            call.wait(Duration::from_millis(100), |e| matches!(e, MediaEvent::Dtmf(_))
                .then_some(())),
            None
        );
        // The peer is heard: its audio and its key.
        talk(&peer, call.rtp, 42, 1, 25, LOUD);
        key(&peer, call.rtp, 42, 26, 25 * 160, '7');
        assert_eq!(
            call.wait(Duration::from_secs(1), |e| match e {
                MediaEvent::Dtmf(d) => Some(*d),
                _ => None,
            }),
            Some('7')
        );
        assert!(call.loudest() > 30000, "the peer's audio was not played");
        // RTCP: the peer's report counts, the stranger's (one more datagram) does not.
        let phone_ssrc = phone_ssrc.unwrap();
        peer_rtcp
            .send_to(&receiver_report(42, phone_ssrc, 5), call.rtcp)
            .unwrap();
        std::thread::sleep(Duration::from_millis(60));
        stranger
            .send_to(&receiver_report(666, phone_ssrc, 8), call.rtcp)
            .unwrap();
        let stats = call
            .wait(Duration::from_secs(6), |e| match e {
                MediaEvent::Stats(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(stats.foreign, 32, "{stats:?}");
        assert_eq!(stats.received, 25, "{stats:?}");
        assert_eq!(stats.remote_loss_percent, Some(50.0), "{stats:?}");
        // The phone's own report went to the peer's RTCP address.
        let mut buf = [0u8; 1500];
        let mut reported = false;
        for _ in 0..50 {
            if let Ok((n, _)) = peer_rtcp.recv_from(&mut buf) {
                reported |= rtp::is_rtcp(&buf[..n]);
            }
        }
        assert!(reported);
        assert!(stranger.recv_from(&mut buf).is_err());
    }

    #[test]
    fn with_symmetric_rtp_a_natted_peer_is_latched_once() {
        // The SDP names an address that never sends (the peer's private side of a NAT).
        let (sdp, nat, stranger) = (udp(), udp(), udp());
        let call = start(addr(&sdp), None, true, None);
        talk(&nat, call.rtp, 42, 65530, 10, QUIET);
        let (to_nat, _) = heard(&nat, Duration::from_millis(200));
        assert!(to_nat >= 5, "{to_nat} packets reached the NAT'd peer");
        let heard_quiet = call.loudest();
        assert!((1..1000).contains(&heard_quiet), "{heard_quiet}");
        // A stranger's run during the call, and the SDP address waking up: no second switch.
        talk(&stranger, call.rtp, 666, 1, 20, LOUD);
        talk(&sdp, call.rtp, 7, 1, 10, LOUD);
        let _ = heard(&sdp, Duration::from_millis(50));
        let (to_nat, _) = heard(&nat, Duration::from_millis(200));
        let (to_stranger, _) = heard(&stranger, Duration::from_millis(50));
        let (to_sdp, _) = heard(&sdp, Duration::from_millis(200));
        assert!(to_nat >= 5, "{to_nat}");
        assert_eq!((to_stranger, to_sdp), (0, 0));
        assert!(call.loudest() < 1000, "a later source was played");
    }

    #[test]
    fn stun_from_a_stranger_on_the_media_sockets_is_neither_media_nor_a_latch() {
        // With symmetric RTP the first source would be latched: a Binding success (the first
        // byte 1, the magic cookie) from a stranger, on RTP and RTCP, must not be it.
        let (sdp, stranger) = (udp(), udp());
        let mut call = start(addr(&sdp), None, true, None);
        let mut stun = vec![0x01, 0x01, 0x00, 0x0C, 0x21, 0x12, 0xA4, 0x42];
        stun.extend_from_slice(&[7u8; 12]);
        stun.extend_from_slice(&[
            0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0x9d, 0x59, 0x5e, 0x12, 0xa4, 0x43,
        ]);
        for _ in 0..20 {
            stranger.send_to(&stun, call.rtp).unwrap();
            stranger.send_to(&stun, call.rtcp).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let (to_stranger, _) = heard(&stranger, Duration::from_millis(200));
        let (to_sdp, _) = heard(&sdp, Duration::from_millis(200));
        assert_eq!(to_stranger, 0, "the call latched onto a STUN sender");
        assert!(to_sdp >= 3, "{to_sdp} packets reached the SDP address");
        assert_eq!(call.loudest(), 0);
        let stats = call
            .wait(Duration::from_secs(6), |e| match e {
                MediaEvent::Stats(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!((stats.received, stats.foreign), (0, 0), "{stats:?}");
    }

    #[test]
    fn without_symmetric_rtp_a_natted_peer_is_not_latched() {
        let (sdp, nat) = (udp(), udp());
        let call = start(addr(&sdp), None, false, None);
        talk(&nat, call.rtp, 42, 1, 15, LOUD);
        let (to_nat, _) = heard(&nat, Duration::from_millis(100));
        let (to_sdp, _) = heard(&sdp, Duration::from_millis(100));
        assert_eq!(to_nat, 0);
        assert!(to_sdp >= 3, "{to_sdp}");
        assert_eq!(call.loudest(), 0);
    }

    #[test]
    fn the_rtp_timeout_fires_once_per_silence_and_not_on_hold() {
        let (peer, stranger) = (udp(), udp());
        let mut call = start(addr(&peer), None, false, Some(Duration::from_millis(200)));
        let timeout = |e: &MediaEvent| match e {
            MediaEvent::Timeout { silent_for } => Some(*silent_for),
            _ => None,
        };
        let first = call.wait(Duration::from_secs(2), timeout).unwrap();
        assert!(first >= Duration::from_millis(200), "{first:?}");
        // Once; a stranger's packets do not re-arm it.
        talk(&stranger, call.rtp, 666, 1, 5, LOUD);
        assert_eq!(call.wait(Duration::from_millis(500), timeout), None);
        // The peer's packets do.
        talk(&peer, call.rtp, 42, 1, 3, LOUD);
        assert!(call.wait(Duration::from_secs(2), timeout).is_some());
        // On hold (not receiving) it stays quiet; receiving again re-arms it.
        let update = |recv| MediaCommand::Update {
            remote: addr(&peer),
            remote_rtcp: None,
            send: true,
            recv,
            srtp: None,
        };
        call.command(update(false));
        assert_eq!(call.wait(Duration::from_millis(600), timeout), None);
        call.command(update(true));
        let again = call.wait(Duration::from_secs(2), timeout).unwrap();
        assert!(again < Duration::from_millis(600), "{again:?}");
    }

    #[test]
    fn an_update_to_a_new_address_moves_the_call_there() {
        let (old, new) = (udp(), udp());
        let call = start(addr(&old), None, false, None);
        assert!(heard(&old, Duration::from_millis(100)).0 >= 1);
        call.command(MediaCommand::Update {
            remote: addr(&new),
            remote_rtcp: None,
            send: true,
            recv: true,
            srtp: None,
        });
        std::thread::sleep(Duration::from_millis(60));
        let _ = heard(&old, Duration::from_millis(20));
        assert!(heard(&new, Duration::from_millis(100)).0 >= 3);
        assert_eq!(heard(&old, Duration::from_millis(100)).0, 0);
        // The old address is a stranger now.
        talk(&old, call.rtp, 1, 1, 10, LOUD);
        assert_eq!(call.loudest(), 0);
        talk(&new, call.rtp, 2, 1, 10, LOUD);
        assert!(call.loudest() > 30000);
    }

    #[test]
    fn srtp_protects_what_is_sent_and_drops_what_does_not_authenticate() {
        use crate::media::srtp::{Inbound, MasterKey, Outbound, Suite};
        let (peer, peer_rtcp) = (udp(), udp());
        let keys = CallKeys {
            ours: MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap(),
            theirs: MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap(),
        };
        let call = start_with(
            addr(&peer),
            Some(addr(&peer_rtcp)),
            false,
            None,
            Some(keys.clone()),
        );
        // What the phone sends is SRTP under its key: the peer's context opens it.
        let mut open = Inbound::new(&keys.ours).unwrap();
        let mut buf = [0u8; 2048];
        peer.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(n, 12 + 160 + 10, "an SRTP packet with an 80-bit tag");
        assert_eq!(open.unprotect_rtp(&buf[..n]).unwrap().len(), 172);
        // The peer's SRTP is played; plain RTP, a flipped bit and a replay are not.
        let mut seal = Outbound::new(&keys.theirs).unwrap();
        let quiet: Vec<Vec<u8>> = (1..=5u16)
            .map(|i| {
                seal.protect_rtp(&packet(0, 42, i, u32::from(i) * 160, &[QUIET; 160]))
                    .unwrap()
            })
            .collect();
        for p in &quiet {
            peer.send_to(p, call.rtp).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        let heard_quiet = call.loudest();
        assert!(
            heard_quiet > 0 && heard_quiet < 1000,
            "the peer's SRTP is played: {heard_quiet}"
        );
        // Loud, but plain / tampered / replayed.
        talk(&peer, call.rtp, 42, 6, 5, LOUD);
        for i in 11..=15u16 {
            let mut p = seal
                .protect_rtp(&packet(0, 42, i, u32::from(i) * 160, &[LOUD; 160]))
                .unwrap();
            p[40] ^= 0x01;
            peer.send_to(&p, call.rtp).unwrap();
        }
        let loud_replay = seal
            .protect_rtp(&packet(0, 42, 200, 200 * 160, &[LOUD; 160]))
            .unwrap();
        // The genuine one once (heard), then replayed 3 times; then the quiet ones again.
        for p in quiet.iter().take(3) {
            peer.send_to(p, call.rtp).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            call.loudest(),
            heard_quiet,
            "nothing plain, tampered or replayed was played"
        );
        peer.send_to(&loud_replay, call.rtp).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..3 {
            peer.send_to(&loud_replay, call.rtp).unwrap();
        }
        // An SRTCP report, and a tampered one.
        let rr = seal.protect_rtcp(&receiver_report(42, 1, 0)).unwrap();
        peer_rtcp.send_to(&rr, call.rtcp).unwrap();
        let mut bad = seal.protect_rtcp(&receiver_report(42, 1, 0)).unwrap();
        bad[10] ^= 0x10;
        peer_rtcp.send_to(&bad, call.rtcp).unwrap();
        let mut call = call;
        let stats = call
            .wait(Duration::from_secs(7), |e| match e {
                MediaEvent::Stats(s) => Some(s.clone()),
                _ => None,
            })
            .expect("a quality report");
        assert!(call.loudest() > 30_000, "the genuine loud packet was played");
        assert_eq!(stats.srtp, Some(Suite::AesCm128HmacSha1_80));
        // 5 plain + 5 tampered RTP, 1 tampered SRTCP; 3 replayed quiet + 3 replayed loud.
        assert_eq!(
            (stats.srtp_auth_failed, stats.srtp_replayed),
            (11, 6),
            "{stats:?}"
        );
        assert_eq!(stats.received, 6, "{stats:?}");
    }
}
