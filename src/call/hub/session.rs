//! Starting and steering a call's media session from the session in force: devices opened
//! beside the loop, the session spawned when they arrive, updates after re-offers, the ring
//! tone, recording names, and what the session reports back.

use crate::app::{CallEvent, EndReason, PhoneEvent};
use crate::media::device::{self, DeviceSpec};
use crate::media::session::{self as media_session, MediaCommand, MediaEvent, MediaSetup};
use crate::media::tone::RingTone;

use super::super::media;
use super::{Hub, Task};

impl Hub {
    /// Starts (or updates) the media of call `i` from the session in force.
    pub(super) async fn start_media(&mut self, i: usize) {
        let c = &self.calls[i];
        let Some(plan) = c.neg.negotiated().map(|n| media::plan(n, c.held)) else {
            return;
        };
        if let Some(m) = &c.media {
            let _ = m.commands.try_send(MediaCommand::Update {
                remote: plan.remote,
                remote_rtcp: plan.remote_rtcp,
                send: plan.send,
                recv: plan.recv,
                srtp: plan.srtp,
            });
            return;
        }
        if c.media_opening {
            return; // the devices' arrival uses the session in force then
        }
        let Some(codec) = crate::media::codec::by_name(&plan.codec.name, plan.codec.rate) else {
            self.error(format!("codec {} is not available", plan.codec.name));
            return;
        };
        let rate = codec.sample_rate();
        self.calls[i].media_opening = true;
        let (input, output) = (self.cfg.input.clone(), self.cfg.output.clone());
        let tx = self.tasks.clone();
        let call = self.calls[i].id.clone();
        tokio::spawn(async move {
            let devices = media::open_devices(input, output, rate).await;
            let _ = tx.send(Task::Devices { call, devices });
        });
    }

    pub(super) async fn on_devices(&mut self, call: &str, devices: media::Devices) {
        // The call may have ended while the devices opened.
        let Some(i) = self.find(call) else { return };
        self.calls[i].media_opening = false;
        let source = match devices.source {
            Ok(s) => s,
            Err(e) => {
                self.warn(format!("microphone: {e}; using silence"));
                Box::new(device::NullSource) as Box<dyn device::Source>
            }
        };
        let sink = match devices.sink {
            Ok(s) => s,
            Err(e) => {
                self.warn(format!("speaker: {e}; audio is discarded"));
                Box::new(device::NullSink) as Box<dyn device::Sink>
            }
        };
        let c = &self.calls[i];
        let Some(plan) = c.neg.negotiated().map(|n| media::plan(n, c.held)) else {
            return;
        };
        let Some(mut codec) = crate::media::codec::by_name(&plan.codec.name, plan.codec.rate) else {
            return;
        };
        if let Some(fmtp) = &plan.codec.fmtp {
            codec.apply_fmtp(fmtp);
        }
        let record = self.cfg.record_auto.then(|| self.recording_target(i));
        let recording = record.is_some();
        let c = &mut self.calls[i];
        c.dtmf_pt = plan.dtmf_pt;
        let (Some(rtp), rtcp) = (c.rtp.take(), c.rtcp.take()) else {
            return;
        };
        let setup = MediaSetup {
            codec,
            pt: plan.codec.pt,
            dtmf_pt: plan.dtmf_pt,
            remote: plan.remote,
            remote_rtcp: plan.remote_rtcp,
            symmetric_rtp: self.cfg.symmetric_rtp,
            rtp_timeout: self.cfg.rtp_timeout,
            send: plan.send,
            recv: plan.recv,
            source,
            sink,
            record,
            srtp: plan.srtp,
        };
        let handle = media_session::spawn(c.id.clone(), rtp, rtcp, setup, self.media_tx.clone());
        if c.muted {
            let _ = handle.commands.try_send(MediaCommand::Mute(true));
        }
        c.media = Some(handle);
        if c.conferenced {
            self.link_conference();
        }
        if recording {
            let call = self.calls[i].id.clone();
            self.publish(
                i,
                crate::app::Event::Phone(crate::app::PhoneEvent::Recording { call, on: true }),
            );
        }
    }

