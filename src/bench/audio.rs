//! `ctiphone bench audio`: call audio through a bad network, scored by a listening model.
//!
//! A spoken English reference (espeak-ng, resampled to 8 kHz) is streamed from a loopback
//! caller as 20 ms RTP packets into an auto-answering ctiphone and an auto-answering baresip
//! at the same time, with the same seeded impairment: each packet lost with probability
//! `loss`, else sent `0..=jitter` ms late (uniform, so packets reorder). What each phone would
//! play is recorded (ctiphone's `--audio-out` file device, baresip's sndfile decoder dump),
//! aligned against the reference and scored with ITU-T P.862 PESQ (narrowband, P.862.1
//! MOS-LQO; docs/decisions.md D10). Also: the delay each phone's playout adds at 0 jitter and
//! each process's CPU time during the calls.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Caller, Peer, cpu_time, free_udp_port, which};

/// The spoken reference (four Harvard sentences, about 10.7 s of speech at 150 words/min).
const SENTENCES: &str = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue \
     background. It's easy to tell the depth of a well. These days a chicken leg is a rare dish.";
/// The short reference of `--short` (about 2.8 s).
const SHORT: &str = "The birch canoe slid on the smooth planks.";
/// Samples per 20 ms packet at 8 kHz.
const FRAME: usize = 160;
/// The Opus payload type of our offer.
const OPUS_PT: u8 = 111;

/// The codec the caller streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    /// Opus with in-band FEC (the encoder told to expect the condition's loss).
    OpusFec,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::OpusFec => "opus+FEC",
        }
    }

    /// The SDP encoding name and clock rate the phones negotiate for it.
    fn rtpmap(self) -> (&'static str, u32) {
        match self {
            Codec::Pcmu => ("PCMU", 8000),
            Codec::OpusFec => ("opus", 48000),
        }
    }
}

/// One network condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub codec: Codec,
    pub loss_percent: f64,
    pub jitter_ms: u32,
}

impl Condition {
    /// `LOSS/JITTER` (percent / ms), `opus:LOSS/JITTER` for Opus with FEC.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let (codec, rest) = match text.strip_prefix("opus:") {
            Some(r) => (Codec::OpusFec, r),
            None => (Codec::Pcmu, text),
        };
        let bad = || format!("`{text}`: a condition is LOSS/JITTER (percent/ms), e.g. 3/40 or opus:10/100");
        let (loss, jitter) = rest.split_once('/').ok_or_else(bad)?;
        let loss_percent: f64 = loss.trim().trim_end_matches('%').parse().map_err(|_| bad())?;
        let jitter_ms: u32 = jitter.trim().trim_end_matches("ms").parse().map_err(|_| bad())?;
        if !(0.0..100.0).contains(&loss_percent) || jitter_ms > 2000 {
            return Err(bad());
        }
        Ok(Condition {
            codec,
            loss_percent,
            jitter_ms,
        })
    }

    fn label(&self) -> String {
        format!("{} % / {} ms", self.loss_percent, self.jitter_ms)
    }

    fn clean(&self) -> bool {
        self.loss_percent == 0.0 && self.jitter_ms == 0
    }
}

/// The default conditions: the table, and Opus with FEC at 10 % / 100 ms.
pub fn default_conditions() -> Vec<Condition> {
    ["0/0", "3/40", "5/60", "10/100", "opus:10/100"]
        .iter()
        .filter_map(|c| Condition::parse(c).ok())
        .collect()
}

/// SplitMix64: a small seeded generator whose sequence does not depend on any crate's version.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One packet that is sent: its sequence index and when it leaves, in ms after the stream's
/// start (its nominal `20 * index` plus its extra delay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Planned {
    pub index: usize,
    pub at_ms: f64,
}

/// The impairment of `frames` packets for `seed`: lost packets left out, the others in the
/// order they leave. Every packet draws its loss and its delay whether lost or not, so a
/// seed gives the same losses at any jitter.
pub fn schedule(frames: usize, loss_percent: f64, jitter_ms: u32, seed: u64) -> Vec<Planned> {
    let mut rng = SplitMix(seed);
    let mut out = Vec::with_capacity(frames);
    for index in 0..frames {
        let lost = rng.unit() * 100.0 < loss_percent;
        let extra = rng.unit() * f64::from(jitter_ms);
        if !lost {
            out.push(Planned {
                index,
                at_ms: index as f64 * 20.0 + extra,
            });
        }
    }
    out.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms).then(a.index.cmp(&b.index)));
    out
}

/// The reference: `text` spoken by espeak-ng (en-us, 150 words/min), resampled to 8 kHz
/// mono 16-bit, with `pad_ms` of silence before and after, a whole number of packets long.
pub fn reference(text: &str, pad_ms: usize) -> Result<Vec<i16>, String> {
    let espeak = which("espeak-ng").ok_or(
        "espeak-ng is not installed: the spoken reference needs it (Debian package espeak-ng: \
         apt-get install espeak-ng)",
    )?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let wav = dir.path().join("ref.wav");
    let status = Command::new(espeak)
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("espeak-ng: {e}"))?;
    if !status.success() {
        return Err(format!("espeak-ng failed ({status})"));
    }
    let spoken = read_8k(&wav)?;
    let pad = vec![0i16; pad_ms * 8];
    let mut out = Vec::with_capacity(spoken.len() + 2 * pad.len() + FRAME);
    out.extend_from_slice(&pad);
    out.extend_from_slice(&spoken);
    out.extend_from_slice(&pad);
    out.resize(out.len().div_ceil(FRAME) * FRAME, 0);
    Ok(out)
}

