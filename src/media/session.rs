//! One call's media: a thread that, every 20 ms from a monotonic clock (no drift), takes a frame
//! from the microphone, encodes and sends it (or a telephone-event, or nothing on hold), and
//! plays the next frame out of the jitter buffer (decoded, or concealed) to the speaker and
//! the recording. Received RTP is checked, demultiplexed from RTCP, fed to the jitter buffer
//! or the DTMF receiver; symmetric RTP latches onto where packets come from. RTCP reports go
//! out every 5 s and the loss, jitter and round-trip figures come back as events.

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
use super::jitter::{JitterBuffer, Playout};
use super::record::Recorder;
use super::rtp::{self, RecvStats, SendStats};

/// What the session is told to do.
#[derive(Debug)]
pub enum MediaCommand {
    /// The far end's address or direction changed (re-INVITE, hold).
    Update {
        remote: SocketAddr,
        send: bool,
        recv: bool,
    },
    Mute(bool),
    /// Send these digits as RFC 4733 events.
    Dtmf(String),
    /// Start recording into this directory and file name, or stop (`None`).
    Record(Option<(PathBuf, String)>),
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
    pub concealed: u64,
    pub late: u64,
}

/// How a session starts.
pub struct MediaSetup {
    pub codec: Box<dyn Codec>,
    /// Our payload type for the codec, and for telephone-event if the far end takes it.
    pub pt: u8,
    pub dtmf_pt: Option<u8>,
    pub remote: SocketAddr,
    pub send: bool,
    pub recv: bool,
    pub source: Box<dyn Source>,
    pub sink: Box<dyn Sink>,
    /// Start recording at once: directory and file name.
    pub record: Option<(PathBuf, String)>,
}

/// Handle on a running session.
#[derive(Debug)]
pub struct MediaHandle {
    pub commands: mpsc::Sender<MediaCommand>,
    pub task: JoinHandle<()>,
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
    // Its own thread, sleeping to each 20 ms deadline: one wakeup per period, no reactor.
    let task = tokio::task::spawn_blocking(move || run(call_id, rtp_socket, rtcp_socket, setup, events, rx));
    MediaHandle { commands: tx, task }
}

struct Session {
    codec: Box<dyn Codec>,
    pt: u8,
    dtmf_pt: Option<u8>,
    remote: SocketAddr,
    latched: bool,
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
    jitter: JitterBuffer,
    dtmf_rx: DtmfReceiver,
    dtmf_queue: Vec<char>,
    dtmf_tx: Option<DtmfSender>,
    mic: Vec<i16>,
    speaker: Vec<i16>,
    payload: Vec<u8>,
    started: Instant,
    remote_report: rtp::RemoteReport,
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
    let mut s = Session {
        jitter: JitterBuffer::new(setup.codec.frame_ticks()),
        pt: setup.pt,
        dtmf_pt: setup.dtmf_pt,
        remote: setup.remote,
        latched: false,
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
        started: Instant::now(),
        remote_report: rtp::RemoteReport::default(),
        codec: setup.codec,
    };
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
                Ok(MediaCommand::Update { remote, send, recv }) => {
                    if remote != s.remote {
                        s.remote = remote;
                        s.latched = false;
                        s.jitter.reset();
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
                Ok(MediaCommand::Stop) | Err(mpsc::error::TryRecvError::Disconnected) => break 'run,
                Err(mpsc::error::TryRecvError::Empty) => break,
            }
        }
        // What arrived since the last tick: read here, never woken for.
        for _ in 0..MAX_PACKETS_PER_TICK {
            match rtp_socket.recv_from(&mut buf) {
                Ok((n, from)) => s.on_packet(&buf[..n], from),
                // WouldBlock (nothing more), or ICMP port unreachable and the like.
                Err(_) => break,
            }
        }
        if let Some(sock) = &rtcp_socket {
            while let Ok((n, _)) = sock.recv_from(&mut rbuf) {
                s.on_rtcp(&rbuf[..n]);
            }
        }
        s.on_tick(&rtp_socket);
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
        // Microphone → RTP.
        self.mic.resize(frame, 0);
        self.source.pull(&mut self.mic);
        if self.muted {
            self.mic.iter_mut().for_each(|s| *s = 0);
        }
        if self.send {
            self.send_frame(sock);
        }
        self.ts = self.ts.wrapping_add(self.codec.frame_ticks());
        // Jitter buffer → speaker and recording.
        self.speaker.clear();
        match self.jitter.pop() {
            Playout::Frame(payload) => {
                if self.codec.decode(&payload, &mut self.speaker).is_err() {
                    self.codec.conceal(&mut self.speaker);
                }
            }
            Playout::Conceal => self.codec.conceal(&mut self.speaker),
            Playout::Silence => {}
        }
        self.speaker.resize(frame, 0);
        self.sink.push(&self.speaker);
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
        let _ = sock.send_to(bytes, self.remote);
        self.seq = self.seq.wrapping_add(1);
        self.sent.packets = self.sent.packets.wrapping_add(1);
        self.sent.octets = self.sent.octets.wrapping_add(payload_len as u32);
        self.sent.last_rtp_ts = ts;
        self.sent_since_report = true;
    }

    fn on_packet(&mut self, data: &[u8], from: SocketAddr) {
        if rtp::is_rtcp(data) {
            return self.on_rtcp(data);
        }
        let Ok(pkt) = rtp_rs::RtpReader::new(data) else {
            return;
        };
        if pkt.version() != 2 {
            return;
        }
        let pt = pkt.payload_type();
        let known = pt == self.pt || Some(pt) == self.dtmf_pt;
        if !known {
            return;
        }
        // Symmetric RTP: answer to where the far end really sends from.
        if !self.latched {
            self.remote = from;
            self.latched = true;
        }
        if !self.recv {
            return;
        }
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
        self.jitter.push(
            seq,
            pkt.timestamp(),
            pkt.payload().to_vec(),
            arrival.as_millis() as u64,
        );
    }

    fn on_rtcp(&mut self, data: &[u8]) {
        if let Some(rep) = rtp::read_report(data, self.ssrc, &mut self.recv_stats)
            && (rep.fraction_lost.is_some() || rep.rtt.is_some())
        {
            self.remote_report = rep;
        }
    }

    fn send_report(&mut self, sock: &StdUdpSocket, separate: bool) {
        let sent = std::mem::take(&mut self.sent_since_report).then_some(self.sent);
        if let Some(bytes) = rtp::build_report(self.ssrc, sent, &mut self.recv_stats) {
            let to = if separate {
                SocketAddr::new(self.remote.ip(), self.remote.port().wrapping_add(1))
            } else {
                self.remote
            };
            let _ = sock.send_to(&bytes, to);
        }
        let expected = self.recv_stats.expected();
        let js = self.jitter.stats();
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
            concealed: js.concealed,
            late: js.late,
        };
        let _ = self
            .events
            .try_send((self.call_id.clone(), MediaEvent::Stats(stats)));
    }
}
