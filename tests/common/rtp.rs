//! RTP on loopback for the call-layer tests: a peer's media socket that records every packet it
//! gets (when, from where, which payload type) and streams a PCMU tone from the same socket
//! (symmetric RTP, as a real phone does); the SDP facts the tests read (the audio address, the
//! m= lines, the origin); and the tone check of a WAV recording by frequency (Goertzel).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::peers::free_udp_media_port;

/// One datagram an [`RtpPeer`] received.
#[derive(Clone, Debug)]
pub struct Got {
    pub at: Instant,
    pub from: SocketAddr,
    /// The RTP payload type (the second byte without the marker bit).
    pub pt: u8,
    pub len: usize,
}

/// A UDP media socket on 127.0.0.1 (an even port, the next one free for RTCP). A thread
/// records every datagram that arrives until the peer is dropped.
pub struct RtpPeer {
    sock: UdpSocket,
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
    rx: Option<JoinHandle<()>>,
}

impl RtpPeer {
    pub fn bind() -> RtpPeer {
        let port = free_udp_media_port();
        let sock = UdpSocket::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("binding the test's RTP socket 127.0.0.1:{port}: {e}"));
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let rsock = sock.try_clone().expect("clone the RTP socket");
        rsock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let (g, s) = (got.clone(), stop.clone());
        let rx = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = rsock.recv_from(&mut buf) {
                    let pt = if n >= 2 { buf[1] & 0x7f } else { 255 };
                    g.lock().unwrap().push(Got {
                        at: Instant::now(),
                        from,
                        pt,
                        len: n,
                    });
                }
            }
        });
        RtpPeer {
            sock,
            got,
            stop,
            rx: Some(rx),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// Everything received so far.
    pub fn packets(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// RTP datagrams (RTCP left out: payload types 72–76 with the marker bit are RTCP's
    /// packet types 200–204) received in `[from, to)`.
    pub fn rtp_between(&self, from: Instant, to: Instant) -> Vec<Got> {
        self.packets()
            .into_iter()
            .filter(|g| g.at >= from && g.at < to && g.len >= 12 && !(72..=76).contains(&g.pt))
            .collect()
    }

    /// How many RTP datagrams arrived in `[from, to)`.
    pub fn count_between(&self, from: Instant, to: Instant) -> usize {
        self.rtp_between(from, to).len()
    }

    /// Streams PCMU (payload type 0) at `freq` Hz (0: silence), one 20 ms packet every 20 ms,
    /// from this socket to `to`, until the returned stream is stopped or dropped.
    pub fn stream(&self, to: SocketAddr, freq: f64) -> Stream {
        let sock = self.sock.try_clone().expect("clone the RTP socket");
        let f = Arc::new(AtomicU64::new(freq.to_bits()));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (f2, stop2, sent2) = (f.clone(), stop.clone(), sent.clone());
        let handle = std::thread::spawn(move || {
            let ssrc: u32 = 0x5eed_0000 | u32::from(sock.local_addr().map_or(0, |a| a.port()));
            let mut seq: u16 = 1000;
            let mut ts: u32 = 160_000;
            let mut phase = 0.0f64;
            let start = Instant::now();
            let mut n: u32 = 0;
            while !stop2.load(Ordering::Relaxed) {
                let freq = f64::from_bits(f2.load(Ordering::Relaxed));
                let mut pkt = Vec::with_capacity(172);
                pkt.push(0x80);
                pkt.push(if n == 0 { 0x80 } else { 0x00 });
                pkt.extend_from_slice(&seq.to_be_bytes());
                pkt.extend_from_slice(&ts.to_be_bytes());
                pkt.extend_from_slice(&ssrc.to_be_bytes());
                for _ in 0..160 {
                    let v = if freq > 0.0 {
                        (phase.sin() * 12000.0) as i16
                    } else {
                        0
                    };
                    phase += 2.0 * std::f64::consts::PI * freq / 8000.0;
                    if phase > 2.0 * std::f64::consts::PI {
                        phase -= 2.0 * std::f64::consts::PI;
                    }
                    pkt.push(ulaw(v));
                }
                let _ = sock.send_to(&pkt, to);
                sent2.fetch_add(1, Ordering::Relaxed);
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
                n += 1;
                let next = start + Duration::from_millis(20) * n;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });
        Stream {
            freq: f,
            stop,
            sent,
            handle: Some(handle),
        }
    }
}

impl Drop for RtpPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.rx.take() {
            let _ = h.join();
        }
    }
}