/// A WAV file (any rate, any channels, integer or float) as 8 kHz mono 16-bit.
pub fn read_8k(path: &Path) -> Result<Vec<i16>, String> {
    use crate::media::wav_io::{CutShort, decode_mono};
    // A file cut short (its writer killed) still gives the samples before the cut.
    let (rate, mono) = decode_mono(path, CutShort::KeepBefore)?;
    to_8k(rate, mono)
}

/// Mono audio at `rate` as 8 kHz 16-bit, what PESQ scores.
fn to_8k(rate: u32, mono: Vec<f32>) -> Result<Vec<i16>, String> {
    use crate::media::resample::{Resampler, f32_to_i16};
    let at_8k = if rate == 8000 || mono.is_empty() {
        mono
    } else {
        Resampler::convert_all(rate, 8000, &mono)?
    };
    Ok(at_8k.into_iter().map(f32_to_i16).collect())
}

/// Where the reference starts in `played`, in samples (negative: its start is missing), by
/// cross-correlation: first of 1 ms envelopes over all lags, then of the samples within
/// ±2 ms of the best. None when `played` holds no sound.
pub fn align(reference: &[i16], played: &[i16]) -> Option<isize> {
    const STEP: usize = 8;
    let env = |s: &[i16]| -> Vec<f64> {
        let v: Vec<f64> = s
            .chunks(STEP)
            .map(|c| c.iter().map(|x| f64::from(*x).abs()).sum::<f64>() / c.len() as f64)
            .collect();
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        v.into_iter().map(|x| x - mean).collect()
    };
    let (er, ep) = (env(reference), env(played));
    if ep.iter().all(|x| x.abs() < 1e-9) || er.is_empty() {
        return None;
    }
    // Lags from -1 s to the whole of `played`.
    let min_lag = -1000isize;
    let max_lag = ep.len() as isize;
    let mut best = (f64::MIN, 0isize);
    for lag in min_lag..max_lag {
        let mut sum = 0.0;
        for (i, r) in er.iter().enumerate() {
            let j = i as isize + lag;
            if j < 0 {
                continue;
            }
            let Some(p) = ep.get(j as usize) else { break };
            sum += r * p;
        }
        if sum > best.0 {
            best = (sum, lag);
        }
    }
    let coarse = best.1 * STEP as isize;
    let mut fine = (f64::MIN, coarse);
    for lag in coarse - 16..=coarse + 16 {
        let mut sum = 0.0;
        for (i, r) in reference.iter().enumerate() {
            let j = i as isize + lag;
            if j < 0 {
                continue;
            }
            let Some(p) = played.get(j as usize) else { break };
            sum += f64::from(*r) * f64::from(*p);
        }
        if sum > fine.0 {
            fine = (sum, lag);
        }
    }
    Some(fine.1)
}

/// The played signal from the reference's start (`offset`), as long as the reference plus
/// 200 ms (zeros where it is missing).
fn segment(played: &[i16], offset: isize, len: usize) -> Vec<i16> {
    let want = len + 1600;
    (0..want as isize)
        .map(|i| {
            let j = i + offset;
            if j < 0 {
                0
            } else {
                played.get(j as usize).copied().unwrap_or(0)
            }
        })
        .collect()
}

/// PESQ MOS-LQO (P.862 narrowband, P.862.1 mapping) of `played` against `reference`, and
/// where the reference starts in it.
pub fn score(reference: &[i16], played: &[i16]) -> Result<(f64, isize), String> {
    let offset = align(reference, played).ok_or("the phone played silence")?;
    let seg = segment(played, offset, reference.len());
    let raw = pesq::pesq_8k(reference, &seg).map_err(|e| format!("PESQ: {e}"))?;
    Ok((f64::from(pesq::score::mos_lqo(f64::from(raw))), offset))
}

/// The RTP payloads of the reference, packet by packet: PCMU, or Opus with in-band FEC
/// tuned for `loss_percent`.
fn payloads(reference: &[i16], codec: Codec, loss_percent: f64) -> Result<Vec<Vec<u8>>, String> {
    match codec {
        Codec::Pcmu => Ok(reference
            .chunks(FRAME)
            .map(|f| f.iter().map(|s| crate::media::g711::ulaw_encode(*s)).collect())
            .collect()),
        Codec::OpusFec => {
            let e = |e: opus::Error| format!("opus encoder: {e}");
            let mut enc =
                opus::Encoder::new(8000, opus::Channels::Mono, opus::Application::Voip).map_err(e)?;
            enc.set_bitrate(opus::Bitrate::Bits(24000)).map_err(e)?;
            enc.set_inband_fec(true).map_err(e)?;
            enc.set_packet_loss_perc(loss_percent.round().clamp(1.0, 100.0) as i32)
                .map_err(e)?;
            let mut buf = [0u8; 1275];
            reference
                .chunks(FRAME)
                .map(|f| {
                    let n = enc.encode(f, &mut buf).map_err(e)?;
                    Ok(buf.get(..n).unwrap_or_default().to_vec())
                })
                .collect()
        }
    }
}

