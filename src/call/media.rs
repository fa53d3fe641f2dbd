//! Media orchestration for the call layer: what a negotiated session means for the media
//! session (codec, telephone-event, where to send, which directions), the RTP/RTCP port pair
//! a call reserves, the devices opened beside the loop, the ring tone, and the recording's
//! name from its template.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::cti::template::Template;
use crate::cti::vars::{Identity, Vars};
use crate::media::device::{self, DeviceSpec, Sink, Source};

use super::offer_answer::Negotiated;
use super::sdp::Codec;

/// What the media session should do for a negotiated session.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub codec: Codec,
    pub dtmf_pt: Option<u8>,
    pub remote: SocketAddr,
    /// Where RTCP goes when the SDP says (`a=rtcp`); else RTP's port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    pub send: bool,
    pub recv: bool,
    /// SRTP keys, when the session is encrypted.
    pub srtp: Option<crate::media::srtp::CallKeys>,
}

/// The media plan of the session in force; on hold (ours) nothing is sent.
pub fn plan(n: Negotiated, held: bool) -> Plan {
    Plan {
        codec: n.codec,
        dtmf_pt: n.telephone_event,
        remote: n.remote_rtp,
        remote_rtcp: Some(n.remote_rtcp),
        send: n.send && !held,
        recv: n.recv,
        srtp: n.srtp,
    }
}

/// The call's RTP socket on an even port and its RTCP socket on the next one (RFC 3550
/// §11); the media session sends and receives on them.
pub async fn bind_rtp(ip: IpAddr) -> (Option<UdpSocket>, Option<UdpSocket>) {
    for _ in 0..50 {
        let Ok(rtp) = UdpSocket::bind(SocketAddr::new(ip, 0)).await else {
            break;
        };
        let Ok(port) = rtp.local_addr().map(|a| a.port()) else {
            break;
        };
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(ip, port + 1)).await {
            return (Some(rtp), Some(rtcp));
        }
    }
    // No pair free: RTP alone (RTCP then shares the port, as with rtcp-mux).
    (UdpSocket::bind(SocketAddr::new(ip, 0)).await.ok(), None)
}

/// Devices opened for a call, or why not (the call then uses silence / discards audio).
pub struct Devices {
    pub source: Result<Box<dyn Source>, String>,
    pub sink: Result<Box<dyn Sink>, String>,
}

/// Opens the microphone and speaker at `rate` on a blocking thread (a sound server, a file to
/// read and resample, a FIFO that waits for its writer can all take seconds).
pub async fn open_devices(input: DeviceSpec, output: DeviceSpec, rate: u32) -> Devices {
    let opened = tokio::task::spawn_blocking(move || Devices {
        source: device::open_source(&input, rate),
        sink: device::open_sink(&output, rate),
    })
    .await;
    opened.unwrap_or_else(|e| Devices {
        source: Err(e.to_string()),
        sink: Err(e.to_string()),
    })
}

/// Plays `tone` on the output device `spec`, for `length` (or until aborted).
pub fn spawn_tone(
    spec: DeviceSpec,
    mut tone: crate::media::tone::RingTone,
    length: Option<Duration>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let rate = tone.rate();
        let Ok(Ok(mut sink)) = tokio::task::spawn_blocking(move || device::open_sink(&spec, rate)).await
        else {
            return;
        };
        let mut frame = vec![0i16; (rate / 50) as usize];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let end = length.map(|l| tokio::time::Instant::now() + l);
        loop {
            tick.tick().await;
            if end.is_some_and(|e| tokio::time::Instant::now() >= e) {
                return;
            }
            tone.next_frame(&mut frame);
            sink.push(&frame);
        }
    })
}

/// Where a call's recording goes: the directory and the file name from the template.
pub fn recording_target(
    dir: &std::path::Path,
    name: &Template,
    identity: &Identity,
    params: &crate::app::CallParams,
) -> (std::path::PathBuf, String) {
    let vars = Vars::new(identity, params, chrono::Local::now().naive_local());
    (dir.to_path_buf(), crate::media::record::file_name(name, &vars))
}
