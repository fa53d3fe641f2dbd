//! Media: RTP audio for calls. Codecs, the jitter buffer, RFC 4733 telephone-events, audio
//! devices (cpal, null, file; opened again when their sound server comes back; a TCP
//! PulseAudio server reached through a local relay), recording, and the per-call media session that paces RTP from a
//! monotonic clock. The call logic talks to it through [`session`] and never sees a device.

pub mod codec;
pub mod conference;
pub mod cpal_io;
pub mod device;
pub mod dtmf;
pub mod emodel;
pub mod g711;
pub mod g722;
pub mod goertzel;
pub mod jitter;
pub mod opus_codec;
pub mod plc;
pub mod pulse_server;
pub mod receiver;
pub mod record;
pub mod resample;
pub mod resilient;
pub mod rtp;
pub mod session;
pub mod source_filter;
pub mod srtp;
#[cfg(test)]
mod test_rng;
pub mod tone;
pub mod wav_io;