/// What a receiver with a perfect buffer would play of `plan` (the yardstick of a condition,
/// no phone involved): every packet that was sent decoded in order; a lost one zero-filled
/// (PCMU) or, for Opus, decoded from the next packet's in-band FEC when that one was sent, else
/// libopus's concealment.
fn reference_receiver(payloads: &[Vec<u8>], codec: Codec, plan: &[Planned]) -> Result<Vec<i16>, String> {
    let mut sent = vec![false; payloads.len()];
    for p in plan {
        if let Some(s) = sent.get_mut(p.index) {
            *s = true;
        }
    }
    let mut out = Vec::with_capacity(payloads.len() * FRAME);
    match codec {
        Codec::Pcmu => {
            for (p, s) in payloads.iter().zip(&sent) {
                if *s {
                    out.extend(p.iter().map(|c| crate::media::g711::ulaw_decode(*c)));
                } else {
                    out.extend(std::iter::repeat_n(0i16, FRAME));
                }
            }
        }
        Codec::OpusFec => {
            let e = |e: opus::Error| format!("opus decoder: {e}");
            let mut dec = opus::Decoder::new(8000, opus::Channels::Mono).map_err(e)?;
            let mut buf = [0i16; FRAME];
            for (i, p) in payloads.iter().enumerate() {
                let next = payloads.get(i + 1).filter(|_| sent.get(i + 1) == Some(&true));
                let n = match (sent.get(i) == Some(&true), next) {
                    (true, _) => dec.decode(p, &mut buf, false),
                    (false, Some(next)) => dec.decode(next, &mut buf, true),
                    (false, None) => dec.decode(&[], &mut buf, false),
                }
                .map_err(e)?;
                out.extend_from_slice(buf.get(..n.min(FRAME)).unwrap_or_default());
            }
        }
    }
    Ok(out)
}

/// What ctiphone's own receive path ([`crate::media::receiver::AudioReceiver`]: the jitter
/// buffer, the decoder, concealment, FEC) plays of `plan`, run in-process on the plan's
/// timeline (no sockets, no scheduler): every 20 ms (3 ms after the packet clock) the packets
/// that have arrived by then are pushed and one frame is played. Deterministic, so it is what
/// the tests check and what tuning the buffer is measured with; the live column is the phone.
pub fn ctiphone_receiver(payloads: &[Vec<u8>], codec: Codec, plan: &[Planned]) -> Result<Vec<i16>, String> {
    use crate::media::receiver::AudioReceiver;
    use crate::media::resample::i16_to_f32;
    let (name, clock) = codec.rtpmap();
    let mut dec = crate::media::codec::by_name(name, clock).ok_or("no decoder")?;
    let ticks = dec.frame_ticks();
    let mut rx = AudioReceiver::new(ticks);
    // Arbitrary starting points, so wrap-around is not special.
    let (seq0, ts0) = (40_000u16, 4_000_000_000u32);
    let mut out: Vec<i16> = Vec::new();
    let last = plan.iter().map(|p| p.at_ms).fold(0.0f64, f64::max);
    let pops = (last / 20.0).ceil() as usize + 30;
    let mut next = plan.iter().peekable();
    for k in 0..pops {
        let now = k as f64 * 20.0 + 3.0;
        while let Some(p) = next.next_if(|p| p.at_ms <= now) {
            let i = u32::try_from(p.index).map_err(|e| e.to_string())?;
            let payload = payloads.get(p.index).cloned().unwrap_or_default();
            rx.push(
                seq0.wrapping_add(i as u16),
                ts0.wrapping_add(i.wrapping_mul(ticks)),
                payload,
                p.at_ms as u64,
            );
        }
        let start = out.len();
        rx.play(dec.as_mut(), &mut out, now as u64);
        out.resize(start + dec.frame_samples(), 0);
    }
    if dec.sample_rate() == 8000 {
        return Ok(out);
    }
    to_8k(dec.sample_rate(), out.into_iter().map(i16_to_f32).collect())
}

/// A call of the caller's to one phone, answered.
struct Leg {
    phone: &'static str,
    pid: u32,
    caller: Caller,
    to: SocketAddr,
    media_to: SocketAddr,
    uri: String,
    from: String,
    to_hdr: String,
    call_id: String,
    /// When the 200 OK arrived (the phone's playout starts about then).
    answered: Instant,
}