    /// Plays the ring tone while a call rings here and no call is in progress, a soft
    /// call-waiting tone while one rings during a call in progress (`call_waiting`); stops
    /// it otherwise. Files and the null device get no ring tone (they are for tests and
    /// scripts).
    pub(super) fn update_ringer(&mut self) {
        let ringing = self.calls.iter().any(|c| c.is_ringing_here() && !c.silent);
        let busy = self.calls.iter().any(|c| c.media.is_some());
        let want = match ringing && self.cfg.ring && self.plays_tones() {
            false => None,
            true => Some(busy),
        };
        match (&self.ringer, want) {
            (None, Some(waiting)) => {
                let tone = if waiting {
                    // ITU-T E.180 call waiting: 425 Hz, short, quiet, repeated.
                    RingTone::with_cadence(8000, &[425.0], 300, 8000).with_level(0.25)
                } else {
                    RingTone::new(8000)
                };
                self.ringer = Some((media::spawn_tone(self.cfg.output.clone(), tone, None), waiting));
            }
            (Some((_, was)), Some(waiting)) if *was != waiting => {
                if let Some((r, _)) = self.ringer.take() {
                    r.abort();
                }
            }
            (Some(_), None) => {
                if let Some((r, _)) = self.ringer.take() {
                    r.abort();
                }
            }
            _ => {}
        }
    }

    /// The output is a sound device (not a file or the null device).
    fn plays_tones(&self) -> bool {
        matches!(self.cfg.output, DeviceSpec::Default | DeviceSpec::Named(_))
    }

    /// A short beep: a call answered at the PBX's request.
    pub(super) fn beep(&self) {
        if self.plays_tones() {
            let tone = RingTone::with_cadence(8000, &[1000.0], 150, 850);
            media::spawn_tone(
                self.cfg.output.clone(),
                tone,
                Some(std::time::Duration::from_millis(200)),
            );
        }
    }

    pub(super) fn recording_target(&self, i: usize) -> (std::path::PathBuf, String) {
        media::recording_target(
            &self.cfg.record_dir,
            &self.cfg.record_name,
            &self.cfg.identity,
            &self.calls[i].params,
        )
    }

    pub(super) async fn on_media_event(&mut self, id: String, ev: MediaEvent) {
        match ev {
            MediaEvent::Dtmf(d) => self.emit(PhoneEvent::Dtmf {
                call: id,
                digit: d.to_string(),
            }),
            MediaEvent::Stats(s) => self.emit(PhoneEvent::Quality {
                call: id,
                loss_percent: s.loss_percent,
                jitter_ms: s.jitter_ms,
                remote_loss_percent: s.remote_loss_percent,
                rtt_ms: s.rtt_ms,
                lost: s.lost,
                late: s.late,
                concealed_s: s.concealed as f64 * 0.02,
                fec_recovered: s.fec_recovered,
                buffer_ms: s.buffer_ms,
                mos: (s.mos * 100.0).round() / 100.0,
                srtp: s.srtp.map(|s| s.name().to_owned()),
                srtp_auth_failed: s.srtp_auth_failed,
                srtp_replayed: s.srtp_replayed,
            }),
            MediaEvent::Warning(w) => self.warn(w),
            MediaEvent::Timeout { silent_for } => {
                // No RTP for [media] rtp_timeout_seconds: the far end is gone (a dead peer, a
                // network that lost the path) and will never send BYE.
                if let Some(i) = self.find(&id) {
                    self.warn(format!(
                        "call {id}: no audio from the far end for {} s: hanging up",
                        silent_for.as_secs()
                    ));
                    self.end_with_bye(i, EndReason::Failed).await;
                }
            }
            MediaEvent::Recorded(path) => {
                let params = self
                    .find(&id)
                    .map(|i| self.calls[i].params.clone())
                    .or_else(|| self.finishing.get(&id).map(|(p, _)| p.clone()));
                self.emit(PhoneEvent::Recorded {
                    call: id,
                    path: path.display().to_string(),
                });
                if let Some(p) = params {
                    self.bus.call(CallEvent::recorded(p, path));
                }
            }
        }
    }
}