/// A PCMU stream from an [`RtpPeer`]; stops when dropped.
pub struct Stream {
    freq: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    handle: Option<JoinHandle<()>>,
}

impl Stream {
    /// Changes the tone from the next packet on.
    pub fn set_freq(&self, freq: f64) {
        self.freq.store(freq.to_bits(), Ordering::Relaxed);
    }

    /// Packets sent so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.halt();
    }
}

/// G.711 µ-law of one linear sample (ITU-T G.711: bias 132, clip at 32635, 3-bit segment,
/// 4-bit mantissa, all bits inverted).
pub fn ulaw(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign: u8 = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = (s.min(32635) + 132) as u32;
    // s >= 132: its highest set bit is bit 7 or above.
    let top = 31 - s.leading_zeros();
    let segment = (top - 7).min(7);
    let mantissa = ((s >> (segment + 3)) & 0x0f) as u8;
    !(sign | ((segment as u8) << 4) | mantissa)
}

// ---------------------------------------------------------------------------------------------
// SDP as the tests read it

/// The lines of an SDP body, without line ends.
pub fn sdp_lines(body: &str) -> Vec<&str> {
    body.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .collect()
}

/// The `m=` lines, in order.
pub fn m_lines(body: &str) -> Vec<String> {
    sdp_lines(body)
        .into_iter()
        .filter(|l| l.starts_with("m="))
        .map(str::to_owned)
        .collect()
}

/// Where the first m=audio stream of an SDP body receives: its media-level c= address (else
/// the session-level one) and its port.
pub fn sdp_audio(body: &str) -> Option<SocketAddr> {
    let mut session_c: Option<IpAddr> = None;
    let mut in_audio = false;
    let mut port: Option<u16> = None;
    let mut media_c: Option<IpAddr> = None;
    let mut seen_media = false;
    for l in sdp_lines(body) {
        if let Some(m) = l.strip_prefix("m=") {
            if in_audio {
                break;
            }
            seen_media = true;
            let mut f = m.split_whitespace();
            in_audio = f.next() == Some("audio");
            if in_audio {
                port = f.next().and_then(|p| p.parse().ok());
            }
        } else if let Some(c) = l.strip_prefix("c=") {
            let ip = c
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.split('/').next()?.parse().ok());
            if in_audio {
                media_c = ip;
            } else if !seen_media {
                session_c = ip;
            }
        }
    }
    Some(SocketAddr::new(media_c.or(session_c)?, port?))
}

/// The `o=` line's session id and version.
pub fn sdp_origin(body: &str) -> Option<(String, u64)> {
    let o = sdp_lines(body).into_iter().find_map(|l| l.strip_prefix("o="))?;
    let f: Vec<&str> = o.split_whitespace().collect();
    Some((f.get(1)?.to_string(), f.get(2)?.parse().ok()?))
}

// ---------------------------------------------------------------------------------------------
// Recordings

/// A WAV file's first channel and its sample rate.
pub fn wav_mono(path: &Path) -> (Vec<i16>, u32) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let n = usize::from(spec.channels.max(1));
    let all: Vec<i16> = r.samples::<i16>().filter_map(Result::ok).collect();
    (all.into_iter().step_by(n).collect(), spec.sample_rate)
}

/// The SNR (dB) of `freq` in the part of `samples` between `from` and `to` seconds (clamped to
/// what there is; an empty part reads minus infinity).
pub fn snr_between(samples: &[i16], rate: u32, from: f64, to: f64, freq: f64) -> f64 {
    let at = |t: f64| ((t.max(0.0) * f64::from(rate)) as usize).min(samples.len());
    let (a, b) = (at(from), at(to));
    if b <= a {
        return f64::NEG_INFINITY;
    }
    ctiphone::media::goertzel::tone_snr_db(&samples[a..b], rate, freq)
}

/// The SNR (dB) of `freq` in each whole second of `samples`.
pub fn snr_per_second(samples: &[i16], rate: u32, freq: f64) -> Vec<f64> {
    samples
        .chunks(rate as usize)
        .filter(|c| c.len() == rate as usize)
        .map(|c| ctiphone::media::goertzel::tone_snr_db(c, rate, freq))
        .collect()
}