impl Leg {
    /// Calls `sip:bench@TO` offering `codec` only; Err when the phone does not answer with it.
    fn dial(phone: &Peer, codec: Codec, n: u64) -> Result<Leg, String> {
        let mut caller = Caller::new().map_err(|e| e.to_string())?;
        let to = phone.addr;
        let call_id = format!("audio-{}-{n}-{}@127.0.0.1", std::process::id(), phone.name);
        let uri = format!("sip:bench@{to}");
        let from = format!("<sip:caller@{}>;tag=a{n}", caller.local);
        let port = caller.rtp.local_addr().map_err(|e| e.to_string())?.port();
        let fmt = match codec {
            Codec::Pcmu => "0\r\na=rtpmap:0 PCMU/8000".to_owned(),
            Codec::OpusFec => {
                format!("{OPUS_PT}\r\na=rtpmap:{OPUS_PT} opus/48000/2\r\na=fmtp:{OPUS_PT} useinbandfec=1")
            }
        };
        let sdp = format!(
            "v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {fmt}\r\na=ptime:20\r\na=sendrecv\r\n"
        );
        let mut inv = caller.request("INVITE", &uri, &from, &format!("<{uri}>"), &call_id, 1, "i");
        inv.push("Contact", format!("<sip:caller@{}>", caller.local))
            .with_body("application/sdp", sdp.into_bytes());
        caller
            .sock
            .send_to(&inv.to_bytes(), to)
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let (answered, ok) = loop {
            let (at, m) = caller
                .recv(deadline)
                .ok_or_else(|| format!("{}: no answer to the INVITE", phone.name))?;
            if m.call_id() != Some(call_id.as_str()) {
                continue;
            }
            match m.code() {
                Some(c) if (200..300).contains(&c) => break (at, m),
                Some(c) if c >= 300 => {
                    return Err(format!("{} refused the {} call: {c}", phone.name, codec.name()));
                }
                _ => {}
            }
        };
        let to_hdr = ok.get("To").unwrap_or("").to_owned();
        let ack = caller.request("ACK", &uri, &from, &to_hdr, &call_id, 1, "a");
        caller
            .sock
            .send_to(&ack.to_bytes(), to)
            .map_err(|e| e.to_string())?;
        let mut leg = Leg {
            phone: phone.name,
            pid: phone.child.id(),
            caller,
            to,
            media_to: to,
            uri,
            from,
            to_hdr,
            call_id,
            answered,
        };
        let answer = crate::call::sdp::Sdp::parse(&String::from_utf8_lossy(&ok.body))
            .map_err(|e| format!("{}'s SDP: {e}", phone.name));
        let audio = answer
            .as_ref()
            .ok()
            .and_then(|a| a.audio())
            .filter(|a| a.port != 0)
            .map(|a| (SocketAddr::new(a.addr, a.port), a.codecs.clone()));
        let Some((media_to, codecs)) = audio else {
            leg.hang_up();
            return Err(format!("{}: no audio stream in its answer", phone.name));
        };
        let (want, _) = codec.rtpmap();
        if !codecs.iter().any(|c| c.name.eq_ignore_ascii_case(want)) {
            leg.hang_up();
            return Err(format!("{} did not answer with {want}", phone.name));
        }
        leg.media_to = media_to;
        Ok(leg)
    }

    /// BYE, and its answer awaited (2 s at most).
    fn hang_up(&mut self) {
        let bye = self
            .caller
            .request("BYE", &self.uri, &self.from, &self.to_hdr, &self.call_id, 2, "b");
        let _ = self.caller.sock.send_to(&bye.to_bytes(), self.to);
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Some((_, m)) = self.caller.recv(deadline) {
            if m.call_id() == Some(self.call_id.as_str()) && m.code().is_some() {
                break;
            }
        }
    }
}

/// Sends the packets of `plan` (indexes into `payloads`) to every leg at once, paced in real
/// time from the returned start instant, on a tokio timer.
fn stream(legs: &[Leg], payloads: &[Vec<u8>], codec: Codec, plan: &[Planned]) -> Result<Instant, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .build()
        .map_err(|e| e.to_string())?;
    let mut socks = Vec::with_capacity(legs.len());
    for leg in legs {
        let s = leg.caller.rtp.try_clone().map_err(|e| e.to_string())?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        socks.push((s, leg.media_to));
    }
    let (pt, ts_step) = match codec {
        Codec::Pcmu => (0u8, 160u32),
        Codec::OpusFec => (OPUS_PT, 960u32),
    };
    rt.block_on(async move {
        let mut tsocks = Vec::with_capacity(socks.len());
        for (s, to) in socks {
            tsocks.push((tokio::net::UdpSocket::from_std(s).map_err(|e| e.to_string())?, to));
        }
        let start = tokio::time::Instant::now() + Duration::from_millis(20);
        let mut pkt = Vec::with_capacity(12 + 1275);
        for p in plan {
            let Some(payload) = payloads.get(p.index) else {
                continue;
            };
            tokio::time::sleep_until(start + Duration::from_secs_f64(p.at_ms / 1000.0)).await;
            pkt.clear();
            let seq = (p.index & 0xFFFF) as u16;
            let ts = (p.index as u32).wrapping_mul(ts_step);
            let marker = if p.index == 0 { 0x80 } else { 0 };
            pkt.extend_from_slice(&[0x80, marker | pt]);
            pkt.extend_from_slice(&seq.to_be_bytes());
            pkt.extend_from_slice(&ts.to_be_bytes());
            pkt.extend_from_slice(&0x4155_4449u32.to_be_bytes());
            pkt.extend_from_slice(payload);
            for (s, to) in &tsocks {
                let _ = s.send_to(&pkt, *to).await;
            }
        }
        Ok::<Instant, String>(start.into_std())
    })
}

/// What one phone's call of one round gave.
#[derive(Clone, Debug, Default)]
struct Heard {
    mos: Option<f64>,
    /// Delay added by the playout (ms): where the reference starts in the played file,
    /// minus the time from the answer to the stream's start.
    delay_ms: Option<f64>,
    cpu: Duration,
    call_secs: f64,
    error: Option<String>,
}

/// The two phones of a run and where their audio lands.
struct Phones {
    ctiphone: Peer,
    ctiphone_out: PathBuf,
    baresip: Option<(Peer, PathBuf)>,
    /// The codec baresip's microphone file suits.
    baresip_codec: Codec,
}

