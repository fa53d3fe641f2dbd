//! Media: RTP audio for calls. Codecs, the jitter buffer, RFC 4733 telephone-events, audio
//! devices (cpal, null, file), recording, and the per-call media session that paces RTP from a
//! monotonic clock. The call logic talks to it through [`session`] and never sees a device.

pub mod record;
pub mod rtp;
