//! A whole call through cpal without sound hardware: ctiphone's speaker and microphone are a
//! private PulseAudio null sink and its monitor, so what the phone plays comes back as what it
//! says. baresip sends a 1 kHz tone through Kamailio; ctiphone plays it into `ctinull` (cpal
//! output), captures `ctinull.monitor` (cpal input) and sends that back: baresip's recording of
//! what it heard must show 1 kHz. Real time is kept by the null sink's clock.

mod common;

use std::path::Path;

use serde_json::json;

use common::peers::{Baresip, Kamailio, Phone, account_toml, secs};
use common::pulse::start_pulseaudio;
use ctiphone::media::goertzel;

fn heard(dir: &Path) -> Vec<i16> {
    let path = Baresip::heard_wav(dir);
    let mut r = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.samples::<i16>().filter_map(Result::ok).collect()
}

#[test]
fn a_call_through_cpal_and_a_pulseaudio_null_sink() {
    let _pulse = start_pulseaudio();
    let k = Kamailio::start();
    let b = Baresip::start(&k, "1002");
    let cfg = format!(
        "{}\n[audio]\ninput = \"ctinull.monitor\"\noutput = \"ctinull\"\ncodecs = [\"PCMU\"]\n",
        account_toml("1001", "pw1001", &k.addr(), "udp", 60)
    );
    let mut p = Phone::start(&cfg, &[]);
    p.expect("registered", secs(10));
    p.send(json!({"cmd": "dial", "to": "1002"}));
    p.expect("answered", secs(10));
    std::thread::sleep(secs(5));
    p.send(json!({"cmd": "hangup"}));
    p.expect("ended", secs(5));
    assert_eq!(p.count("warning"), 0, "the devices opened: {:?}", p.seen());
    std::thread::sleep(secs(1));
    let s = heard(b.dir());
    assert!(s.len() > 16000, "baresip heard {} samples", s.len());
    // The last 2.5 s: after the null sink's start-up latency.
    let tail = &s[s.len().saturating_sub(20000)..];
    let snr = goertzel::tone_snr_db(tail, 8000, 1000.0);
    assert!(snr >= 10.0, "1 kHz round trip through cpal: SNR {snr:.1} dB");
}