/// A 16-bit WAV of silence (the phones' microphone).
fn write_silence(path: &Path, rate: u32, channels: u16, secs: u32) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| e.to_string())?;
    for _ in 0..rate * secs * u32::from(channels) {
        w.write_sample(0i16).map_err(|e| e.to_string())?;
    }
    w.finalize().map_err(|e| e.to_string())
}

/// baresip with auto-answer, PCMU and Opus, no PLC module; its sndfile module dumps the
/// decoded audio of each call into its directory (`*-dec.wav`). Its microphone is a silent
/// file at the codec's rate and channels (baresip 1.0's aufile does not resample, so Opus
/// calls need a baresip of their own); it has no player (baresip 1.0's aufile module is a
/// source only).
fn start_baresip(codec: Codec) -> Result<Option<(Peer, PathBuf)>, String> {
    let Some(bin) = which("baresip") else {
        return Ok(None);
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_udp_port().map_err(|e| e.to_string())?;
    let rtp = free_udp_port().map_err(|e| e.to_string())?;
    let silence = dir.path().join("silence.wav");
    // Longer than any call: baresip 1.0 stops the call's audio when its aufile source ends.
    match codec {
        Codec::Pcmu => write_silence(&silence, 8000, 1, 60)?,
        Codec::OpusFec => write_silence(&silence, 48000, 2, 30)?,
    }
    let d = dir.path().display();
    let config = format!(
        "sip_listen\t\t127.0.0.1:{port}\nnet_interface\t\t127.0.0.1\nsip_trans_def\t\tudp\n\
         audio_source\t\taufile,{silence}\naudio_alert\t\taufile,/dev/null\n\
         audio_channels\t\t1\nrtp_ports\t\t{rtp}-{rtp2}\n\
         module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tg711.so\nmodule\t\t\topus.so\n\
         module\t\t\taufile.so\nmodule\t\t\tsndfile.so\nsnd_path\t\t{d}\nmodule_app\t\taccount.so\n",
        silence = silence.display(),
        rtp2 = rtp.saturating_add(9)
    );
    std::fs::write(dir.path().join("config"), config).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.path().join("accounts"),
        "<sip:bench@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU,opus/48000/2\n",
    )
    .map_err(|e| e.to_string())?;
    // Debugging: its log beside the kept files.
    let log = std::env::var_os("CTIPHONE_BENCH_KEEP")
        .and_then(|k| std::fs::File::create(PathBuf::from(k).join("baresip.log")).ok())
        .map_or_else(Stdio::null, Stdio::from);
    let child = Command::new(bin)
        .arg("-f")
        .arg(dir.path())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start baresip: {e}"))?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().map_err(|e| format!("{e}"))?;
    let path = dir.path().to_path_buf();
    Ok(Some((
        Peer {
            name: "baresip",
            addr,
            child,
            events: None,
            _dir: Some(dir),
        },
        path,
    )))
}

impl Phones {
    fn start(dir: &Path) -> Result<Phones, String> {
        let silence = dir.join("silence.wav");
        write_silence(&silence, 8000, 1, 60)?;
        let extra = format!(
            "[audio]\ninput = \"file:{}\"\noutput = \"file:@DIR@/heard.wav\"\ncodecs = [\"PCMU\", \"opus\"]\n",
            silence.display()
        );
        let ctiphone = super::start_ctiphone(&extra)?;
        let ctiphone_out = ctiphone
            ._dir
            .as_ref()
            .map(|d| d.path().join("heard.wav"))
            .ok_or("no directory for ctiphone")?;
        let baresip = start_baresip(Codec::Pcmu)?;
        if baresip.is_none() {
            eprintln!("{}", super::NO_BARESIP);
        }
        std::thread::sleep(Duration::from_millis(1500));
        let mut phones = Phones {
            ctiphone,
            ctiphone_out,
            baresip,
            baresip_codec: Codec::Pcmu,
        };
        if !matches!(phones.ctiphone.child.try_wait(), Ok(None)) {
            return Err("ctiphone exited at start".into());
        }
        if let Some((b, _)) = phones.baresip.as_mut()
            && !matches!(b.child.try_wait(), Ok(None))
        {
            return Err("baresip exited at start".into());
        }
        Ok(phones)
    }

    /// The newest `*-dec.wav` of baresip's sndfile module, if any.
    fn baresip_dump(dir: &Path) -> Option<PathBuf> {
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("-dec.wav"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .max_by_key(|(t, _)| *t)
            .map(|(_, p)| p)
    }

    /// One round: the reference's `payloads` streamed into both phones at once under `plan`.
    fn round(
        &mut self,
        reference: &[i16],
        cond: &Condition,
        payloads: &[Vec<u8>],
        plan: &[Planned],
        n: u64,
    ) -> Result<[Heard; 2], String> {
        let mut heard = [Heard::default(), Heard::default()];
        if self.baresip.is_some() && self.baresip_codec != cond.codec {
            self.baresip = None;
            self.baresip = start_baresip(cond.codec)?;
            self.baresip_codec = cond.codec;
            std::thread::sleep(Duration::from_millis(1500));
        }
        // Remove the last call's dumps so an absent file is not mistaken for this call's.
        if let Some((_, dir)) = &self.baresip
            && let Ok(rd) = std::fs::read_dir(dir)
        {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(".wav") && e.file_name() != "silence.wav" {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _ = std::fs::remove_file(&self.ctiphone_out);
        let mut legs = Vec::new();
        let mut slots = Vec::new();
        let peers: Vec<&Peer> = std::iter::once(&self.ctiphone)
            .chain(self.baresip.as_ref().map(|(b, _)| b))
            .collect();
        for (i, p) in peers.iter().enumerate() {
            match Leg::dial(p, cond.codec, n) {
                Ok(l) => {
                    legs.push(l);
                    slots.push(i);
                }
                Err(e) => heard[i].error = Some(e),
            }
        }
        if legs.is_empty() {
            return Ok(heard);
        }
        let cpu0: Vec<Option<Duration>> = legs.iter().map(|l| cpu_time(l.pid)).collect();
        let t0 = Instant::now();
        let start = stream(&legs, payloads, cond.codec, plan)?;
        // Let the late packets arrive and the buffers drain.
        std::thread::sleep(Duration::from_millis(u64::from(cond.jitter_ms) + 600));
        let wall = t0.elapsed().as_secs_f64();
        for (k, leg) in legs.iter().enumerate() {
            let i = slots[k];
            heard[i].cpu = cpu_time(leg.pid)
                .zip(cpu0[k])
                .map_or(Duration::ZERO, |(a, b)| a.saturating_sub(b));
            heard[i].call_secs = wall;
        }
        for leg in &mut legs {
            leg.hang_up();
        }
        // The files are finished on hangup.
        std::thread::sleep(Duration::from_millis(800));
        for (k, leg) in legs.iter().enumerate() {
            let i = slots[k];
            let lead_ms = start.saturating_duration_since(leg.answered).as_secs_f64() * 1000.0;
            let (scored, player) = if leg.phone == "ctiphone" {
                (Some(self.ctiphone_out.clone()), Some(self.ctiphone_out.clone()))
            } else {
                // baresip 1.0's aufile has no player: its decoder dump has no timeline, so
                // no delay figure for it.
                let dir = self.baresip.as_ref().map(|(_, d)| d.clone());
                (dir.as_deref().and_then(Self::baresip_dump), None)
            };
            if let Some(keep) = std::env::var_os("CTIPHONE_BENCH_KEEP") {
                // Debugging: keep what was scored and played, by round and phone.
                let keep = PathBuf::from(keep);
                for (what, p) in [("scored", &scored), ("played", &player)] {
                    if let Some(p) = p {
                        let _ = std::fs::copy(p, keep.join(format!("{n}-{}-{what}.wav", leg.phone)));
                    }
                }
            }
            let Some(scored) = scored else {
                heard[i].error = Some(format!("{}: no decoder dump", leg.phone));
                continue;
            };
            match read_8k(&scored).and_then(|played| score(reference, &played)) {
                Ok((mos, _)) => heard[i].mos = Some(mos),
                Err(e) => heard[i].error = Some(format!("{}: {e}", leg.phone)),
            }
            if cond.clean()
                && cond.codec == Codec::Pcmu
                && let Some(p) = player
                && let Ok(played) = read_8k(&p)
                && let Some(off) = align(reference, &played)
            {
                heard[i].delay_ms = Some(off as f64 / 8.0 - lead_ms);
            }
        }
        Ok(heard)
    }
}

/// The figures of one condition.
struct Row {
    cond: Condition,
    seeds: Vec<u64>,
    /// Per phone (ctiphone, baresip): the score of each seed.
    mos: [Vec<Option<f64>>; 2],
    /// The reference receiver's score of each seed ([`reference_receiver`]).
    yardstick: Vec<Option<f64>>,
    /// ctiphone's receive path in-process ([`ctiphone_receiver`]), each seed.
    inproc: Vec<Option<f64>>,
    errors: Vec<String>,
}

fn mean(v: &[Option<f64>]) -> Option<f64> {
    let got: Vec<f64> = v.iter().flatten().copied().collect();
    (!got.is_empty() && got.len() == v.len()).then(|| got.iter().sum::<f64>() / got.len() as f64)
}

/// What `ctiphone bench audio` measures.
pub struct Options {
    pub conditions: Vec<Condition>,
    pub seeds: Vec<u64>,
    /// A 2.8 s sentence instead of the 11.5 s reference.
    pub short: bool,
    /// Only the in-process receivers: no phones, no sockets.
    pub offline: bool,
    pub json: bool,
}

/// `ctiphone bench audio`: prints the table (or JSON); exit code 1 on failure.
pub fn audio(opts: &Options) -> u8 {
    match run(opts) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ctiphone bench audio: {e}");
            1
        }
    }
}

fn run(opts: &Options) -> Result<(), String> {
    let reference = if opts.short {
        reference(SHORT, 200)?
    } else {
        reference(SENTENCES, 400)?
    };
    let conditions = if opts.conditions.is_empty() {
        default_conditions()
    } else {
        opts.conditions.clone()
    };
    let seeds = if opts.seeds.is_empty() {
        vec![1, 2, 3]
    } else {
        opts.seeds.clone()
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut phones = if opts.offline {
        None
    } else {
        Some(Phones::start(dir.path())?)
    };
    let baresip = phones.as_ref().is_some_and(|p| p.baresip.is_some());
    let mut rows = Vec::new();
    let mut delay: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let (mut cpu, mut secs) = ([Duration::ZERO; 2], [0.0f64; 2]);
    let mut n = 0;
    for cond in &conditions {
        // The clean condition has no randomness: one seed.
        let cond_seeds = if cond.clean() {
            vec![seeds[0]]
        } else {
            seeds.clone()
        };
        let mut row = Row {
            cond: cond.clone(),
            seeds: cond_seeds.clone(),
            mos: [Vec::new(), Vec::new()],
            yardstick: Vec::new(),
            inproc: Vec::new(),
            errors: Vec::new(),
        };
        for seed in cond_seeds {
            n += 1;
            if !opts.json {
                eprintln!("  {} {} seed {seed} ...", cond.codec.name(), cond.label());
            }
            let payloads = payloads(&reference, cond.codec, cond.loss_percent)?;
            let plan = schedule(payloads.len(), cond.loss_percent, cond.jitter_ms, seed);
            let mos = |played: Result<Vec<i16>, String>| {
                played.and_then(|p| score(&reference, &p)).map(|(mos, _)| mos)
            };
            row.yardstick
                .push(mos(reference_receiver(&payloads, cond.codec, &plan)).ok());
            match mos(ctiphone_receiver(&payloads, cond.codec, &plan)) {
                Ok(m) => row.inproc.push(Some(m)),
                Err(e) => {
                    row.inproc.push(None);
                    row.errors.push(format!("seed {seed}: in-process receiver: {e}"));
                }
            }
            let Some(phones) = phones.as_mut() else {
                continue;
            };
            let heard = phones.round(&reference, cond, &payloads, &plan, n)?;
            for (i, h) in heard.iter().enumerate() {
                if i == 1 && !baresip {
                    continue;
                }
                row.mos[i].push(h.mos);
                if let Some(d) = h.delay_ms {
                    delay[i].push(d);
                }
                if cond.codec == Codec::Pcmu && h.mos.is_some() {
                    cpu[i] += h.cpu;
                    secs[i] += h.call_secs;
                }
                if let Some(e) = &h.error {
                    row.errors.push(format!("seed {seed}: {e}"));
                }
            }
        }
        rows.push(row);
    }
    if let Some(p) = phones.as_mut() {
        p.ctiphone.quit();
    }
    let cpu_pct = |i: usize| (secs[i] > 0.0).then(|| cpu[i].as_secs_f64() * 100.0 / secs[i]);
    let (ours_cpu, theirs_cpu) = (cpu_pct(0), if baresip { cpu_pct(1) } else { None });
    let cpu_ratio = ours_cpu
        .zip(theirs_cpu)
        .and_then(|(a, b)| (b > 0.0).then(|| a / b));
    let med = |v: &[f64]| super::percentile(v, 50.0);
    let ref_secs = reference.len() as f64 / 8000.0;
    if opts.json {
        let rows_json: Vec<_> = rows
            .iter()
            .map(|r| {
                let (a, b) = (mean(&r.mos[0]), mean(&r.mos[1]));
                json!({
                    "codec": r.cond.codec.name(),
                    "loss_percent": r.cond.loss_percent,
                    "jitter_ms": r.cond.jitter_ms,
                    "seeds": r.seeds,
                    "ctiphone": { "mos": r.mos[0], "mean": a },
                    "baresip": if baresip { json!({ "mos": r.mos[1], "mean": b }) } else { serde_json::Value::Null },
                    "difference": a.zip(b).map(|(a, b)| a - b),
                    "reference_receiver": { "mos": r.yardstick, "mean": mean(&r.yardstick) },
                    "ctiphone_in_process": { "mos": r.inproc, "mean": mean(&r.inproc) },
                    "errors": r.errors,
                })
            })
            .collect();
        let report = json!({
            "model": "ITU-T P.862 PESQ narrowband, P.862.1 MOS-LQO (pesq crate)",
            "reference_secs": ref_secs,
            "baresip": if baresip { "installed" } else { "not installed" },
            "conditions": rows_json,
            "delay_added_at_0_jitter_ms": {
                "ctiphone": med(&delay[0]),
                "baresip": med(&delay[1]),
            },
            "cpu_in_call_percent": {
                "ctiphone": ours_cpu,
                "baresip": theirs_cpu,
                "ratio": cpu_ratio,
            },
        });
        println!("{report}");
        return Ok(());
    }
    println!(
        "ctiphone bench audio: {ref_secs:.1} s espeak-ng reference at 8 kHz, 20 ms RTP from a loopback \
         caller into both phones at once, seeded loss and uniform extra delay 0..J ms (reordering);\n\
         PESQ P.862 narrowband, MOS-LQO (P.862.1); ctiphone: --audio-out, baresip: sndfile decoder \
         dump (no PLC module)"
    );
    let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    let per_seed = |v: &[Option<f64>]| v.iter().map(|x| f(*x)).collect::<Vec<_>>().join(" ");
    println!(
        "{:<9} {:<16} {:<16} {:>6}  {:<16} {:>6}  {:>6}  {:<16} {:>6}  {:>7}",
        "codec",
        "loss / jitter",
        "ctiphone",
        "mean",
        "baresip",
        "mean",
        "diff",
        "in-process",
        "mean",
        "ref. rx"
    );
    for r in &rows {
        let (a, b) = (mean(&r.mos[0]), mean(&r.mos[1]));
        let theirs = if baresip {
            per_seed(&r.mos[1])
        } else if opts.offline {
            "not run".to_owned()
        } else {
            "not installed".to_owned()
        };
        let ours = if opts.offline {
            "not run".to_owned()
        } else {
            per_seed(&r.mos[0])
        };
        println!(
            "{:<9} {:<16} {:<16} {:>6}  {:<16} {:>6}  {:>6}  {:<16} {:>6}  {:>7}",
            r.cond.codec.name(),
            r.cond.label(),
            ours,
            f(a),
            theirs,
            f(b),
            a.zip(b).map_or("-".to_owned(), |(a, b)| format!("{:+.2}", a - b)),
            per_seed(&r.inproc),
            f(mean(&r.inproc)),
            f(mean(&r.yardstick))
        );
        for e in &r.errors {
            println!("    {e}");
        }
    }
    println!(
        "in-process: ctiphone's receive path (jitter buffer, decoder, concealment, FEC) run on the \
         same packets' timeline without sockets (deterministic)"
    );
    println!(
        "ref. rx: the bench's own reference receiver on the same packets (a perfect buffer, no \
         phone): lost PCMU zero-filled; Opus from the next packet's FEC, else libopus concealment"
    );
    println!(
        "seeds: {}",
        seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
    );
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} ms"));
    println!(
        "delay added by ctiphone's playout at 0 jitter (where the reference starts in its --audio-out \
         file, minus the time from the 200 OK to the stream's start): {}; baresip: not measured (its \
         decoder dump has no timeline)",
        ms(med(&delay[0])),
    );
    let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2} %"));
    println!(
        "CPU during the PCMU calls (one core, scheduler time): ctiphone {}, baresip {}, ratio {}",
        pct(ours_cpu),
        if baresip {
            pct(theirs_cpu)
        } else {
            "not installed".to_owned()
        },
        cpu_ratio.map_or("-".to_owned(), |r| format!("{r:.2}"))
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule() {
        let a = schedule(575, 10.0, 100, 7);
        assert_eq!(a, schedule(575, 10.0, 100, 7));
        assert_ne!(a, schedule(575, 10.0, 100, 8));
    }

    #[test]
    fn loss_ratio_within_tolerance() {
        for (loss, seed) in [(3.0, 1), (5.0, 2), (10.0, 3)] {
            let n = 20_000;
            let sent = schedule(n, loss, 60, seed).len();
            let lost = (n - sent) as f64 * 100.0 / n as f64;
            assert!((lost - loss).abs() < 0.6, "{loss} %: lost {lost:.2} %");
        }
        assert_eq!(schedule(1000, 0.0, 0, 1).len(), 1000);
    }

    #[test]
    fn delays_in_range_and_reordering() {
        let plan = schedule(2000, 5.0, 100, 3);
        for p in &plan {
            let extra = p.at_ms - p.index as f64 * 20.0;
            assert!((0.0..=100.0).contains(&extra), "{extra}");
        }
        assert!(plan.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        let reordered = plan.windows(2).filter(|w| w[1].index < w[0].index).count();
        assert!(reordered > 100, "only {reordered} reorderings");
        // No jitter: in order, on the 20 ms grid.
        let clean = schedule(100, 0.0, 0, 1);
        assert!(
            clean
                .iter()
                .enumerate()
                .all(|(i, p)| p.index == i && p.at_ms == i as f64 * 20.0)
        );
    }

    #[test]
    fn conditions_parse() {
        assert_eq!(
            Condition::parse("3/40").ok(),
            Some(Condition {
                codec: Codec::Pcmu,
                loss_percent: 3.0,
                jitter_ms: 40
            })
        );
        assert_eq!(
            Condition::parse("opus:10/100").map(|c| c.codec).ok(),
            Some(Codec::OpusFec)
        );
        assert!(Condition::parse("10").is_err());
        assert!(Condition::parse("x/1").is_err());
        assert!(Condition::parse("100/0").is_err());
    }

    #[test]
    fn reference_receiver_fills_losses_and_uses_fec() {
        let voice: Vec<i16> = (0..FRAME * 50)
            .map(|i| {
                let t = i as f64 / 8000.0;
                ((2.0 * std::f64::consts::PI * 220.0 * t).sin() * 6000.0
                    + (2.0 * std::f64::consts::PI * 660.0 * t).sin() * 2000.0) as i16
            })
            .collect();
        let plan = schedule(50, 20.0, 0, 4);
        assert!(plan.len() < 50);
        let pcmu = payloads(&voice, Codec::Pcmu, 20.0).expect("PCMU");
        let out = reference_receiver(&pcmu, Codec::Pcmu, &plan).expect("PCMU receiver");
        assert_eq!(out.len(), voice.len());
        let lost = (0..50)
            .find(|i| !plan.iter().any(|p| p.index == *i))
            .expect("a loss");
        assert!(out[lost * FRAME..(lost + 1) * FRAME].iter().all(|s| *s == 0));
        let opus = payloads(&voice, Codec::OpusFec, 20.0).expect("Opus");
        let out = reference_receiver(&opus, Codec::OpusFec, &plan).expect("Opus receiver");
        assert_eq!(out.len(), voice.len());
    }

    #[test]
    fn align_finds_a_shift() {
        let mut rng = SplitMix(5);
        let reference: Vec<i16> = (0..8000)
            .map(|i| {
                let burst = if (i / 800) % 2 == 0 { 1.0 } else { 0.1 };
                ((rng.unit() - 0.5) * 16000.0 * burst) as i16
            })
            .collect();
        let mut played = vec![0i16; 333];
        played.extend_from_slice(&reference);
        assert_eq!(align(&reference, &played), Some(333));
        assert_eq!(align(&reference, &vec![0; 9000]), None);
    }
}
